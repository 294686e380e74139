//! Writes 64 KiB binary messages as fast as it is let, forever: a client
//! that does not read must slow it down, not grow the host's memory.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Flood;

impl Flow for Flood {
    async fn run(_: ConnectionInfo, _: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let chunk = vec![0x55; 64 * 1024];
        loop {
            outgoing.send_binary(chunk.clone()).await?;
        }
    }
}

wsplug_sdk::export_flow!(Flood);
