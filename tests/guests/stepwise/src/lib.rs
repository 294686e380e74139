//! Builds each streamed reply from the client's messages: the first message
//! opens a streamed text reply, each message becomes one chunk of it as soon
//! as it arrives, and `end` ends the reply. Lets a test see a reply's first
//! frame on the wire while the guest is still waiting to write the rest.
//! `boom` traps, in the middle of the reply if one is open.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Stepwise;

impl Flow for Stepwise {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(first) = incoming.next().await {
            let mut reply = outgoing.text_stream().await?;
            let mut text = first.into_text().await.unwrap_or_default();
            while text != "end" {
                if text == "boom" {
                    panic!("asked to trap in the middle of a reply");
                }
                reply.write(text).await?;
                let Some(next) = incoming.next().await else { return Ok(()) };
                text = next.into_text().await.unwrap_or_default();
            }
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Stepwise);
