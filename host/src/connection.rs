//! One WebSocket connection: the socket on one side, the handler's streams on
//! the other.
//!
//! ```text
//!  client ──▶ read_client ──(mpsc)──▶ IncomingMessages ──▶ guest `incoming`
//!  client ◀── write_client ◀─(mpsc)── OutgoingMessages ◀── guest output
//! ```
//!
//! All of it runs on the connection's task: the two pumps and the store's
//! event loop are futures joined together, with no task per message. The
//! bounded channels are the backpressure in both directions.

use crate::bindings::ConnectionInfo;
use crate::runtime::Handler;
use crate::streams::{ClientMessage, GuestMessage, IncomingMessages, OutgoingMessages};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{self, Message};
use wasmtime::component::StreamReader;

/// How many client messages may wait for the guest to read them. With
/// tungstenite reading whole messages, memory held for a guest that does not
/// read is at most this many messages plus the one being read.
const INCOMING_QUEUE: usize = 2;

/// How many guest messages may wait for the socket.
const OUTGOING_QUEUE: usize = 16;

/// How long to wait for the client's answer to our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one upgraded connection with a fresh instance of `handler`, until
/// the connection is closed.
///
/// The connection ends when the handler's output ends (close 1000), when the
/// handler traps (close 1011), or when the client closes or drops it (the
/// instance is then dropped, whatever it was doing).
pub async fn serve<S>(socket: WebSocketStream<S>, handler: &Handler, info: ConnectionInfo, id: u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, stream) = socket.split();
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);

    let read = read_client(stream, incoming_tx);
    tokio::pin!(read);
    let guest_then_close = async {
        let (outcome, ()) =
            tokio::join!(run_guest(handler, info, incoming_rx, outgoing_tx), write_client(&mut sink, outgoing_rx),);
        let close = match outcome {
            Ok(()) => CloseFrame { code: CloseCode::Normal, reason: "".into() },
            Err(err) => {
                tracing::warn!(connection = id, "handler failed: {err:?}");
                CloseFrame { code: CloseCode::Error, reason: "handler failed".into() }
            }
        };
        // The client may be gone already; nothing more to do then.
        let _ = sink.send(Message::Close(Some(close))).await;
    };

    tokio::select! {
        // The client closed the connection or it broke: whatever the guest
        // still had to say can no longer be sent.
        () = &mut read => {}
        () = guest_then_close => {
            if tokio::time::timeout(CLOSE_TIMEOUT, read).await.is_err() {
                tracing::debug!(connection = id, "client did not answer the close frame in time");
            }
        }
    }
    tracing::debug!(connection = id, "connection closed");
}

/// Instantiates the handler and runs it until its output ends. `Err` is a
/// trap or another failure of the guest.
async fn run_guest(
    handler: &Handler,
    info: ConnectionInfo,
    incoming: mpsc::Receiver<ClientMessage>,
    outgoing: mpsc::Sender<GuestMessage>,
) -> wasmtime::Result<()> {
    let mut store = handler.new_store();
    let (finished_tx, finished) = oneshot::channel();
    let output = OutgoingMessages::new(outgoing, finished_tx);
    match handler {
        Handler::Flow(pre) => {
            let flow = pre.instantiate_async(&mut store).await?;
            store
                .run_concurrent(async |accessor| {
                    let incoming =
                        accessor.with(|mut store| StreamReader::new(&mut store, IncomingMessages::new(incoming)))?;
                    let replies = flow.wsplug_websocket_flow().call_handle(accessor, info, incoming).await?;
                    accessor.with(|mut store| replies.pipe(&mut store, output))?;
                    // Fires when the guest ends its output (or the store fails).
                    let _ = finished.await;
                    wasmtime::Result::<()>::Ok(())
                })
                .await?
        }
        Handler::SinkSource(pre) => {
            let sink_source = pre.instantiate_async(&mut store).await?;
            store
                .run_concurrent(async |accessor| {
                    let incoming =
                        accessor.with(|mut store| StreamReader::new(&mut store, IncomingMessages::new(incoming)))?;
                    let consume = sink_source.wsplug_websocket_sink().call_consume(accessor, info.clone(), incoming);
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

/// Reads the client's messages and queues them for the guest until the
/// connection closes. Control frames are handled by tungstenite (pings are
/// answered, a close is echoed).
async fn read_client<S>(mut stream: SplitStream<WebSocketStream<S>>, incoming: mpsc::Sender<ClientMessage>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = stream.next().await {
        let message = match message {
            Ok(Message::Text(text)) => ClientMessage::Text(text),
            Ok(Message::Binary(data)) => ClientMessage::Binary(data),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => continue,
            Err(err) => {
                tracing::debug!("reading from the client failed: {err}");
                return;
            }
        };
        // Once the guest is gone nobody reads the queue; keep reading the
        // socket anyway so that the close handshake completes.
        let _ = incoming.send(message).await;
    }
}

/// Writes the guest's messages to the client until the guest's output ends
/// and every queued message is out, or the socket fails.
async fn write_client<S>(sink: &mut SplitSink<WebSocketStream<S>, Message>, mut outgoing: mpsc::Receiver<GuestMessage>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = outgoing.recv().await {
        let written = match message {
            GuestMessage::Strict(message) => sink.feed(message).await,
            GuestMessage::Streamed { text, chunks } => write_streamed(sink, text, chunks).await,
        };
        // Flush once the queue is empty rather than after every message.
        let flushed = match written {
            Ok(()) if outgoing.is_empty() => sink.flush().await,
            other => other,
        };
        if let Err(err) = flushed {
            tracing::debug!("writing to the client failed: {err}");
            return;
        }
    }
}

/// Writes a streamed message as a fragmented one: a frame per chunk, each
/// flushed as it comes so that the client sees the message while the guest is
/// still writing it, then an empty final frame.
async fn write_streamed<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    text: bool,
    mut chunks: mpsc::Receiver<Bytes>,
) -> tungstenite::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = OpCode::Data(if text { Data::Text } else { Data::Binary });
    let mut opcode = first;
    while let Some(chunk) = chunks.recv().await {
        sink.send(Message::Frame(Frame::message(chunk, opcode, false))).await?;
        opcode = OpCode::Data(Data::Continue);
    }
    // `opcode == first` here means no chunk was sent: an empty message.
    sink.feed(Message::Frame(Frame::message(Bytes::new(), opcode, true))).await
}
