//! The WebAssembly side of the host: one [`Runtime`] (engine and linker, with
//! WASI and the topics import) per process, one [`Handler`] per route,
//! compiled and pre-instantiated once at startup, and a fresh [`Store`] per
//! connection.

use super::bindings::{
    Decision, FlowHandler, FlowHandlerIndices, HandshakeHandler, HandshakeHandlerIndices, HandshakeRequest,
    SinkSourceHandler, SinkSourceHandlerIndices,
};
use super::call::{self, Call};
use super::memory::{
    self, CORE_INSTANCES_PER_INSTANCE, InstancePool, MEMORIES_PER_INSTANCE, Slots, TABLES_PER_INSTANCE, use_pool,
};
use super::shared::Lease;
use crate::topics::{self, TopicsCtx};
use crate::wasm::log::{GuestLog, LogSource};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Cache, CacheConfig, Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

/// How often the engine's epoch advances: the granularity of the CPU budget
/// and of the yields that let a busy guest share its thread.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A WebAssembly page, the unit of a memory's size.
const WASM_PAGE: u64 = 64 << 10;

/// The state of one connection's store: what WASI needs, the connection's
/// topics and the guest's limits. The connection's own state lives in the
/// guest and dies with the store.
pub struct ConnectionCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    topics: TopicsCtx,
    memory: StoreLimits,
    cpu: CpuMeter,
    /// See [`GuestStatus::failed`].
    failed: Arc<AtomicBool>,
}

/// What a route's guests may use. Anything not granted here is denied: no
/// network, no files, no environment.
#[derive(Clone, Debug)]
pub struct GuestPolicy {
    /// Linear memory per instance, in bytes; growing past it traps.
    pub memory: usize,
    /// How long a guest may compute without a break before it is
    /// interrupted (a trap).
    pub cpu_budget: Duration,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// Host directories the guest may read, as `(host path, guest path)`.
    pub read_only_dirs: Vec<(PathBuf, String)>,
}

/// What the stream adapters and the store share about the guest: that it
/// just read or wrote a stream (whatever it computed before has had a
/// break), and whether it failed.
pub trait GuestStatus {
    /// The guest handed data to the host or took data from it.
    fn guest_made_progress(&mut self);

    /// Set once the guest has failed, before its store goes: a streamed
    /// message's body that the store's going ends was cut, not ended by the
    /// guest.
    fn failed(&self) -> &Arc<AtomicBool>;
}

impl GuestStatus for ConnectionCtx {
    fn guest_made_progress(&mut self) {
        self.cpu.progress = true;
    }

    fn failed(&self) -> &Arc<AtomicBool> {
        &self.failed
    }
}

/// Why a guest was interrupted: it computed for longer than its budget
/// without a break.
#[derive(Debug)]
pub struct CpuBudgetExceeded(pub Duration);

impl std::fmt::Display for CpuBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the handler ran for more than its cpu-budget of {:?} without a break", self.0)
    }
}

impl std::error::Error for CpuBudgetExceeded {}

/// Measures how long the guest has been running without a break, from the
/// epoch callbacks. A callback comes at the first deadline check of each tick
/// in which wasm runs, so callbacks alone cannot tell a guest that loops from
/// one that is merely busy. A break is either a stream transfer since the
/// last callback (the adapters report it) or a gap of more than a few ticks.
struct CpuMeter {
    budget: Duration,
    busy_since: Option<Instant>,
    last_tick: Instant,
    progress: bool,
}

impl CpuMeter {
    fn new(budget: Duration) -> Self {
        Self { budget, busy_since: None, last_tick: Instant::now(), progress: false }
    }

    /// Called at each epoch tick the guest is running through: `Err` once it
    /// has run for longer than the budget without a break.
    fn tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let now = Instant::now();
        let continuous = now.duration_since(self.last_tick) <= 3 * EPOCH_TICK && !self.progress;
        self.last_tick = now;
        self.progress = false;
        let busy_since = match self.busy_since {
            Some(since) if continuous => since,
            // The guest has only just started running (the first deadline
            // check since a break sees a tick that passed while it waited):
            // it goes on. Pausing it here cost a fiber switch and a pass of
            // its task at every tick for every connection with traffic.
            _ => {
                self.busy_since = Some(now);
                return Ok(UpdateDeadline::Continue(1));
            }
        };
        if now.duration_since(busy_since) > self.budget {
            return Err(wasmtime::Error::new(CpuBudgetExceeded(self.budget)));
        }
        // It has run through a whole tick: let the executor serve other
        // connections before going on.
        Ok(UpdateDeadline::Yield(1))
    }
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
    /// The pool instances come from, if any.
    pool: Option<InstancePool>,
}

