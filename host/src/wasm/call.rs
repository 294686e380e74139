//! One connection's call of the handler's export, on whichever instance
//! serves it: its own (the default), or a shared one where many such calls
//! run at once.
//!
//! ```text
//!  reader ──(handoff)─▶ IncomingMessages ──▶ stream<message> ─┐
//!  reader ──(oneshot)─────────────────▶ future<close-frame> ─┼─▶ flow.handle / sink.consume
//!  writer ◀─(handoff)── OutgoingMessages ◀── stream<message> ◀─┘   source.produce
//! ```

use super::bindings::{CloseFrame, ConnectionInfo, Message};
use super::runtime::{ConnectionCtx, HandlerExports};
use super::streams::{ClientMessage, GuestMessage, IncomingMessages, OutgoingMessages};
use crate::handoff;
use futures_util::future::{Either, select};
use tokio::sync::oneshot;
use wasmtime::component::{Accessor, FutureReader, StreamReader};

/// A connection as its handler sees it: what it is told, and the channels
/// its streams are made of.
pub struct Call {
    /// What the handler is told about the connection.
    pub info: ConnectionInfo,
    /// The client's messages.
    pub incoming: handoff::Receiver<ClientMessage>,
    /// The client's close frame, once the reader has it.
    pub closed: oneshot::Receiver<CloseFrame>,
    /// The handler's messages, for the writer.
    pub outgoing: handoff::Sender<GuestMessage>,
}

/// Calls the handler's export for `call` and runs it until its output ends.
/// `Err` is a trap or another failure of the guest (which leaves the
/// instance unusable).
pub(crate) async fn handle(
    accessor: &Accessor<ConnectionCtx>,
    exports: &HandlerExports,
    call: Call,
) -> wasmtime::Result<()> {
    let Call { info, incoming, closed, outgoing } = call;
    let (finished_tx, finished) = oneshot::channel();
    let output = OutgoingMessages::new(outgoing, finished_tx);
    let (incoming, closed) = guest_input(accessor, incoming, closed)?;
    match exports {
        HandlerExports::Flow(flow) => {
            let replies = flow.wsplug_websocket_flow().call_handle(accessor, info, incoming, closed).await?;
            accessor.with(|mut store| replies.pipe(&mut store, output))?;
            // Fires when the guest ends its output (or the store fails).
            let _ = finished.await;
            Ok(())
        }
        HandlerExports::SinkSource(sink_source) => {
            let consume = sink_source.wsplug_websocket_sink().call_consume(accessor, info.clone(), incoming, closed);
            let produce = async {
                let pushed = sink_source.wsplug_websocket_source().call_produce(accessor, info).await?;
                accessor.with(|mut store| pushed.pipe(&mut store, output))?;
                let _ = finished.await;
                wasmtime::Result::<()>::Ok(())
            };
            // The connection lives as long as the source's output; the sink
            // returning early (or at all) does not end it.
            match select(Box::pin(consume), Box::pin(produce)).await {
                Either::Left((consumed, produce)) => {
                    consumed?;
                    produce.await
                }
                Either::Right((produced, _)) => produced,
            }
        }
    }
}

/// The guest's input: the stream of the client's messages, and the future
/// of the client's close frame (resolved when the reader ends).
fn guest_input(
    accessor: &Accessor<ConnectionCtx>,
    incoming: handoff::Receiver<ClientMessage>,
    closed: oneshot::Receiver<CloseFrame>,
) -> wasmtime::Result<(StreamReader<Message>, FutureReader<Option<CloseFrame>>)> {
    accessor.with(|mut store| {
        let messages = StreamReader::new(&mut store, IncomingMessages::new(incoming))?;
        let closed = FutureReader::new(&mut store, async move { wasmtime::Result::<_>::Ok(closed.await.ok()) })?;
        Ok((messages, closed))
    })
}
