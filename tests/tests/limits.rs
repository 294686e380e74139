//! The host under the kernel's limits, as it reads them at startup. This
//! test binary lowers its own open-files limit, which the `wsplug serve` it
//! starts inherits: a file of its own, so that no other test runs under it.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::cli::{log_line, serve_config};
use wsplug_tests::{HANG_GUARD, example, guard, websocket_over_http2};

/// The open-files limit the server gets: the host keeps 256 files for
/// itself, so only a few TCP connections may carry WebSockets.
const FILES: u64 = 300;

#[tokio::test]
async fn the_open_files_limit_counts_tcp_connections_so_http2_carries_more_websockets() -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(Resource::Nofile, Rlimit { current: Some(FILES), maximum: Some(FILES) })?;
    let config = format!(
        "max-connections = 1000\nmax-connections-per-ip = 0\nupgrades-per-second-per-ip = 0\n\
         [[route]]\npath = \"/echo\"\ncomponent = {:?}\n",
        example("echo")
    );
    let (_server, urls, log) = serve_config(&config);
    // "... the host takes 1000 connections, on at most N TCP connections (more get 503)"
    let line = log_line(&log, &["TCP connections (more get 503)"]);
    let sockets: usize = line
        .split(" TCP connections (more get 503)")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .unwrap()
        .parse()?;
    assert!((2..100).contains(&sockets), "{line}");
    let url = urls[0].as_str();
    let address = url.trim_start_matches("ws://").trim_end_matches("/echo");

    // All but one over HTTP/1.1, a TCP connection each.
    let mut open = Vec::new();
    for _ in 1..sockets {
        let (mut client, _) = guard(tokio_tungstenite::connect_async(url)).await??;
        client.send(Message::text("hi")).await?;
        assert_eq!(guard(client.next()).await?.transpose()?, Some(Message::text("hi")));
        open.push(client);
    }
    // The last one carries more WebSockets over HTTP/2 than all of those.
    let mut sender = http2_connection(address).await?;
    let http_url = url.replace("ws://", "http://");
    let mut streams = Vec::new();
    for index in 0..sockets + 10 {
        let mut socket = websocket_over_http2(&mut sender, &http_url).await?;
        socket.send(Message::text(format!("stream {index}"))).await?;
        assert_eq!(guard(socket.next()).await?.transpose()?, Some(Message::text(format!("stream {index}"))));
        streams.push(socket);
    }
    // No TCP connection is left for WebSockets, over either protocol.
    let refused = guard(tokio_tungstenite::connect_async(url)).await?.unwrap_err();
    assert!(refused.to_string().contains("503"), "{refused}");
    let mut another = http2_connection(address).await?;
    let refused = websocket_over_http2(&mut another, &http_url).await.unwrap_err();
    assert!(refused.to_string().contains("503"), "{refused}");

    // Once the HTTP/2 connection's WebSockets have closed, its share is free.
    drop(streams);
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while let Err(err) = tokio_tungstenite::connect_async(url).await {
        assert!(tokio::time::Instant::now() < deadline, "still refused: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A cleartext HTTP/2 connection (prior knowledge) to `address`.
async fn http2_connection(address: &str) -> anyhow::Result<http2::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}
