//! Echoes text messages until it receives `trap`, then panics, which traps
//! the instance: the host must close this connection with 1011 and nothing
//! else. `last WORDS` sends `WORDS`, then panics: what it sent still goes
//! out before the 1011.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Trap;

impl Flow for Trap {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            let text = message.into_text().await.unwrap_or_default();
            if text == "trap" {
                panic!("asked to trap");
            }
            if let Some(words) = text.strip_prefix("last ") {
                outgoing.send_text(words).await?;
                panic!("asked to trap after its last words");
            }
            outgoing.send_text(text).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Trap);
