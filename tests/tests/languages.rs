//! Handlers in Python (componentize-py with `sdk-python/`) and JavaScript
//! (componentize-qjs), built by `make greeter-python greeter-js` (which
//! `make test` runs first): the greeter's conversation through the testkit,
//! as for the Rust greeter, and a shared Python instance serving several
//! connections at once.

use std::time::Duration;
use wsplug::config::InstanceMode;
use wsplug::{Config, RouteConfig};
use wsplug_testkit::{TestApp, WsProbe};
use wsplug_tests::{js_greeter, python_greeter};

/// What the Rust greeter's own test says, against `probe`.
async fn greeter_conversation(mut probe: WsProbe) {
    probe.send_text("Peter").await;
    probe.expect_text("Hello Peter!").await;
    // A binary message gets no answer, and does not stall what follows.
    probe.send_binary(&[1, 2, 3]).await;
    probe.send_text("Mary").await;
    probe.expect_text("Hello Mary!").await;
    probe.send_text_stream(&["Stre", "am", "ing"], Duration::from_millis(20)).await;
    probe.expect_text("Hello Streaming!").await;
    probe.send_text("Jürgen ✓").await;
    probe.expect_text("Hello Jürgen ✓!").await;
    probe.send_close(1000, "bye").await;
    probe.expect_close(1000).await;
    probe.expect_completion().await;
}

#[tokio::test]
async fn the_python_greeter_greets() {
    let app = TestApp::new([("/greeter", python_greeter())]).unwrap();
    greeter_conversation(app.connect("/greeter").await).await;
}

#[tokio::test]
async fn the_javascript_greeter_greets() {
    let app = TestApp::new([("/greeter", js_greeter())]).unwrap();
    greeter_conversation(app.connect("/greeter").await).await;
}

#[tokio::test]
async fn a_shared_python_instance_greets_several_connections_at_once() {
    let mut route = RouteConfig::new("/greeter", python_greeter());
    route.instance = InstanceMode::Shared;
    let mut config = Config::default();
    config.set_route(route);
    let app = TestApp::with_config(config).unwrap();
    let mut probes = Vec::new();
    for _ in 0..3 {
        probes.push(app.connect("/greeter").await);
    }
    // Interleaved: every call is in flight on the one instance throughout.
    for round in ["Peter", "Paul"] {
        for (index, probe) in probes.iter_mut().enumerate() {
            probe.send_text(&format!("{round} {index}")).await;
        }
        for (index, probe) in probes.iter_mut().enumerate() {
            probe.expect_text(&format!("Hello {round} {index}!")).await;
        }
    }
    // A streamed message on one while another talks.
    let (first, rest) = probes.split_first_mut().unwrap();
    first.send_text_stream(&["Stre", "am"], Duration::from_millis(20)).await;
    rest[0].send_text("Mary").await;
    rest[0].expect_text("Hello Mary!").await;
    first.expect_text("Hello Stream!").await;
}

/// The instance pool holds an instance per connection up to
/// `max-connections` for Python and JavaScript handlers too: their
/// components have more core instances (14 for Python) and memories (2 for
/// JavaScript) than a Rust guest's.
#[tokio::test]
async fn the_instance_pool_holds_max_connections_python_and_javascript_instances() {
    for greeter in [python_greeter(), js_greeter()] {
        let max_connections = 4;
        let mut config = Config { instance_pool: true, max_connections, ..Config::default() };
        config.set_route(RouteConfig::new("/greeter", greeter));
        let app = TestApp::with_config(config).unwrap();
        let mut probes = Vec::new();
        for _ in 0..max_connections {
            probes.push(app.connect("/greeter").await);
        }
        for (index, probe) in probes.iter_mut().enumerate() {
            probe.send_text(&format!("Peter {index}")).await;
            probe.expect_text(&format!("Hello Peter {index}!")).await;
        }
    }
}