impl Runtime {
    /// An engine with component-model async and epoch interruption, linked
    /// with WASI 0.2 (which every Rust guest imports through `std`) and WASI
    /// 0.3. A thread advances the epoch for as long as the engine lives.
    /// Instances get their memory on demand.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_config(Config::new(), None)
    }

    /// The runtime `config` asks for: with `instance-pool = true`, instances
    /// from a pool with room for `max-connections` instances of the largest
    /// route `memory-limit`; otherwise memory on demand, 4 GiB reserved per
    /// memory unless that many do not fit in the address space (see
    /// [`memory`]). With `cache = true` (the default), compiled components
    /// are kept on disk.
    ///
    /// A pool's memory slots are wide (4 GiB each: compiled code then needs
    /// no bounds checks) when they all fit in `memory::WIDE_SLOTS_ADDRESS_SPACE`
    /// and the system grants the reservation; otherwise each is as large as
    /// the largest `memory-limit`.
    pub fn for_config(config: &crate::Config) -> anyhow::Result<Self> {
        let mut engine_config = Config::new();
        if config.cache {
            match config.cache_dir.clone().or_else(default_cache_dir) {
                Some(dir) => cache_in(&mut engine_config, dir),
                None => tracing::info!("compiled components are not cached: no cache-dir and no home directory"),
            }
        }
        if !config.instance_pool {
            if !memory::reserve_on_demand(&mut engine_config, config) {
                tracing::info!(
                    "max-connections = {} (with the routes' shared instances): too many linear memories for a 4 GiB \
                     reservation each in the address space; each memory reserves its memory-limit instead, with \
                     bounds checks",
                    config.max_connections
                );
            }
            return Self::with_config(engine_config, None);
        }
        let pool = InstancePool::for_config(config)?;
        if pool.fits_wide_slots() {
            let mut wide = engine_config.clone();
            use_pool(&mut wide, pool, Slots::Wide);
            match Self::with_config(wide, Some(pool)) {
                Ok(runtime) => return Ok(runtime),
                Err(err) => tracing::info!(
                    "the instance pool's 4 GiB memory slots were refused ({:#}): slots of memory-limit instead, \
                     with bounds checks",
                    err
                ),
            }
        }
        // Compact slots gain nothing from fewer memories per instance.
        let pool = InstancePool { memories_per_instance: MEMORIES_PER_INSTANCE, ..pool };
        use_pool(&mut engine_config, pool, Slots::Compact);
        Self::with_config(engine_config, Some(pool))
    }

    fn with_config(mut config: Config, pool: Option<InstancePool>) -> anyhow::Result<Self> {
        config.wasm_component_model_async(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wsplug-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("cannot start the epoch thread")?;
        let mut linker: Linker<ConnectionCtx> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        topics::add_to_linker(&mut linker, |ctx| &mut ctx.topics)?;
        Ok(Self { engine, linker, pool })
    }

    /// Compiles the component at `path` and checks that it is a handler.
    ///
    /// Every failure names the file and what is wrong with it.
    pub fn load(&self, path: &Path, policy: GuestPolicy) -> anyhow::Result<Handler> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read component file {}", path.display()))?;
        self.load_bytes(path, &bytes, policy)
    }

    /// Like [`Runtime::load`], with the file's contents already read.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8], policy: GuestPolicy) -> anyhow::Result<Handler> {
        let shown = path.display();
        for (host, _) in &policy.read_only_dirs {
            if !host.is_dir() {
                bail!("{} is granted to {shown} as a directory, but is not one", host.display());
            }
        }
        check_header(bytes).with_context(|| format!("{shown} is not a WebAssembly component"))?;
        let started = Instant::now();
        let component =
            Component::new(&self.engine, bytes).map_err(anyhow::Error::from).with_context(|| match self.pool {
                Some(pool) => format!(
                    "{shown} cannot be compiled, or does not fit the instance pool (room per instance: \
                     {CORE_INSTANCES_PER_INSTANCE} core instances, {} memories, {TABLES_PER_INSTANCE} tables)",
                    pool.memories_per_instance
                ),
                None => format!("{shown} is not a WebAssembly component that wsplug can compile"),
            })?;
        // Milliseconds from the cache, seconds for a large component without.
        tracing::info!("{shown} compiled in {} ms", started.elapsed().as_millis());
        // Else every connection would fail to start, with a trap.
        let initial = component.resources_required().and_then(|needs| needs.max_initial_memory_size);
        if let Some(bytes) = initial.map(|pages| pages.saturating_mul(WASM_PAGE))
            && bytes > policy.memory as u64
        {
            bail!(
                "{shown} needs {bytes} bytes of linear memory to start, more than its memory-limit of {} \
                 (which bounds each memory)",
                policy.memory
            );
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{shown} imports something wsplug does not provide"))?;
        let handshake = HandshakeHandlerIndices::new(&pre).ok();
        if let Ok(flow) = FlowHandlerIndices::new(&pre) {
            return Ok(Handler { pre, role: Role::Flow(flow), handshake, policy });
        }
        if let Ok(sink_source) = SinkSourceHandlerIndices::new(&pre) {
            return Ok(Handler { pre, role: Role::SinkSource(sink_source), handshake, policy });
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

/// Says what a file is when it is not a component at all: wasmtime's own
/// errors for these print the bytes they expected, over a dozen lines.
fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    // The version and layer after the magic: 13 and 1 for a component.
    const COMPONENT: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    const CORE_MODULE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if !bytes.starts_with(MAGIC) {
        bail!("it does not start with `\\0asm`, as every WebAssembly file does");
    }
    match bytes.get(4..8) {
        Some(version) if version == COMPONENT => Ok(()),
        Some(version) if version == CORE_MODULE => bail!(
            "it is a core WebAssembly module: build the handler for wasm32-wasip2, or wrap the module with \
             `wasm-tools component new`"
        ),
        _ => bail!("it is a WebAssembly file of a version or layer wsplug does not know"),
    }
}

/// Where compiled components are kept unless `cache-dir` says otherwise:
/// `$XDG_CACHE_HOME/wsplug`, else `$HOME/.cache/wsplug`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()).map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").filter(|dir| !dir.is_empty()).map(|home| Path::new(&home).join(".cache"))
    })?;
    Some(base.join("wsplug"))
}

