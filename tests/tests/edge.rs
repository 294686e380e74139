//! At the edge, through raw sockets: Origin checks, per-client limits on
//! connections, upgrades and messages, strict limits on HTTP requests, and
//! HTTP/2's stream limits and rapid-reset protection. A refused client never
//! stops another from connecting.

use futures_util::SinkExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug::{Config, RouteConfig};
use wsplug_tests::{HttpResponse, TestServer, config_with, example, guard, http_exchange, receive, receive_text};

/// An upgrade request for `path` with `extra` header lines; the server's
/// answer (the head, for a `101`).
async fn upgrade(address: SocketAddr, path: &str, extra: &str) -> anyhow::Result<HttpResponse> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    let mut tcp = TcpStream::connect(address).await?;
    tcp.write_all(request.as_bytes()).await?;
    // A 101 leaves the connection open: read its head only.
    let mut raw = Vec::new();
    let mut byte = [0];
    while !raw.ends_with(b"\r\n\r\n") && guard(tcp.read(&mut byte)).await?? == 1 {
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw)?;
    let status = head.split(' ').nth(1).unwrap_or_default().parse()?;
    let mut body = Vec::new();
    if status != 101 {
        guard(tcp.read_to_end(&mut body)).await??;
    }
    Ok(HttpResponse { status, head, body: String::from_utf8(body)? })
}

fn greeter() -> RouteConfig {
    RouteConfig::new("/greeter", example("greeter"))
}

#[tokio::test]
async fn only_the_hosts_own_pages_may_open_a_socket_by_default() -> anyhow::Result<()> {
    let mut listed = RouteConfig::new("/listed", example("greeter"));
    listed.allowed_origins = vec!["https://app.example.com".into(), "https://*.example.org".into()];
    let server = TestServer::start_with(config_with([greeter(), listed])).await?;
    let address = server.address;

    assert_eq!(upgrade(address, "/greeter", "").await?.status, 101, "no Origin: not a browser");
    let own = format!("Origin: http://{address}\r\n");
    assert_eq!(upgrade(address, "/greeter", &own).await?.status, 101, "same origin");
    let twice = format!("{own}Origin: https://evil.example\r\n");
    assert_eq!(upgrade(address, "/greeter", &twice).await?.status, 403, "two origins");
    let refused = upgrade(address, "/greeter", "Origin: https://evil.example\r\n").await?;
    assert_eq!((refused.status, refused.body.as_str()), (403, "Origin not allowed."));
    let other_port = format!("Origin: http://{}:1\r\n", address.ip());
    assert_eq!(upgrade(address, "/greeter", &other_port).await?.status, 403);

    assert_eq!(upgrade(address, "/listed", "Origin: https://app.example.com\r\n").await?.status, 101);
    assert_eq!(upgrade(address, "/listed", "Origin: https://a.b.example.org\r\n").await?.status, 101);
    assert_eq!(upgrade(address, "/listed", "Origin: https://example.org.evil\r\n").await?.status, 403);
    assert_eq!(upgrade(address, "/listed", &own).await?.status, 403, "a list replaces same origin");
    Ok(())
}

