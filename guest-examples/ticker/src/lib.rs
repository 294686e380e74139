//! The ticker: server push. Its source sends `tick 1`, `tick 2`, ... every
//! interval (query `interval_ms`, default 1000) whether or not the client
//! says anything; its sink counts the client's messages. Sending `count`
//! asks for the tally, which the source reports as `received N` with its
//! next push. Sink and source share one instance per connection, hence the
//! thread-locals.

use std::cell::Cell;
use std::time::Duration;
use wsplug_sdk::{ConnectionInfo, Incoming, Outgoing, Sink, Source, sleep};

thread_local! {
    static RECEIVED: Cell<u64> = const { Cell::new(0) };
    static REPORT_DUE: Cell<bool> = const { Cell::new(false) };
}

const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);

struct Ticker;

impl Sink for Ticker {
    async fn run(_: ConnectionInfo, mut incoming: Incoming) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            RECEIVED.set(RECEIVED.get() + 1);
            if message.into_text().await.as_deref() == Some("count") {
                REPORT_DUE.set(true);
            }
        }
        Ok(())
    }
}

impl Source for Ticker {
    async fn run(info: ConnectionInfo, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let interval = interval(info.query.as_deref());
        for tick in 1u64.. {
            sleep(interval).await;
            if REPORT_DUE.replace(false) {
                outgoing.send_text(format!("received {}", RECEIVED.get())).await?;
            }
            outgoing.send_text(format!("tick {tick}")).await?;
        }
        Ok(())
    }
}

/// The push interval from a query such as `interval_ms=50`.
fn interval(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("interval_ms=")?.parse().ok())
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
}

wsplug_sdk::export_sink_source!(Ticker);
