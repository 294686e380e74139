//! Adapters between the connection's queues (`handoff`) and component-model
//! streams: the host side of every `stream<message>`, `stream<string>` and
//! `stream<u8>` a handler reads or writes.
//!
//! Channel capacity is the backpressure: a producer hands the guest an item
//! only when the guest reads, and a consumer takes an item from the guest only
//! once the channel to the socket writer has room for it.

use crate::handoff;
use crate::wasm::bindings::Message;
use crate::wasm::runtime::GuestStatus;
use bytes::{Buf, Bytes};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::sync::oneshot;
use wasmtime::component::{Destination, Source, StreamConsumer, StreamProducer, StreamReader, StreamResult, VecBuffer};
use wasmtime::{AsContextMut, StoreContextMut};

/// A message that arrives in one frame of up to this size reaches the guest
/// strict (`text` / `binary`); a larger or fragmented one is streamed
/// (`text-stream` / `binary-stream`) as its bytes arrive.
pub const STRICT_MESSAGE_LIMIT: usize = 64 * 1024;

/// The largest chunk of a streamed message handed over at once.
pub const CHUNK_SIZE: usize = 16 * 1024;

/// How many chunks of one streamed incoming message may wait for the guest.
pub const INCOMING_CHUNK_QUEUE: usize = 4;

/// A message read from the client, on its way to the guest.
#[derive(Debug)]
pub enum ClientMessage {
    /// A whole text message.
    Text(String),
    /// A whole binary message.
    Binary(Bytes),
    /// A text message whose chunks (each whole characters of valid UTF-8)
    /// follow as they arrive; it ends when the sender is dropped.
    TextStream(handoff::Receiver<Bytes>),
    /// A binary message whose chunks follow as they arrive.
    BinaryStream(handoff::Receiver<Bytes>),
}

/// What the guest wrote, on its way to the socket writer.
#[derive(Debug)]
pub enum GuestMessage {
    /// A strict message, sent as one frame.
    Strict {
        /// Whether the message is text (its payload is then valid UTF-8).
        text: bool,
        /// The whole payload.
        payload: Bytes,
    },
    /// A streamed message, sent as one fragment per chunk, until `chunks`
    /// is closed.
    Streamed {
        /// Whether the message is text (its chunks are then valid UTF-8).
        text: bool,
        /// The message's chunks, in order.
        chunks: handoff::Receiver<Bytes>,
        /// Set before `chunks` closes if the guest ended the message; not
        /// set if its failure cut it off.
        ended: Arc<AtomicBool>,
    },
}

/// How many chunks of one streamed outgoing message may wait for the socket.
const OUTGOING_CHUNK_QUEUE: usize = 4;

/// Feeds the client's messages to the guest's `incoming: stream<message>`.
pub struct IncomingMessages {
    messages: handoff::Receiver<ClientMessage>,
}

impl IncomingMessages {
    /// Produces the messages arriving on `messages`; the stream ends when the
    /// channel closes.
    pub fn new(messages: handoff::Receiver<ClientMessage>) -> Self {
        Self { messages }
    }
}

impl<D: GuestStatus + 'static> StreamProducer<D> for IncomingMessages {
    type Item = Message;
    type Buffer = VecBuffer<Message>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<'a, D>,
        destination: Destination<'a, Message, VecBuffer<Message>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        produce_ready(
            cx,
            store,
            destination,
            finish,
            |cx| self.messages.poll_recv(cx),
            |message, store| to_guest(message, store),
        )
    }
}

/// The most items one read of the guest takes at once.
const MOST_PER_READ: usize = 32;

/// One step of a producer that hands the guest what has arrived: the first
/// item as it arrives, and with it whatever else is waiting already, as far
/// as the guest's read has room (a burst then costs the guest one read, one
/// pass through the runtime, instead of one per item). `receive` polls the
/// source, `to_guest` makes the guest's item of what it gives. The source
/// ending ends the stream.
pub(crate) fn produce_ready<'a, D: GuestStatus + 'static, T: Send + Sync + 'static, U>(
    cx: &mut Context<'_>,
    mut store: StoreContextMut<'a, D>,
    mut destination: Destination<'a, T, VecBuffer<T>>,
    finish: bool,
    mut receive: impl FnMut(&mut Context<'_>) -> Poll<Option<U>>,
    mut to_guest: impl FnMut(U, &mut StoreContextMut<'a, D>) -> wasmtime::Result<T>,
) -> Poll<wasmtime::Result<StreamResult>> {
    let room = match destination.remaining(&mut store) {
        // A zero-length read asks whether we are ready; say yes rather than
        // take an item the guest may never read.
        Some(0) => return Poll::Ready(Ok(StreamResult::Completed)),
        Some(room) => room.min(MOST_PER_READ),
        // The host reads (the testkit): one at a time.
        None => 1,
    };
    match receive(cx) {
        Poll::Ready(Some(item)) => {
            store.data_mut().guest_made_progress();
            let mut items = Vec::with_capacity(room);
            items.push(to_guest(item, &mut store)?);
            // Only what is there already: nothing waits for more (the next
            // read polls with its own waker).
            let mut without_waiting = Context::from_waker(Waker::noop());
            while items.len() < room
                && let Poll::Ready(Some(item)) = receive(&mut without_waiting)
            {
                items.push(to_guest(item, &mut store)?);
            }
            destination.set_buffer(VecBuffer::from(items));
            Poll::Ready(Ok(StreamResult::Completed))
        }
        Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
        Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
        Poll::Pending => Poll::Pending,
    }
}

/// The guest's view of a client message.
fn to_guest<D: GuestStatus + 'static>(
    message: ClientMessage,
    mut store: impl AsContextMut<Data = D>,
) -> wasmtime::Result<Message> {
    Ok(match message {
        ClientMessage::Text(text) => Message::Text(text),
        ClientMessage::Binary(data) => Message::Binary(data.into()),
        ClientMessage::TextStream(chunks) => Message::TextStream(StreamReader::new(&mut store, TextChunks(chunks))?),
        ClientMessage::BinaryStream(chunks) => {
            Message::BinaryStream(StreamReader::new(&mut store, BinaryChunks { chunks, current: Bytes::new() })?)
        }
    })
}

