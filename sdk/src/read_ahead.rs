//! Reading a stream of the host's several items at a time: what the host
//! has waiting comes over in one read (one pass through the component
//! runtime instead of one per item), then is handed out one by one.

use std::collections::VecDeque;
use std::pin::{Pin, pin};
use wit_bindgen::{StreamRead, StreamReader, StreamResult};

/// How many items one read takes at most. The host holds few messages for
/// a connection (a streamed one's body follows it, not with it), so this is
/// about bursts, not memory.
const READ_AHEAD: usize = 8;

/// A stream read ahead.
pub(crate) struct ReadAhead<T: 'static> {
    stream: StreamReader<T>,
    /// Read, not handed out yet, in order.
    ready: VecDeque<T>,
    /// What reads land in, kept for its capacity.
    landing: Vec<T>,
    ended: bool,
}

impl<T: 'static> ReadAhead<T> {
    pub(crate) fn new(stream: StreamReader<T>) -> Self {
        Self { stream, ready: VecDeque::new(), landing: Vec::new(), ended: false }
    }

    /// How many items were read and not handed out yet: [`ReadAhead::next`]
    /// returns that many without waiting.
    pub(crate) fn buffered(&self) -> usize {
        self.ready.len()
    }

    /// The next item, or `None` once the stream has ended.
    pub(crate) async fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            let mut landing = std::mem::take(&mut self.landing);
            landing.reserve_exact(READ_AHEAD);
            let (result, mut landing) = {
                let mut read = pin!(self.stream.read(landing));
                // Dropped unfinished (the handler's `select!` took another
                // branch), the read is cancelled and what it had already
                // received is kept for the next call, not lost with it.
                let mut guard = KeepOnCancel { read: Some(read.as_mut()), ready: &mut self.ready };
                let outcome = guard.read.as_mut().expect("just set").await;
                guard.read = None;
                outcome
            };
            self.ready.extend(landing.drain(..));
            self.landing = landing;
            self.ended = matches!(result, StreamResult::Dropped | StreamResult::Cancelled);
        }
    }
}

/// A read in progress, cancelled when dropped before it finished; the items
/// the cancellation hands back go to `ready`.
struct KeepOnCancel<'g, 'r, T: 'static> {
    /// `None` once the read has finished.
    read: Option<Pin<&'g mut StreamRead<'r, T>>>,
    ready: &'g mut VecDeque<T>,
}

impl<T: 'static> Drop for KeepOnCancel<'_, '_, T> {
    fn drop(&mut self) {
        if let Some(read) = self.read.take() {
            let (_, received) = read.cancel();
            self.ready.extend(received);
        }
    }
}
