//! The connection lifecycle: subprotocols, timeouts, limits and their close
//! codes, connection caps, graceful shutdown.

use futures_util::SinkExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug::{Config, RouteConfig};
use wsplug_tests::{
    RawClient, TestServer, config_with, example, guard, http_exchange, receive, receive_text, test_guest,
};

async fn expect_close(client: &mut wsplug_tests::Client, code: CloseCode, reason: &str) -> anyhow::Result<()> {
    match receive(client).await? {
        Some(Message::Close(Some(frame))) if frame.code == code && frame.reason == reason => {}
        other => anyhow::bail!("expected close {code} {reason:?}, got {other:?}"),
    }
    // Reading on sends our answer and completes the close handshake.
    while receive(client).await?.is_some() {}
    Ok(())
}

#[tokio::test]
async fn the_route_picks_its_preferred_subprotocol_among_those_offered() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/info", test_guest("info"));
    route.protocols = vec!["chat.v2".into(), "chat.v1".into()];
    let server = TestServer::start_with(config_with([route])).await?;

    let mut request = format!("ws://{}/info?room=7", server.address).into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "chat.v1, chat.v2".parse()?);
    request.headers_mut().insert("X-Test", "yes".parse()?);
    let (mut client, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(receive_text(&mut client).await?, "subprotocol=chat.v2 query=room=7 x-test=yes");

    // Nothing in common: no protocol is chosen (never one not offered).
    let mut request = format!("ws://{}/info", server.address).into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
    let refused = tokio_tungstenite::connect_async(request).await;
    assert!(refused.is_err(), "tungstenite's client requires a protocol when it offered some");
    Ok(())
}

#[tokio::test]
async fn the_handler_picks_the_subprotocol_or_rejects_with_401() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/chat", test_guest("chat"))]).await?;

    let mut request = format!("ws://{}/chat", server.address).into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "chat.v1, chat.v2".parse()?);
    match tokio_tungstenite::connect_async(request.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => anyhow::bail!("expected 401, got {other:?}"),
    }

    request.headers_mut().insert("Authorization", "Bearer letmein".parse()?);
    let (mut client, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(receive_text(&mut client).await?, "protocol chat.v2");
    Ok(())
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_1001() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/greeter", example("greeter"));
    route.idle_timeout = Duration::from_millis(300);
    route.ping_interval = Duration::ZERO;
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = server.connect("/greeter").await?;
    client.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    expect_close(&mut client, CloseCode::Away, "idle timeout").await
}

#[tokio::test]
async fn a_client_that_answers_pings_is_not_idle() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/greeter", example("greeter"));
    route.idle_timeout = Duration::from_millis(400);
    route.ping_interval = Duration::from_millis(100);
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = server.connect("/greeter").await?;
    // Reading answers the pings; nothing but pings arrives for three idle
    // timeouts.
    let quiet = tokio::time::timeout(Duration::from_millis(1200), receive(&mut client)).await;
    assert!(quiet.is_err(), "expected only pings, got {quiet:?}");
    client.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut client).await?, "Hello Peter!");
    Ok(())
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() -> anyhow::Result<()> {
    let mut config = config_with([RouteConfig::new("/greeter", example("greeter"))]);
    config.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config).await?;
    let mut slow = TcpStream::connect(server.address).await?;
    slow.write_all(b"GET /greeter HTTP/1.1\r\nHost: slow").await?;
    let mut rest = Vec::new();
    guard(slow.read_to_end(&mut rest)).await??;
    // No task is left behind for it.
    server.all_closed().await?;
    Ok(())
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/greeter", example("greeter"));
    route.max_message_size = 1024;
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = server.connect("/greeter").await?;
    client.send(Message::text("x".repeat(2000))).await?;
    match receive(&mut client).await? {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Size),
        other => anyhow::bail!("expected close 1009, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_protocol_errors_with_1002() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    let mut client = RawClient::connect(server.address, "/greeter").await?;
    client.send_frame(true, 1, b"caf\xc3").await?;
    let frame = client.read_frame().await?;
    assert_eq!(frame.close_code(), Some(1007));

    let mut client = RawClient::connect(server.address, "/greeter").await?;
    client.send_frame(true, 3, b"reserved opcode").await?;
    let frame = client.read_frame().await?;
    assert_eq!(frame.close_code(), Some(1002));
    Ok(())
}

