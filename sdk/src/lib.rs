//! Write wsplug WebSocket handlers in Rust.
//!
//! A handler is a WebAssembly component built for `wasm32-wasip2` that
//! exports one of the two worlds of `wit/websocket.wit`:
//!
//! - a [`Flow`]: messages in, messages out, exported with [`export_flow!`];
//! - a [`Sink`] and a [`Source`], input and output not logically connected
//!   (server push), exported together with [`export_sink_source!`].
//!
//! Both macros also export the optional `handshake` interface: by default
//! with the host's own policy, or with your [`Handshake`] implementation.
//!
//! A handler reaches other connections through [`topics`]: join a topic so
//! that its messages go straight to the client, publish to it, or subscribe
//! to handle its messages yourself.
//!
//! ```ignore
//! use wsplug_sdk::{ConnectionInfo, Flow, Incoming, Outgoing};
//!
//! struct Echo;
//!
//! impl Flow for Echo {
//!     async fn run(_: ConnectionInfo, mut incoming: Incoming, mut outgoing: Outgoing) -> wsplug_sdk::Result {
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
mod handshake;
mod message;
mod outgoing;
mod read_ahead;
mod time;
pub mod topics;

pub use bindings::{Acceptance, ConnectionInfo, Decision, HandshakeRequest, Message, Rejection};
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

/// The handler's say in the opening handshake, called before the upgrade on
/// the instance that then serves the connection.
///
/// The `export_*!` macros implement it with the default for a handler that
/// names no handshake; `export_flow!(T with handshake)` exports your own.
pub trait Handshake {
    /// Accept or refuse a connection attempt. By default: accept, with the
    /// route's first configured subprotocol that the client offered (what
    /// the host does for a component without a handshake).
    fn decide(request: HandshakeRequest) -> Decision {
        Decision::default_for(&request)
    }
}

/// Exports a type implementing [`Flow`] as the component's handler:
/// `export_flow!(T)`, or `export_flow!(T with handshake)` if `T` implements
/// [`Handshake`] itself.
#[macro_export]
macro_rules! export_flow {
    ($handler:ident) => {
        impl $crate::Handshake for $handler {}
        $crate::export_flow!($handler with handshake);
    };
    ($handler:ident with handshake) => {
        $crate::bindings::flow::export_flow_guest!($handler with_types_in $crate::bindings::flow);
        $crate::bindings::handshake::export_handshake_guest!($handler with_types_in $crate::bindings::handshake);
    };
}

/// Exports a type implementing [`Sink`] and [`Source`] as the component's
/// handler: `export_sink_source!(T)`, or `export_sink_source!(T with
/// handshake)` if `T` implements [`Handshake`] itself.
#[macro_export]
macro_rules! export_sink_source {
    ($handler:ident) => {
        impl $crate::Handshake for $handler {}
        $crate::export_sink_source!($handler with handshake);
    };
    ($handler:ident with handshake) => {
        $crate::bindings::sink_source::export_sink_source_guest!($handler with_types_in $crate::bindings::sink_source);
        $crate::bindings::handshake::export_handshake_guest!($handler with_types_in $crate::bindings::handshake);
    };
}
