//! Echo: sends every message back unchanged, in the form it arrived in (a
//! streamed message is passed on as a stream, without collecting it).

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Echo;

impl Flow for Echo {
    async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        while let Some(message) = incoming.next().await {
            outgoing.send(message).await?;
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Echo);
