//! The broker: who on this host joined or subscribed to which topic (the
//! [`Registry`]), the publish that reaches them all, and, with Redis, the
//! [`Relay`] that carries publishes to and from the other hosts.

use super::queue::{Delivery, Sender};
use super::redis::{Interest, Relay};
use crate::config::TopicsConfig;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// The longest topic name, in bytes.
pub const MAX_NAME_LENGTH: usize = 128;

/// A message published to a topic: always strict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Whether it is text (the payload is then valid UTF-8).
    pub text: bool,
    /// The whole payload.
    pub payload: Bytes,
}

impl Published {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: true, payload: Bytes::from(text.into()) }
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self { text: false, payload: data.into() }
    }

    fn frame(&self) -> Bytes {
        wsplug_wire::frame(OpCode::Data(if self.text { Data::Text } else { Data::Binary }), &self.payload)
    }
}

/// Why a topic operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// The name is empty, too long or has a character outside the allowed
    /// set.
    InvalidName(String),
    /// The connection holds as many topics as its route allows.
    TooManyTopics(u32),
    /// The message is over the topic message limit (in bytes).
    TooLarge(u64),
    /// The broker cannot take messages now.
    Unavailable(String),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::InvalidName(name) => {
                write!(f, "invalid topic name {name:?}: 1 to {MAX_NAME_LENGTH} ASCII letters, digits and `-_.:@~`")
            }
            TopicError::TooManyTopics(cap) => write!(f, "this connection already holds its {cap} topics"),
            TopicError::TooLarge(limit) => write!(f, "the message is over the topic message limit of {limit} bytes"),
            TopicError::Unavailable(why) => write!(f, "topics are unavailable: {why}"),
        }
    }
}

impl std::error::Error for TopicError {}

/// Checks a topic name: 1 to [`MAX_NAME_LENGTH`] ASCII letters, digits and
/// `-_.:@~`, a set that is safe in URL paths and log lines alike.
pub fn check_name(topic: &str) -> Result<(), TopicError> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b"-_.:@~".contains(&byte);
    if topic.is_empty() || topic.len() > MAX_NAME_LENGTH || !topic.bytes().all(allowed) {
        return Err(TopicError::InvalidName(topic.to_owned()));
    }
    Ok(())
}

/// Where a subscriber wants a topic's messages.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Straight to its client: the frame, shared by every such subscriber.
    Socket(Sender<Bytes>),
    /// To its handler, through a `subscribe` stream.
    Handler(Sender<Published>),
}

/// One connection's interest in one topic.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// The connection, so that a publisher can leave itself out.
    pub connection: u64,
    pub target: Target,
}

/// The topics of a host: its own subscribers, and with Redis the other
/// hosts'.
#[derive(Debug)]
pub struct Broker {
    registry: Arc<Registry>,
    /// Carries publishes across hosts; `None`: this host is on its own.
    relay: Option<Relay>,
    max_message_size: usize,
}

impl Broker {
    /// A broker as `config` says: on this host alone, or across hosts on
    /// Redis (then it connects in the background, and must be created
    /// inside a tokio runtime).
    pub fn new(config: &TopicsConfig) -> Arc<Self> {
        let (registry, relay) = match &config.redis {
            None => (Arc::new(Registry::new(None)), None),
            Some(url) => {
                let (interest, interests) = mpsc::unbounded_channel();
                let registry = Arc::new(Registry::new(Some(interest)));
                let relay = Relay::start(url, Arc::downgrade(&registry), interests);
                (registry, Some(relay))
            }
        };
        Arc::new(Self { registry, relay, max_message_size: config.max_message_size })
    }

    /// The largest message a publish takes, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Adds `subscriber` to `topic` (a checked name); the id removes it.
    pub(crate) fn subscribe(&self, topic: &str, subscriber: Subscriber) -> u64 {
        self.registry.subscribe(topic, subscriber)
    }

    /// Removes subscription `id` from `topic`.
    pub(crate) fn unsubscribe(&self, topic: &str, id: u64) {
        self.registry.unsubscribe(topic, id);
    }

    /// Publishes `message` to every subscriber of `topic` but those of
    /// connection `except`: on this host at once, framed once for all the
    /// sockets, and with Redis to the other hosts. Never waits: a
    /// subscriber whose queues are full misses it (see
    /// [`SlowSubscriber`](super::SlowSubscriber)). Returns how many
    /// subscribers on this host it was queued for. With Redis, a publish
    /// while Redis is unreachable is refused (`Unavailable`) and reaches
    /// no one.
    pub fn publish(&self, topic: &str, message: Published, except: Option<u64>) -> Result<usize, TopicError> {
        check_name(topic)?;
        if message.payload.len() > self.max_message_size {
            return Err(TopicError::TooLarge(self.max_message_size as u64));
        }
        if let Some(relay) = &self.relay {
            relay.publish(topic, &message)?;
        }
        Ok(self.registry.deliver(topic, &message, except))
    }

