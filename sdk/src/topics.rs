//! Topics: reach other connections of the host.
//!
//! ```ignore
//! use wsplug_sdk::topics::{self, Published, TopicError};
//!
//! // Each call returns a `TopicError` rather than trapping; a handler
//! // decides what one means to it (see the chat example).
//! topics::join("room:lobby")?;                    // the client gets the room's messages
//! topics::publish("room:lobby", "* Ann joined")?; // to everyone in the room, Ann included
//! topics::publish_to_others("room:lobby", "psst")?;
//! let mut feed = topics::subscribe("prices")?;    // messages to the handler instead
//! while let Some(message) = feed.next().await { /* filter, transform, send */ }
//! # Ok::<(), TopicError>(())
//! ```
//!
//! Delivery is at most once, in publish order per publisher and topic; a
//! subscriber that cannot keep up loses messages or its connection, as its
//! route configures. No call waits for a subscriber.

use crate::bindings::Message;
use crate::bindings::flow::wsplug::websocket::topics as wit;
use crate::read_ahead::ReadAhead;

/// Why a topic call was refused (see the WIT for each case); it prints as
/// its case and value, e.g. `TopicError::TooManyTopics(64)`.
pub use wit::TopicError;
pub use wit::TopicMessage as Published;

/// This connection's client receives every message published to `topic`,
/// written by the host straight to the socket (the handler is not woken for
/// them), until [`leave`] or the end of the connection.
pub fn join(topic: &str) -> Result<(), TopicError> {
    wit::join(topic)
}

/// Stops the deliveries of [`join`]; `Ok(false)` if the connection had not
/// joined `topic`.
pub fn leave(topic: &str) -> Result<bool, TopicError> {
    wit::leave(topic)
}

/// Publishes `message` to every connection that joined or subscribed to
/// `topic`, this one included. Returns how many it reached on this host.
pub fn publish(topic: &str, message: impl Into<Published>) -> Result<u32, TopicError> {
    wit::publish(topic, &message.into(), false)
}

/// Publishes `message` to every connection of `topic` but this one.
pub fn publish_to_others(topic: &str, message: impl Into<Published>) -> Result<u32, TopicError> {
    wit::publish(topic, &message.into(), true)
}

/// Hands `topic`'s messages to the handler, for one that filters or
/// transforms them. The subscription ends when the [`Subscription`] is
/// dropped.
pub fn subscribe(topic: &str) -> Result<Subscription, TopicError> {
    wit::subscribe(topic).map(|messages| Subscription { messages: ReadAhead::new(messages) })
}

/// The messages published to a topic, as they come.
pub struct Subscription {
    messages: ReadAhead<Published>,
}

impl Subscription {
    /// The next message; `None` only if the host ended the subscription.
    /// Cancel-safe, like [`crate::Incoming::next`].
    pub async fn next(&mut self) -> Option<Published> {
        self.messages.next().await
    }
}

impl From<&str> for Published {
    fn from(text: &str) -> Self {
        Published::Text(text.to_owned())
    }
}

impl From<String> for Published {
    fn from(text: String) -> Self {
        Published::Text(text)
    }
}

impl From<Vec<u8>> for Published {
    fn from(data: Vec<u8>) -> Self {
        Published::Binary(data)
    }
}

impl From<Published> for Message {
    /// A published message, to send on to the client.
    fn from(message: Published) -> Self {
        match message {
            Published::Text(text) => Message::Text(text),
            Published::Binary(data) => Message::Binary(data),
        }
    }
}
