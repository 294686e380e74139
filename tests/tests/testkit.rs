//! The testkit's own tests: what each expectation accepts, and that each
//! failure says what arrived instead.

use std::time::Duration;
use wsplug_testkit::{Received, TestApp};
use wsplug_tests::{example, test_guest};

fn greeter() -> TestApp {
    TestApp::new([("/greeter", example("greeter"))]).unwrap()
}

#[tokio::test]
async fn requests_show_the_hosts_http_answers() {
    let app = greeter();
    let plain = app.get("/greeter").await.unwrap();
    assert_eq!((plain.status.as_u16(), plain.body.as_str()), (400, "Not a valid websocket request!"));
    let unknown = app.websocket("/nowhere").send().await;
    assert!(!unknown.is_websocket_upgrade());
    assert_eq!((unknown.status().as_u16(), unknown.body()), (404, "Unknown resource!"));
    let accepted = app.websocket("/greeter").header("X-Trace", "1").send().await;
    assert!(accepted.is_websocket_upgrade());
    assert_eq!(accepted.status().as_u16(), 101);
    assert_eq!(accepted.header("upgrade"), Some("websocket"));
    assert_eq!(accepted.subprotocol(), None);
}

#[tokio::test]
async fn a_message_sent_in_fragments_with_pauses_arrives_whole() {
    let mut probe = greeter().connect("/greeter").await;
    probe.send_text_stream(&["Stre", "am", "ing"], Duration::from_millis(20)).await;
    probe.expect_text("Hello Streaming!").await;
}

#[tokio::test]
async fn expect_message_collects_whatever_comes() {
    let app = TestApp::new([("/echo", example("echo"))]).unwrap();
    let mut probe = app.connect("/echo").await;
    let large = vec![9; 300 * 1024];
    probe.send_binary(&large).await;
    assert_eq!(probe.expect_message().await, Received::Binary(large));
    probe.send_binary(b"\x01\x02").await;
    probe.expect_binary(b"\x01\x02").await;
}

#[tokio::test]
async fn a_trapping_guest_shows_as_close_1011() {
    let app = TestApp::new([("/trap", test_guest("trap"))]).unwrap();
    let mut probe = app.connect("/trap").await;
    probe.send_text("trap").await;
    probe.expect_close(1011).await;
    probe.expect_completion().await;
}

#[tokio::test]
#[should_panic(expected = r#"expected text "Hello Paul!", got text "Hello Peter!""#)]
async fn expect_text_shows_the_text_that_came() {
    let mut probe = greeter().connect("/greeter").await;
    probe.send_text("Peter").await;
    probe.expect_text("Hello Paul!").await;
}

#[tokio::test]
#[should_panic(expected = r#"expected binary message of 1 bytes [2a], got text "Hello Peter!""#)]
async fn expect_binary_shows_what_came() {
    let mut probe = greeter().connect("/greeter").await;
    probe.send_text("Peter").await;
    probe.expect_binary(b"*").await;
}

#[tokio::test]
#[should_panic(expected = "expected a message, got nothing within 50ms")]
async fn expect_message_times_out() {
    let mut probe = greeter().connect("/greeter").await.with_timeout(Duration::from_millis(50));
    probe.expect_message().await;
}

#[tokio::test]
#[should_panic(expected = r#"expected no message within 1s, got text "Hello Peter!""#)]
async fn expect_no_message_shows_the_message_that_came() {
    let mut probe = greeter().connect("/greeter").await;
    probe.send_text("Peter").await;
    probe.expect_no_message(Duration::from_secs(1)).await;
}

#[tokio::test]
#[should_panic(expected = r#"expected close 1000, got close 1011 "handler failed""#)]
async fn expect_close_shows_the_code_that_came() {
    let app = TestApp::new([("/trap", test_guest("trap"))]).unwrap();
    let mut probe = app.connect("/trap").await;
    probe.send_text("trap").await;
    probe.expect_close(1000).await;
}

#[tokio::test]
#[should_panic(expected = r#"expected the connection to end, got text "tick 1""#)]
async fn expect_completion_shows_what_came_instead() {
    let app = TestApp::new([("/ticker", example("ticker"))]).unwrap();
    let mut probe = app.connect("/ticker?interval_ms=10").await;
    probe.expect_completion().await;
}

#[tokio::test]
#[should_panic(expected = "expected a WebSocket upgrade, got 404 Not Found")]
async fn connect_shows_a_refused_upgrade() {
    greeter().connect("/nowhere").await;
}

#[tokio::test]
async fn the_handler_decides_the_handshake() {
    let app = TestApp::new([("/chat", test_guest("chat"))]).unwrap();
    let refused = app.websocket("/chat").protocol("chat.v1").send().await;
    assert!(!refused.is_websocket_upgrade());
    assert_eq!((refused.status().as_u16(), refused.body()), (401, "a bearer token is required"));

    let accepted = app
        .websocket("/chat")
        .protocol("chat.v1")
        .protocol("chat.v2")
        .header("Authorization", "Bearer letmein")
        .send()
        .await;
    assert_eq!(accepted.subprotocol(), Some("chat.v2"));
    assert_eq!(accepted.header("x-chat"), Some("welcome"));
    let mut probe = accepted.into_probe();
    probe.expect_text("protocol chat.v2").await;

    let misbehaving =
        app.websocket("/chat?misbehave").protocol("chat.v1").header("Authorization", "Bearer letmein").send().await;
    assert_eq!(misbehaving.status().as_u16(), 500);
    assert_eq!(misbehaving.subprotocol(), None);
}

#[tokio::test]
async fn a_probe_that_offers_compression_gets_it_and_talks_through_it() {
    let app = TestApp::new([("/greeter", example("greeter")), ("/echo", example("echo"))]).unwrap();
    let response = app.websocket("/greeter").compression().send().await;
    assert_eq!(response.header("sec-websocket-extensions"), Some("permessage-deflate"));
    // The greeter's replies are streamed, which the host always compresses:
    // the probe sees them inflated.
    let mut probe = response.into_probe();
    probe.send_text("Peter").await;
    probe.expect_text("Hello Peter!").await;
    probe.send_text_stream(&["Stre", "am"], Duration::from_millis(20)).await;
    probe.expect_text("Hello Stream!").await;
    let mut echo = app.websocket("/echo").compression().send().await.into_probe();
    let large: Vec<u8> = (0..300 * 1024).map(|i| (i % 7) as u8).collect();
    echo.send_binary(&large).await;
    assert_eq!(echo.expect_message().await, Received::Binary(large));
    echo.send_text("small").await;
    echo.expect_text("small").await;
}
