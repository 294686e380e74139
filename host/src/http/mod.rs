//! The HTTP side of the host: the accept loop and routing ([`server`]), the
//! WebSocket upgrade checks ([`upgrade`]), the handler's say in the
//! handshake ([`handshake`]), static files ([`static_files`]) and the admin
//! API ([`admin`]).

pub mod admin;
pub mod handshake;
pub mod server;
pub mod static_files;
pub mod upgrade;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// The body of every response the host sends: a whole buffer, or a file
/// streamed from disk.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}
