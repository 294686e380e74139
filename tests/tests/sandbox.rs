//! Hostile guests are contained: each is stopped with 1011 and other
//! connections carry on, during and after.

use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug::config::InstanceMode;
use wsplug::{Config, RouteConfig};
use wsplug_tests::{
    Client, RawClient, RawFrame, TestServer, config_with, example, receive, receive_text, resident_bytes, test_guest,
};

fn greeter() -> RouteConfig {
    RouteConfig::new("/greeter", example("greeter"))
}

/// Hostile clients come from one address here, faster than a client's
/// default allowance of upgrades: these tests are about what the host holds
/// for each, not about that allowance (tests/tests/edge.rs is).
fn unlimited_upgrades(mut config: Config) -> Config {
    config.upgrades_per_second_per_ip = 0.0;
    config
}

async fn expect_1011(client: &mut Client) -> anyhow::Result<()> {
    match receive(client).await? {
        Some(Message::Close(Some(frame))) if frame.code == CloseCode::Error => Ok(()),
        other => anyhow::bail!("expected close 1011, got {other:?}"),
    }
}

async fn greet(greeter: &mut Client, name: &str) -> anyhow::Result<()> {
    greeter.send(Message::text(name)).await?;
    assert_eq!(receive_text(greeter).await?, format!("Hello {name}!"));
    Ok(())
}

// A single-threaded runtime: the greeter is served only if the spinning
// guest yields its thread.
#[tokio::test(flavor = "current_thread")]
async fn a_guest_that_computes_forever_is_interrupted_and_does_not_stall_others() -> anyhow::Result<()> {
    let mut config = Config::default();
    let mut hog = RouteConfig::new("/hog", test_guest("hog"));
    hog.cpu_budget = Duration::from_millis(500);
    config.set_route(hog);
    config.set_route(RouteConfig::new("/greeter", example("greeter")));
    let server = TestServer::start_with(config).await?;

    let mut greeter = server.connect("/greeter").await?;
    let mut spinning = server.connect("/hog").await?;
    spinning.send(Message::text("spin")).await?;
    // While it spins, the greeter answers, again and again.
    for name in ["Peter", "John", "Mary"] {
        greet(&mut greeter, name).await?;
    }
    expect_1011(&mut spinning).await?;
    greet(&mut greeter, "Paul").await?;
    Ok(())
}

#[tokio::test]
async fn a_guest_that_allocates_past_its_limit_is_stopped() -> anyhow::Result<()> {
    allocate_past_the_limit(false, 16).await
}

#[tokio::test]
async fn a_guest_from_the_instance_pool_that_allocates_past_its_limit_is_stopped() -> anyhow::Result<()> {
    allocate_past_the_limit(true, 16).await
}

/// Past 16,384 connections (of handlers with one memory each, as here) the
/// pool's memory slots are no longer 4 GiB each but `memory-limit`: the
/// limit holds there too. (Just past: each pooled fiber stack is two of the
/// process's memory mappings.)
#[tokio::test]
async fn a_guest_from_a_large_instance_pool_that_allocates_past_its_limit_is_stopped() -> anyhow::Result<()> {
    allocate_past_the_limit(true, 16_385).await
}

async fn allocate_past_the_limit(instance_pool: bool, max_connections: usize) -> anyhow::Result<()> {
    let mut config = Config { instance_pool, max_connections, ..Config::default() };
    let mut glutton = RouteConfig::new("/glutton", test_guest("glutton"));
    glutton.memory_limit = 16 << 20;
    config.set_route(glutton);
    config.set_route(RouteConfig::new("/greeter", example("greeter")));
    let server = TestServer::start_with(config).await?;

    let mut greeter = server.connect("/greeter").await?;
    let mut eating = server.connect("/glutton").await?;
    eating.send(Message::text("small")).await?;
    assert_eq!(receive_text(&mut eating).await?, "small");
    eating.send(Message::text("eat")).await?;
    expect_1011(&mut eating).await?;
    greet(&mut greeter, "Peter").await?;
    // The limit is per instance: a new connection starts afresh.
    let mut again = server.connect("/glutton").await?;
    again.send(Message::text("fresh")).await?;
    assert_eq!(receive_text(&mut again).await?, "fresh");
    Ok(())
}

#[tokio::test]
async fn a_guest_that_traps_in_the_middle_of_a_streamed_reply_closes_with_1011() -> anyhow::Result<()> {
    trap_in_the_middle_of_a_streamed_reply(InstanceMode::PerConnection).await
}

