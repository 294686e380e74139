//! A bounded queue from one producer to one consumer, sized to its
//! capacity: what a connection's reader, guest and writer hand each other.
//!
//! ```text
//!  Sender ──push──▶ [ VecDeque of `capacity` ] ──poll_recv──▶ Receiver
//!     ▲ poll_ready: room?                      wakes the receiver ┘
//!     └──────────── wakes the sender when an item is taken
//! ```
//!
//! tokio's `mpsc` would do, but it allocates 32 slots at a time whatever the
//! capacity (1.3 KiB for a connection's message types) and pads its state
//! to cache lines: about 1.7 KiB per channel, three per connection and one
//! per streamed message. This one allocates its state and exactly
//! `capacity` slots, about 0.1-0.7 KiB. One producer and one consumer is
//! all a connection needs, and it makes room a simple count: once
//! [`Sender::poll_ready`] has seen room, nobody else can take it before
//! [`Sender::push`].

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A queue for up to `capacity` items (at least 1) in flight.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity),
            capacity,
            sender_alive: true,
            receiver_alive: true,
            sender_waker: None,
            receiver_waker: None,
        }),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic with the lock held (a failed allocation, or a push without
        // room in a debug build) leaves the state consistent: go on with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    sender_alive: bool,
    receiver_alive: bool,
    /// The sender waiting for room.
    sender_waker: Option<Waker>,
    /// The receiver waiting for an item.
    receiver_waker: Option<Waker>,
}

/// Keeps `waker` in `slot` to be woken later, without cloning it again if
/// it is the one there already.
fn keep(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(kept) if kept.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// The receiver is gone: nothing more can be handed over.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

/// The producing end. Dropping it ends the queue: the receiver gets what is
/// queued, then `None`.
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Ready once there is room for one more item (it stays there until
    /// [`Sender::push`]), or once the receiver is gone.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            Poll::Ready(Err(Closed))
        } else if state.items.len() < state.capacity {
            Poll::Ready(Ok(()))
        } else {
            keep(&mut state.sender_waker, cx.waker());
            Poll::Pending
        }
    }

    /// Queues `item`, after [`Sender::poll_ready`] has seen room for it;
    /// gives it back if the receiver is gone.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.0.lock();
        if !state.receiver_alive {
            return Err(item);
        }
        debug_assert!(state.items.len() < state.capacity, "push without room");
        state.items.push_back(item);
        let waker = state.receiver_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Waits for room, then queues `item`; gives it back if the receiver
    /// is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        match poll_fn(|cx| self.poll_ready(cx)).await {
            Ok(()) => self.push(item),
            Err(Closed) => Err(item),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.sender_alive = false;
        let waker = state.receiver_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The consuming end. Dropping it drops what is queued, and the sender's
/// next step is told so.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next item, or `None` once the sender is gone and the queue empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if let Some(item) = state.items.pop_front() {
            let waker = state.sender_waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
            Poll::Ready(Some(item))
        } else if !state.sender_alive {
            Poll::Ready(None)
        } else {
            keep(&mut state.receiver_waker, cx.waker());
            Poll::Pending
        }
    }

    /// Waits for the next item; `None` once the sender is gone and the
    /// queue empty.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.0.lock().items.is_empty()
    }

    /// Whether a poll would not wait: an item is queued or the sender is
    /// gone (one lock, for a caller that wants to know either).
    pub fn is_ready(&self) -> bool {
        let state = self.0.lock();
        !state.items.is_empty() || !state.sender_alive
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.0.lock();
        f.debug_struct("Receiver").field("queued", &state.items.len()).field("capacity", &state.capacity).finish()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver_alive = false;
        let items = std::mem::take(&mut state.items);
        let waker = state.sender_waker.take();
        drop(state);
        // Outside the lock: an item may own another queue's end.
        drop(items);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wakes::WakeCount;

    #[test]
    fn holds_capacity_items_and_wakes_each_side_when_the_other_moves() {
        let (sender, mut receiver) = channel(2);
        let (sender_wakes, sender_waker) = WakeCount::waker();
        let (receiver_wakes, receiver_waker) = WakeCount::waker();
        let mut sender_cx = Context::from_waker(&sender_waker);
        let mut receiver_cx = Context::from_waker(&receiver_waker);

        assert_eq!(receiver.poll_recv(&mut receiver_cx), Poll::Pending);
        for item in [1, 2] {
            assert_eq!(sender.poll_ready(&mut sender_cx), Poll::Ready(Ok(())));
            sender.push(item).unwrap();
        }
        assert_eq!(receiver_wakes.get(), 1, "the waiting receiver is woken once");
        assert_eq!(sender.poll_ready(&mut sender_cx), Poll::Pending, "full at capacity");

        assert_eq!(receiver.poll_recv(&mut receiver_cx), Poll::Ready(Some(1)));
        assert_eq!(sender_wakes.get(), 1, "taking an item wakes the waiting sender");
        assert_eq!(sender.poll_ready(&mut sender_cx), Poll::Ready(Ok(())));
        sender.push(3).unwrap();
        assert_eq!(receiver.poll_recv(&mut receiver_cx), Poll::Ready(Some(2)));
        assert_eq!(receiver.poll_recv(&mut receiver_cx), Poll::Ready(Some(3)));
        assert!(receiver.is_empty());
    }

    #[test]
    fn the_receiver_gets_what_is_queued_then_none_once_the_sender_is_gone() {
        let (sender, mut receiver) = channel(4);
        let (receiver_wakes, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!receiver.is_ready(), "nothing queued, the sender there");
        sender.push("a").unwrap();
        drop(sender);
        assert_eq!(receiver.poll_recv(&mut cx), Poll::Ready(Some("a")));
        assert!(receiver.is_ready(), "the sender is gone");
        assert_eq!(receiver.poll_recv(&mut cx), Poll::Ready(None));

        let (sender, mut receiver) = channel::<&str>(4);
        assert_eq!(receiver.poll_recv(&mut cx), Poll::Pending);
        drop(sender);
        assert_eq!(receiver_wakes.get(), 1, "a waiting receiver learns the sender is gone");
        assert_eq!(receiver.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_gone_receiver_drops_the_queue_and_refuses_more() {
        let (sender, receiver) = channel(1);
        let (sender_wakes, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        let item = Arc::new(());
        sender.push(item.clone()).unwrap();
        assert_eq!(sender.poll_ready(&mut cx), Poll::Pending);
        drop(receiver);
        assert_eq!(Arc::strong_count(&item), 1, "the queued item is dropped with the receiver");
        assert_eq!(sender_wakes.get(), 1, "a waiting sender learns the receiver is gone");
        assert_eq!(sender.poll_ready(&mut cx), Poll::Ready(Err(Closed)));
        assert!(sender.push(item).is_err());
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let (sender, mut receiver) = channel(1);
        sender.send(1).await.unwrap();
        let sending = tokio::spawn(async move {
            sender.send(2).await.unwrap();
            sender
        });
        assert_eq!(receiver.recv().await, Some(1));
        assert_eq!(receiver.recv().await, Some(2));
        drop(sending.await.unwrap());
        assert_eq!(receiver.recv().await, None);
    }
}
