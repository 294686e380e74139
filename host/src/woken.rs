//! A future polled only when it was woken: [`Woken`].
//!
//! A connection's reader, guest and writer are futures on one task, joined
//! by a `select!` that polls every one of them whenever the task wakes. Most
//! wakes are for one of them (the socket has data, the guest wrote a
//! message); polling the others costs what they do to find out they have
//! nothing to do (the guest's runtime walks its queues, every channel
//! registers its waker again). Wrapped, each is polled only after a wake of
//! its own.
//!
//! The wrapper also tells whether its future is busy: woken and not yet
//! polled since. The component-model runtime wakes itself when it pauses a
//! guest that is still running, to let other work in; the connection's
//! writer asks before it writes to the socket, since a busy guest is often in
//! the middle of its answer (the end of a streamed message comes a pass
//! later), and one write for all of it is cheaper for both ends than a write
//! per piece.

use futures_util::task::AtomicWaker;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps a future and polls it only once it was woken (and the first time).
pub struct Woken<F> {
    inner: F,
    flag: Arc<WakeFlag>,
    /// A waker for `flag`, made once.
    waker: Waker,
}

/// What a [`Woken`] future's wakes go through.
struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Set before the task is woken: the pass that wake starts sees it.
        self.woken.store(true, Ordering::SeqCst);
        self.task.wake();
    }
}

/// Whether a [`Woken`] future is busy.
#[derive(Clone)]
pub struct Busy(Arc<WakeFlag>);

impl Busy {
    /// Whether the future was woken and not polled since: it has more to
    /// do, and its task polls it again right away.
    pub fn is_busy(&self) -> bool {
        self.0.woken.load(Ordering::SeqCst)
    }
}

impl<F> Woken<F> {
    /// `inner`, polled only when woken.
    pub fn new(inner: F) -> Self {
        let flag = Arc::new(WakeFlag { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let waker = Waker::from(flag.clone());
        Self { inner, flag, waker }
    }

    /// What tells whether the future is busy.
    pub fn busy(&self) -> Busy {
        Busy(self.flag.clone())
    }
}

impl<F: Future + Unpin> Future for Woken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Registered before the flag is read: a wake after the read reaches
        // the task.
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wakes::WakeCount;

    /// Pending until told otherwise; counts its polls and keeps the last
    /// waker it was given.
    #[derive(Default)]
    struct Probe {
        polls: usize,
        waker: Option<Waker>,
        wake_itself: bool,
    }

    impl Future for Probe {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls += 1;
            self.waker = Some(cx.waker().clone());
            if std::mem::take(&mut self.wake_itself) {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }

    #[test]
    fn polls_its_future_only_after_a_wake_of_its_own() {
        let (task, task_waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&task_waker);
        let mut woken = Woken::new(Probe::default());
        let busy = woken.busy();

        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert_eq!(woken.inner.polls, 1, "the first poll goes through");
        assert!(!busy.is_busy());

        // The task is polled for something else: the future is not.
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert_eq!(woken.inner.polls, 1);

        // Its own waker wakes the task, and the next poll goes through.
        woken.inner.waker.take().expect("a waker").wake();
        assert_eq!(task.get(), 1);
        assert!(busy.is_busy());
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert_eq!(woken.inner.polls, 2);
        assert!(!busy.is_busy());
    }

    #[test]
    fn a_future_that_wakes_itself_is_busy_until_polled_again() {
        let (task, task_waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&task_waker);
        let mut woken = Woken::new(Probe { wake_itself: true, ..Probe::default() });
        let busy = woken.busy();

        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert!(busy.is_busy(), "it woke itself while polled");
        assert_eq!(task.get(), 1, "and the task with it");
        assert!(Pin::new(&mut woken).poll(&mut cx).is_pending());
        assert_eq!(woken.inner.polls, 2);
        assert!(!busy.is_busy());
    }
}