#[tokio::test]
async fn a_shared_instance_that_traps_in_the_middle_of_a_streamed_reply_cuts_it_too() -> anyhow::Result<()> {
    // The shared instance's store goes on its own task, which the
    // connection learns of after the reply's chunks have stopped.
    trap_in_the_middle_of_a_streamed_reply(InstanceMode::Shared).await
}

/// The stepwise guest, served by `mode`, starts a streamed reply and traps
/// before its end: the reply is cut short by the close frame, never ended.
async fn trap_in_the_middle_of_a_streamed_reply(mode: InstanceMode) -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/stepwise", test_guest("stepwise"));
    route.instance = mode;
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = RawClient::connect(server.address, "/stepwise").await?;
    client.send_frame(true, 1, b"one").await?;
    assert_eq!(client.read_frame().await?, RawFrame { fin: false, rsv1: false, opcode: 1, payload: b"one".to_vec() });
    client.send_frame(true, 1, b"boom").await?;
    // The fragmented reply is cut short by the close frame (control frames
    // may come between fragments).
    let close = client.read_frame().await?;
    assert_eq!(close.close_code(), Some(1011));
    Ok(())
}

#[tokio::test]
async fn connections_opened_and_dropped_in_a_loop_leave_nothing_behind() -> anyhow::Result<()> {
    let server = TestServer::start_with(unlimited_upgrades(config_with([greeter()]))).await?;
    for round in 0..1000 {
        let mut client = server.connect("/greeter").await?;
        if round % 2 == 0 {
            greet(&mut client, "Peter").await?;
        }
        // Half close properly, half just vanish.
        if round % 4 < 2 {
            client.close(None).await?;
            while receive(&mut client).await?.is_some() {}
        }
    }
    server.all_closed().await?;
    Ok(())
}

#[tokio::test]
async fn a_guest_gets_only_the_environment_and_read_only_directories_granted() -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("wsplug-caps-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("hello.txt"), "hello from the host\n")?;

    let mut config = Config::default();
    let mut granted = RouteConfig::new("/granted", test_guest("caps"));
    granted.env.insert("GREETING".into(), "hi".into());
    granted.dirs.push(wsplug::DirGrant { host: data.clone(), guest: "/data".into() });
    config.set_route(granted);
    config.set_route(RouteConfig::new("/bare", test_guest("caps")));
    let server = TestServer::start_with(config).await?;

    let mut client = server.connect("/granted").await?;
    assert_eq!(receive_text(&mut client).await?, "env=hi file=hello from the host write=denied outside=denied");
    let mut client = server.connect("/bare").await?;
    assert_eq!(receive_text(&mut client).await?, "env=- file=denied write=denied outside=denied");
    assert!(!data.join("written.txt").exists());
    std::fs::remove_dir_all(&data)?;
    Ok(())
}

#[tokio::test]
async fn a_guest_that_never_reads_pushes_back_on_the_client() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/deaf", test_guest("deaf")), ("/greeter", example("greeter"))]).await?;
    let mut greeter = server.connect("/greeter").await?;
    let mut client = server.connect("/deaf").await?;
    let message = Message::binary(vec![7; 256 * 1024]);
    let before = resident_bytes("self");
    let mut sent = 0usize;
    // Offer 200 MiB; the window only stops the attempt, the bound is on bytes.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        for _ in 0..800 {
            client.send(message.clone()).await?;
            sent += 256 * 1024;
        }
        anyhow::Ok(())
    })
    .await;
    let grown = resident_bytes("self").saturating_sub(before);
    assert!(sent < 64 << 20, "the host took {sent} bytes from a client its guest never reads");
    assert!(grown < 96 << 20, "memory grew by {grown} bytes");
    greet(&mut greeter, "Peter").await
}

#[tokio::test]
async fn a_guest_that_writes_endlessly_is_slowed_by_a_client_that_does_not_read() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/flood", test_guest("flood")), ("/greeter", example("greeter"))]).await?;
    let mut greeter = server.connect("/greeter").await?;
    let before = resident_bytes("self");
    let _client = server.connect("/flood").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = resident_bytes("self").saturating_sub(before);
    assert!(grown < 96 << 20, "memory grew by {grown} bytes while the guest wrote to a client that does not read");
    greet(&mut greeter, "Peter").await
}

#[tokio::test]
async fn a_guest_that_never_writes_is_closed_as_idle() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/deaf", test_guest("deaf"));
    route.idle_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = server.connect("/deaf").await?;
    match receive(&mut client).await? {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => anyhow::bail!("expected close 1001, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_source_that_panics_while_the_sink_runs_closes_with_1011() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/crash", test_guest("crash-source")), ("/greeter", example("greeter"))]).await?;
    let mut greeter = server.connect("/greeter").await?;
    let mut client = server.connect("/crash").await?;
    assert_eq!(receive_text(&mut client).await?, "about to crash");
    client.send(Message::text("still sending")).await?;
    expect_1011(&mut client).await?;
    greet(&mut greeter, "Peter").await
}

