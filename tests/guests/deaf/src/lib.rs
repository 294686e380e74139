//! Returns its output stream and then neither reads its input nor writes:
//! the host must push back on a client that keeps sending, and close the
//! connection once idle.

use std::time::Duration;
use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing, sleep};

struct Deaf;

impl Flow for Deaf {
    async fn run(_: ConnectionInfo, _incoming: Incoming, _outgoing: Outgoing) -> wsplug_sdk::Result {
        loop {
            sleep(Duration::from_secs(3600)).await;
        }
    }
}

wsplug_sdk::export_flow!(Deaf);
