//! Topics across hosts on Redis pub/sub (`[topics] redis`).
//!
//! ```text
//!  host A: publish ──▶ A's subscribers, at once
//!             └──▶ Relay ── PUBLISH wsplug:T ──▶ Redis ──▶ Relay of host B ──▶ B's subscribers
//!                  (A's own copy comes back too and is skipped: A delivered it already)
//! ```
//!
//! Per host, not per connection: one Redis connection publishes (queued
//! publishes go out together, one pipeline per batch) and one subscribes.
//! The relay subscribes to a topic's channel when the host's first
//! connection joins it and unsubscribes when the last one leaves; a message
//! from Redis is framed once on each host and fanned out locally.
//!
//! Failures: at startup the host serves anyway and retries with backoff
//! (one warning naming the URL per outage). While Redis is unreachable every
//! publish is refused with [`TopicError::Unavailable`], so a publisher
//! learns it at once; on reconnecting the relay subscribes again to every
//! topic its connections hold, and says so. What was published while Redis
//! was down is not delivered anywhere; a publish that was queued when the
//! connection dropped may have reached some hosts and not others (at most
//! once).

use super::broker::{Published, Registry, TopicError};
use super::queue::count_in;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Redis channels are the topics' names behind this prefix, so that wsplug
/// shares a Redis server with other users.
const CHANNEL_PREFIX: &str = "wsplug:";

/// Publishes waiting for the Redis connection; beyond this a publish is
/// refused (`Unavailable`) rather than buffered.
const PUBLISH_QUEUE: usize = 4096;

/// Bytes of publishes waiting for Redis or on their way there (a stalled
/// Redis holds a pipeline unanswered); beyond this a publish is refused
/// too, whatever the count: 4,096 messages of a megabyte would be 4 GiB.
const PUBLISH_BACKLOG: usize = 16 << 20;

/// The most publishes sent in one pipeline.
const PUBLISH_BATCH: usize = 256;

/// The most changes of the host's topics followed with one SUBSCRIBE and
/// one UNSUBSCRIBE.
const INTEREST_BATCH: usize = 1024;

/// How long connecting, and any one exchange with Redis, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the subscribing connection is pinged: a Redis that hangs
/// (rather than closing the connection) is noticed within this and
/// [`EXCHANGE_TIMEOUT`].
const PING_INTERVAL: Duration = Duration::from_secs(2);

/// Reconnection backoff: from the first to the last, doubling.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// A change in the topics this host holds, for the relay's subscriptions.
#[derive(Debug)]
pub(crate) enum Interest {
    /// The host's first subscriber joined the topic.
    Subscribe(String),
    /// The host's last subscriber left the topic.
    Unsubscribe(String),
}

/// Checks that `url` is a Redis URL this host can use.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    Client::open(url).map(drop).map_err(|error| anyhow::anyhow!("`{}` is not a Redis URL: {error}", redacted(url)))
}

/// The URL as logs may show it: without a password.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

/// The host's end of Redis: queues publishes for the relay task, which owns
/// the connections.
#[derive(Debug)]
pub(crate) struct Relay {
    url: String,
    /// This host among the others: its messages that come back from Redis
    /// are skipped.
    host: u64,
    up: Arc<AtomicBool>,
    publishes: mpsc::Sender<Outgoing>,
    backlog: Arc<Backlog>,
}

/// Bytes of publishes queued for Redis or in a pipeline not yet answered.
#[derive(Debug, Default)]
struct Backlog(AtomicUsize);

impl Backlog {
    /// Counts `bytes` in if they fit under [`PUBLISH_BACKLOG`] (a message
    /// always fits an empty backlog, however large).
    fn take(&self, bytes: usize) -> bool {
        count_in(&self.0, bytes, PUBLISH_BACKLOG)
    }

