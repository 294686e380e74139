//! Echoes text messages until it receives `trap`, then panics, which traps
//! the instance: the host must close this connection with 1011 and nothing
//! else. `last WORDS` sends `WORDS`, then panics: what it sent still goes
//! out before the 1011. `streamed WORDS` sends `WORDS` as a streamed
//! message, a chunk per word (`last streamed WORDS` too, then panics).

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Trap;

impl Flow for Trap {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            let text = message.into_text().await.unwrap_or_default();
            if text == "trap" {
                panic!("asked to trap");
            }
            let (last, text) = match text.strip_prefix("last ") {
                Some(words) => (true, words),
                None => (false, text.as_str()),
            };
            match text.strip_prefix("streamed ") {
                Some(words) => {
                    let mut body = outgoing.text_stream().await?;
                    for word in words.split_inclusive(' ') {
                        body.write(word).await?;
                    }
                }
                None => outgoing.send_text(text).await?,
            }
            if last {
                panic!("asked to trap after its last words");
            }
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Trap);
