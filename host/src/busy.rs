//! Whether a future has more to do right away: it woke itself while it was
//! polled (the component-model runtime does so when it pauses a guest that
//! is still running, to let other work in), so its task will poll it again
//! at once.
//!
//! The connection's writer asks before it writes to the socket: while the
//! guest is busy, what it is writing may not be all of its answer (the end
//! of a streamed message comes a pass later), and one write for all of it is
//! cheaper for both ends than a write per piece.

use futures_util::task::AtomicWaker;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps a future and records whether it was woken since its last poll
/// began.
pub struct Tracked<F> {
    inner: F,
    flag: Arc<WakeFlag>,
    /// A waker for `flag`, made once.
    waker: Waker,
}

/// What a [`Tracked`] future's wakes go through.
#[derive(Default)]
struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        self.task.wake();
    }
}

/// Whether a [`Tracked`] future is busy.
#[derive(Clone)]
pub struct Busy(Arc<WakeFlag>);

impl Busy {
    /// Whether the future was woken since its last poll began: it has more
    /// to do, and its task polls it again right away.
    pub fn is_busy(&self) -> bool {
        self.0.woken.load(Ordering::Relaxed)
    }
}

impl<F> Tracked<F> {
    /// `inner`, tracked; and the handle that tells whether it is busy.
    pub fn new(inner: F) -> (Self, Busy) {
        let flag = Arc::new(WakeFlag::default());
        let waker = Waker::from(flag.clone());
        (Self { inner, flag: flag.clone(), waker }, Busy(flag))
    }
}

impl<F: Future + Unpin> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.flag.task.register(cx.waker());
        this.flag.woken.store(false, Ordering::Relaxed);
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker))
    }
}
