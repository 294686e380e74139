//! Idle connections: the server's resident memory per open connection.
//!
//! Each WebSocket is a TCP connection of its own, as browsers open them,
//! while the open-files limit lets client and server each hold one socket
//! per connection. Past that (the development machine's hard limit is
//! 20,000 and cannot be raised there), wsplug's connections are opened over
//! HTTP/2 instead (RFC 8441), [`STREAMS_PER_CONNECTION`] WebSockets per TCP
//! connection: every one is still a connection of its own in wsplug (its
//! instance, store, task and buffers), only the socket is shared.

use crate::Target;
use crate::servers::Server;
use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Files a process needs open besides the idle connections' sockets.
pub const FILES_BESIDES_IDLE: usize = 512;

/// Connections from one client address: the ephemeral ports (32768-60999
/// by default) run out near 28,000.
const CONNECTIONS_PER_CLIENT_ADDRESS: usize = 20_000;

/// WebSockets per HTTP/2 connection when they do not fit in sockets of
/// their own (the benchmark's server allows as many streams).
pub const STREAMS_PER_CONNECTION: usize = 1000;

/// Raises this process's open-files limit to its hard limit.
pub fn raise_open_files() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some() && limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The open-files limit, if `connections` idle connections do not fit in
/// it (client and server each hold one socket per connection).
pub fn open_files_short_of(connections: usize) -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    (limit < (connections + FILES_BESIDES_IDLE) as u64).then_some(limit)
}

/// The server's resident memory per open idle connection, in bytes, each
/// connection a socket of its own. The connections come from as many
/// loopback addresses (`127.0.NET.1`, `.2`, ...) as the ephemeral ports
/// need; each server gets its own `net`, since the ports of the previous
/// one's connections are still in TIME_WAIT.
pub async fn memory(target: &Target, server: &Server, connections: usize, net: u8) -> anyhow::Result<f64> {
    let server_address = address(target)?;
    growth_per_connection(server, connections, async |index| {
        let client_address = std::net::Ipv4Addr::new(127, 0, net, 1 + (index / CONNECTIONS_PER_CLIENT_ADDRESS) as u8);
        let tcp = tokio::net::TcpSocket::new_v4()?;
        tcp.bind((client_address, 0).into())?;
        let tcp = tcp.connect(server_address).await?;
        let (socket, _) = tokio_tungstenite::client_async(target.url.as_str(), tcp).await?;
        Ok(socket)
    })
    .await
}

/// Like [`memory`], the WebSockets opened over HTTP/2, as many per TCP
/// connection as [`STREAMS_PER_CONNECTION`]. An error names how many were
/// open when it came.
pub async fn memory_over_http2(target: &Target, server: &Server, connections: usize) -> anyhow::Result<f64> {
    let server_address = address(target)?;
    let url = target.url.replacen("ws://", "http://", 1);
    let mut senders = Vec::new();
    growth_per_connection(server, connections, async |index| {
        if index % STREAMS_PER_CONNECTION == 0 {
            let tcp = tokio::net::TcpStream::connect(server_address).await?;
            let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
            tokio::spawn(connection);
            senders.push(sender);
        }
        let sender = senders.last_mut().context("no HTTP/2 connection")?;
        let mut request =
            hyper::Request::connect(url.as_str()).header("sec-websocket-version", "13").body(Empty::<Bytes>::new())?;
        request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
        let mut response = sender.send_request(request).await?;
        anyhow::ensure!(response.status() == 200, "the extended CONNECT got {}", response.status());
        let upgraded = hyper::upgrade::on(&mut response).await?;
        Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
    })
    .await
}

/// Opens `connections` WebSockets with `open` (given each one's index),
/// makes one round trip on each (so that it is fully set up server-side)
/// and keeps them open: the server's resident memory growth per connection.
async fn growth_per_connection<S: AsyncRead + AsyncWrite + Unpin>(
    server: &Server,
    connections: usize,
    mut open: impl AsyncFnMut(usize) -> anyhow::Result<WebSocketStream<S>>,
) -> anyhow::Result<f64> {
    let before = server.resident_bytes()?;
    let mut sockets = Vec::with_capacity(connections);
    for index in 0..connections {
        let mut socket = open(index).await.with_context(|| format!("with {index} connections open"))?;
        socket.send(Message::text("hi")).await?;
        socket.next().await.context("connection closed")??;
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.resident_bytes()?;
    drop(sockets);
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}

/// The server's `IP:PORT`, from the target's URL.
fn address(target: &Target) -> anyhow::Result<SocketAddr> {
    let authority = target.url.trim_start_matches("ws://").split('/').next().context("no address in the URL")?;
    Ok(authority.parse()?)
}
