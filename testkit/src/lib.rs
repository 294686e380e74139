//! Test wsplug handler components the way Akka HTTP's `WSProbe` tests
//! handlers: no network, the host's real code path.
//!
//! A [`TestApp`] serves routes to components exactly as `wsplug serve` does
//! (the same routing, handshake, WebSocket framing and WIT streaming), but
//! each request travels over an in-memory duplex pipe instead of a TCP
//! socket. A [`WsProbe`] is the client side of one accepted connection;
//! with [`WsRequest::compression`] it talks permessage-deflate, as browsers
//! do.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use wsplug_testkit::TestApp;
//!
//! let app = TestApp::new([("/greeter", "greeter.wasm")])?;
//! let mut probe = app.connect("/greeter").await;
//! probe.send_text("Peter").await;
//! probe.expect_text("Hello Peter!").await;
//! probe.send_close(1000, "bye").await;
//! probe.expect_close(1000).await;
//! probe.expect_completion().await;
//! # Ok(())
//! # }
//! ```
//!
//! Expectations panic with a message that shows what arrived instead, like
//! `assert_eq!`; each waits at most [`DEFAULT_TIMEOUT`] (see
//! [`WsProbe::with_timeout`]).

mod app;
mod compression;
mod probe;

pub use app::{HttpResponse, TestApp, WsRequest, WsResponse};
pub use probe::{DEFAULT_TIMEOUT, Received, WsProbe};
