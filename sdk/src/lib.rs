//! Write wsplug WebSocket handlers in Rust.
//!
//! A handler is a WebAssembly component built for `wasm32-wasip2` that
//! exports one of the two worlds of `wit/websocket.wit`:
//!
//! - a [`Flow`]: messages in, messages out, exported with [`export_flow!`];
//! - a [`Sink`] and a [`Source`], input and output not logically connected
//!   (server push), exported together with [`export_sink_source!`].
//!
//! ```ignore
//! use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};
//!
//! struct Echo;
//!
//! impl Flow for Echo {
//!     async fn run(_: ConnectionInfo, mut incoming: Incoming, outgoing: Outgoing) -> wsplug_sdk::Result {
//!         while let Some(message) = incoming.next().await {
//!             outgoing.send(message).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! wsplug_sdk::export_flow!(Echo);
//! ```

// `async fn` in these traits is fine: a component runs on one thread, so no
// caller needs the futures to be `Send`.
#![allow(async_fn_in_trait)]

#[doc(hidden)]
pub mod bindings;
mod message;
mod outgoing;
mod time;

pub use bindings::{ConnectionInfo, Message};
pub use message::{BinaryChunks, Incoming, TextChunks};
pub use outgoing::{BinaryWriter, Closed, Outgoing, TextWriter};
pub use time::sleep;

/// What handler code returns: `Err(Closed)` means the connection went away,
/// which ends the handler quietly.
pub type Result<T = (), E = Closed> = std::result::Result<T, E>;

/// A handler whose output answers its input (Akka's `Flow[Message, Message]`).
///
/// `run` is called once per connection. The connection closes when `run`
/// returns (its output ends); `incoming` ends when the client closes.
pub trait Flow {
    /// Handles one connection.
    async fn run(info: ConnectionInfo, incoming: Incoming, outgoing: Outgoing) -> Result;
}

/// The consuming half of a handler whose input and output are independent.
pub trait Sink {
    /// Consumes one connection's messages; runs concurrently with
    /// [`Source::run`] on the same instance, so the two may share state.
    async fn run(info: ConnectionInfo, incoming: Incoming) -> Result;
}

/// The producing half of a handler whose input and output are independent.
pub trait Source {
    /// Produces one connection's messages. The connection closes when this
    /// returns.
    async fn run(info: ConnectionInfo, outgoing: Outgoing) -> Result;
}

/// Exports a type implementing [`Flow`] as the component's handler.
#[macro_export]
macro_rules! export_flow {
    ($handler:ident) => {
        $crate::bindings::flow::export_flow_guest!($handler with_types_in $crate::bindings::flow);
    };
}

/// Exports a type implementing [`Sink`] and [`Source`] as the component's
/// handler.
#[macro_export]
macro_rules! export_sink_source {
    ($handler:ident) => {
        $crate::bindings::sink_source::export_sink_source_guest!($handler with_types_in $crate::bindings::sink_source);
    };
}
