//! wsplug serves WebSocket endpoints whose message handlers are sandboxed
//! WebAssembly components.
//!
//! The host does HTTP (hyper), the upgrade, and the WebSocket framing (its
//! own streaming reader and writer on tungstenite's frame types); each connection gets a fresh instance of its route's
//! component, which sees the connection as component-model streams of
//! messages (`wit/websocket.wit`).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use wsplug::{App, Config, RouteConfig, Routes, Runtime, Server};
//!
//! let mut config = Config::default();
//! config.set_route(RouteConfig::new("/greeter", "greeter.wasm"));
//! let routes = Routes::load(&Runtime::for_config(&config)?, &config.routes)?;
//! let server = Server::bind(config.listen, App::new(routes, &config)).await?;
//! server.run_until(async { tokio::signal::ctrl_c().await.unwrap() }).await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod connection;
pub mod handoff;
pub mod http;
pub mod metrics;
pub mod system;
pub mod topics;
#[cfg(test)]
mod wakes;
pub mod wasm;
mod woken;

pub use config::{Config, DirGrant, RouteConfig, StaticDir, TopicsConfig};
pub use http::admin::Admin;
pub use http::server::{App, Routes, Server};
pub use topics::{Broker, Published, SlowSubscriber, TopicError};
pub use wasm::memory::InstancePool;
pub use wasm::runtime::{Description, GuestPolicy, Handler, Runtime};
