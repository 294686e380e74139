//! The greeter's conversation from Akka HTTP's `WSProbe` documentation,
//! with wsplug's testkit. Runs natively (registered by `tests/Cargo.toml`,
//! whose build script compiles the component).

use std::time::Duration;
use wsplug_testkit::TestApp;

#[tokio::test]
async fn greets_each_name_and_ignores_binary_messages() {
    let app = TestApp::new([("/greeter", concat!(env!("WSPLUG_EXAMPLE_COMPONENTS"), "/greeter.wasm"))]).unwrap();
    let mut probe = app.connect("/greeter").await; // checks the upgrade: 101 and the accept key
    probe.send_text("Peter").await;
    probe.expect_text("Hello Peter!").await;
    probe.send_binary(b"abcdef").await;
    probe.expect_no_message(Duration::from_millis(100)).await;
    probe.send_text("John").await;
    probe.expect_text("Hello John!").await;
    probe.send_close(1000, "").await;
    probe.expect_completion().await;
}

#[tokio::test]
async fn a_plain_request_is_not_a_websocket_request() {
    let app = TestApp::new([("/greeter", concat!(env!("WSPLUG_EXAMPLE_COMPONENTS"), "/greeter.wasm"))]).unwrap();
    let response = app.get("/greeter").await.unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.body, "Not a valid websocket request!");
}
