//! One WebSocket connection: the socket on one side, the handler's streams on
//! the other.
//!
//! ```text
//!  client ──▶ read_client ──(handoff)──▶ IncomingMessages ──▶ guest `incoming`
//!                 │ pongs, close echo
//!                 ▼
//!  client ◀── write_client ◀─(handoff)── OutgoingMessages ◀── guest output
//!                 ▲
//!                 └──(topic queue)── Broker: frames published to joined topics
//! ```
//!
//! The reader passes each message on as its frames arrive (a streamed
//! message's chunks go through a channel of their own), answers pings and
//! echoes the client's close through the writer, and answers protocol
//! violations with the right close code. Besides the guest's messages, the
//! writer sends the frames of the topics the connection joined (between the
//! guest's messages, never inside a streamed one), keep-alive pings, and
//! watches for idleness.
//!
//! All of it runs on the connection's task: the two pumps and the store's
//! event loop are futures joined together, with no task per message, each
//! polled only when something woke it (`woken.rs`). The
//! bounded channels are the backpressure in both directions.

use crate::handoff;
use crate::http::edge::TokenBucket;
use crate::metrics::{Metrics, RouteMetrics};
use crate::topics::queue;
use crate::wasm::bindings::{CloseFrame as WitCloseFrame, ConnectionInfo};
use crate::wasm::call::Call;
use crate::wasm::runtime::Guest;
use crate::wasm::streams::{ClientMessage, GuestMessage, INCOMING_CHUNK_QUEUE};
use crate::woken::{Busy, Woken};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_util::sync::CancellationToken;
use wsplug_wire::{DeflateParams, Event, FrameReader, FrameWriter, ReadError, ReadLimits};

/// How many client messages may wait for the guest to read them. A streamed
/// message holds at most [`INCOMING_CHUNK_QUEUE`] chunks besides, so memory
/// held for a guest that does not read is bounded either way.
const INCOMING_QUEUE: usize = 2;

/// How many guest messages may wait for the socket.
const OUTGOING_QUEUE: usize = 16;

/// How many pongs (and the close echo) may wait for the writer.
const REPLY_QUEUE: usize = 4;

/// How long to wait for the client to take our close frame, and for its
/// answer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a guest may go on once its input has ended for the client's
/// close (its output can no longer be sent) or for a protocol violation (its
/// answers to the valid messages before it still go out) before the
/// connection stops waiting for it (its own instance is dropped then).
const FINISH_AFTER_INPUT_ENDS: Duration = Duration::from_secs(1);

/// The close frame the guest's `closed` future resolves to when the
/// connection drops in the middle of a message: 1006 is the code RFC 6455
/// reserves for reporting exactly that to applications (it never goes on the
/// wire).
const LOST_IN_A_MESSAGE: (u16, &str) = (1006, "connection lost in the middle of a message");

/// What a connection needs besides its socket.
pub struct Session {
    /// The connection's number in the logs.
    pub id: u64,
    /// What serves the connection: its own instance, or a shared one.
    pub guest: Guest,
    /// The frames of the topics the connection joins, for its client.
    pub topics: queue::Receiver<Bytes>,
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
    /// The host's figures: closes and failures are counted there.
    pub metrics: Arc<Metrics>,
    /// The route's counters: messages and bytes either way.
    pub route_metrics: RouteMetrics,
    /// How many messages the client may send, how fast (`None`: no limit).
    pub message_rate: Option<TokenBucket>,
    /// The route's frame and message limits.
    pub limits: ReadLimits,
    /// permessage-deflate, if negotiated.
    pub deflate: Option<Compression>,
}

/// permessage-deflate on a connection.
#[derive(Debug, Clone, Copy)]
pub struct Compression {
    /// The negotiated terms.
    pub params: DeflateParams,
    /// Whole messages from the guest smaller than this go out uncompressed.
    pub threshold: usize,
}

