//! The WebAssembly side of the host: one [`Runtime`] (engine and linker) per
//! process, one [`Handler`] per route, compiled and pre-instantiated once at
//! startup, and a fresh [`Store`] per connection.

use crate::bindings::{
    FlowHandler, FlowHandlerIndices, HandshakeHandler, HandshakeHandlerIndices, SinkSourceHandler,
    SinkSourceHandlerIndices,
};
use crate::guest_log::GuestLog;
use anyhow::{Context as _, bail};
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The state of one connection's store: what WASI needs, nothing else. The
/// connection's own state lives in the guest and dies with the store.
pub struct ConnectionCtx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for ConnectionCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The engine and linker shared by every handler of a host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<ConnectionCtx>,
}

impl Runtime {
    /// An engine with component-model async enabled, linked with WASI 0.2
    /// (which every Rust guest imports through `std`) and WASI 0.3.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        Ok(Self { engine, linker })
    }

    /// Compiles the component at `path` and checks that it is a handler.
    ///
    /// Every failure names the file and what is wrong with it.
    pub fn load(&self, path: &Path) -> anyhow::Result<Handler> {
        let shown = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read component file {shown}"))?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown} is not a WebAssembly component that wsplug can compile"))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown} imports something wsplug does not provide"))?;
        let handshake = HandshakeHandlerIndices::new(&pre).ok();
        if let Ok(flow) = FlowHandlerIndices::new(&pre) {
            return Ok(Handler { pre, role: Role::Flow(flow), handshake });
        }
        if let Ok(sink_source) = SinkSourceHandlerIndices::new(&pre) {
            return Ok(Handler { pre, role: Role::SinkSource(sink_source), handshake });
        }
        let exports: Vec<_> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        bail!(
            "{shown} is not a wsplug handler: it must export `wsplug:websocket/flow@0.1.0` (world flow-handler) \
             or both `wsplug:websocket/sink@0.1.0` and `wsplug:websocket/source@0.1.0` (world sink-source-handler); \
             it exports [{}]",
            exports.join(", ")
        )
    }
}

/// A route's handler component, compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct Handler {
    pre: InstancePre<ConnectionCtx>,
    role: Role,
    /// Present if the component exports `handshake`.
    handshake: Option<HandshakeHandlerIndices>,
}

/// Which handler world the component exports.
#[derive(Clone)]
enum Role {
    Flow(FlowHandlerIndices),
    SinkSource(SinkSourceHandlerIndices),
}

/// One connection's instance of a handler, with its own store.
pub struct GuestInstance {
    /// The instance's store: the connection's whole guest state.
    pub(crate) store: Store<ConnectionCtx>,
    /// The handler exports.
    pub(crate) exports: HandlerExports,
    /// The handshake export, if the component has one.
    pub(crate) handshake: Option<HandshakeHandler>,
}

/// The handler world's exports on one instance.
pub(crate) enum HandlerExports {
    Flow(FlowHandler),
    SinkSource(SinkSourceHandler),
}

impl Handler {
    /// A fresh instance in a fresh store, for `connection` on `path`. The
    /// guest gets no files, network or environment; its stdout and stderr go
    /// to the host's log.
    pub(crate) async fn instantiate(&self, connection: u64, path: &str) -> wasmtime::Result<GuestInstance> {
        let path: Arc<str> = path.into();
        let wasi = WasiCtx::builder()
            .stdout(GuestLog::new(connection, path.clone(), "stdout"))
            .stderr(GuestLog::new(connection, path, "stderr"))
            .build();
        let ctx = ConnectionCtx { wasi, table: ResourceTable::new() };
        let mut store = Store::new(self.pre.engine(), ctx);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let exports = match &self.role {
            Role::Flow(indices) => HandlerExports::Flow(indices.load(&mut store, &instance)?),
            Role::SinkSource(indices) => HandlerExports::SinkSource(indices.load(&mut store, &instance)?),
        };
        let handshake = self.handshake.as_ref().map(|indices| indices.load(&mut store, &instance)).transpose()?;
        Ok(GuestInstance { store, exports, handshake })
    }
}
