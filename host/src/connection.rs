//! One WebSocket connection: the socket on one side, the handler's streams on
//! the other.
//!
//! ```text
//!  client ──▶ read_client ──(mpsc)──▶ IncomingMessages ──▶ guest `incoming`
//!  client ◀── write_client ◀─(mpsc)── OutgoingMessages ◀── guest output
//! ```
//!
//! Besides the guest's messages, the writer sends keep-alive pings and
//! watches for idleness; the reader answers protocol violations with the
//! right close code.
//!
//! All of it runs on the connection's task: the two pumps and the store's
//! event loop are futures joined together, with no task per message. The
//! bounded channels are the backpressure in both directions.

use crate::bindings::{CloseFrame as WitCloseFrame, ConnectionInfo, Message as WitMessage};
use crate::runtime::{ConnectionCtx, GuestInstance, HandlerExports};
use crate::streams::{ClientMessage, GuestMessage, IncomingMessages, OutgoingMessages};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Accessor, FutureReader, StreamReader};

/// How many client messages may wait for the guest to read them. With
/// tungstenite reading whole messages, memory held for a guest that does not
/// read is at most this many messages plus the one being read.
const INCOMING_QUEUE: usize = 2;

/// How many guest messages may wait for the socket.
const OUTGOING_QUEUE: usize = 16;

/// How long to wait for the client's answer to our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a guest may go on after the client has closed the connection
/// (its output can no longer be sent) before its instance is dropped.
const FINISH_AFTER_CLIENT_CLOSE: Duration = Duration::from_secs(1);

/// What a connection needs besides its socket.
pub struct Session {
    /// The connection's number in the logs.
    pub id: u64,
    /// The handler's instance for this connection.
    pub guest: GuestInstance,
    /// What the handler is told about the connection.
    pub info: ConnectionInfo,
    /// Close after this long without traffic (zero: never).
    pub idle_timeout: Duration,
    /// Ping this often (zero: never).
    pub ping_interval: Duration,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// How long the guest may go on once the server shuts down.
    pub shutdown_grace: Duration,
}

