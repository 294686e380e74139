//! Echoes text messages; on `eat` it allocates until its memory limit stops
//! it. The growth past the limit traps (close 1011); nothing else suffers.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Glutton;

impl Flow for Glutton {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        while let Some(message) = incoming.next().await {
            let text = message.into_text().await.unwrap_or_default();
            if text == "eat" {
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            outgoing.send_text(text).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Glutton);
