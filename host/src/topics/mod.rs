//! Topics: publish and subscribe between the connections of a host.
//!
//! ```text
//!  guest `publish` ─┐                        ┌─▶ Outbox (frames) ──▶ socket writer
//!  admin POST ──────┴─▶ Broker ─ frame once ─┤     of each joined connection
//!                        registry            └─▶ Mailbox (messages) ──▶ guest `subscribe` stream
//! ```
//!
//! A publish is framed once; every joined connection's writer gets the same
//! `Bytes`. Nobody waits: a subscriber whose queue is full loses the message
//! (`slow-subscriber = "drop"`) or is closed with 1008 (`"close"`), so the
//! publisher never waits on a slow subscriber and no queue grows past its
//! connection's `max-buffered` (the writer takes at most one write's worth
//! out of it at a time).
//!
//! The [`Broker`] is the one seam between publishers and subscribers. With
//! `[topics] redis`, its relay carries every publish to the other hosts on
//! Redis pub/sub and delivers theirs here ([`redis`]).

mod broker;
mod guest;
pub mod queue;
pub mod redis;

pub use broker::{Broker, MAX_NAME_LENGTH, Published, TopicError, check_name};
pub use guest::TopicsCtx;
pub(crate) use guest::add_to_linker;
pub use queue::{Budget, SlowSubscriber, TopicCounters};
