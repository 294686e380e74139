//! A source that says `done` and returns while its sink reads on: the
//! connection lives as long as the source's output, so it closes with 1000
//! though the sink has not returned.

use wsplug_sdk::{ConnectionInfo, Incoming, Outgoing, Sink, Source};

struct EarlyEnd;

impl Sink for EarlyEnd {
    async fn run(_: ConnectionInfo, mut incoming: Incoming) -> wsplug_sdk::Result {
        while incoming.next().await.is_some() {}
        Ok(())
    }
}

impl Source for EarlyEnd {
    async fn run(_: ConnectionInfo, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        outgoing.send_text("done").await?;
        Ok(())
    }
}

wsplug_sdk::export_sink_source!(EarlyEnd);
