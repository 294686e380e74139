//! Counts the text messages its instance has received, across all the
//! connections it serves, and answers each with the count so far; `trap`
//! panics, which traps the instance. With `instance = "shared"` the count
//! goes on from one connection to the next, and a trap ends them all.

use std::sync::atomic::{AtomicU64, Ordering};
use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

/// Messages seen by this instance.
static SEEN: AtomicU64 = AtomicU64::new(0);

struct Counter;

impl Flow for Counter {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            let text = message.into_text().await.unwrap_or_default();
            if text == "trap" {
                panic!("asked to trap");
            }
            let seen = SEEN.fetch_add(1, Ordering::Relaxed) + 1;
            outgoing.send_text(seen.to_string()).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Counter);
