//! The WebAssembly side of the host: the engine and each route's compiled
//! handler ([`runtime`]), where instances' memories live ([`memory`]), the
//! bindings of the WIT worlds ([`bindings`]), a connection's call of its
//! handler ([`call`]), the stream adapters between the connection's channels
//! and the guest's component-model streams ([`streams`]), the guest's stdout
//! and stderr in the host's log ([`log`]), and instances that serve many
//! connections at once ([`shared`]).

pub mod bindings;
pub mod call;
pub mod log;
pub mod memory;
pub mod runtime;
pub mod shared;
pub mod streams;
