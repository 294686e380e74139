//! A live feed: `ws://HOST/feed?topic=NAME` (NAME `main` if not given,
//! percent-encoded as a browser's `encodeURIComponent` makes it: `a%3Ab` is
//! `a:b`) delivers whatever is published to the topic `feed:NAME` (by the admin
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
        let Some(name) = percent_decoded(name) else {
            return outgoing.send_text("error: the topic name is not UTF-8 once decoded").await;
        };
        if let Err(error) = topics::join(&format!("feed:{name}")) {
            // Tell the client why, then close.
            return outgoing.send_text(format!("error: {error}")).await;
        }
        // The client has nothing to say; its messages are dropped unread.
        while incoming.next().await.is_some() {}
        Ok(())
    }
}

/// `text` with its `%XX` escapes decoded; `None` if the result is not
/// UTF-8. A `%` not followed by two hex digits stays as it is.
fn percent_decoded(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

wsplug_sdk::export_flow!(Feed);
