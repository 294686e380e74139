//! WebSockets over HTTP/2 (RFC 8441): an extended CONNECT on a cleartext
//! HTTP/2 connection, then the same WebSocket code over the h2 stream.

use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::Empty;
use hyper::Request;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsplug_tests::{TestServer, example, guard, websocket_over_http2, websocket_over_http2_with};

/// A cleartext HTTP/2 client connection (prior knowledge) to `server`.
async fn http2_client(server: &TestServer) -> anyhow::Result<http2::SendRequest<Empty<Bytes>>> {
    let tcp = TcpStream::connect(server.address).await?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

#[tokio::test]
async fn greets_over_an_http2_extended_connect() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    let mut sender = http2_client(&server).await?;

    let mut socket = websocket_over_http2(&mut sender, &format!("http://{}/greeter", server.address)).await?;
    socket.send(Message::text("Peter")).await?;
    let reply = guard(futures_util::StreamExt::next(&mut socket)).await?;
    assert_eq!(reply.transpose()?, Some(Message::text("Hello Peter!")));
    Ok(())
}

#[tokio::test]
async fn a_plain_http2_request_gets_400() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    let mut sender = http2_client(&server).await?;
    let request = Request::get(format!("http://{}/greeter", server.address)).body(Empty::<Bytes>::new())?;
    let response = guard(sender.send_request(request)).await??;
    assert_eq!(response.status(), 400);
    Ok(())
}

#[tokio::test]
async fn compression_is_negotiated_over_http2_as_over_http1() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/echo", example("echo"))]).await?;
    let mut sender = http2_client(&server).await?;
    let offer = [("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")];
    let url = format!("http://{}/echo", server.address);
    let (mut socket, headers) = websocket_over_http2_with(&mut sender, &url, &offer).await?;
    assert_eq!(headers["sec-websocket-extensions"], "permessage-deflate");
    // Under the threshold, the echo comes back plain (this client cannot
    // inflate).
    socket.send(Message::text("Peter")).await?;
    let reply = guard(futures_util::StreamExt::next(&mut socket)).await?;
    assert_eq!(reply.transpose()?, Some(Message::text("Peter")));
    Ok(())
}