/// Serves one upgraded connection with its handler (an instance of its own,
/// or a call on a shared one), until the connection is closed.
///
/// | what happens | close frame sent |
/// |---|---|
/// | the handler's output ends | 1000 |
/// | the handler traps | 1011 `handler failed`, after the messages it sent before, up to one the failure cut off (within a second) |
/// | a message or frame over the route's limit | 1009 ¹ |
/// | invalid UTF-8 in a text message | 1007 ¹ |
/// | any other protocol violation by the client | 1002 ¹ |
/// | no traffic for the idle timeout | 1001 `idle timeout` |
/// | a topic message over `max-buffered`, with `slow-subscriber = "close"` | 1008 `too slow for its topics` |
/// | server shutdown: input ended, output done or grace over | 1001 `server shutting down` |
/// | the client closes | its close frame, echoed; the guest's input ends and it gets up to a second to finish |
///
/// ¹ At once if the violation is inside a message. Between messages, the
/// guest's input ends and what it sends in answer to the messages before the
/// violation (within a second) goes out before the close.
pub async fn serve<S>(io: S, session: Session)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Session {
        id,
        guest,
        topics,
        info,
        idle_timeout,
        ping_interval,
        shutdown,
        shutdown_grace,
        metrics,
        route_metrics,
        message_rate,
        limits,
        deflate,
    } = session;
    route_metrics.open.inc();
    let counted = &route_metrics;
    let topic_budget = topics.budget().clone();
    let (read_half, write_half) = tokio::io::split(io);
    let mut writer = FrameWriter::new(write_half);
    let mut reader = FrameReader::new(read_half, limits);
    if let Some(Compression { params, threshold }) = deflate {
        writer = writer.with_deflate(params, threshold);
        reader = reader.with_deflate(params);
    }
    let (incoming_tx, incoming_rx) = handoff::channel(INCOMING_QUEUE);
    let (closed_tx, closed_rx) = oneshot::channel();
    let (outgoing_tx, outgoing_rx) = handoff::channel(OUTGOING_QUEUE);
    let (replies_tx, replies_rx) = handoff::channel(REPLY_QUEUE);
    let activity = Activity::new();

    let counting = Counting { metrics: counted, rate: message_rate };
    // Each of the reader, the guest and the writer is polled only when
    // something woke it, not on every pass of the loop below.
    let read = pin!(read_client(reader, incoming_tx, closed_tx, replies_tx, &activity, &shutdown, counting));
    let mut read = Woken::new(read);
    // The code of the client's close frame, if it closed first.
    let mut client_code = None;
    let mut read_done = false;
    // After a violation, the reader, for what the client still sends.
    let mut refused_input = None;
    // The guest and the writer's loop live in this block; once it ends they
    // are gone (the instance with them) and the writer is free for the close
    // frame.
    let path = info.path.clone();
    let close = {
        let call = Call { info, incoming: incoming_rx, closed: closed_rx, outgoing: outgoing_tx };
        let runs_here = guest.runs_on_connection_task();
        let guest = pin!(guest.serve(call));
        let mut guest = Woken::new(guest);
        // A shared instance runs on its own task: the next pass of this one
        // does not give it a turn.
        let guest_busy = runs_here.then(|| guest.busy());
        let sources = ToClient { replies: replies_rx, topics, guest: outgoing_rx, guest_busy };
        let write = pin!(write_client(&mut writer, sources, &activity, counted, ping_interval, idle_timeout));
        let mut write = Woken::new(write);
        let mut guest_done = false;
        let mut write_done = false;
        let mut ending = Ending::Open;
        // The deadline of the ending under way (see `Ending`); set on entering it.
        let mut deadline = pin!(tokio::time::sleep(Duration::MAX / 4));
        // Made once, not on every pass (each registers with its token), and
        // polled only when woken: a poll locks the token.
        let shutdown_begins = pin!(shutdown.cancelled());
        let mut shutdown_begins = Woken::new(shutdown_begins);
        let too_slow = pin!(topic_budget.too_slow());
        let mut too_slow = Woken::new(too_slow);
        loop {
            let next = tokio::select! {
                // In the order a message goes: what the reader hands over
                // the guest takes and answers, and the writer sends, all in
                // one pass.
                biased;
                end = &mut read, if !read_done => {
                    read_done = true;
                    match end {
                        // Nothing can be sent any more (but the echo of the
                        // client's close); the guest may still be working
                        // through the end of its input.
                        ReadEnd::Closed { code } => {
                            client_code = code;
                            Some(Ending::ClientClosed)
                        }
                        ReadEnd::Violation { frame, in_message, reader } => {
                            refused_input = Some(reader);
                            // After a failure of the guest, its 1011 stands.
                            let frame = ending.due_close().unwrap_or(frame);
                            if in_message {
                                break Some(frame);
                            }
                            Some(Ending::Closing(frame))
                        }
                    }
                }
                result = &mut guest, if !guest_done => {
                    guest_done = true;
                    match result {
                        Err(err) => {
                            // One line that says why; the backtraces for whoever debugs the guest.
                            tracing::warn!(connection = id, path, cause = %err.root_cause(), "handler failed");
                            tracing::debug!(connection = id, "handler failure in full: {err:?}");
                            metrics.failed(&path, &err);
                            if matches!(ending, Ending::ClientClosed) {
                                break None;
                            }
                            // What it sent before it failed goes out first (up
                            // to a message its failure cut off), for as long as
                            // a guest gets to finish.
                            let frame = ending.due_close().unwrap_or_else(|| close_frame(CloseCode::Error, "handler failed"));
                            if write_done {
                                break Some(frame);
                            }
                            Some(Ending::Closing(frame))
                        }
                        // Once its output is out too, the call's outcome
                        // decides the close code.
                        Ok(()) if write_done && !matches!(ending, Ending::ClientClosed) => {
                            break Some(ending.due_close().unwrap_or_else(|| output_end_close(&shutdown)));
                        }
                        // Its output ended: the writer sends what is queued, then ends.
                        Ok(()) => None,
                    }
                }
                end = &mut write, if !write_done => {
                    write_done = true;
                    match end {
                        WriteEnd::Echoed => Some(Ending::ClientClosed),
                        _ if matches!(ending, Ending::ClientClosed) => None,
                        WriteEnd::Drained if matches!(ending, Ending::Closing(_)) => break ending.due_close(),
                        WriteEnd::Drained if guest_done => break Some(output_end_close(&shutdown)),
                        WriteEnd::Drained if matches!(ending, Ending::Open) => Some(Ending::OutputEnded),
                        // During a shutdown: 1001, whatever the call's
                        // outcome, within the same second.
                        WriteEnd::Drained => {
                            deadline.as_mut().reset(Instant::now() + FINISH_AFTER_INPUT_ENDS);
                            None
                        }
                        WriteEnd::Idle => break Some(close_frame(CloseCode::Away, "idle timeout")),
                        WriteEnd::Failed => break None,
                    }
                }
                () = &mut shutdown_begins, if matches!(ending, Ending::Open | Ending::OutputEnded) => {
                    // The reader has ended the guest's input.
                    Some(Ending::ShuttingDown)
                }
                () = &mut too_slow, if !matches!(ending, Ending::ClientClosed) => {
                    break Some(close_frame(CloseCode::Policy, "too slow for its topics"));
                }
                () = &mut deadline, if !matches!(ending, Ending::Open) => {
                    break match ending {
                        Ending::Open | Ending::ClientClosed => None,
                        Ending::OutputEnded => Some(output_end_close(&shutdown)),
                        Ending::ShuttingDown => Some(close_frame(CloseCode::Away, "server shutting down")),
                        Ending::Closing(frame) => Some(frame),
                    };
                }
            };
            // Entering an ending starts its deadline; once the client has
            // closed, nothing else can happen to the connection.
            if let Some(next) = next
                && !matches!(ending, Ending::ClientClosed)
            {
                let wait = match next {
                    Ending::ShuttingDown => shutdown_grace,
                    _ => FINISH_AFTER_INPUT_ENDS,
                };
                deadline.as_mut().reset(Instant::now() + wait);
                ending = next;
            }
            if matches!(ending, Ending::ClientClosed) && guest_done && write_done {
                break None;
            }
        }
    };
    if let Some(frame) = &close {
        // Failures are warned about above; say why the host closed a
        // connection for anything else but a normal end or a shutdown.
        if !matches!(frame.code, CloseCode::Normal | CloseCode::Error) && !shutdown.is_cancelled() {
            tracing::info!(connection = id, path, code = u16::from(frame.code), reason = %frame.reason, "closing");
        }
        writer.queue_close(Some(frame));
    }
    // Whatever is still queued (the close frame, or the echo of the
    // client's), with a bound on how long a client that does not read holds
    // the connection.
    let flushed = matches!(tokio::time::timeout(CLOSE_TIMEOUT, writer.flush()).await, Ok(Ok(())));
    if close.is_some() && flushed && !read_done && tokio::time::timeout(CLOSE_TIMEOUT, read).await.is_err() {
        tracing::debug!(connection = id, "client did not answer the close frame in time");
    }
    if let Some(reader) = refused_input
        && flushed
    {
        discard_input(reader.into_inner()).await;
    }
    metrics.closed(&path, close.as_ref().map(|frame| u16::from(frame.code)).or(client_code));
    route_metrics.open.dec();
    let dropped = topic_budget.dropped();
    if dropped > 0 {
        tracing::info!(connection = id, path, dropped, "topic messages dropped: the connection could not keep up");
    }
    tracing::debug!(connection = id, "connection closed");
}

