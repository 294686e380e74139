//! A sink that counts and a source that pushes once, then panics while the
//! sink is still running: the connection must close with 1011.

use std::time::Duration;
use wsplug_sdk::{ConnectionInfo, Incoming, Outgoing, Sink, Source, sleep};

struct CrashSource;

impl Sink for CrashSource {
    async fn run(_: ConnectionInfo, mut incoming: Incoming) -> wsplug_sdk::Result {
        while incoming.next().await.is_some() {}
        Ok(())
    }
}

impl Source for CrashSource {
    async fn run(_: ConnectionInfo, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        outgoing.send_text("about to crash").await?;
        sleep(Duration::from_millis(50)).await;
        panic!("the source crashes while the sink runs");
    }
}

wsplug_sdk::export_sink_source!(CrashSource);