    /// Counts `bytes` out: sent (and answered) or dropped.
    fn give_back(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A publish on its way to Redis.
#[derive(Debug)]
struct Outgoing {
    channel: String,
    payload: Vec<u8>,
}

impl Relay {
    /// Starts the relay task for the Redis at `url` (checked by
    /// [`check_url`]), delivering what other hosts publish to `registry`,
    /// and subscribing as `interests` says.
    pub(crate) fn start(url: &str, registry: Weak<Registry>, interests: mpsc::UnboundedReceiver<Interest>) -> Self {
        let client = Client::open(url).expect("the URL was checked with the config");
        let host = host_id();
        let up = Arc::new(AtomicBool::new(false));
        let (publishes, outgoing) = mpsc::channel(PUBLISH_QUEUE);
        let backlog = Arc::new(Backlog::default());
        let task = RelayTask {
            client,
            url: redacted(url),
            host,
            up: up.clone(),
            registry,
            interests,
            outgoing,
            backlog: backlog.clone(),
        };
        tokio::spawn(task.run());
        Self { url: redacted(url), host, up, publishes, backlog }
    }

    /// Queues `message` for the other hosts, or refuses it if Redis is
    /// unreachable (or so slow that the queue is full).
    pub(crate) fn publish(&self, topic: &str, message: &Published) -> Result<(), TopicError> {
        if !self.up.load(Ordering::Acquire) {
            return Err(TopicError::Unavailable(format!("Redis at {} is unreachable", self.url)));
        }
        let outgoing = Outgoing { channel: format!("{CHANNEL_PREFIX}{topic}"), payload: encode(self.host, message) };
        let bytes = outgoing.payload.len();
        let behind = || TopicError::Unavailable(format!("Redis at {} does not keep up", self.url));
        if !self.backlog.take(bytes) {
            return Err(behind());
        }
        self.publishes.try_send(outgoing).map_err(|_| {
            self.backlog.give_back(bytes);
            behind()
        })
    }
}

/// A random id for this host's run (its messages carry it).
fn host_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A message on Redis: the publishing host's id, a kind byte, the payload.
fn encode(host: u64, message: &Published) -> Vec<u8> {
    let mut payload = Vec::with_capacity(9 + message.payload.len());
    payload.extend_from_slice(&host.to_be_bytes());
    payload.push(if message.text { b't' } else { b'b' });
    payload.extend_from_slice(&message.payload);
    payload
}

/// The host and message of what [`encode`] made; `None` if it is not that.
fn decode(payload: &[u8]) -> Option<(u64, Published)> {
    let (host, rest) = payload.split_first_chunk::<8>()?;
    let (&kind, data) = rest.split_first()?;
    let message = match kind {
        b't' => Published { text: true, payload: Bytes::copy_from_slice(std::str::from_utf8(data).ok()?.as_bytes()) },
        b'b' => Published::binary(Bytes::copy_from_slice(data)),
        _ => return None,
    };
    Some((u64::from_be_bytes(*host), message))
}

/// The task that owns the two Redis connections.
struct RelayTask {
    client: Client,
    url: String,
    host: u64,
    up: Arc<AtomicBool>,
    registry: Weak<Registry>,
    interests: mpsc::UnboundedReceiver<Interest>,
    outgoing: mpsc::Receiver<Outgoing>,
    backlog: Arc<Backlog>,
}

/// The two connections while Redis is reachable.
struct Link {
    publisher: MultiplexedConnection,
    subscriptions: PubSubSink,
    messages: PubSubStream,
}

/// Why a link ended.
enum LinkEnd {
    /// Redis failed or went away.
    Lost(String),
    /// The host is shutting down (the registry is gone).
    Stopped,
}

impl RelayTask {
    /// Connects, serves, reconnects with backoff; ends with the host.
    async fn run(mut self) {
        // The topics this host holds: subscribed again after a reconnect.
        let mut wanted = BTreeSet::new();
        let mut retry = FIRST_RETRY;
        let mut connected_before = false;
        let mut outage_reported = false;
        loop {
            match self.connect(&wanted).await {
                Ok(link) => {
                    self.up.store(true, Ordering::Release);
                    if connected_before {
                        tracing::info!(
                            "reconnected to Redis at {}; subscribed again to {} topics",
                            self.url,
                            wanted.len()
                        );
                    } else {
                        tracing::info!("connected to Redis at {}", self.url);
                    }
                    connected_before = true;
                    retry = FIRST_RETRY;
                    let end = self.serve(link, &mut wanted).await;
                    self.up.store(false, Ordering::Release);
                    match end {
                        LinkEnd::Stopped => return,
                        LinkEnd::Lost(why) => {
                            tracing::warn!(
                                "lost the connection to Redis at {}: {why}; publishes fail until it is back",
                                self.url
                            );
                            outage_reported = true;
                        }
                    }
                }
                Err(why) if !outage_reported => {
                    tracing::warn!("Redis at {} is unreachable: {why}; retrying in the background", self.url);
                    outage_reported = true;
                }
                Err(why) => tracing::debug!("Redis at {} still unreachable: {why}", self.url),
            }
            if !self.wait_to_retry(retry, &mut wanted).await {
                return;
            }
            retry = (retry * 2).min(LAST_RETRY);
        }
    }

    /// Opens both connections and subscribes to every wanted topic.
    async fn connect(&self, wanted: &BTreeSet<String>) -> Result<Link, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(EXCHANGE_TIMEOUT));
        let publisher =
            self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())?;
        // The pub/sub connection has no timeout of its own.
        let pubsub = exchange(self.client.get_async_pubsub()).await?;
        let (mut subscriptions, messages) = pubsub.split();
        if !wanted.is_empty() {
            let channels: Vec<String> = wanted.iter().map(|topic| format!("{CHANNEL_PREFIX}{topic}")).collect();
            exchange(subscriptions.subscribe(channels)).await?;
        }
        Ok(Link { publisher, subscriptions, messages })
    }

    /// Carries publishes out and messages in, and follows the host's
    /// interest in topics, until the link fails or the host stops.
    async fn serve(&mut self, mut link: Link, wanted: &mut BTreeSet<String>) -> LinkEnd {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.reset();
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        let mut interests = Vec::with_capacity(INTEREST_BATCH);
        loop {
            let result = tokio::select! {
                count = self.interests.recv_many(&mut interests, INTEREST_BATCH) => {
                    if count == 0 {
                        return LinkEnd::Stopped;
                    }
                    follow(&mut link.subscriptions, wanted, interests.drain(..)).await
                }
                count = self.outgoing.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if count == 0 {
                        return LinkEnd::Stopped;
                    }
                    let mut pipeline = redis::pipe();
                    let mut bytes = 0;
                    for outgoing in batch.drain(..) {
                        bytes += outgoing.payload.len();
                        pipeline.cmd("PUBLISH").arg(outgoing.channel).arg(outgoing.payload).ignore();
                    }
                    let sent = exchange(pipeline.query_async::<()>(&mut link.publisher)).await;
                    // Answered, or dropped with the link.
                    self.backlog.give_back(bytes);
                    sent
                }
                message = link.messages.next() => match message {
                    None => Err("the connection closed".to_owned()),
                    Some(message) => {
                        if !self.deliver(message.get_channel_name(), message.get_payload_bytes()) {
                            return LinkEnd::Stopped;
                        }
                        Ok(())
                    }
                },
                _ = ping.tick() => exchange(link.subscriptions.ping::<redis::Value>()).await.map(drop),
            };
            if let Err(why) = result {
                return LinkEnd::Lost(why);
            }
        }
    }

    /// Hands a message from another host to this host's subscribers;
    /// `false` once the host is gone.
    fn deliver(&self, channel: &str, payload: &[u8]) -> bool {
        let Some(registry) = self.registry.upgrade() else { return false };
        let Some(topic) = channel.strip_prefix(CHANNEL_PREFIX) else { return true };
        match decode(payload) {
            // This host delivered its own publishes when they were made.
            Some((host, _)) if host == self.host => {}
            Some((_, message)) => {
                registry.deliver(topic, &message, None);
            }
            None => tracing::debug!(channel, "skipped a Redis message that wsplug did not publish"),
        }
        true
    }

    /// Waits `delay` before the next attempt, following the host's interest
    /// meanwhile and dropping what was queued for a link that failed.
    /// `false` once the host is gone.
    async fn wait_to_retry(&mut self, delay: Duration, wanted: &mut BTreeSet<String>) -> bool {
        let until = tokio::time::Instant::now() + delay;
        let mut dropped = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                interest = self.interests.recv() => match interest {
                    None => return false,
                    Some(Interest::Subscribe(topic)) => {
                        wanted.insert(topic);
                    }
                    Some(Interest::Unsubscribe(topic)) => {
                        wanted.remove(&topic);
                    }
                },
                outgoing = self.outgoing.recv() => match outgoing {
                    None => return false,
                    Some(outgoing) => {
                        dropped += 1;
                        self.backlog.give_back(outgoing.payload.len());
                    }
                },
            }
        }
        if dropped > 0 {
            tracing::warn!("{dropped} publishes queued for Redis at {} were not delivered to other hosts", self.url);
        }
        true
    }
}

