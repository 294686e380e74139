//! A handler that subscribes instead of joining: it takes the messages
//! published to the topic of its query (`?topic=T`) itself and passes on,
//! uppercased, only the text ones that end with `!`. It says `subscribed`
//! first, or `error: E` if the host refused the subscription.

use wsplug_sdk::topics::{self, Published};
use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};

struct Shouter;

impl Flow for Shouter {
    async fn run(info: ConnectionInfo, _incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let query = info.query.unwrap_or_default();
        let topic = query.strip_prefix("topic=").unwrap_or_default();
        let mut subscription = match topics::subscribe(topic) {
            Ok(subscription) => subscription,
            Err(error) => return outgoing.send_text(format!("error: {error:?}")).await,
        };
        outgoing.send_text("subscribed").await?;
        while let Some(message) = subscription.next().await {
            if let Published::Text(text) = message
                && text.ends_with('!')
            {
                outgoing.send_text(text.to_uppercase()).await?;
            }
        }
        Ok(())
    }
}

wsplug_sdk::export_flow!(Shouter);
