//! The handler's side of topics: the host implementation of the
//! `wsplug:websocket/topics` import, one [`TopicsCtx`] per store: a
//! connection's own instance, or a shared instance (which has no socket of
//! its own to join topics with).

use super::broker::{Broker, Published, Subscriber, Target, TopicError, check_name};
use super::queue::{self, Budget, Receiver};
use crate::wasm::bindings::topics::{self as wit, TopicMessage};
use crate::wasm::runtime::GuestStatus;
use crate::wasm::streams::produce_ready;
use bytes::Bytes;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Access, Destination, HasData, Linker, StreamProducer, StreamReader, StreamResult, VecBuffer,
};

/// One store's topics: what it joined, and what it needs to join,
/// subscribe and publish. Dropping it (with the store) leaves every topic.
pub struct TopicsCtx {
    broker: Arc<Broker>,
    /// The connection (or shared instance) that `exclude-self` excludes.
    connection: u64,
    /// The connection's queue of frames for its socket writer; none for a
    /// shared instance.
    socket: Option<queue::Sender<Bytes>>,
    /// What subscriptions' queues count against.
    budget: Arc<Budget>,
    joined: HashMap<String, Registration>,
    /// Joins and subscriptions held now.
    held: Arc<AtomicUsize>,
    max_topics: usize,
}

impl TopicsCtx {
    /// The topics of `connection`, whose joined topics' frames go to
    /// `socket`; it may hold `max_topics` topics at once.
    /// The connection's budget bounds its socket queue and its
    /// subscriptions together.
    pub fn new(broker: Arc<Broker>, connection: u64, socket: queue::Sender<Bytes>, max_topics: usize) -> Self {
        let budget = socket.budget().clone();
        Self {
            broker,
            connection,
            socket: Some(socket),
            budget,
            joined: HashMap::new(),
            held: Arc::default(),
            max_topics,
        }
    }

    /// The topics of a shared instance, numbered `instance` like a
    /// connection: it subscribes and publishes, within `budget`, but cannot
    /// join (no socket is its own).
    pub fn shared(broker: Arc<Broker>, instance: u64, budget: Arc<Budget>, max_topics: usize) -> Self {
        Self {
            broker,
            connection: instance,
            socket: None,
            budget,
            joined: HashMap::new(),
            held: Arc::default(),
            max_topics,
        }
    }

    /// Registers a new subscriber to `topic`, within the connection's cap.
    fn register(&self, topic: &str, target: Target) -> Result<Registration, TopicError> {
        check_name(topic)?;
        let max = self.max_topics;
        if self.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (held < max).then_some(held + 1)).is_err()
        {
            return Err(TopicError::TooManyTopics(u32::try_from(max).unwrap_or(u32::MAX)));
        }
        let id = self.broker.subscribe(topic, Subscriber { connection: self.connection, target });
        Ok(Registration { broker: self.broker.clone(), topic: topic.to_owned(), id, held: self.held.clone() })
    }

    fn budget(&self) -> Arc<Budget> {
        self.budget.clone()
    }
}

/// One join or subscription, undone when dropped.
struct Registration {
    broker: Arc<Broker>,
    topic: String,
    id: u64,
    held: Arc<AtomicUsize>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.broker.unsubscribe(&self.topic, self.id);
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

impl From<TopicError> for wit::TopicError {
    fn from(error: TopicError) -> Self {
        match error {
            TopicError::InvalidName(name) => wit::TopicError::InvalidName(name),
            TopicError::TooManyTopics(cap) => wit::TopicError::TooManyTopics(cap),
            TopicError::TooLarge(limit) => wit::TopicError::TooLarge(limit),
            TopicError::Unavailable(why) => wit::TopicError::Unavailable(why),
        }
    }
}

impl wit::Host for TopicsCtx {
    fn join(&mut self, topic: String) -> Result<(), wit::TopicError> {
        if self.joined.contains_key(&topic) {
            return Ok(());
        }
        let Some(socket) = &self.socket else {
            return Err(TopicError::Unavailable(
                "a shared instance has no connection of its own to join with: subscribe, and send to its \
                 connections yourself"
                    .into(),
            )
            .into());
        };
        let registration = self.register(&topic, Target::Socket(socket.clone()))?;
        self.joined.insert(topic, registration);
        Ok(())
    }

    fn leave(&mut self, topic: String) -> Result<bool, wit::TopicError> {
        check_name(&topic)?;
        Ok(self.joined.remove(&topic).is_some())
    }

    fn publish(&mut self, topic: String, message: TopicMessage, exclude_self: bool) -> Result<u32, wit::TopicError> {
        let message = match message {
            TopicMessage::Text(text) => Published::text(text),
            TopicMessage::Binary(data) => Published::binary(data),
        };
        let except = exclude_self.then_some(self.connection);
        let reached = self.broker.publish(&topic, message, except)?;
        Ok(u32::try_from(reached).unwrap_or(u32::MAX))
    }
}

/// Adds the topics import to `linker`, for stores whose data has a
/// [`TopicsCtx`] where `get` finds it.
pub fn add_to_linker<T: GuestStatus + Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut TopicsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Topics>(linker, get)
}

/// The topics import, as the bindings see it.
struct Topics;

impl HasData for Topics {
    type Data<'a> = &'a mut TopicsCtx;
}

impl<T: GuestStatus + 'static> wit::HostWithStore<T> for Topics {
    fn subscribe(
        mut access: Access<'_, T, Self>,
        topic: String,
    ) -> wasmtime::Result<Result<StreamReader<TopicMessage>, wit::TopicError>> {
        let topics = access.get();
        let (sender, messages) = queue::channel(topics.budget());
        let registration = match topics.register(&topic, Target::Handler(sender)) {
            Ok(registration) => registration,
            Err(error) => return Ok(Err(error.into())),
        };
        let stream = StreamReader::new(&mut access, Subscription { _registration: registration, messages })?;
        Ok(Ok(stream))
    }
}

/// Feeds a topic's messages to the handler's `subscribe` stream; the
/// subscription ends when the handler drops the stream.
struct Subscription {
    // Dropped first: once the broker has forgotten the subscription (under
    // its write lock, after every delivery in progress), nothing more can
    // arrive, and dropping the queue gives back all it holds.
    _registration: Registration,
    messages: Receiver<Published>,
}

impl<D: GuestStatus + 'static> StreamProducer<D> for Subscription {
    type Item = TopicMessage;
    type Buffer = VecBuffer<TopicMessage>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<'a, D>,
        destination: Destination<'a, TopicMessage, VecBuffer<TopicMessage>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        // The broker holds a sender for as long as the registration lives,
        // which is as long as this stream: it ends only with the store.
        produce_ready(
            cx,
            store,
            destination,
            finish,
            |cx| self.messages.poll_recv(cx),
            |message, _| {
                Ok(if message.text {
                    // Published text is a guest's string or checked UTF-8.
                    let text = String::from_utf8(message.payload.into())
                        .map_err(|_| wasmtime::format_err!("published text is not UTF-8"))?;
                    TopicMessage::Text(text)
                } else {
                    TopicMessage::Binary(message.payload.into())
                })
            },
        )
    }
}
