//! Echoes text messages; on `spin` it computes forever without yielding. The
//! host must interrupt it at its CPU budget (close 1011) and keep serving
//! other connections meanwhile.

use std::hint::black_box;
use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Hog;

impl Flow for Hog {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            let text = message.into_text().await.unwrap_or_default();
            if text == "spin" {
                let mut counter = 0u64;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            outgoing.send_text(text).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Hog);