    /// How many subscriptions `topic` has on this host now.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.registry.subscribers(topic)
    }
}

/// Who on this host joined or subscribed to which topic.
#[derive(Debug)]
pub(crate) struct Registry {
    topics: RwLock<HashMap<String, HashMap<u64, Subscriber>>>,
    subscription_ids: AtomicU64,
    /// Told when a topic gets its first subscriber here and when it loses
    /// its last one (the relay's subscriptions follow), in that order: it
    /// is sent to while the registry is locked.
    interest: Option<mpsc::UnboundedSender<Interest>>,
}

impl Registry {
    fn new(interest: Option<mpsc::UnboundedSender<Interest>>) -> Self {
        Self { topics: RwLock::default(), subscription_ids: AtomicU64::new(0), interest }
    }

    fn subscribe(&self, topic: &str, subscriber: Subscriber) -> u64 {
        let id = self.subscription_ids.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.topics.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let subscribers = topics.entry(topic.to_owned()).or_default();
        if subscribers.is_empty() {
            self.tell(Interest::Subscribe(topic.to_owned()));
        }
        subscribers.insert(id, subscriber);
        id
    }

    /// A topic nobody holds any more is forgotten.
    fn unsubscribe(&self, topic: &str, id: u64) {
        let mut topics = self.topics.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(subscribers) = topics.get_mut(topic) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(topic);
                self.tell(Interest::Unsubscribe(topic.to_owned()));
            }
        }
    }

    fn tell(&self, interest: Interest) {
        if let Some(sender) = &self.interest {
            // Fails only once the relay has stopped, with the runtime.
            let _ = sender.send(interest);
        }
    }

    /// Queues `message` for every subscriber of `topic` here but those of
    /// connection `except`; returns for how many it was queued.
    pub(crate) fn deliver(&self, topic: &str, message: &Published, except: Option<u64>) -> usize {
        let topics = self.topics.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(subscribers) = topics.get(topic) else { return 0 };
        let mut frame = None;
        let mut reached = 0;
        for subscriber in subscribers.values().filter(|subscriber| Some(subscriber.connection) != except) {
            let delivery = match &subscriber.target {
                Target::Socket(frames) => frames.offer(frame.get_or_insert_with(|| message.frame()).clone()),
                Target::Handler(messages) => messages.offer(message.clone()),
            };
            reached += usize::from(delivery == Delivery::Queued);
        }
        reached
    }

    fn subscribers(&self, topic: &str) -> usize {
        let topics = self.topics.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        topics.get(topic).map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::SlowSubscriber;
    use crate::topics::queue::{Budget, channel};

    #[test]
    fn topic_names_are_checked() {
        for good in ["room:lobby", "a", "user@example.com", "x".repeat(MAX_NAME_LENGTH).as_str()] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "has space", "a/b", "é", "x".repeat(MAX_NAME_LENGTH + 1).as_str()] {
            assert!(matches!(check_name(bad), Err(TopicError::InvalidName(_))), "{bad}");
        }
    }

    #[test]
    fn a_publish_is_framed_once_and_shared_by_every_socket() {
        let broker = Broker::new(&TopicsConfig { max_message_size: 1024, redis: None });
        let mut receivers = Vec::new();
        for connection in 0..3 {
            let (sender, receiver) = channel(Budget::new(1024, SlowSubscriber::Drop, Default::default()));
            broker.subscribe("t", Subscriber { connection, target: Target::Socket(sender) });
            receivers.push(receiver);
        }
        assert_eq!(broker.publish("t", Published::text("hi"), Some(1)), Ok(2));
        let first = receivers[0].try_recv().unwrap();
        let third = receivers[2].try_recv().unwrap();
        assert_eq!(first.as_ptr(), third.as_ptr(), "the same bytes, not a copy");
        assert_eq!(&first[..], b"\x81\x02hi");
        assert!(receivers[1].try_recv().is_none(), "the publisher's own connection was left out");
        assert_eq!(broker.publish("t", Published::binary(vec![0; 1025]), None), Err(TopicError::TooLarge(1024)));
        assert_eq!(broker.publish("nobody", Published::text("hi"), None), Ok(0));
    }
}