/// The close frame once the guest's output has ended and its call is done:
/// 1000, or 1001 if the input ended for the server's shutdown (perhaps
/// before the loop saw the shutdown).
fn output_end_close(shutdown: &CancellationToken) -> CloseFrame {
    if shutdown.is_cancelled() {
        close_frame(CloseCode::Away, "server shutting down")
    } else {
        close_frame(CloseCode::Normal, "")
    }
}

/// After a violation, a client's input is read and dropped until it has
/// been quiet this long (its close frame, the rest of a refused message)...
const LINGER_QUIET: Duration = Duration::from_millis(50);
/// ...for at most this long and this much.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 16 << 20;

/// Reads what the client still sends after a violation (the rest of a
/// refused message, its answer to the close frame) and drops it, until it
/// pauses: closing a socket with unread input resets the connection, and
/// the client would lose the close frame that says why. Then the host
/// closes the TCP connection first, as RFC 6455 asks of a server.
async fn discard_input<R: AsyncRead + Unpin>(mut input: R) {
    let _ = tokio::time::timeout(LINGER, async {
        let mut buffer = vec![0; 16 * 1024];
        let mut read = 0;
        while read < LINGER_BYTES {
            match tokio::time::timeout(LINGER_QUIET, input.read(&mut buffer)).await {
                Ok(Ok(count @ 1..)) => read += count,
                _ => break,
            }
        }
    })
    .await;
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

/// How the connection is ending, once it is: what its deadline is for, and
/// what the close frame is if the deadline passes first.
///
/// | ending | entered when | deadline | close frame at the deadline |
/// |---|---|---|---|
/// | `Open` | (messages flow both ways) | none | - |
/// | `OutputEnded` | the writer sent the last of the guest's output before its call returned (a call returns as its output ends: a moment's race, but always so when a shared instance fails, whose output ends first) | 1 s | 1000 (1001 during a shutdown); the call's outcome decides it if it comes first |
/// | `ShuttingDown` | the server shuts down: the guest's input has ended | the shutdown grace (1 s if its output runs out during it) | 1001 `server shutting down` |
/// | `Closing` | a violation between messages, or the guest's failure | 1 s, for what the guest sent before it | the violation's, or 1011 |
/// | `ClientClosed` | the client's close frame came (it is echoed) or the connection dropped | 1 s for the guest to finish | none: nothing more goes out |
enum Ending {
    Open,
    OutputEnded,
    ShuttingDown,
    Closing(CloseFrame),
    ClientClosed,
}

impl Ending {
    /// The close frame a violation or the guest's failure already called for.
    fn due_close(&self) -> Option<CloseFrame> {
        match self {
            Ending::Closing(frame) => Some(frame.clone()),
            _ => None,
        }
    }
}

/// How reading from the client ended.
enum ReadEnd<R> {
    /// The client closed the connection (its close frame went to the writer
    /// to be echoed; `code` is its code, 1005 if it had none) or dropped it
    /// (`code` is `None`).
    Closed {
        /// The code of the client's close frame.
        code: Option<u16>,
    },
    /// The client broke the rules; the close frame to answer with.
    Violation {
        frame: CloseFrame,
        /// Whether it happened inside a message (then that message is not
        /// valid, and neither is the guest's answer to it).
        in_message: bool,
        /// The reader, for what the client still sends.
        reader: Box<FrameReader<R>>,
    },
}

/// What the reader asks the writer to send.
enum Reply {
    /// Answer a ping.
    Pong(Bytes),
    /// Echo the client's close frame; nothing more goes out after it.
    Close(Option<CloseFrame>),
}

/// Reads the client's frames and passes its messages to the guest as they
/// arrive, until the connection closes. Once the server shuts down, the
/// guest's input ends and further messages are discarded; so is the rest of
/// a streamed message the guest dropped unread.
async fn read_client<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    incoming: handoff::Sender<ClientMessage>,
    closed: oneshot::Sender<WitCloseFrame>,
    replies: handoff::Sender<Reply>,
    activity: &Activity,
    shutdown: &CancellationToken,
    mut counting: Counting<'_>,
) -> ReadEnd<R> {
    let counted = counting.metrics;
    let mut input = Some(GuestInput { messages: incoming, body: None });
    // Dropped when the input ends for the server's shutdown: the guest's
    // `closed` then resolves to none, as the WIT says.
    let mut closed = Some(closed);
    // Polled only when woken: a poll locks the token, which every
    // connection shares.
    let shutting_down = pin!(shutdown.cancelled());
    let mut shutting_down = Woken::new(shutting_down);
    loop {
        let event = tokio::select! {
            () = &mut shutting_down, if input.is_some() => {
                input = None;
                closed = None;
                continue;
            }
            event = reader.next() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(ReadError::Violation(frame)) => {
                let in_message = reader.in_message();
                return ReadEnd::Violation { frame, in_message, reader: Box::new(reader) };
            }
            Err(ReadError::Lost(err)) => {
                if let Some(err) = err {
                    tracing::debug!("reading from the client failed: {err}");
                }
                if reader.in_message()
                    && let Some(closed) = closed
                {
                    let (code, reason) = LOST_IN_A_MESSAGE;
                    let _ = closed.send(WitCloseFrame { code, reason: reason.to_owned() });
                }
                return ReadEnd::Closed { code: None };
            }
        };
        activity.touch();
        if matches!(event, Event::Text(_) | Event::Binary(_) | Event::MessageStart { .. })
            && let Some(rate) = &mut counting.rate
            && rate.take().is_err()
        {
            let frame = close_frame(CloseCode::Policy, "too many messages");
            return ReadEnd::Violation { frame, in_message: false, reader: Box::new(reader) };
        }
        let message = match event {
            Event::Text(text) => {
                count(&counted.messages_in, &counted.bytes_in, text.len());
                ClientMessage::Text(text)
            }
            Event::Binary(data) => {
                count(&counted.messages_in, &counted.bytes_in, data.len());
                ClientMessage::Binary(data)
            }
            Event::MessageStart { text } => {
                counted.messages_in.inc();
                let (sender, chunks) = handoff::channel(INCOMING_CHUNK_QUEUE);
                if let Some(guest) = &mut input {
                    guest.body = Some(sender);
                }
                if text { ClientMessage::TextStream(chunks) } else { ClientMessage::BinaryStream(chunks) }
            }
            Event::Chunk(chunk) => {
                counted.bytes_in.inc_by(chunk.len() as u64);
                let Some(guest) = &mut input else { continue };
                let Some(body) = &guest.body else { continue };
                match hand_over(body, chunk, &mut shutting_down).await {
                    Handed::Taken => {}
                    // The guest dropped the message: discard the rest.
                    Handed::Refused => guest.body = None,
                    Handed::ShuttingDown => {
                        input = None;
                        closed = None;
                    }
                }
                continue;
            }
            Event::MessageEnd => {
                if let Some(guest) = &mut input {
                    guest.body = None;
                }
                continue;
            }
            Event::Ping(payload) => {
                // Fails only once the writer is gone, when no pong can go out.
                let _ = replies.send(Reply::Pong(payload)).await;
                continue;
            }
            Event::Pong => continue,
            Event::Close(frame) => {
                // 1005: a close frame without a code (RFC 6455 reserves it
                // for telling applications just that).
                let code = frame.as_ref().map_or(1005, |frame| u16::from(frame.code));
                if let Some(closed) = closed {
                    let reason = frame.as_ref().map(|frame| frame.reason.to_string()).unwrap_or_default();
                    let _ = closed.send(WitCloseFrame { code, reason });
                }
                let _ = replies.send(Reply::Close(frame)).await;
                return ReadEnd::Closed { code: Some(code) };
            }
        };
        let Some(guest) = &input else { continue };
        match hand_over(&guest.messages, message, &mut shutting_down).await {
            Handed::Taken => {}
            // Once the guest is gone nobody reads the queue; keep reading the
            // socket anyway so that the close handshake completes.
            Handed::Refused => input = None,
            Handed::ShuttingDown => {
                input = None;
                closed = None;
            }
        }
    }
}