/// Serves one upgraded connection with a fresh instance of the handler, until
/// the connection is closed.
///
/// | what happens | close frame sent |
/// |---|---|
/// | the handler's output ends | 1000 |
/// | the handler traps | 1011 `handler failed` |
/// | a message or frame over the route's limit | 1009 |
/// | invalid UTF-8 in a text message | 1007 |
/// | any other protocol violation by the client | 1002 |
/// | no traffic for the idle timeout | 1001 `idle timeout` |
/// | server shutdown: input ended, output done or grace over | 1001 `server shutting down` |
/// | the client closes | (tungstenite echoes the client's close); the guest's input ends and it gets up to a second to finish |
pub async fn serve<S>(socket: WebSocketStream<S>, session: Session)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Session { id, guest, info, idle_timeout, ping_interval, shutdown, shutdown_grace } = session;
    let (mut sink, stream) = socket.split();
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let (closed_tx, closed_rx) = oneshot::channel();
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let activity = Activity::new();

    let mut read = pin!(read_client(stream, incoming_tx, closed_tx, &activity, &shutdown));
    let mut read_done = false;
    // The guest and the writer live in this block; once it ends they are
    // gone (the instance with them) and the sink is free for the close frame.
    let close = {
        let path = info.path.clone();
        let mut guest = pin!(run_guest(guest, info, incoming_rx, closed_rx, outgoing_tx));
        let mut write = pin!(write_client(&mut sink, outgoing_rx, &activity, ping_interval, idle_timeout));
        let mut guest_done = false;
        let mut write_done = false;
        let mut client_closed = false;
        let mut shutting_down = false;
        // The deadline of the shutdown grace period, or of the guest's time to
        // finish after the client closed.
        let mut deadline = pin!(tokio::time::sleep(Duration::MAX / 4));
        loop {
            tokio::select! {
                end = &mut read, if !read_done => {
                    read_done = true;
                    match end {
                        // Nothing can be sent any more, but the guest may still
                        // be working through the end of its input (its close
                        // frame, say): it gets a moment to finish.
                        ReadEnd::Closed if guest_done => break None,
                        ReadEnd::Closed => {
                            client_closed = true;
                            deadline.as_mut().reset(Instant::now() + FINISH_AFTER_CLIENT_CLOSE);
                        }
                        ReadEnd::Violation(frame) => {
                            tracing::debug!(connection = id, "closing with {}: {}", u16::from(frame.code), frame.reason);
                            break Some(frame);
                        }
                    }
                }
                result = &mut guest, if !guest_done => {
                    guest_done = true;
                    if let Err(err) = result {
                        tracing::warn!(connection = id, path, "handler failed: {err:?}");
                        break (!client_closed).then(|| close_frame(CloseCode::Error, "handler failed"));
                    }
                    if client_closed {
                        break None;
                    }
                    // Its output ended: the writer sends what is queued, then ends.
                }
                end = &mut write, if !write_done => {
                    write_done = true;
                    if client_closed {
                        // It failed on the closed socket; the guest's writes now fail.
                        continue;
                    }
                    break match end {
                        // The input may have ended for the shutdown before this loop saw it.
                        WriteEnd::Drained if shutdown.is_cancelled() => Some(close_frame(CloseCode::Away, "server shutting down")),
                        WriteEnd::Drained => Some(close_frame(CloseCode::Normal, "")),
                        WriteEnd::Idle => Some(close_frame(CloseCode::Away, "idle timeout")),
                        WriteEnd::Failed => None,
                    };
                }
                () = shutdown.cancelled(), if !shutting_down && !client_closed => {
                    // The reader has ended the guest's input; give the guest the
                    // grace period to finish its output.
                    shutting_down = true;
                    deadline.as_mut().reset(Instant::now() + shutdown_grace);
                }
                () = &mut deadline, if shutting_down || client_closed => {
                    break (!client_closed).then(|| close_frame(CloseCode::Away, "server shutting down"));
                }
            }
        }
    };
    if let Some(frame) = close
        && sink.send(Message::Close(Some(frame))).await.is_ok()
        && !read_done
        && tokio::time::timeout(CLOSE_TIMEOUT, read).await.is_err()
    {
        tracing::debug!(connection = id, "client did not answer the close frame in time");
    }
    tracing::debug!(connection = id, "connection closed");
}

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame { code, reason: reason.into() }
}

/// When the connection last carried traffic: a message either way, or any
/// frame from the client (a pong included).
struct Activity {
    start: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last_millis: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_millis.load(Ordering::Relaxed))
    }
}

/// Runs the handler's instance until its output ends. `Err` is a trap or
/// another failure of the guest.
async fn run_guest(
    guest: GuestInstance,
    info: ConnectionInfo,
    incoming: mpsc::Receiver<ClientMessage>,
    closed: oneshot::Receiver<WitCloseFrame>,
    outgoing: mpsc::Sender<GuestMessage>,
) -> wasmtime::Result<()> {
    let GuestInstance { mut store, exports, .. } = guest;
    let (finished_tx, finished) = oneshot::channel();
    let output = OutgoingMessages::new(outgoing, finished_tx);
    match exports {
        HandlerExports::Flow(flow) => {
            store
                .run_concurrent(async |accessor| {
                    let (incoming, closed) = guest_input(accessor, incoming, closed)?;
                    let replies = flow.wsplug_websocket_flow().call_handle(accessor, info, incoming, closed).await?;
                    accessor.with(|mut store| replies.pipe(&mut store, output))?;
                    // Fires when the guest ends its output (or the store fails).
                    let _ = finished.await;
                    wasmtime::Result::<()>::Ok(())
                })
                .await?
        }
        HandlerExports::SinkSource(sink_source) => {
            store
                .run_concurrent(async |accessor| {
                    let (incoming, closed) = guest_input(accessor, incoming, closed)?;
                    let consume =
                        sink_source.wsplug_websocket_sink().call_consume(accessor, info.clone(), incoming, closed);
                    let produce = async {
                        let pushed = sink_source.wsplug_websocket_source().call_produce(accessor, info).await?;
                        accessor.with(|mut store| pushed.pipe(&mut store, output))?;
                        let _ = finished.await;
                        wasmtime::Result::<()>::Ok(())
                    };
                    // The connection lives as long as the source's output; the
                    // sink returning early (or at all) does not end it.
                    tokio::pin!(consume, produce);
                    match futures_util::future::select(consume, produce).await {
                        futures_util::future::Either::Left((consumed, produce)) => {
                            consumed?;
                            produce.await
                        }
                        futures_util::future::Either::Right((produced, _)) => produced,
                    }
                })
                .await?
        }
    }
}