/// Keeps the engine's compiled components in `dir`, with wasmtime's own
/// cache: an entry is found by a hash of the component's bytes, the
/// engine's settings and wasmtime's version, so a changed component, host
/// or setting never gets a stale one; an entry that does not decompress is
/// compiled again (and rewritten). If the cache cannot be set up, the host
/// compiles every time and says so.
fn cache_in(config: &mut Config, dir: PathBuf) {
    // wasmtime wants it absolute.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let mut cache_config = CacheConfig::new();
    cache_config.with_directory(&dir);
    match Cache::new(cache_config) {
        Ok(cache) => {
            config.cache(Some(cache));
            warn_if_others_can_write(&dir);
        }
        Err(err) => tracing::warn!("compiled components are not cached in {}: {err:#}", dir.display()),
    }
}

/// The cache is run as the host's own code: a directory that other users
/// can write to is worth a warning.
fn warn_if_others_can_write(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(dir)
        && metadata.permissions().mode() & 0o022 != 0
    {
        tracing::warn!(
            "the cache of compiled components, {}, is writable by other users: whoever can write there can run \
             code in this host (chmod go-w it)",
            dir.display()
        );
    }
}

/// A route's handler component, compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct Handler {
    pre: InstancePre<ConnectionCtx>,
    role: Role,
    /// Present if the component exports `handshake`.
    handshake: Option<HandshakeHandlerIndices>,
    policy: GuestPolicy,
}

/// What a handler component is, as `wsplug check` tells it.
#[derive(Debug)]
pub struct Description {
    /// The handler world it exports: `flow-handler` or `sink-source-handler`.
    pub world: &'static str,
    /// Whether it exports the optional `handshake` interface.
    pub handshake: bool,
    /// What it imports (WASI, wsplug's topics), all provided by this host.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
}

impl Handler {
    /// Whether the component exports `handshake`.
    pub(crate) fn has_handshake(&self) -> bool {
        self.handshake.is_some()
    }

    /// What the component is and what it needs.
    pub fn describe(&self) -> Description {
        let component_type = self.pre.component().component_type();
        let engine = self.pre.engine();
        Description {
            world: match self.role {
                Role::Flow(_) => "flow-handler",
                Role::SinkSource(_) => "sink-source-handler",
            },
            handshake: self.handshake.is_some(),
            imports: component_type.imports(engine).map(|(name, _)| name.to_owned()).collect(),
            exports: component_type.exports(engine).map(|(name, _)| name.to_owned()).collect(),
        }
    }
}

