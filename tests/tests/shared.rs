//! `instance = "shared"`: one instance serves many connections at once, so
//! its state is theirs together, and so is a failure; the next connection
//! after a failure gets a fresh instance.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug::config::InstanceMode;
use wsplug::{Config, RouteConfig};
use wsplug_testkit::TestApp;
use wsplug_tests::{Client, TestServer, config_with, receive, receive_text, test_guest};

fn counter(path: &str, instance: InstanceMode, shared_instances: usize) -> RouteConfig {
    let mut route = RouteConfig::new(path, test_guest("counter"));
    route.instance = instance;
    route.shared_instances = shared_instances;
    route
}

fn config() -> Config {
    let mut config = config_with([
        counter("/own", InstanceMode::PerConnection, 1),
        counter("/shared", InstanceMode::Shared, 1),
        counter("/pair", InstanceMode::Shared, 2),
    ]);
    config.upgrades_per_second_per_ip = 0.0;
    config
}

/// Sends `text` and returns the counter's answer.
async fn count(client: &mut Client, text: &str) -> anyhow::Result<String> {
    client.send(Message::text(text)).await?;
    receive_text(client).await
}

#[tokio::test]
async fn connections_on_a_shared_instance_share_its_state() -> anyhow::Result<()> {
    let server = TestServer::start_with(config()).await?;
    let mut first = server.connect("/shared").await?;
    let mut second = server.connect("/shared").await?;
    // Both open at once, each a call in flight on the one instance.
    assert_eq!(count(&mut first, "a").await?, "1");
    assert_eq!(count(&mut second, "b").await?, "2");
    assert_eq!(count(&mut first, "c").await?, "3");
    first.close(None).await?;
    // The instance outlives its connections.
    let mut third = server.connect("/shared").await?;
    assert_eq!(count(&mut third, "d").await?, "4");
    assert_eq!(count(&mut second, "e").await?, "5");

    // With an instance of their own, nothing is shared.
    let mut own = server.connect("/own").await?;
    let mut other = server.connect("/own").await?;
    assert_eq!(count(&mut own, "a").await?, "1");
    assert_eq!(count(&mut other, "b").await?, "1");
    Ok(())
}

#[tokio::test]
async fn connections_take_the_shared_instances_in_turn() -> anyhow::Result<()> {
    let server = TestServer::start_with(config()).await?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.connect("/pair").await?);
    }
    let mut answers = Vec::new();
    for client in &mut clients {
        answers.push(count(client, "x").await?);
    }
    assert_eq!(answers, ["1", "1", "2", "2"]);
    Ok(())
}

#[tokio::test]
async fn a_trap_closes_every_connection_on_the_instance_and_the_next_gets_a_fresh_one() -> anyhow::Result<()> {
    let server = TestServer::start_with(config()).await?;
    let mut trapping = server.connect("/shared").await?;
    let mut bystander = server.connect("/shared").await?;
    let mut elsewhere = server.connect("/own").await?;
    assert_eq!(count(&mut trapping, "a").await?, "1");
    assert_eq!(count(&mut bystander, "b").await?, "2");

    trapping.send(Message::text("trap")).await?;
    for client in [&mut trapping, &mut bystander] {
        match receive(client).await? {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Error),
            other => anyhow::bail!("expected close 1011, got {other:?}"),
        }
    }
    // Another route's connections carry on; the next connection here gets
    // a fresh instance, counting from zero.
    assert_eq!(count(&mut elsewhere, "c").await?, "1");
    let mut next = server.connect("/shared").await?;
    assert_eq!(count(&mut next, "d").await?, "1");
    Ok(())
}

#[tokio::test]
async fn a_shared_instance_decides_handshakes_while_it_serves() -> anyhow::Result<()> {
    let mut chat = RouteConfig::new("/chat", test_guest("chat"));
    chat.instance = InstanceMode::Shared;
    let server = TestServer::start_with(config_with([chat])).await?;
    let url = format!("ws://{}/chat", server.address);

    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert("authorization", "Bearer letmein".parse()?);
    request.headers_mut().insert("sec-websocket-protocol", "chat.v1, chat.v2".parse()?);
    let (mut first, response) = tokio_tungstenite::connect_async(request.clone()).await?;
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    assert_eq!(response.headers()["x-chat"], "welcome");
    assert_eq!(receive_text(&mut first).await?, "protocol chat.v2");

    // While the first connection's call is in flight, the same instance
    // refuses a request without the token...
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => anyhow::bail!("expected 401, got {:?}", other.map(|(_, response)| response.status())),
    }
    // ...and accepts another one.
    let (mut second, _) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(receive_text(&mut second).await?, "protocol chat.v2");
    first.send(Message::text("still here")).await?;
    assert_eq!(receive_text(&mut first).await?, "still here");
    Ok(())
}

/// With `instance-pool = true`, a shared instance, which lives on after its
/// connections, has a slot of its own: `max-connections` connections with
/// instances of their own still fit. (Through the testkit, on one thread: a
/// closed connection has given its place back once the probe sees the end.)
#[tokio::test]
async fn in_the_instance_pool_a_shared_instance_takes_no_connections_slot() {
    let max_connections = 2;
    let mut config =
        config_with([counter("/own", InstanceMode::PerConnection, 1), counter("/shared", InstanceMode::Shared, 1)]);
    config.instance_pool = true;
    config.max_connections = max_connections;
    let app = TestApp::with_config(config).unwrap();
    let mut shared = app.connect("/shared").await;
    shared.send_text("a").await;
    shared.expect_text("1").await;
    shared.send_close(1000, "").await;
    shared.expect_close(1000).await;
    shared.expect_completion().await;
    let mut own = Vec::new();
    for _ in 0..max_connections {
        own.push(app.connect("/own").await);
    }
    for probe in &mut own {
        probe.send_text("b").await;
        probe.expect_text("1").await;
    }
}
