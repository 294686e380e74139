//! Bad components and failing guests: clear errors, contained failures.

use futures_util::SinkExt;
use std::path::Path;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsplug::{RouteConfig, Runtime};
use wsplug_tests::{TestServer, example, receive, receive_text, test_guest};

#[tokio::test]
async fn a_trapping_guest_closes_only_its_own_connection_with_1011() -> anyhow::Result<()> {
    let server = TestServer::start(&[("/greeter", example("greeter")), ("/trap", test_guest("trap"))]).await?;
    let mut greeter = server.connect("/greeter").await?;
    greeter.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut greeter).await?, "Hello Peter!");

    let mut doomed = server.connect("/trap").await?;
    let mut neighbour = server.connect("/trap").await?;
    doomed.send(Message::text("still fine")).await?;
    assert_eq!(receive_text(&mut doomed).await?, "still fine");
    doomed.send(Message::text("trap")).await?;
    match receive(&mut doomed).await? {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Error),
        other => anyhow::bail!("expected close 1011, got {other:?}"),
    }

    // Same component, other instance; and another component: both unharmed.
    neighbour.send(Message::text("hello")).await?;
    assert_eq!(receive_text(&mut neighbour).await?, "hello");
    greeter.send(Message::text("John")).await?;
    assert_eq!(receive_text(&mut greeter).await?, "Hello John!");
    Ok(())
}

#[tokio::test]
async fn what_a_guest_sent_before_it_failed_goes_out_before_the_1011() -> anyhow::Result<()> {
    // Back to back: the guest answers each, and fails right after the last
    // answer, before the host has written all of them.
    answers_then_1011(&["a", "b", "last c"], &["a", "b", "c"]).await
}

#[tokio::test]
async fn a_streamed_message_the_guest_ended_before_it_failed_goes_out_whole() -> anyhow::Result<()> {
    // The guest ends its last streamed message and fails at once, before
    // the host has written the message's chunks.
    answers_then_1011(&["streamed one two", "b", "last streamed three four"], &["one two", "b", "three four"]).await
}

/// Sends `sent` back to back to the trap guest, which fails after its last
/// answer: the client gets `expected`, then 1011.
async fn answers_then_1011(sent: &[&str], expected: &[&str]) -> anyhow::Result<()> {
    let server = TestServer::start(&[("/trap", test_guest("trap"))]).await?;
    let mut client = server.connect("/trap").await?;
    for text in sent {
        client.feed(Message::text(*text)).await?;
    }
    client.flush().await?;
    for expected in expected {
        assert_eq!(receive_text(&mut client).await?, *expected);
    }
    match receive(&mut client).await? {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Error),
        other => anyhow::bail!("expected close 1011, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_memory_limit_below_what_the_component_starts_with_is_refused_at_load() {
    let path = example("echo");
    let mut route = RouteConfig::new("/x", &path);
    route.memory_limit = 1000;
    let message = format!("{:#}", Runtime::new().unwrap().load(&path, route.guest_policy()).err().expect("refused"));
    assert!(message.contains("more than its memory-limit of 1000"), "{message}");
    // A Rust guest's memory starts at about a megabyte; exactly that is enough.
    let needed: usize = message
        .split_once(" needs ")
        .and_then(|(_, rest)| rest.split_once(" bytes of linear memory to start"))
        .and_then(|(bytes, _)| bytes.parse().ok())
        .unwrap_or_else(|| panic!("no size in {message}"));
    assert!(needed > 1 << 20 && needed.is_multiple_of(65536), "{message}");
    route.memory_limit = needed;
    Runtime::new().unwrap().load(&path, route.guest_policy()).unwrap();
}

/// Why loading `path` as a handler fails.
fn load_error(path: &Path) -> anyhow::Error {
    let limits = RouteConfig::new("/x", path).guest_policy();
    Runtime::new().unwrap().load(path, limits).err().expect("loading should fail")
}

#[test]
fn a_missing_component_file_is_named_in_the_error() {
    let error = load_error("no/such/handler.wasm".as_ref());
    let message = format!("{error:#}");
    assert!(message.contains("no/such/handler.wasm"), "{message}");
    assert!(message.contains("cannot read"), "{message}");
}

#[test]
fn a_component_that_exports_no_handler_is_rejected_with_what_is_missing() {
    let path = test_guest("not-a-handler");
    let error = load_error(&path);
    let message = format!("{error:#}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("wsplug:websocket/flow@0.1.0"), "{message}");
    assert!(message.contains("sink-source-handler"), "{message}");
}

#[test]
fn a_file_that_is_not_a_component_is_rejected() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let error = load_error(&path);
    let message = format!("{error:#}");
    assert!(message.contains("is not a WebAssembly component"), "{message}");
    assert!(message.contains("does not start with `\\0asm`"), "{message}");
    assert!(!message.contains('\n'), "one line, not a dump of expected bytes: {message}");
}

#[test]
fn a_core_module_is_told_apart_from_a_component() {
    let path = std::env::temp_dir().join(format!("wsplug-core-module-{}.wasm", std::process::id()));
    // The smallest core module: the magic and version 1.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let message = format!("{:#}", load_error(&path));
    std::fs::remove_file(&path).unwrap();
    assert!(message.contains("is a core WebAssembly module"), "{message}");
    assert!(message.contains("wasm32-wasip2"), "{message}");
}

#[tokio::test]
async fn one_host_serves_several_routes() -> anyhow::Result<()> {
    let server = TestServer::start(&[
        ("/greeter", example("greeter")),
        ("/echo", example("echo")),
        ("/ticker", example("ticker")),
    ])
    .await?;
    let mut greeter = server.connect("/greeter").await?;
    let mut echo = server.connect("/echo").await?;
    let mut ticker = server.connect("/ticker?interval_ms=10").await?;
    greeter.send(Message::text("Peter")).await?;
    echo.send(Message::text("Peter")).await?;
    assert_eq!(receive_text(&mut greeter).await?, "Hello Peter!");
    assert_eq!(receive_text(&mut echo).await?, "Peter");
    assert_eq!(receive_text(&mut ticker).await?, "tick 1");
    Ok(())
}