/// Which handler world the component exports.
#[derive(Clone)]
enum Role {
    Flow(FlowHandlerIndices),
    SinkSource(SinkSourceHandlerIndices),
}

/// An instance of a handler, with its own store: one connection's, or a
/// shared one's.
pub struct GuestInstance {
    /// The instance's store: the connection's whole guest state.
    pub(crate) store: Store<ConnectionCtx>,
    /// The handler exports.
    pub(crate) exports: HandlerExports,
    /// The handshake export, if the component has one.
    pub(crate) handshake: Option<HandshakeHandler>,
}

impl GuestInstance {
    /// The handler's decision on `request` (made only if it is needed), if
    /// it exports `handshake`.
    pub(crate) async fn decide(
        &mut self,
        request: impl FnOnce() -> HandshakeRequest,
    ) -> wasmtime::Result<Option<Decision>> {
        let Some(handshake) = &self.handshake else { return Ok(None) };
        let request = request();
        let decision = self
            .store
            .run_concurrent(async |accessor| {
                handshake.wsplug_websocket_handshake().call_decide(accessor, request).await
            })
            .await??;
        Ok(Some(decision))
    }
}

/// What serves one connection: an instance of its own, or a lease on a
/// shared one.
pub enum Guest {
    /// A fresh instance, dropped with the connection.
    Own(GuestInstance),
    /// A call on a shared instance.
    Shared(Lease),
}

impl Guest {
    /// Whether the guest runs on the connection's own task (its own
    /// instance), rather than on a shared instance's.
    pub(crate) fn runs_on_connection_task(&self) -> bool {
        matches!(self, Guest::Own(_))
    }

    /// The handler's decision on `request` (made only if it is needed), if
    /// it exports `handshake`.
    pub(crate) async fn decide(
        &mut self,
        request: impl FnOnce() -> HandshakeRequest,
    ) -> wasmtime::Result<Option<Decision>> {
        match self {
            Guest::Own(instance) => instance.decide(request).await,
            Guest::Shared(lease) => lease.decide(request).await,
        }
    }

    /// Runs the handler for the connection until its output ends. `Err` is
    /// a trap or another failure of the guest (on a shared instance: of any
    /// of its connections).
    pub(crate) async fn serve(self, connection: Call) -> wasmtime::Result<()> {
        match self {
            Guest::Own(GuestInstance { mut store, exports, .. }) => {
                let served = store
                    .run_concurrent(async |accessor| call::handle(accessor, &exports, connection).await)
                    .await
                    .flatten();
                // Before the store goes, cutting the bodies still open.
                if served.is_err() {
                    store.data().failed().store(true, Ordering::Release);
                }
                served
            }
            Guest::Shared(lease) => lease.serve(connection).await,
        }
    }
}

/// The handler world's exports on one instance.
pub(crate) enum HandlerExports {
    Flow(FlowHandler),
    SinkSource(SinkSourceHandler),
}

impl Handler {
    /// A fresh instance in a fresh store, for `source` (a connection or a
    /// shared instance) on `path`, with its `topics`. The guest gets what
    /// its route's policy grants and nothing else; its stdout and stderr go
    /// to the host's log; its memory and CPU time are limited.
    pub(crate) async fn instantiate(
        &self,
        source: LogSource,
        path: &str,
        topics: TopicsCtx,
    ) -> wasmtime::Result<GuestInstance> {
        let (stdout, stderr) = GuestLog::pair(source, path);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout).stderr(stderr).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        for (name, value) in &self.policy.env {
            wasi.env(name, value);
        }
        for (host, guest) in &self.policy.read_only_dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)?;
        }
        let memory = StoreLimitsBuilder::new().memory_size(self.policy.memory).trap_on_grow_failure(true).build();
        let cpu = CpuMeter::new(self.policy.cpu_budget);
        let failed = Arc::default();
        let ctx = ConnectionCtx { wasi: wasi.build(), table: ResourceTable::new(), topics, memory, cpu, failed };
        let mut store = Store::new(self.pre.engine(), ctx);
        store.limiter(|ctx| &mut ctx.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut store| store.data_mut().cpu.tick());
        let instance = self.pre.instantiate_async(&mut store).await?;
        let exports = match &self.role {
            Role::Flow(indices) => HandlerExports::Flow(indices.load(&mut store, &instance)?),
            Role::SinkSource(indices) => HandlerExports::SinkSource(indices.load(&mut store, &instance)?),
        };
        let handshake = self.handshake.as_ref().map(|indices| indices.load(&mut store, &instance)).transpose()?;
        Ok(GuestInstance { store, exports, handshake })
    }
}
