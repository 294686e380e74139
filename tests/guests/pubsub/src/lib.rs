//! Topics driven by the client, one text command per message, each answered
//! with one message:
//!
//! | command | answer |
//! |---|---|
//! | `join T` | `ok` or `error: E` |
//! | `leave T` | `left true` / `left false` or `error: E` |
//! | `publish T M` | `reached N` or `error: E` (`M` as text, to everyone) |
//! | `publish-others T M` | the same, leaving this connection out |
//! | `publish-binary T M` | the same, `M`'s bytes as a binary message |
//! | `publish-size T N` | publishes N bytes of `x` as text |
//! | `stream T` | a streamed reply: `one `, then, once the client sends anything, it publishes `in the middle` to T and ends the reply with `two three` |

use wsplug_sdk::topics::{self, Published, TopicError};
use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct PubSub;

fn answer<T>(result: Result<T, TopicError>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(error) => format!("error: {error:?}"),
    }
}

impl Flow for PubSub {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            let Some(command) = message.into_text().await else { continue };
            let mut words = command.splitn(3, ' ');
            let (verb, topic, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""), words.next());
            let rest = rest.unwrap_or("");
            let reached = |count: u32| format!("reached {count}");
            let reply = match verb {
                "join" => answer(topics::join(topic), |()| "ok".to_owned()),
                "leave" => answer(topics::leave(topic), |left| format!("left {left}")),
                "publish" => answer(topics::publish(topic, rest), reached),
                "publish-others" => answer(topics::publish_to_others(topic, rest), reached),
                "publish-binary" => answer(topics::publish(topic, Published::Binary(rest.into())), reached),
                "publish-size" => {
                    let size = rest.parse().unwrap_or(0);
                    answer(topics::publish(topic, "x".repeat(size)), reached)
                }
                "stream" => {
                    let mut reply = outgoing.text_stream().await?;
                    reply.write("one ").await?;
                    // The client has seen the reply begin.
                    let _ = incoming.next().await;
                    let _ = topics::publish(topic, "in the middle");
                    reply.write("two three").await?;
                    continue;
                }
                _ => format!("unknown command {command:?}"),
            };
            outgoing.send_text(reply).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(PubSub);
