//! Generated bindings for the two handler worlds, and the glue from their
//! export traits to the SDK's [`Flow`], [`Sink`] and [`Source`] traits.
//!
//! Both worlds are generated here with `pub_export_macro`, so a component only
//! carries the exports of the world its `export_*!` macro names. A stream of
//! the component model is created through intrinsics that belong to the
//! exported function it travels in, so each world gets its own
//! [`StreamFactory`].

use crate::{Flow, Handshake, Incoming, Outgoing, Sink, Source};

#[allow(missing_docs, clippy::all)]
pub mod flow {
    wit_bindgen::generate!({
        path: "../wit",
        world: "flow-guest",
        pub_export_macro: true,
        export_macro_name: "export_flow_guest",
        default_bindings_module: "wsplug_sdk::bindings::flow",
        generate_all,
    });
}

#[allow(missing_docs, clippy::all)]
pub mod sink_source {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sink-source-guest",
        pub_export_macro: true,
        export_macro_name: "export_sink_source_guest",
        default_bindings_module: "wsplug_sdk::bindings::sink_source",
        with: {
            "wsplug:websocket/types@0.1.0": super::flow::wsplug::websocket::types,
            "wsplug:websocket/topics@0.1.0": super::flow::wsplug::websocket::topics,
            "wasi:clocks/types@0.3.0": super::flow::wasi::clocks::types,
            "wasi:clocks/monotonic-clock@0.3.0": super::flow::wasi::clocks::monotonic_clock,
        },
    });
}

#[allow(missing_docs, clippy::all)]
pub mod handshake {
    wit_bindgen::generate!({
        path: "../wit",
        world: "handshake-handler",
        pub_export_macro: true,
        export_macro_name: "export_handshake_guest",
        default_bindings_module: "wsplug_sdk::bindings::handshake",
        with: {
            "wsplug:websocket/types@0.1.0": super::flow::wsplug::websocket::types,
        },
    });
}

pub use flow::wasi::clocks::monotonic_clock;
pub use flow::wsplug::websocket::types::{
    Acceptance, CloseFrame, ConnectionInfo, Decision, HandshakeRequest, Message, Rejection,
};

/// Creates the streams a handler writes to, with the intrinsics of the world
/// the component exports.
#[derive(Clone, Copy)]
pub(crate) struct StreamFactory {
    pub(crate) messages: fn() -> (wit_bindgen::StreamWriter<Message>, wit_bindgen::StreamReader<Message>),
    pub(crate) text: fn() -> (wit_bindgen::StreamWriter<String>, wit_bindgen::StreamReader<String>),
    pub(crate) binary: fn() -> (wit_bindgen::StreamWriter<u8>, wit_bindgen::StreamReader<u8>),
}

const FLOW_STREAMS: StreamFactory = StreamFactory {
    messages: flow::wit_stream::new::<Message>,
    text: flow::wit_stream::new::<String>,
    binary: flow::wit_stream::new::<u8>,
};

const SINK_SOURCE_STREAMS: StreamFactory = StreamFactory {
    messages: sink_source::wit_stream::new::<Message>,
    text: sink_source::wit_stream::new::<String>,
    binary: sink_source::wit_stream::new::<u8>,
};

/// Runs `produce` in its own guest task and returns the stream it writes to:
/// the export returns at once and the task keeps writing afterwards.
fn spawn_producer<F>(streams: StreamFactory, produce: impl FnOnce(Outgoing) -> F) -> wit_bindgen::StreamReader<Message>
where
    F: Future<Output = crate::Result> + 'static,
{
    let (writer, reader) = (streams.messages)();
    let task = produce(Outgoing::new(writer, streams));
    // `Err(Closed)` only means the client went away; nothing to report.
    wit_bindgen::spawn_local(async move {
        let _ = task.await;
    });
    reader
}

impl<T: Flow + 'static> flow::exports::wsplug::websocket::flow::Guest for T {
    async fn handle(
        info: ConnectionInfo,
        incoming: wit_bindgen::StreamReader<Message>,
        closed: wit_bindgen::FutureReader<Option<CloseFrame>>,
    ) -> wit_bindgen::StreamReader<Message> {
        let incoming = Incoming::new(incoming, closed);
        spawn_producer(FLOW_STREAMS, move |outgoing| T::run(info, incoming, outgoing))
    }
}

impl<T: Handshake> handshake::exports::wsplug::websocket::handshake::Guest for T {
    fn decide(request: HandshakeRequest) -> Decision {
        <T as Handshake>::decide(request)
    }
}

impl<T: Sink> sink_source::exports::wsplug::websocket::sink::Guest for T {
    async fn consume(
        info: ConnectionInfo,
        incoming: wit_bindgen::StreamReader<Message>,
        closed: wit_bindgen::FutureReader<Option<CloseFrame>>,
    ) {
        let _ = <T as Sink>::run(info, Incoming::new(incoming, closed)).await;
    }
}

impl<T: Source + 'static> sink_source::exports::wsplug::websocket::source::Guest for T {
    async fn produce(info: ConnectionInfo) -> wit_bindgen::StreamReader<Message> {
        spawn_producer(SINK_SOURCE_STREAMS, move |outgoing| <T as Source>::run(info, outgoing))
    }
}