/// The guest's input: the stream of the client's messages, and the future
/// of the client's close frame (resolved when the reader ends).
fn guest_input(
    accessor: &Accessor<ConnectionCtx>,
    incoming: mpsc::Receiver<ClientMessage>,
    closed: oneshot::Receiver<WitCloseFrame>,
) -> wasmtime::Result<(StreamReader<WitMessage>, FutureReader<Option<WitCloseFrame>>)> {
    accessor.with(|mut store| {
        let messages = StreamReader::new(&mut store, IncomingMessages::new(incoming))?;
        let closed = FutureReader::new(&mut store, async move { wasmtime::Result::<_>::Ok(closed.await.ok()) })?;
        Ok((messages, closed))
    })
}

/// How reading from the client ended.
enum ReadEnd {
    /// The client closed the connection (the close was echoed) or dropped it.
    Closed,
    /// The client broke the rules; the close frame to answer with.
    Violation(CloseFrame),
}

/// Reads the client's messages and queues them for the guest until the
/// connection closes. Pings are answered and a close is echoed by tungstenite.
/// Once the server shuts down, the guest's input ends and further messages
/// are discarded.
async fn read_client<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    incoming: mpsc::Sender<ClientMessage>,
    closed: oneshot::Sender<WitCloseFrame>,
    activity: &Activity,
    shutdown: &CancellationToken,
) -> ReadEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut incoming = Some(incoming);
    let mut closed = Some(closed);
    let mut shutting_down = pin!(shutdown.cancelled());
    loop {
        let next = tokio::select! {
            () = &mut shutting_down, if incoming.is_some() => {
                incoming = None;
                continue;
            }
            next = stream.next() => next,
        };
        let message = match next {
            None => return ReadEnd::Closed,
            Some(Err(err)) => return read_error(err),
            Some(Ok(message)) => message,
        };
        activity.touch();
        let message = match message {
            Message::Text(text) => ClientMessage::Text(text),
            Message::Binary(data) => ClientMessage::Binary(data),
            Message::Close(Some(frame)) => {
                if let Some(closed) = closed.take() {
                    let _ = closed.send(WitCloseFrame { code: frame.code.into(), reason: frame.reason.to_string() });
                }
                continue;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(None) | Message::Frame(_) => continue,
        };
        let Some(sender) = &incoming else { continue };
        tokio::select! {
            // Once the guest is gone nobody reads the queue; keep reading the
            // socket anyway so that the close handshake completes.
            _ = sender.send(message) => {}
            () = &mut shutting_down => incoming = None,
        }
    }
}

/// The close frame that answers a read error, if the connection still stands.
fn read_error(err: tungstenite::Error) -> ReadEnd {
    use tungstenite::Error;
    let frame = match err {
        Error::Capacity(err) => CloseFrame { code: CloseCode::Size, reason: err.to_string().into() },
        Error::Utf8(_) => close_frame(CloseCode::Invalid, "invalid UTF-8 in a text message"),
        Error::Protocol(err) => CloseFrame { code: CloseCode::Protocol, reason: err.to_string().into() },
        err => {
            tracing::debug!("reading from the client failed: {err}");
            return ReadEnd::Closed;
        }
    };
    ReadEnd::Violation(frame)
}