#[tokio::test]
async fn many_half_open_connections_are_dropped_at_the_handshake_timeout() -> anyhow::Result<()> {
    let mut config = Config::default();
    config.set_route(RouteConfig::new("/greeter", example("greeter")));
    config.handshake_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(config).await?;
    let mut half_open = Vec::new();
    for _ in 0..200 {
        let mut tcp = tokio::net::TcpStream::connect(server.address).await?;
        tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET /greeter HTTP/1.1\r\nHost: x\r\n").await?;
        half_open.push(tcp);
    }
    // Meanwhile a real client is served.
    let mut greeter = server.connect("/greeter").await?;
    greet(&mut greeter, "Peter").await?;
    drop(greeter);
    server.all_closed().await?;
    Ok(())
}

#[tokio::test]
async fn beyond_the_host_connection_cap_upgrades_get_503() -> anyhow::Result<()> {
    let mut config = Config::default();
    config.set_route(RouteConfig::new("/greeter", example("greeter")));
    config.set_route(RouteConfig::new("/echo", example("echo")));
    config.max_connections = 1;
    let server = TestServer::start_with(config).await?;
    let _first = server.connect("/greeter").await?;
    match server.connect("/echo").await {
        Err(err) => assert!(format!("{err:#}").contains("503"), "{err:#}"),
        Ok(_) => anyhow::bail!("a second connection was accepted beyond the host's cap"),
    }
    Ok(())
}

#[tokio::test]
async fn a_busy_guest_that_keeps_doing_io_is_not_mistaken_for_a_loop() -> anyhow::Result<()> {
    let mut route = RouteConfig::new("/echo", example("echo"));
    route.cpu_budget = Duration::from_millis(200);
    // Thousands of messages a second: more than a client may send by default.
    route.max_messages_per_second = 0.0;
    let server = TestServer::start_with(config_with([route])).await?;
    let mut client = server.connect("/echo").await?;
    // Back to back for several budgets: the guest runs in every epoch tick,
    // but between messages, which is a break.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        client.send(Message::text("ping")).await?;
        assert_eq!(receive_text(&mut client).await?, "ping");
    }
    Ok(())
}

#[tokio::test]
async fn a_frame_header_declaring_a_huge_payload_is_refused_at_once_with_1009() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    let mut client = RawClient::connect(server.address, "/greeter").await?;
    // A terabyte declared, nothing sent: the answer does not wait for it.
    client.send_frame_header(true, 2, 1 << 40).await?;
    let close = client.read_frame().await?;
    assert_eq!(close.close_code(), Some(1009));
    server.all_closed().await?;
    Ok(())
}

#[tokio::test]
async fn frames_declared_large_cost_no_memory_until_their_bytes_arrive() -> anyhow::Result<()> {
    let server = TestServer::start_with(unlimited_upgrades(config_with([greeter()]))).await?;
    let before = resident_bytes("self");
    let mut clients = Vec::new();
    // 100 frames of 16 MiB (the default frame limit) declared, a few bytes
    // of each sent: a host that buffered frames would hold 1.6 GiB once the
    // bytes came; this one holds a read buffer per connection.
    for _ in 0..100 {
        let mut client = RawClient::connect(server.address, "/greeter").await?;
        client.send_frame_header(true, 1, 16 << 20).await?;
        client.send_payload(b"Peter").await?;
        clients.push(client);
    }
    let mut greeter = server.connect("/greeter").await?;
    greet(&mut greeter, "Zoe").await?;
    let growth = resident_bytes("self").saturating_sub(before);
    assert!(growth < 64 << 20, "resident memory grew by {} MiB", growth >> 20);
    Ok(())
}

#[tokio::test]
async fn resets_in_the_middle_of_streamed_messages_leave_nothing_behind() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter"))]).await?;
    for round in 0..50 {
        let mut client = RawClient::connect(server.address, "/greeter").await?;
        if round % 2 == 0 {
            client.send_frame(false, 1, b"Pe").await?;
        } else {
            client.send_frame_header(true, 1, 1 << 20).await?;
            client.send_payload(b"Pet").await?;
        }
        // The greeter has started its reply: the message is with the guest.
        assert!(!client.read_frame().await?.fin);
        client.reset()?;
    }
    server.all_closed().await?;
    let mut greeter = server.connect("/greeter").await?;
    greet(&mut greeter, "Peter").await?;
    Ok(())
}
