//! The queues between the broker and a connection: frames for its socket
//! writer, messages for each of its handler's subscriptions. The broker never
//! waits on them; what bounds them is the connection's [`Budget`] of bytes,
//! shared by all its queues (`max-buffered`).

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::Published;

/// What happens to a subscriber whose queues are full when a message is
/// published to one of its topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowSubscriber {
    /// The message is dropped for it (and counted); it gets the next one
    /// that fits.
    #[default]
    Drop,
    /// Its connection is closed with 1008.
    Close,
}

/// What became of a message offered to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the subscriber.
    Queued,
    /// Not queued: the subscriber's queues were full.
    Dropped,
    /// Not queued: the subscriber is gone.
    Gone,
}

/// A connection's allowance of bytes waiting in its topic queues.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    policy: SlowSubscriber,
    dropped: AtomicU64,
    /// Cancelled when a message did not fit and the policy is to close.
    too_slow: CancellationToken,
    /// The route's counts of messages queued and dropped.
    counters: TopicCounters,
}

/// Where a connection's topic deliveries and drops are counted (its
/// route's metrics).
#[derive(Debug, Clone, Default)]
pub struct TopicCounters {
    /// Messages queued.
    pub delivered: Counter,
    /// Messages that did not fit.
    pub dropped: Counter,
}

impl Budget {
    /// `limit` bytes, what to do when a message does not fit, and where to
    /// count deliveries and drops.
    pub fn new(limit: usize, policy: SlowSubscriber, counters: TopicCounters) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            policy,
            dropped: AtomicU64::new(0),
            too_slow: CancellationToken::new(),
            counters,
        })
    }

    /// Takes `bytes` from the allowance if they fit. A message always fits
    /// queues that are empty: else one as large as `[topics]
    /// max-message-size` (its frame header on top) would reach nobody.
    fn reserve(&self, bytes: usize) -> bool {
        count_in(&self.used, bytes, self.limit)
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// A message did not fit.
    fn overflowed(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.counters.dropped.inc();
        if self.policy == SlowSubscriber::Close {
            self.too_slow.cancel();
        }
    }

    /// Resolves once the connection is to be closed for being too slow.
    pub fn too_slow(&self) -> WaitForCancellationFuture<'_> {
        self.too_slow.cancelled()
    }

    /// How many messages did not fit so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Adds `bytes` to the count `used` if the total stays within `limit`, or
/// if nothing is counted yet (one item always fits, however large).
pub(crate) fn count_in(used: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |counted| {
        counted.checked_add(bytes).filter(|&total| total <= limit || counted == 0)
    })
    .is_ok()
}

/// What a queued item costs the budget.
pub trait Weighed {
    /// Its size in bytes.
    fn weight(&self) -> usize;
}

impl Weighed for Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weighed for Published {
    fn weight(&self) -> usize {
        self.payload.len()
    }
}

/// A queue bounded by `budget`: an unbounded channel whose contents are
/// counted against the budget on the way in and released on the way out.
pub fn channel<T: Weighed>(budget: Arc<Budget>) -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (Sender { sender, budget: budget.clone() }, Receiver { receiver, budget })
}

/// The broker's end of a queue.
#[derive(Debug, Clone)]
pub struct Sender<T> {
    sender: mpsc::UnboundedSender<T>,
    budget: Arc<Budget>,
}

impl<T: Weighed> Sender<T> {
    /// Queues `item` if the budget allows; never waits.
    pub fn offer(&self, item: T) -> Delivery {
        let weight = item.weight();
        if self.sender.is_closed() {
            return Delivery::Gone;
        }
        if !self.budget.reserve(weight) {
            self.budget.overflowed();
            return Delivery::Dropped;
        }
        match self.sender.send(item) {
            Ok(()) => {
                self.budget.counters.delivered.inc();
                Delivery::Queued
            }
            Err(_) => {
                self.budget.release(weight);
                Delivery::Gone
            }
        }
    }

    /// The budget this queue counts against.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

/// The consuming end of a queue. Dropping it releases what it still holds.
#[derive(Debug)]
pub struct Receiver<T: Weighed> {
    receiver: mpsc::UnboundedReceiver<T>,
    budget: Arc<Budget>,
}

impl<T: Weighed> Receiver<T> {
    /// The next item, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        let item = self.receiver.try_recv().ok()?;
        self.budget.release(item.weight());
        Some(item)
    }

    /// Polls for the next item (see [`Receiver::recv`]).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let item = std::task::ready!(self.receiver.poll_recv(cx));
        if let Some(item) = &item {
            self.budget.release(item.weight());
        }
        Poll::Ready(item)
    }

    /// The budget this queue counts against.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl<T: Weighed> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.receiver.close();
        while self.try_recv().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue of frames on a budget of `limit` bytes, and the budget.
    fn queue(limit: usize, policy: SlowSubscriber) -> (Arc<Budget>, Sender<Bytes>, Receiver<Bytes>) {
        let budget = Budget::new(limit, policy, TopicCounters::default());
        let (sender, receiver) = channel::<Bytes>(budget.clone());
        (budget, sender, receiver)
    }

    #[test]
    fn a_full_budget_drops_and_counts_then_takes_what_fits_again() {
        let (budget, sender, mut receiver) = queue(10, SlowSubscriber::Drop);
        assert_eq!(sender.offer(Bytes::from_static(b"123456")), Delivery::Queued);
        assert_eq!(sender.offer(Bytes::from_static(b"123456")), Delivery::Dropped);
        assert_eq!(sender.offer(Bytes::from_static(b"1234")), Delivery::Queued);
        assert_eq!(budget.dropped(), 1);
        assert_eq!(receiver.try_recv().as_deref(), Some(&b"123456"[..]));
        assert_eq!(sender.offer(Bytes::from_static(b"123456")), Delivery::Queued);
        assert!(!budget.too_slow.is_cancelled());
        drop(receiver);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0, "a dropped queue gives its bytes back");
        assert_eq!(sender.offer(Bytes::from_static(b"1")), Delivery::Gone);
    }

    #[test]
    fn a_message_larger_than_the_budget_fits_empty_queues_only() {
        let (budget, sender, mut receiver) = queue(4, SlowSubscriber::Drop);
        assert_eq!(sender.offer(Bytes::from_static(b"123456")), Delivery::Queued);
        assert_eq!(sender.offer(Bytes::from_static(b"1")), Delivery::Dropped);
        assert_eq!(receiver.try_recv().as_deref(), Some(&b"123456"[..]));
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_close_policy_marks_the_connection_too_slow() {
        let (budget, sender, _receiver) = queue(4, SlowSubscriber::Close);
        assert_eq!(sender.offer(Bytes::from_static(b"1234")), Delivery::Queued);
        assert!(!budget.too_slow.is_cancelled());
        assert_eq!(sender.offer(Bytes::from_static(b"5")), Delivery::Dropped);
        assert!(budget.too_slow.is_cancelled());
    }
}
