//! A live feed: `ws://HOST/feed?topic=NAME` (NAME `main` if not given)
//! delivers whatever is published to the topic `feed:NAME` (by the admin
//! API's `POST /topics/feed:NAME`, or by another handler) to the client.
//! Server push for dashboards and notifications: the handler joins the
//! topic and is never woken again until the client leaves; the host writes
//! each message to the socket.

use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing, topics};

struct Feed;

impl Flow for Feed {
    async fn run(info: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
        let name = info
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("topic="))
            .filter(|name| !name.is_empty())
            .unwrap_or("main");
        if let Err(error) = topics::join(&format!("feed:{name}")) {
            // Tell the client why, then close.
            return outgoing.send_text(format!("error: {error}")).await;
        }
        // The client has nothing to say; its messages are dropped unread.
        while incoming.next().await.is_some() {}
        Ok(())
    }
}

wsplug_sdk::export_flow!(Feed);