/// Where the client's messages go while the guest takes them. Dropping it
/// ends the guest's input (and the open message's body): what the client
/// sends after that is read and discarded.
struct GuestInput {
    messages: handoff::Sender<ClientMessage>,
    /// The open streamed message's chunks, while the guest reads them.
    body: Option<handoff::Sender<Bytes>>,
}

/// What the reader counts the client's messages against.
struct Counting<'a> {
    /// The route's counters.
    metrics: &'a RouteMetrics,
    /// The client's allowance of messages (`None`: no limit).
    rate: Option<TokenBucket>,
}

/// What became of an item handed to the guest.
enum Handed {
    Taken,
    /// The guest dropped the stream it was for.
    Refused,
    /// The server began shutting down while the guest had not taken it.
    ShuttingDown,
}

/// Waits until the guest takes `item` (there is room in `sender`) or the
/// server shuts down.
async fn hand_over<T>(
    sender: &handoff::Sender<T>,
    item: T,
    shutting_down: &mut (impl Future<Output = ()> + Unpin),
) -> Handed {
    tokio::select! {
        sent = sender.send(item) => if sent.is_ok() { Handed::Taken } else { Handed::Refused },
        () = shutting_down => Handed::ShuttingDown,
    }
}

/// How writing to the client ended.
enum WriteEnd {
    /// The guest's output ended and everything queued is out.
    Drained,
    /// The client's close frame was echoed.
    Echoed,
    /// Nothing went either way for the idle timeout.
    Idle,
    /// The socket failed.
    Failed,
}

