//! wsplug serves WebSocket endpoints whose message handlers are sandboxed
//! WebAssembly components.
//!
//! The host does HTTP (hyper), the upgrade and the WebSocket framing
//! (tokio-tungstenite); each connection gets a fresh instance of its route's
//! component, which sees the connection as component-model streams of
//! messages (`wit/websocket.wit`).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use wsplug::{Routes, Runtime, Server};
//!
//! let runtime = Runtime::new()?;
//! let routes = Routes::load(&runtime, [("/greeter".to_owned(), "greeter.wasm".into())])?;
//! let server = Server::bind("127.0.0.1:8080".parse()?, routes).await?;
//! server.run().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod bindings;
pub mod connection;
pub mod runtime;
pub mod server;
pub mod streams;
pub mod upgrade;

pub use runtime::{Handler, Runtime};
pub use server::{App, Routes, Server};
