//! Host bindings for the handler worlds of `wit/websocket.wit` and for what
//! the host provides to them (`host-imports`), generated once here for the
//! whole crate (every `bindgen!` costs compile time).

#![expect(missing_docs, reason = "bindgen-generated code")]

mod flow {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "flow-handler",
        exports: { default: async | store },
    });
}

mod sink_source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink-source-handler",
        exports: { default: async | store },
        with: {
            "wsplug:websocket/types": super::flow::wsplug::websocket::types,
        },
    });
}

mod handshake {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handshake-handler",
        // Concurrent, so that a shared instance decides handshakes while it
        // serves connections.
        exports: { default: async | store },
        with: {
            "wsplug:websocket/types": super::flow::wsplug::websocket::types,
        },
    });
}

mod host_imports {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host-imports",
        imports: {
            // Creating the stream it returns needs the store.
            "wsplug:websocket/topics.subscribe": store | trappable,
        },
        require_store_data_send: true,
    });
}

pub use flow::wsplug::websocket::types::{
    Acceptance, CloseFrame, ConnectionInfo, Decision, HandshakeRequest, Message, Rejection,
};
pub use flow::{FlowHandler, FlowHandlerIndices};
pub use handshake::{HandshakeHandler, HandshakeHandlerIndices};
pub use host_imports::wsplug::websocket::topics;
pub use sink_source::{SinkSourceHandler, SinkSourceHandlerIndices};