/// A streamed message being written: its chunks, the opcode of its next
/// frame, and whether the guest ended it.
struct OpenBody {
    chunks: handoff::Receiver<Bytes>,
    opcode: OpCode,
    /// Read once `chunks` is over.
    ended: Arc<AtomicBool>,
}

/// What the writer sends to the client, in this order of precedence.
struct ToClient {
    /// The reader's answers: pongs and the echo of the client's close.
    replies: handoff::Receiver<Reply>,
    /// The frames of the topics the connection joined.
    topics: queue::Receiver<Bytes>,
    /// The guest's messages.
    guest: handoff::Receiver<GuestMessage>,
    /// Whether the guest is in the middle of something (then more of its
    /// output may come in the task's next pass); `None` for a shared
    /// instance, which runs on a task of its own.
    guest_busy: Option<Busy>,
}

/// Writes the guest's messages to the client, answers pings, sends
/// keep-alive pings and watches for idleness, until the guest's output has
/// ended and every queued message is out, or the client's close is echoed.
///
/// A streamed message goes out as a fragmented one: a frame per chunk, sent
/// as it comes so that the client sees the message while the guest is still
/// writing it, then an empty final frame. Topic frames go out between the
/// guest's messages. Frames that are ready together go out in one write.
async fn write_client<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    sources: ToClient,
    activity: &Activity,
    counted: &RouteMetrics,
    ping_interval: Duration,
    idle_timeout: Duration,
) -> WriteEnd {
    let ToClient { guest: mut outgoing, mut replies, mut topics, guest_busy } = sources;
    let mut body: Option<OpenBody> = None;
    let mut reader_done = false;
    // Once the guest is gone, so is every sender of topic frames.
    let mut topics_done = false;
    // Whether the guest's next message goes before more topic frames.
    let mut guest_turn = false;
    let mut ping =
        (!ping_interval.is_zero()).then(|| tokio::time::interval_at(Instant::now() + ping_interval, ping_interval));
    // Re-armed only when it fires, not on every message.
    let mut idle_check = pin!(tokio::time::sleep(idle_timeout));
    // A write put off for a pass, while the guest was busy.
    let mut put_off = None;
    loop {
        // Whether more is ready to be queued right away (then the write waits
        // for it, up to a point).
        let more_ready = tokio::select! {
            biased;
            reply = replies.recv(), if !reader_done => match reply {
                Some(Reply::Pong(payload)) => {
                    writer.queue(OpCode::Control(Control::Pong), true, &payload);
                    false
                }
                Some(Reply::Close(frame)) => {
                    writer.queue_close(frame.as_ref());
                    return match writer.flush().await {
                        Ok(()) => WriteEnd::Echoed,
                        Err(_) => WriteEnd::Failed,
                    };
                }
                None => {
                    reader_done = true;
                    continue;
                }
            },
            chunk = recv_chunk(&mut body), if body.is_some() => {
                activity.touch();
                let open = body.as_mut().expect("guarded by the branch condition");
                match chunk {
                    Some(chunk) => {
                        counted.bytes_out.inc_by(chunk.len() as u64);
                        writer.queue_data(open.opcode, false, chunk);
                        open.opcode = OpCode::Data(Data::Continue);
                        // Once the guest has ended the body, the message's
                        // end is ready too: it goes in the same write.
                        open.chunks.is_ready()
                    }
                    // The guest failed: its store went, and the body with
                    // it, which is cut, not ended (the close frame follows).
                    None if !open.ended.load(Ordering::Acquire) => return flushed(writer).await,
                    None => {
                        // If no chunk was sent, the opcode is still the first
                        // one: the message goes out whole, and empty.
                        writer.queue_data(open.opcode, true, Bytes::new());
                        body = None;
                        !outgoing.is_empty()
                    }
                }
            }
            // After a batch of topic frames the guest's next message goes
            // first: a busy topic must not keep the guest's answers out.
            frame = topics.recv(), if body.is_none() && !topics_done && (!guest_turn || outgoing.is_empty()) => match frame {
                Some(frame) => {
                    activity.touch();
                    count(&counted.messages_out, &counted.bytes_out, wsplug_wire::payload_length(&frame));
                    writer.queue_frame(frame);
                    // What else is queued goes in the same write, up to a
                    // write's worth: what waits stays counted in the budget.
                    while !writer.wants_flush()
                        && let Some(frame) = topics.try_recv()
                    {
                        count(&counted.messages_out, &counted.bytes_out, wsplug_wire::payload_length(&frame));
                        writer.queue_frame(frame);
                    }
                    guest_turn = true;
                    !outgoing.is_empty()
                }
                None => {
                    topics_done = true;
                    continue;
                }
            },
            message = outgoing.recv(), if body.is_none() => match message.inspect(|_| guest_turn = false) {
                None => return flushed(writer).await,
                Some(GuestMessage::Strict { text, payload }) => {
                    activity.touch();
                    count(&counted.messages_out, &counted.bytes_out, payload.len());
                    writer.queue_data(OpCode::Data(if text { Data::Text } else { Data::Binary }), true, payload);
                    !outgoing.is_empty()
                }
                Some(GuestMessage::Streamed { text, chunks, ended }) => {
                    counted.messages_out.inc();
                    let opcode = OpCode::Data(if text { Data::Text } else { Data::Binary });
                    body = Some(OpenBody { chunks, opcode, ended });
                    continue;
                }
            },
            _ = tick(&mut ping) => {
                writer.queue(OpCode::Control(Control::Ping), true, &[]);
                false
            }
            () = &mut idle_check, if !idle_timeout.is_zero() => {
                let idle_until = activity.last() + idle_timeout;
                if Instant::now() >= idle_until {
                    return WriteEnd::Idle;
                }
                idle_check.as_mut().reset(idle_until);
                continue;
            }
            // Nothing more came in the pass the write was put off for.
            () = next_pass(&mut put_off), if put_off.is_some() => false,
        };
        if more_ready && !writer.wants_flush() {
            continue;
        }
        // A busy guest (one the runtime paused) is often in the middle of
        // its answer, the end of a streamed message still to come: the write
        // waits a pass for it, once, so that both go in one.
        if put_off.is_none()
            && writer.has_queued()
            && !writer.wants_flush()
            && guest_busy.as_ref().is_some_and(Busy::is_busy)
        {
            put_off = Some(NextPass::default());
            continue;
        }
        put_off = None;
        if let Err(err) = writer.flush().await {
            tracing::debug!("writing to the client failed: {err}");
            return WriteEnd::Failed;
        }
    }
}

/// The end of the writer's work once the guest's output is over: what is
/// queued goes out.
async fn flushed<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>) -> WriteEnd {
    match writer.flush().await {
        Ok(()) => WriteEnd::Drained,
        Err(_) => WriteEnd::Failed,
    }
}

/// Counts one message of `bytes` payload bytes.
fn count(messages: &Counter, bytes_counter: &Counter, bytes: usize) {
    messages.inc();
    bytes_counter.inc_by(bytes as u64);
}

/// The next chunk of the open streamed message (`None`: it has ended).
async fn recv_chunk(body: &mut Option<OpenBody>) -> Option<Bytes> {
    match body {
        Some(open) => open.chunks.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves in the task's next pass: pending once, waking the task.
#[derive(Default)]
struct NextPass {
    polled: bool,
}

impl Future for NextPass {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if std::mem::replace(&mut self.polled, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The put-off write's pass, never if there is none.
async fn next_pass(put_off: &mut Option<NextPass>) {
    match put_off {
        Some(pass) => pass.await,
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
