//! The HTTP side of the host: the accept loop and routing ([`server`]), the
//! WebSocket upgrade checks ([`upgrade`]), the handler's say in the
//! handshake ([`handshake`]), who may connect how often ([`edge`]), static
//! files ([`static_files`]), TLS ([`tls`]) and the admin API ([`admin`]).

pub mod admin;
pub mod edge;
pub mod handshake;
pub mod server;
pub mod static_files;
pub mod tls;
pub mod upgrade;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The body of every response the host sends: a whole buffer, or a file
/// streamed from disk.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// The next connection on `listener`. A failed accept (typically: out of
/// file descriptors) is logged, then retried after a pause that lets some be
/// released, instead of spinning.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) => {
                tracing::warn!("accept failed on {:?}: {err}", listener.local_addr().ok());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