/// How writing to the client ended.
enum WriteEnd {
    /// The guest's output ended and everything queued is out.
    Drained,
    /// Nothing went either way for the idle timeout.
    Idle,
    /// The socket failed.
    Failed,
}

/// A streamed message being written: its chunks and the opcode of its next
/// frame.
struct OpenBody {
    chunks: mpsc::Receiver<Bytes>,
    opcode: OpCode,
}

/// Writes the guest's messages to the client, sends keep-alive pings and
/// watches for idleness, until the guest's output has ended and every queued
/// message is out.
///
/// A streamed message goes out as a fragmented one: a frame per chunk, each
/// flushed as it comes so that the client sees the message while the guest is
/// still writing it, then an empty final frame.
async fn write_client<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    mut outgoing: mpsc::Receiver<GuestMessage>,
    activity: &Activity,
    ping_interval: Duration,
    idle_timeout: Duration,
) -> WriteEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut body: Option<OpenBody> = None;
    let mut ping =
        (!ping_interval.is_zero()).then(|| tokio::time::interval_at(Instant::now() + ping_interval, ping_interval));
    // Re-armed only when it fires, not on every message.
    let mut idle_check = pin!(tokio::time::sleep(idle_timeout));
    loop {
        let written = tokio::select! {
            chunk = recv_chunk(&mut body), if body.is_some() => {
                activity.touch();
                let open = body.as_mut().expect("guarded by the branch condition");
                match chunk {
                    Some(chunk) => {
                        let frame = Frame::message(chunk, open.opcode, false);
                        open.opcode = OpCode::Data(Data::Continue);
                        sink.send(Message::Frame(frame)).await
                    }
                    None => {
                        // If no chunk was sent, the opcode is still the first
                        // one: the message goes out whole, and empty.
                        let open = body.take().expect("guarded by the branch condition");
                        flush_if_idle(sink, &outgoing, Frame::message(Bytes::new(), open.opcode, true)).await
                    }
                }
            }
            message = outgoing.recv(), if body.is_none() => match message {
                None => return WriteEnd::Drained,
                Some(GuestMessage::Strict(message)) => {
                    activity.touch();
                    match sink.feed(message).await {
                        // Flush once the queue is empty rather than after every message.
                        Ok(()) if outgoing.is_empty() => sink.flush().await,
                        other => other,
                    }
                }
                Some(GuestMessage::Streamed { text, chunks }) => {
                    let opcode = OpCode::Data(if text { Data::Text } else { Data::Binary });
                    body = Some(OpenBody { chunks, opcode });
                    Ok(())
                }
            },
            _ = tick(&mut ping) => sink.send(Message::Ping(Bytes::new())).await,
            () = &mut idle_check, if !idle_timeout.is_zero() => {
                let idle_until = activity.last() + idle_timeout;
                if Instant::now() >= idle_until {
                    return WriteEnd::Idle;
                }
                idle_check.as_mut().reset(idle_until);
                Ok(())
            }
        };
        if let Err(err) = written {
            tracing::debug!("writing to the client failed: {err}");
            return WriteEnd::Failed;
        }
    }
}

/// The next chunk of the open streamed message (`None`: it has ended).
async fn recv_chunk(body: &mut Option<OpenBody>) -> Option<Bytes> {
    match body {
        Some(open) => open.chunks.recv().await,
        None => std::future::pending().await,
    }
}

/// The next keep-alive tick, never if pings are off.
async fn tick(ping: &mut Option<tokio::time::Interval>) {
    match ping {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Writes the final frame of a streamed message; flushes unless more
/// messages are already queued behind it.
async fn flush_if_idle<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    outgoing: &mpsc::Receiver<GuestMessage>,
    frame: Frame,
) -> tungstenite::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    sink.feed(Message::Frame(frame)).await?;
    if outgoing.is_empty() { sink.flush().await } else { Ok(()) }
}
