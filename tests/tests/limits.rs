//! The host under the kernel's limits, as it reads them at startup. This
//! test binary lowers its own open-files limit, which the `wsplug serve` it
//! starts inherits: a file of its own, so that no other test runs under it.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::cli::{log_line, serve_config};
use wsplug_tests::{example, guard, websocket_over_http2};

/// The open-files limit the server gets: the host keeps 256 files for
/// itself, so only a few connections over HTTP/1.1 fit.
const FILES: u64 = 300;

#[tokio::test]
async fn websockets_over_http2_are_not_held_to_the_open_files_limit() -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(Resource::Nofile, Rlimit { current: Some(FILES), maximum: Some(FILES) })?;
    let config = format!(
        "max-connections = 1000\nmax-connections-per-ip = 0\nupgrades-per-second-per-ip = 0\n\
         [[route]]\npath = \"/echo\"\ncomponent = {:?}\n",
        example("echo")
    );
    let (_server, urls, log) = serve_config(&config);
    // "... the host takes 1000 connections, N of them over HTTP/1.1 (more get 503)"
    let line = log_line(&log, &["of them over HTTP/1.1"]);
    let sockets: usize =
        line.split(" of them over HTTP/1.1").next().and_then(|head| head.rsplit(' ').next()).unwrap().parse()?;
    assert!(sockets < 100, "{line}");

    let mut open = Vec::new();
    for _ in 0..sockets {
        let (mut client, _) = guard(tokio_tungstenite::connect_async(urls[0].as_str())).await??;
        client.send(Message::text("hi")).await?;
        assert_eq!(guard(client.next()).await?.transpose()?, Some(Message::text("hi")));
        open.push(client);
    }
    let refused = guard(tokio_tungstenite::connect_async(urls[0].as_str())).await?.unwrap_err();
    assert!(refused.to_string().contains("503"), "{refused}");

    // Over HTTP/2, on one more TCP connection, as many again and more.
    let tcp = tokio::net::TcpStream::connect(urls[0].trim_start_matches("ws://").trim_end_matches("/echo")).await?;
    let (mut sender, connection) =
        http2::handshake::<_, _, http_body_util::Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let url = urls[0].replace("ws://", "http://");
    let mut streams = Vec::new();
    for index in 0..sockets + 10 {
        let mut socket = websocket_over_http2(&mut sender, &url).await?;
        socket.send(Message::text(format!("stream {index}"))).await?;
        assert_eq!(guard(socket.next()).await?.transpose()?, Some(Message::text(format!("stream {index}"))));
        streams.push(socket);
    }
    Ok(())
}
