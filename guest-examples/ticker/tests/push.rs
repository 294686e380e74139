//! The ticker pushes without being asked, tested with wsplug's testkit.
//! Runs natively (registered by `tests/Cargo.toml`).

use wsplug_testkit::{Received, TestApp};

#[tokio::test]
async fn pushes_ticks_before_the_client_says_anything() {
    let app = TestApp::new([("/ticker", concat!(env!("WSPLUG_EXAMPLE_COMPONENTS"), "/ticker.wasm"))]).unwrap();
    let mut probe = app.connect("/ticker?interval_ms=20").await;
    assert_eq!(probe.expect_message().await, Received::Text("tick 1".into()));
    assert_eq!(probe.expect_message().await, Received::Text("tick 2".into()));
}