/// Brings the subscriptions in line with `changes` (the last change of a
/// topic wins): one SUBSCRIBE and one UNSUBSCRIBE for them all, so that a
/// burst of joins costs a round trip, not one each.
async fn follow(
    subscriptions: &mut PubSubSink,
    wanted: &mut BTreeSet<String>,
    changes: impl Iterator<Item = Interest>,
) -> Result<(), String> {
    let mut last = BTreeMap::new();
    for change in changes {
        match change {
            Interest::Subscribe(topic) => last.insert(topic, true),
            Interest::Unsubscribe(topic) => last.insert(topic, false),
        };
    }
    let (mut subscribe, mut unsubscribe) = (Vec::new(), Vec::new());
    for (topic, on) in last {
        let channel = format!("{CHANNEL_PREFIX}{topic}");
        if !on {
            if wanted.remove(&topic) {
                unsubscribe.push(channel);
            }
        } else if wanted.insert(topic) {
            subscribe.push(channel);
        }
    }
    if !subscribe.is_empty() {
        exchange(subscriptions.subscribe(subscribe)).await?;
    }
    if !unsubscribe.is_empty() {
        exchange(subscriptions.unsubscribe(unsubscribe)).await?;
    }
    Ok(())
}

/// One exchange with Redis, bounded in time; its error as text.
async fn exchange<T>(future: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match timeout(EXCHANGE_TIMEOUT, future).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {EXCHANGE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_their_redis_form() {
        for message in [Published::text("héllo"), Published::binary(vec![0, 255, b'\r', b'\n'])] {
            assert_eq!(decode(&encode(7, &message)), Some((7, message)));
        }
        assert_eq!(decode(b"short"), None);
        assert_eq!(decode(b"01234567x"), None);
        let mut bad_text = encode(1, &Published::binary(vec![0xff]));
        bad_text[8] = b't';
        assert_eq!(decode(&bad_text), None);
    }

    #[test]
    fn urls_are_checked_and_logged_without_passwords() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("http://example.com").is_err());
        assert_eq!(redacted("redis://:hunter2@10.0.0.1:6379/0"), "redis://…@10.0.0.1:6379/0");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