/// Produces a streamed text message's chunks as `stream<string>`, each as
/// it arrives.
struct TextChunks(handoff::Receiver<Bytes>);

impl<D: GuestStatus + 'static> StreamProducer<D> for TextChunks {
    type Item = String;
    type Buffer = VecBuffer<String>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<'a, D>,
        destination: Destination<'a, String, VecBuffer<String>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        produce_ready(
            cx,
            store,
            destination,
            finish,
            |cx| self.0.poll_recv(cx),
            |chunk, _| {
                // The reader validated it and cut it on a character boundary.
                String::from_utf8(chunk.into()).map_err(|_| wasmtime::format_err!("text chunk cut inside a character"))
            },
        )
    }
}

/// Produces a streamed binary message as `stream<u8>`, written straight into
/// the guest's read buffer as the chunks arrive.
struct BinaryChunks {
    chunks: handoff::Receiver<Bytes>,
    /// What is left of the chunk being handed over.
    current: Bytes,
}

impl<D: GuestStatus + 'static> StreamProducer<D> for BinaryChunks {
    type Item = u8;
    type Buffer = Option<u8>;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<'a, D>,
        destination: Destination<'a, u8, Option<u8>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if self.current.is_empty() {
            match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.current = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(StreamResult::Dropped)),
                Poll::Pending if finish => return Poll::Ready(Ok(StreamResult::Cancelled)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut store = store;
        store.data_mut().guest_made_progress();
        let mut destination = destination.as_direct(store, CHUNK_SIZE);
        let room = destination.remaining();
        let count = room.len().min(self.current.len());
        room[..count].copy_from_slice(&self.current[..count]);
        destination.mark_written(count);
        self.current.advance(count);
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

/// Takes the guest's output `stream<message>` and queues each message for the
/// socket writer. `finished` fires once the guest has ended the stream and
/// every streamed message's body: only then may the store go, since a body
/// the guest passed on from elsewhere (an echo of its input) is pumped by the
/// store until it ends.
pub struct OutgoingMessages {
    messages: handoff::Sender<GuestMessage>,
    finished: Arc<Finished>,
}

/// Fires its sender when dropped, that is when the last holder is gone.
struct Finished(Option<oneshot::Sender<()>>);

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(finished) = self.0.take() {
            let _ = finished.send(());
        }
    }
}

impl OutgoingMessages {
    /// Queues messages on `messages`; `finished` fires when the output ends.
    pub fn new(messages: handoff::Sender<GuestMessage>, finished: oneshot::Sender<()>) -> Self {
        Self { messages, finished: Arc::new(Finished(Some(finished))) }
    }
}

impl<D: GuestStatus + 'static> StreamConsumer<D> for OutgoingMessages {
    type Item = Message;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<D>,
        mut source: Source<'_, Message>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let message = match take_one(&self.messages, cx, &mut store, &mut source, finish) {
            Ok(message) => message,
            Err(result) => return result,
        };
        let queued = match message {
            Message::Text(text) => GuestMessage::Strict { text: true, payload: text.into() },
            Message::Binary(data) => GuestMessage::Strict { text: false, payload: data.into() },
            Message::TextStream(body) => {
                let (end, ended) = BodyEnd::new(store.data());
                let (sender, chunks) = handoff::channel(OUTGOING_CHUNK_QUEUE);
                body.pipe(&mut store, TextBody { _end: end, chunks: sender, _output: self.finished.clone() })?;
                GuestMessage::Streamed { text: true, chunks, ended }
            }
            Message::BinaryStream(body) => {
                let (end, ended) = BodyEnd::new(store.data());
                let (sender, chunks) = handoff::channel(OUTGOING_CHUNK_QUEUE);
                body.pipe(&mut store, BinaryBody { _end: end, chunks: sender, _output: self.finished.clone() })?;
                GuestMessage::Streamed { text: false, chunks, ended }
            }
        };
        // A closed channel means the socket writer is gone: stop the output.
        match self.messages.push(queued) {
            Ok(()) => Poll::Ready(Ok(StreamResult::Completed)),
            Err(_) => Poll::Ready(Ok(StreamResult::Dropped)),
        }
    }
}