#[tokio::test]
async fn a_client_address_gets_a_share_of_connections_and_others_still_connect() -> anyhow::Result<()> {
    let mut config = config_with([greeter()]);
    config.max_connections_per_ip = 3;
    // The test's clients all come from 127.0.0.1, through a "proxy" that
    // says which client each is.
    config.trusted_proxies = vec!["127.0.0.1/32".parse()?];
    let server = TestServer::start_with(config).await?;
    let from = |client: &str| format!("X-Forwarded-For: {client}\r\n");

    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.connect_with("/greeter", &[("x-forwarded-for", "203.0.113.1")]).await?);
    }
    let refused = upgrade(server.address, "/greeter", &from("203.0.113.1")).await?;
    assert_eq!(refused.status, 429, "{}", refused.head);
    assert!(refused.head.contains("retry-after: 1"), "{}", refused.head);
    // Another client is not affected, nor is a connection already open.
    let mut other = server.connect_with("/greeter", &[("x-forwarded-for", "203.0.113.2")]).await?;
    other.send(Message::text("Ann")).await?;
    assert_eq!(receive_text(&mut other).await?, "Hello Ann!");
    open[0].send(Message::text("Bob")).await?;
    assert_eq!(receive_text(&mut open[0]).await?, "Hello Bob!");
    // Closing one gives its place back.
    drop(open.pop());
    guard(async {
        while upgrade(server.address, "/greeter", &from("203.0.113.1")).await?.status != 101 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() -> anyhow::Result<()> {
    let mut config = config_with([greeter()]);
    config.max_connections_per_ip = 2;
    let server = TestServer::start_with(config).await?;
    // Not trusted: every header names another client, but all are the peer.
    let _first = server.connect_with("/greeter", &[("x-forwarded-for", "203.0.113.1")]).await?;
    let _second = server.connect_with("/greeter", &[("forwarded", "for=203.0.113.2")]).await?;
    let refused = upgrade(server.address, "/greeter", "X-Forwarded-For: 203.0.113.3\r\n").await?;
    assert_eq!(refused.status, 429);
    Ok(())
}

#[tokio::test]
async fn upgrades_too_fast_get_429_with_retry_after() -> anyhow::Result<()> {
    let mut config = config_with([greeter()]);
    // One upgrade every 2 s after a burst of 2: slow enough that a loaded
    // machine cannot refill the bucket between the test's upgrades.
    config.upgrades_per_second_per_ip = 0.5;
    config.upgrade_burst_per_ip = 2.0;
    let server = TestServer::start_with(config).await?;
    let _first = server.connect("/greeter").await?;
    let _second = server.connect("/greeter").await?;
    let refused = upgrade(server.address, "/greeter", "").await?;
    assert_eq!((refused.status, refused.body.as_str()), (429, "Too many upgrades from your address; slow down."));
    assert!(refused.head.contains("retry-after: 2"), "{}", refused.head);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(upgrade(server.address, "/greeter", "").await?.status, 101, "the allowance refills");
    Ok(())
}

#[tokio::test]
async fn a_client_that_sends_too_fast_is_closed_with_1008() -> anyhow::Result<()> {
    let mut echo = RouteConfig::new("/echo", example("echo"));
    echo.max_messages_per_second = 1.0;
    echo.message_burst = 5.0;
    let server = TestServer::start_with(config_with([echo])).await?;
    let mut calm = server.connect("/echo").await?;
    let mut flood = server.connect("/echo").await?;
    for n in 0..20 {
        if flood.send(Message::text(format!("{n}"))).await.is_err() {
            break;
        }
    }
    let close = loop {
        match receive(&mut flood).await? {
            Some(Message::Close(frame)) => break frame,
            Some(_) => continue,
            None => anyhow::bail!("the connection ended without a close frame"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!((close.code, close.reason.as_str()), (CloseCode::Policy, "too many messages"));
    calm.send(Message::text("still here")).await?;
    assert_eq!(receive_text(&mut calm).await?, "still here");
    Ok(())
}

#[tokio::test]
async fn requests_over_the_http_limits_are_refused() -> anyhow::Result<()> {
    let server = TestServer::start_with(config_with([greeter()])).await?;
    let address = server.address;
    let request = |head: String| async move { http_exchange(address, &head).await };

    let big_header = format!("GET /greeter HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "x".repeat(40 << 10));
    assert_eq!(request(big_header).await?.status, 431);
    let many: String = (0..150).map(|n| format!("X-{n}: y\r\n")).collect();
    assert_eq!(request(format!("GET /greeter HTTP/1.1\r\nHost: a\r\n{many}\r\n")).await?.status, 431);
    let long_uri = format!("GET /greeter?{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "q".repeat(9000));
    assert_eq!(request(long_uri).await?.status, 414);
    let no_host = request("GET /greeter HTTP/1.1\r\nConnection: close\r\n\r\n".into()).await?;
    assert_eq!((no_host.status, no_host.body.as_str()), (400, "An HTTP/1.1 request needs a Host header."));
    // Both lengths (request smuggling): hyper reads the chunked body, drops
    // the Content-Length, answers, and closes the connection, so nothing
    // that follows can pass for a second request.
    let smuggling = "GET /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\
                     Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /greeter HTTP/1.1\r\nHost: a\r\n\r\n";
    let answer = request(smuggling.into()).await?;
    assert_eq!(answer.status, 404);
    assert!(!answer.body.contains("HTTP/1.1"), "a second answer: {}", answer.body);

    let with_body = upgrade(address, "/greeter", "Content-Length: 5\r\n").await?;
    assert_eq!((with_body.status, with_body.body.as_str()), (400, "A websocket upgrade has no body."));
    let chunked = upgrade(address, "/greeter", "Transfer-Encoding: chunked\r\n").await?;
    assert_eq!(chunked.status, 400);
    // None of it kept a well-behaved client out.
    assert_eq!(upgrade(address, "/greeter", "").await?.status, 101);
    Ok(())
}

#[tokio::test]
async fn http2_limits_streams_and_stops_a_rapid_reset() -> anyhow::Result<()> {
    let mut config = Config::default();
    config.set_route(greeter());
    config.http2_max_concurrent_streams = 10;
    let server = TestServer::start_with(config).await?;

    let tcp = TcpStream::connect(server.address).await?;
    let (mut client, mut connection) = h2::client::handshake(tcp).await?;
    // The server's SETTINGS have arrived once its first answer has.
    let request = hyper::Request::get(format!("http://{}/nowhere", server.address)).body(())?;
    let (response, _) = client.send_request(request, true)?;
    let response = tokio::select! {
        response = response => response?,
        ended = &mut connection => anyhow::bail!("the connection ended: {ended:?}"),
    };
    assert_eq!(response.status(), 404);
    assert_eq!(connection.max_concurrent_send_streams(), 10);
    let connection = tokio::spawn(connection);

    // Rapid reset: streams opened and cancelled at once, over and over.
    let attack = async {
        for _ in 0..1000 {
            let request = hyper::Request::get(format!("http://{}/greeter", server.address)).body(())?;
            client = client.ready().await?;
            let (_, mut stream) = client.send_request(request, false)?;
            stream.send_reset(h2::Reason::CANCEL);
        }
        anyhow::Ok(())
    };
    let _ = guard(attack).await?;
    let ended = guard(connection).await??;
    let error = ended.expect_err("the server ends the connection");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{error}");

    // Others are served as before.
    let (status, _) = (upgrade(server.address, "/greeter", "").await?.status, ());
    assert_eq!(status, 101);
    Ok(())
}

#[tokio::test]
async fn a_connection_that_says_nothing_is_dropped_at_the_handshake_timeout() -> anyhow::Result<()> {
    let mut config = config_with([greeter()]);
    config.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config).await?;
    let mut silent = TcpStream::connect(server.address).await?;
    let mut nothing = Vec::new();
    // Ends (EOF) instead of waiting for ever.
    guard(silent.read_to_end(&mut nothing)).await??;
    assert!(nothing.is_empty());
    assert_eq!(upgrade(server.address, "/greeter", "").await?.status, 101);
    Ok(())
}
