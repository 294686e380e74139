//! Answers each message with how many more had come with it: `text +N`,
//! where N is what [`Incoming::buffered`] says once the message is taken.
//! Waits 300 ms before its first read, so that a burst the client sends at
//! once is waiting for it. Once its input has ended without a close frame
//! from the client (the server shuts down), it says so.

use std::time::Duration;
use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing, sleep};

struct Burst;

impl Flow for Burst {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        sleep(Duration::from_millis(300)).await;
        while let Some(message) = incoming.next().await {
            let more = incoming.buffered();
            let text = message.into_text().await.unwrap_or_default();
            outgoing.send_text(format!("{text} +{more}")).await?;
        }
        if incoming.close_frame().await.is_none() {
            outgoing.send_text("ended without a close frame").await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Burst);