/// The first step of a consumer that passes the guest's items on one at a
/// time: room for one in `sender`, then one item read from the guest. `Err`
/// is what `poll_consume` returns instead (no room yet, or nothing to read).
fn take_one<D: GuestStatus + 'static, T: Send, U: wasmtime::component::Lift + Send + Sync + 'static>(
    sender: &handoff::Sender<T>,
    cx: &mut Context<'_>,
    store: &mut StoreContextMut<D>,
    source: &mut Source<'_, U>,
    finish: bool,
) -> Result<U, Poll<wasmtime::Result<StreamResult>>> {
    if let Some(result) = ready_to_send(sender, cx, finish) {
        return Err(result);
    }
    if source.remaining(&mut *store) == 0 {
        return Err(Poll::Ready(Ok(StreamResult::Completed)));
    }
    let mut item = None;
    source.read(&mut *store, &mut item).map_err(|err| Poll::Ready(Err(err)))?;
    store.data_mut().guest_made_progress();
    item.ok_or(Poll::Ready(Ok(StreamResult::Completed)))
}

/// Checks for room in `sender` for one item (it stays there: there is one
/// producer). `None` means the room is there; `Some` is what `poll_consume`
/// returns meanwhile.
fn ready_to_send<T: Send>(
    sender: &handoff::Sender<T>,
    cx: &mut Context<'_>,
    finish: bool,
) -> Option<Poll<wasmtime::Result<StreamResult>>> {
    match sender.poll_ready(cx) {
        Poll::Ready(Ok(())) => None,
        Poll::Ready(Err(_)) => Some(Poll::Ready(Ok(StreamResult::Dropped))),
        Poll::Pending if finish => Some(Poll::Ready(Ok(StreamResult::Cancelled))),
        Poll::Pending => Some(Poll::Pending),
    }
}

/// Tells the writer how a body ended, as its consumer is dropped: wasmtime
/// drops it when the guest ends the stream, and when the store goes, which
/// after a failure cuts the message off.
struct BodyEnd {
    ended: Arc<AtomicBool>,
    store_failed: Arc<AtomicBool>,
}

impl BodyEnd {
    /// A body's end, and the flag the writer reads once its chunks are over.
    fn new(store: &impl GuestStatus) -> (Self, Arc<AtomicBool>) {
        let ended = Arc::<AtomicBool>::default();
        (Self { ended: ended.clone(), store_failed: store.failed().clone() }, ended)
    }
}

impl Drop for BodyEnd {
    fn drop(&mut self) {
        if !self.store_failed.load(Ordering::Acquire) {
            self.ended.store(true, Ordering::Release);
        }
    }
}

/// Forwards the chunks of a guest's `text-stream` body; dropped (ending the
/// message) when the guest ends the stream. Holds the output open meanwhile.
struct TextBody {
    // Dropped first (fields drop in order): the writer learns how the
    // message ended before it sees `chunks` close.
    _end: BodyEnd,
    chunks: handoff::Sender<Bytes>,
    _output: Arc<Finished>,
}

impl<D: GuestStatus + 'static> StreamConsumer<D> for TextBody {
    type Item = String;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<D>,
        mut source: Source<'_, String>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let chunk = match take_one(&self.chunks, cx, &mut store, &mut source, finish) {
            Ok(chunk) if !chunk.is_empty() => chunk,
            Ok(_) => return Poll::Ready(Ok(StreamResult::Completed)),
            Err(result) => return result,
        };
        match self.chunks.push(Bytes::from(chunk)) {
            Ok(()) => Poll::Ready(Ok(StreamResult::Completed)),
            Err(_) => Poll::Ready(Ok(StreamResult::Dropped)),
        }
    }
}

/// Forwards the chunks of a guest's `binary-stream` body, at most
/// [`CHUNK_SIZE`] bytes per fragment. Holds the output open meanwhile.
struct BinaryBody {
    // Dropped first, as in `TextBody`.
    _end: BodyEnd,
    chunks: handoff::Sender<Bytes>,
    _output: Arc<Finished>,
}

impl<D: GuestStatus + 'static> StreamConsumer<D> for BinaryBody {
    type Item = u8;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<D>,
        source: Source<'_, u8>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        if let Some(result) = ready_to_send(&self.chunks, cx, finish) {
            return result;
        }
        let mut store = store;
        store.data_mut().guest_made_progress();
        let mut source = source.as_direct(store);
        let data = source.remaining();
        if data.is_empty() {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let count = data.len().min(CHUNK_SIZE);
        let chunk = Bytes::copy_from_slice(&data[..count]);
        source.mark_read(count);
        match self.chunks.push(chunk) {
            Ok(()) => Poll::Ready(Ok(StreamResult::Completed)),
            Err(_) => Poll::Ready(Ok(StreamResult::Dropped)),
        }
    }
}