#[tokio::test]
async fn messages_before_a_violation_are_answered_before_the_close() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/echo", example("echo"))]).await?;
    let mut client = RawClient::connect(server.address, "/echo").await?;
    // A fragmented message (streamed to the guest, which passes the stream
    // back), then a continuation frame with nothing to continue.
    client.send_frame(false, 1, b"frag1").await?;
    client.send_frame(true, 0, b"frag2").await?;
    client.send_frame(false, 0, b"nothing to continue").await?;
    let mut echoed = Vec::new();
    let close = loop {
        let frame = client.read_frame().await?;
        match frame.opcode {
            0 | 1 => echoed.extend(frame.payload),
            _ => break frame,
        }
    };
    assert_eq!(echoed, b"frag1frag2", "the whole echo, before the close");
    assert_eq!(close.close_code(), Some(1002));
    Ok(())
}

#[tokio::test]
async fn beyond_the_connection_cap_upgrades_get_503_and_existing_ones_carry_on() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/greeter", example("greeter"));
    route.max_connections = Some(1);
    let server = TestServer::start_with(config_with([route])).await?;
    let mut first = server.connect("/greeter").await?;
    let upgrade = "GET /greeter HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let refused = http_exchange(server.address, upgrade).await?;
    assert_eq!(refused.status, 503);
    assert!(refused.head.to_ascii_lowercase().contains("retry-after: 1"), "{}", refused.head);

    first.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut first).await?, "Hello Peter!");
    first.close(None).await?;
    while receive(&mut first).await?.is_some() {}
    // The permit comes back once the connection has ended.
    server.websockets_closed().await?;
    let mut second = server.connect("/greeter").await?;
    second.send(Message::text("John")).await?;
    assert_eq!(receive_text(&mut second).await?, "Hello John!");
    Ok(())
}

#[tokio::test]
async fn shutdown_ends_input_lets_output_finish_and_closes_with_1001() -> anyhow::Result<()> {
    let mut config = Config::default();
    config.set_route(RouteConfig::new("/greeter", example("greeter")));
    config.set_route(RouteConfig::new("/ticker", example("ticker")));
    config.set_route(RouteConfig::new("/info", test_guest("info")));
    config.shutdown_grace = Duration::from_millis(300);
    let server = TestServer::start_with(config).await?;
    let mut greeter = server.connect("/greeter").await?;
    let mut ticker = server.connect("/ticker?interval_ms=50").await?;
    let mut info = server.connect("/info").await?;
    assert_eq!(receive_text(&mut ticker).await?, "tick 1");
    assert!(receive_text(&mut info).await?.starts_with("subprotocol="));

    server.app.shutdown();
    // The greeter ends its output when its input ends; the ticker never does
    // and is closed when the grace period is over. The handler that waits
    // for the client's close frame learns there is none, and still gets to
    // say so.
    expect_close(&mut greeter, CloseCode::Away, "server shutting down").await?;
    assert_eq!(receive_text(&mut info).await?, "input ended without a close frame");
    expect_close(&mut info, CloseCode::Away, "server shutting down").await?;
    loop {
        match receive(&mut ticker).await? {
            Some(Message::Text(tick)) => assert!(tick.starts_with("tick "), "{tick}"),
            Some(Message::Close(Some(frame))) if frame.code == CloseCode::Away => break,
            other => anyhow::bail!("expected ticks then close 1001, got {other:?}"),
        }
    }
    while receive(&mut ticker).await?.is_some() {}
    assert!(guard(server.app.closed()).await?, "every connection closed");
    Ok(())
}

#[tokio::test]
async fn shutdown_tells_a_busy_guest_there_is_no_close_frame() -> anyhow::Result<()> {
    let mut config = config_with([RouteConfig::new("/burst", test_guest("burst"))]);
    config.shutdown_grace = Duration::from_secs(60);
    let server = TestServer::start_with(config).await?;
    let mut client = server.connect("/burst").await?;
    // The guest reads nothing for 300 ms: two messages wait for it and the
    // host's reader waits to hand over the third when the shutdown begins.
    for text in ["a", "b", "c", "d"] {
        client.feed(Message::text(text)).await?;
    }
    client.flush().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.app.shutdown();
    assert_eq!(receive_text(&mut client).await?, "a +1");
    assert_eq!(receive_text(&mut client).await?, "b +0");
    // Its input ended for the shutdown: its close frame is none, at once, not
    // at the end of the grace period.
    assert_eq!(receive_text(&mut client).await?, "ended without a close frame");
    expect_close(&mut client, CloseCode::Away, "server shutting down").await
}

#[tokio::test]
async fn a_handler_whose_output_ends_closes_with_1000_and_other_connections_carry_on() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/early", test_guest("early-end")), ("/greeter", example("greeter"))]).await?;
    let mut greeter = server.connect("/greeter").await?;
    let mut client = server.connect("/early").await?;
    assert_eq!(receive_text(&mut client).await?, "done");
    // Its source has returned; its sink would read on, but the connection
    // lives as long as the source's output.
    expect_close(&mut client, CloseCode::Normal, "").await?;
    greeter.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut greeter).await?, "Hello Peter!");
    Ok(())
}
