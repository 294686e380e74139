//! The WebAssembly side of the host: one [`Runtime`] (engine and linker) per
//! process, one [`Handler`] per route, compiled and pre-instantiated once at
//! startup, and a fresh [`Store`] per connection.

use crate::bindings::{FlowHandlerPre, SinkSourceHandlerPre};
use anyhow::{Context as _, bail};
use std::path::Path;
use wasmtime::component::{Component, Linker, ResourceTable};
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
        if let Ok(flow) = FlowHandlerPre::new(pre.clone()) {
            return Ok(Handler::Flow(flow));
        }
        if let Ok(sink_source) = SinkSourceHandlerPre::new(pre) {
            return Ok(Handler::SinkSource(sink_source));
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
pub enum Handler {
    /// The component exports `flow`.
    Flow(FlowHandlerPre<ConnectionCtx>),
    /// The component exports `sink` and `source`.
    SinkSource(SinkSourceHandlerPre<ConnectionCtx>),
}

impl Handler {
    /// A fresh store for one connection. The guest gets no files, network,
    /// environment or stdio.
    pub(crate) fn new_store(&self) -> Store<ConnectionCtx> {
        let engine = match self {
            Handler::Flow(pre) => pre.engine(),
            Handler::SinkSource(pre) => pre.engine(),
        };
        Store::new(engine, ConnectionCtx { wasi: WasiCtx::builder().build(), table: ResourceTable::new() })
    }
}
