//! `GET /metrics` and `GET /healthz` on the admin API: after a known set of
//! conversations, refusals, a failure and a topic delivery, the figures say
//! exactly that.

use futures_util::SinkExt;
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug_tests::{
    HttpResponse, TestServer, admin_publish, example, http_exchange, receive, receive_text, test_guest,
};

async fn get(admin: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<HttpResponse> {
    let authorization = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    http_exchange(admin, &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{authorization}\r\n")).await
}

/// The value of the sample `name{labels}` in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_figures_count_what_happened() -> anyhow::Result<()> {
    let server = TestServer::start(&[
        ("/greeter", example("greeter")),
        ("/trap", test_guest("trap")),
        ("/feed", example("feed")),
    ])
    .await?;
    let admin = server.admin(Some("s3cret")).await?;
    let token = Some("s3cret");

    let health = get(admin, "/healthz", None).await?;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(get(admin, "/metrics", None).await?.status, 401);
    assert_eq!(get(admin, "/metrics", Some("s3cre")).await?.status, 401);
    assert_eq!(get(admin, "/metrics", Some("s3crets")).await?.status, 401);
    // The scheme's name is case-insensitive.
    let lower = "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: bearer  s3cret\r\n\r\n";
    let before = http_exchange(admin, lower).await?;
    assert_eq!(before.status, 200);
    // Every route has its series before its first connection.
    for route in ["/greeter", "/trap", "/feed"] {
        let open = format!("wsplug_connections_open{{route=\"{route}\"}}");
        assert_eq!(sample(&before.body, &open), Some(0.0), "{open} in {}", before.body);
    }

    for name in ["Peter", "John!"] {
        let mut client = server.connect("/greeter").await?;
        client.send(Message::text(name)).await?;
        assert_eq!(receive_text(&mut client).await?, format!("Hello {name}!"));
        client.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await?;
        while receive(&mut client).await?.is_some() {}
    }
    let refused =
        http_exchange(server.address, "GET /greeter HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await?;
    assert_eq!(refused.status, 400);
    let mut trap = server.connect("/trap").await?;
    trap.send(Message::text("trap")).await?;
    while receive(&mut trap).await?.is_some() {}
    let mut reader = server.connect("/feed?topic=news").await?;
    server.subscribers("feed:news", 1).await?;
    admin_publish(admin, "feed:news", "text/plain", "news", token).await?;
    assert_eq!(receive_text(&mut reader).await?, "news");
    drop(reader);
    server.websockets_closed().await?;

    let metrics = get(admin, "/metrics", token).await?;
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    let expected = [
        ("wsplug_connections_accepted_total{route=\"/greeter\"}", 2.0),
        ("wsplug_connections_refused_total{route=\"/greeter\",reason=\"not-websocket\"}", 1.0),
        ("wsplug_messages_in_total{route=\"/greeter\"}", 2.0),
        ("wsplug_bytes_in_total{route=\"/greeter\"}", 10.0),
        ("wsplug_messages_out_total{route=\"/greeter\"}", 2.0),
        // "Hello " + the name + "!": 12 bytes each.
        ("wsplug_bytes_out_total{route=\"/greeter\"}", 24.0),
        ("wsplug_closes_total{route=\"/greeter\",code=\"1000\"}", 2.0),
        ("wsplug_connections_open{route=\"/greeter\"}", 0.0),
        ("wsplug_handler_failures_total{route=\"/trap\",cause=\"trap\"}", 1.0),
        ("wsplug_closes_total{route=\"/feed\",code=\"none\"}", 1.0),
        ("wsplug_closes_total{route=\"/trap\",code=\"1011\"}", 1.0),
        ("wsplug_topic_deliveries_total{route=\"/feed\"}", 1.0),
        ("wsplug_messages_out_total{route=\"/feed\"}", 1.0),
        ("wsplug_bytes_out_total{route=\"/feed\"}", 4.0),
        ("wsplug_instantiation_seconds_count{route=\"/greeter\"}", 2.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn handler_failures_are_counted_by_cause() -> anyhow::Result<()> {
    let mut hog = wsplug::RouteConfig::new("/hog", test_guest("hog"));
    hog.cpu_budget = std::time::Duration::from_millis(200);
    let mut glutton = wsplug::RouteConfig::new("/glutton", test_guest("glutton"));
    glutton.memory_limit = 16 << 20;
    let server = TestServer::start_with(wsplug_tests::config_with([hog, glutton])).await?;
    let admin = server.admin(None).await?;
    for (path, command) in [("/hog", "spin"), ("/glutton", "eat")] {
        let mut client = server.connect(path).await?;
        client.send(Message::text(command)).await?;
        while receive(&mut client).await?.is_some() {}
    }
    server.websockets_closed().await?;
    let text = get(admin, "/metrics", None).await?.body;
    for series in [
        "wsplug_handler_failures_total{route=\"/hog\",cause=\"cpu-budget\"}",
        "wsplug_handler_failures_total{route=\"/glutton\",cause=\"memory\"}",
    ] {
        assert_eq!(sample(&text, series), Some(1.0), "{series} in\n{text}");
    }
    Ok(())
}
