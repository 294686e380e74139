//! The WebAssembly side of the host: one [`Runtime`] (engine and linker, with
//! WASI and the topics import) per process, one [`Handler`] per route,
//! compiled and pre-instantiated once at startup, and a fresh [`Store`] per
//! connection.

use super::bindings::{
    Decision, FlowHandler, FlowHandlerIndices, HandshakeHandler, HandshakeHandlerIndices, HandshakeRequest,
    SinkSourceHandler, SinkSourceHandlerIndices,
};
use super::call::{self, Call};
use super::shared::Lease;
use crate::config::InstanceMode;
use crate::topics::{self, TopicsCtx};
use crate::wasm::log::{GuestLog, LogSource};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
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

/// What the stream adapters tell the store about the guest: it just read or
/// wrote a stream, so whatever it computed before has had a break.
pub trait GuestProgress {
    /// The guest handed data to the host or took data from it.
    fn guest_made_progress(&mut self);
}

impl GuestProgress for ConnectionCtx {
    fn guest_made_progress(&mut self) {
        self.cpu.progress = true;
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

/// Room for instances allocated once, up front (wasmtime's pooling
/// allocator), instead of memory mapped and unmapped per connection.
#[derive(Clone, Copy, Debug)]
pub struct InstancePool {
    /// How many instances can exist at once: one per open connection.
    pub instances: u32,
    /// The largest linear memory of any instance, in bytes. The pool's
    /// instance memory can never exceed `instances` times this.
    pub memory_per_instance: usize,
    /// Linear memories per instance: two, or fewer if that is what lets
    /// wide slots fit (a component that defines more is then refused when
    /// it is loaded).
    pub memories_per_instance: u32,
}

/// Core instances, memories and tables the pool holds for each component
/// instance, and the most a component may have (one that needs more is
/// refused when it is loaded, not at some count of connections). A Rust
/// guest is its main module plus the small shim modules the component model
/// adds (3 core instances), with one memory and two tables; a Python guest
/// from componentize-py has 14 core instances, a JavaScript one two
/// memories. A core instance is only counted by the pool, so its budget is
/// generous; every memory and table slot is address space reserved up front.
const CORE_INSTANCES_PER_INSTANCE: u32 = 32;
/// At most; see [`InstancePool::memories_per_instance`].
const MEMORIES_PER_INSTANCE: u32 = 2;
const TABLES_PER_INSTANCE: u32 = 4;

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
    /// route `memory-limit`; otherwise memory on demand. With `cache = true`
    /// (the default), compiled components are kept on disk.
    ///
    /// A pool's memory slots are wide (4 GiB each: compiled code then needs
    /// no bounds checks) when they all fit in [`WIDE_SLOTS_ADDRESS_SPACE`]
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

/// How much of a pool slot's linear memory is kept mapped when its instance
/// goes, zeroed in place for the next one.
const MEMORY_KEPT_RESIDENT: usize = 128 << 10;
/// The same for its tables.
const TABLE_KEPT_RESIDENT: usize = 16 << 10;
/// How many slots' decommits are gathered into one batch.
const DECOMMIT_BATCH: usize = 16;

/// The address space a pool's linear memories may take in wide slots: half
/// of x86-64's user address space (128 TiB), 8,192 instances of two
/// memories each, 16,384 of one.
const WIDE_SLOTS_ADDRESS_SPACE: u64 = 64 << 40;

/// How large a pool's memory slots are.
enum Slots {
    /// 4 GiB, the reach of a 32-bit memory, with wasmtime's guard regions:
    /// compiled code needs no bounds checks.
    Wide,
    /// The largest `memory-limit`: every access is bounds-checked (5-15% of
    /// a message's cost, `make bench`).
    Compact,
}

impl InstancePool {
    /// The pool `config` calls for: an instance per connection, and the
    /// routes' shared instances, which live on between their connections;
    /// memories per instance as few as lets wide slots fit, if any number
    /// does.
    fn for_config(config: &crate::Config) -> anyhow::Result<Self> {
        let shared: usize = config
            .routes
            .iter()
            .filter(|route| route.instance == InstanceMode::Shared)
            .map(|route| route.shared_instances)
            .sum();
        let instances =
            u32::try_from(config.max_connections + shared).context("max-connections is too large for a pool")?;
        let memory_per_instance = config.routes.iter().map(|route| route.memory_limit).max().unwrap_or_default();
        let pool = Self { instances, memory_per_instance, memories_per_instance: MEMORIES_PER_INSTANCE };
        if pool.fits_wide_slots() {
            return Ok(pool);
        }
        // The routes' components may need fewer memory slots each (a Rust
        // handler has one), and fewer may fit. A file that cannot be read or
        // parsed is reported when it is loaded.
        let needed = config
            .routes
            .iter()
            .map(|route| std::fs::read(&route.component).ok().and_then(|bytes| defined_memories(&bytes)))
            .try_fold(1, |most, memories| Some(most.max(memories?)));
        match needed {
            Some(needed @ ..MEMORIES_PER_INSTANCE) => {
                let fewer = Self { memories_per_instance: needed, ..pool };
                Ok(if fewer.fits_wide_slots() { fewer } else { pool })
            }
            _ => Ok(pool),
        }
    }

    /// Whether wide slots for every memory of the pool fit in
    /// [`WIDE_SLOTS_ADDRESS_SPACE`].
    fn fits_wide_slots(&self) -> bool {
        u64::from(self.instances) * u64::from(self.memories_per_instance) * (4 << 30) <= WIDE_SLOTS_ADDRESS_SPACE
    }
}

/// The linear memories an instance of a component takes from the pool: those
/// its core modules define, where that is certain, as wasmtime counts them
/// when it loads the component into the pool. `None` if `bytes` cannot be
/// parsed, if a module is instantiated more than once or from inside a
/// nested component (wasmtime counts a memory per instantiation; such a
/// component keeps the pool at two memories per instance rather than have
/// a count made here refuse it at startup). The nested components
/// `wit-component` adds to give exports their types hold no modules.
fn defined_memories(bytes: &[u8]) -> Option<u32> {
    use wasmparser::{Instance, Payload};
    let mut memories = 0u32;
    let mut instantiated = std::collections::HashSet::new();
    // Whether each nested module or component being read is a component.
    let mut nested = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let in_component = nested.contains(&true);
        match payload.ok()? {
            Payload::ModuleSection { .. } if in_component => return None,
            Payload::ModuleSection { .. } => nested.push(false),
            Payload::ComponentSection { .. } => nested.push(true),
            Payload::End(_) => {
                nested.pop();
            }
            Payload::MemorySection(section) => memories = memories.saturating_add(section.count()),
            Payload::InstanceSection(section) => {
                for instance in section {
                    if let Instance::Instantiate { module_index, .. } = instance.ok()?
                        && (in_component || !instantiated.insert(module_index))
                    {
                        return None;
                    }
                }
            }
            _ => {}
        }
    }
    Some(memories)
}

/// Makes `config` allocate instances from `pool`, in `slots`.
fn use_pool(config: &mut Config, pool: InstancePool, slots: Slots) {
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(pool.instances)
        .total_core_instances(pool.instances.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
        .total_memories(pool.instances.saturating_mul(pool.memories_per_instance))
        .total_tables(pool.instances.saturating_mul(TABLES_PER_INSTANCE))
        .max_core_instances_per_component(CORE_INSTANCES_PER_INSTANCE)
        .max_memories_per_component(pool.memories_per_instance)
        .max_tables_per_component(TABLES_PER_INSTANCE)
        .total_stacks(pool.instances)
        .max_memory_size(pool.memory_per_instance)
        // A slot's memory is reset for its next instance: the pages a guest
        // touched (a Rust handler touches about 20 KiB), found with
        // PAGEMAP_SCAN where the kernel has it (6.7+), are zeroed in place
        // instead of unmapped, which would cost every thread of the host a
        // TLB flush and the next instance page faults.
        .linear_memory_keep_resident(MEMORY_KEPT_RESIDENT)
        .table_keep_resident(TABLE_KEPT_RESIDENT)
        .pagemap_scan(Enabled::Auto)
        // What still has to be unmapped is unmapped in batches.
        .decommit_batch_size(DECOMMIT_BATCH);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    if let Slots::Compact = slots {
        // wasmtime's defaults are the wide slots.
        config.memory_reservation(pool.memory_per_instance as u64);
        config.memory_guard_size(0);
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
                store.run_concurrent(async |accessor| call::handle(accessor, &exports, connection).await).await?
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
        let ctx = ConnectionCtx { wasi: wasi.build(), table: ResourceTable::new(), topics, memory, cpu };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_slots_fit_up_to_8192_instances_of_two_memories_and_16384_of_one() {
        let pool = |instances, memories_per_instance| InstancePool {
            instances,
            memory_per_instance: 64 << 20,
            memories_per_instance,
        };
        assert!(pool(8192, 2).fits_wide_slots());
        assert!(!pool(8193, 2).fits_wide_slots());
        assert!(!pool(10_000, 2).fits_wide_slots());
        assert!(pool(10_000, 1).fits_wide_slots());
        assert!(pool(16_384, 1).fits_wide_slots());
        assert!(!pool(16_385, 1).fits_wide_slots());
    }

    #[test]
    fn the_memories_of_a_component_are_counted_where_the_count_is_certain() {
        // A core module with one memory of one page.
        let module = [b"\0asm\x01\0\0\0".as_slice(), &[5, 3, 1, 0, 1]].concat();
        let component = |modules: usize| {
            let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
            for _ in 0..modules {
                bytes.extend([1, module.len() as u8]);
                bytes.extend(&module);
            }
            bytes
        };
        assert_eq!(defined_memories(&component(0)), Some(0));
        assert_eq!(defined_memories(&component(1)), Some(1));
        assert_eq!(defined_memories(&component(2)), Some(2));
        assert_eq!(defined_memories(b"\0asm\x0d\0\x01\0\x01\x40"), None);
        // Core instance sections: module 0 instantiated once, then twice.
        let instantiate = |times: u8| {
            let mut section = vec![times];
            for _ in 0..times {
                section.extend([0, 0, 0]); // instantiate module 0 with no arguments
            }
            [vec![2, section.len() as u8], section].concat()
        };
        assert_eq!(defined_memories(&[component(1), instantiate(1)].concat()), Some(1));
        assert_eq!(defined_memories(&[component(1), instantiate(2)].concat()), None);
        // A nested component: without modules (as wit-component adds them) it
        // changes nothing; with one, the count is not certain.
        let nested = |modules| {
            let inner = component(modules);
            [vec![4, inner.len() as u8], inner].concat()
        };
        assert_eq!(defined_memories(&[component(1), nested(0)].concat()), Some(1));
        assert_eq!(defined_memories(&[component(1), nested(1)].concat()), None);
    }
}
