//! The sandbox: one wasmtime engine, one compiled [`Plugin`] per adapter version, and a fresh
//! store per request with a memory cap and a time budget per call.
//!
//! A plugin gets WASI with nothing in it: no files, no environment, no arguments, no network.
//! Its stdout and stderr are captured and logged under its name and version. A trap, a timeout,
//! running out of memory or a malformed result fails that one call with a [`CallError`]; the
//! store is thrown away (a trapped instance is never reused) and the next call starts clean.
//!
//! Sandboxes come from wasmtime's pooling allocator: memory, tables and instance state are
//! reserved once for [`Limits::sandboxes`] sandboxes at a time and reused, a slot keeps its
//! plugin's copy-on-write memory image mapped from one request to the next, and the first
//! MiB of memory a request dirtied is reset in place (only the pages it touched, found with
//! Linux's `PAGEMAP_SCAN`) rather than handed back to the kernel, so the next request does
//! not fault it in again. Against a fresh mapping per request this halves a Rust adapter's
//! fixed cost per request (instance, render and parse of 1 KB: 130 → 58 µs) and takes a
//! tenth to a quarter off a Python or JavaScript one's (`cargo bench --bench plugins`). A
//! request past the pool's capacity waits a moment for a sandbox (`sandboxes`), then is
//! refused with [`CallError::Busy`]. A machine that cannot reserve the pool's address space
//! (about 4 GiB a memory) maps each sandbox afresh instead, under the same cap.
//!
//! Compilation is tiered where the runtime is made with [`Runtime::tiered`] (the server): a
//! big component that the compile cache does not hold yet (a JavaScript or Python adapter
//! just dropped into the plugin folder: 12–19 MB of interpreter) is compiled first by Winch,
//! wasmtime's baseline compiler, four to five times faster than Cranelift, and serves at
//! once; Cranelift compiles it again on a background thread, writes the compile cache, and
//! the optimised code takes over for the requests that start after it is ready. Both tiers
//! run under the same limits.
//!
//! The length is the sandbox's: engine configuration, limits, instantiation and the
//! checking of every result a guest returns are kept together so that no call escapes them;
//! the versioned bindings are in `contract/`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Strategy};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::cache::CompileCache;
use super::contract::{self, AdapterInstance, AdapterPre, ContractVersion};
use super::function_cache::FunctionCache;
use super::sandboxes::{Priority, Sandbox, Sandboxes};
use crate::adapter::{
    AdapterError, AdapterInfo, CallGrammar, GrammarRequest, ParseOptions, Parsed, Prompt,
    PromptRequest, StreamEvent, ToolCall,
};

/// How often the epoch advances: the granularity of the time budget.
const TICK: Duration = Duration::from_millis(5);
/// How much a plugin may print per request before the rest is dropped.
const OUTPUT_CAPACITY: usize = 64 * 1024;
/// Components from this size on take the quick tier first when tiering: below it Cranelift
/// takes well under a second (the built-in Rust adapters, 0.1–0.4 MB: 0.1–0.2 s).
const QUICK_TIER_MIN_BYTES: usize = 2 << 20;

/// The resources one request may use, and how many requests may hold a sandbox at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, per instance.
    pub memory_bytes: usize,
    /// Time for one call into the plugin (each `push` of a stream has its own).
    pub call_budget: Duration,
    /// Sandboxes alive at once (one per request in flight), across all plugins: the size of
    /// the instance pool.
    pub sandboxes: u32,
    /// How long a request waits for a sandbox when all are in use, before it is refused.
    pub sandbox_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            call_budget: Duration::from_secs(1),
            sandboxes: 256,
            sandbox_wait: Duration::from_secs(2),
        }
    }
}

/// Memory a sandbox dirtied that is reset in place for the next one rather than released.
const KEEP_RESIDENT: usize = 1 << 20;

/// What one sandbox may hold: a component links up to a dozen core modules (componentize-py's
/// link libpython, libc and the adapter's own), sharing one memory. A plugin past these fails
/// to load with wasmtime's reason, so that the pool holds `sandboxes` sandboxes exactly.
const CORE_INSTANCES_PER_SANDBOX: u32 = 16;
const MEMORIES_PER_SANDBOX: u32 = 2;
const TABLES_PER_SANDBOX: u32 = 16;

/// The instance pool for `limits.sandboxes` sandboxes (per engine: a tiered runtime has two,
/// its quick engine's used only while a plugin waits for its optimised code).
fn pool(limits: &Limits) -> wasmtime::PoolingAllocationConfig {
    let n = limits.sandboxes.max(1);
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_SANDBOX))
        .total_memories(n.saturating_mul(MEMORIES_PER_SANDBOX))
        .total_tables(n.saturating_mul(TABLES_PER_SANDBOX))
        .max_core_instances_per_component(CORE_INSTANCES_PER_SANDBOX)
        .max_memories_per_component(MEMORIES_PER_SANDBOX)
        .max_tables_per_component(TABLES_PER_SANDBOX)
        .max_memories_per_module(MEMORIES_PER_SANDBOX)
        .max_tables_per_module(TABLES_PER_SANDBOX)
        .table_elements(1 << 20)
        .max_core_instance_size(16 << 20)
        .max_component_instance_size(16 << 20)
        .max_memory_size(limits.memory_bytes)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        // A freed slot stays its plugin's; a new one takes the least recently used slot
        // before a never-used one, so the slots (and the memory they keep resident) are as
        // many as the most sandboxes ever alive at once, not the pool's size: a server that
        // swaps adapters for days does not grow.
        .max_unused_warm_slots(0)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// Built into the plugboard binary from `plugins/<name>`.
    Builtin(String),
    /// A `.wasm` file.
    File(std::path::PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "built-in:{name}"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A plugin failed to load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: not a valid wasm component: {reason}")]
    Compile { source_name: String, reason: String },
    #[error("{source_name}: {error}")]
    Contract {
        source_name: String,
        error: contract::ContractError,
    },
    #[error("{source_name}: cannot be linked or instantiated: {reason}")]
    Instantiate { source_name: String, reason: String },
    #[error("{source_name}: its info() failed: {reason}")]
    Info { source_name: String, reason: String },
    #[error("{source_name}: all {sandboxes} plugin sandboxes stayed in use; the load is put off")]
    Busy { source_name: String, sandboxes: u32 },
}

/// One call into a plugin failed. The plugin is named as `name version`.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("adapter {plugin}: {error}")]
    Adapter { plugin: String, error: AdapterError },
    #[error("adapter {plugin} exceeded its time budget of {budget_ms} ms in {call}")]
    Timeout {
        plugin: String,
        call: &'static str,
        budget_ms: u128,
    },
    #[error("adapter {plugin} ran out of memory (limit {limit_mib} MiB) in {call}")]
    OutOfMemory {
        plugin: String,
        call: &'static str,
        limit_mib: usize,
    },
    #[error("adapter {plugin} crashed in {call}: {reason}")]
    Trap {
        plugin: String,
        call: &'static str,
        reason: String,
    },
    #[error("adapter {plugin} returned a malformed result from {call}: {reason}")]
    Malformed {
        plugin: String,
        call: &'static str,
        reason: String,
    },
    #[error(
        "adapter {plugin}: all {sandboxes} plugin sandboxes are in use by other requests; try again shortly (--plugin-sandboxes)"
    )]
    Busy { plugin: String, sandboxes: u32 },
}

impl CallError {
    /// Whether the plugin itself misbehaved (as opposed to refusing the input, or the server
    /// being busy).
    pub fn is_fault(&self) -> bool {
        !matches!(self, CallError::Adapter { .. } | CallError::Busy { .. })
    }
}

/// Denies memory growth past the cap, and remembers that it did.
struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// What a store holds for one request.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    cap: MemoryCap,
    output: MemoryOutputPipe,
    logged: usize,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A wasm engine and the linker for the components it compiles.
struct Compiler {
    engine: Engine,
    linker: Linker<PluginState>,
}

impl Compiler {
    fn new(config: &Config) -> anyhow::Result<Compiler> {
        let engine = Engine::new(config)
            .map_err(|e| anyhow::anyhow!("cannot start the wasm engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        Ok(Compiler { engine, linker })
    }
}

/// The engines, the linkers and the settings every plugin shares.
pub struct Runtime {
    /// Cranelift: the code every plugin runs in the end.
    optimising: Compiler,
    /// Winch, for the first compile of a big component (tiered runtimes only).
    quick: Option<Compiler>,
    limits: Limits,
    cache: Option<CompileCache>,
    /// Whether guests' wasm instructions are counted ([`Runtime::counting_instructions`]).
    counting: bool,
    /// One background compile at a time: each one already uses every core.
    optimising_later: Mutex<()>,
    sandboxes: Arc<Sandboxes>,
    /// Cranelift's compiled functions, for the next version of the same interpreter.
    functions: Arc<FunctionCache>,
}

impl Runtime {
    /// `cache`: where compiled plugins are kept between runs (none: compile every time).
    /// Every plugin is compiled by Cranelift before it loads.
    pub fn new(limits: Limits, cache: Option<CompileCache>) -> anyhow::Result<Arc<Runtime>> {
        Runtime::build(limits, cache, false, false)
    }

    /// A runtime whose big components serve from quick code first (see the module's doc):
    /// for a server, where a new adapter should answer within a second or two of its file
    /// landing; a command that loads a plugin once and exits is better off with
    /// [`Runtime::new`].
    pub fn tiered(limits: Limits, cache: Option<CompileCache>) -> anyhow::Result<Arc<Runtime>> {
        Runtime::build(limits, cache, false, true)
    }

    /// A runtime that counts the wasm instructions its guests run (wasmtime's fuel: about one
    /// unit per wasm operator), for benchmarks: unlike time, the count of a request is the
    /// same on every run and every machine, so two versions of an adapter compare reliably on
    /// a noisy one. Counting costs speed, so serving never does it; compiled code differs,
    /// so it has no compile cache. See [`Plugin::instructions`].
    pub fn counting_instructions(limits: Limits) -> anyhow::Result<Arc<Runtime>> {
        Runtime::build(limits, None, true, false)
    }

    fn build(
        limits: Limits,
        cache: Option<CompileCache>,
        counting: bool,
        tiered: bool,
    ) -> anyhow::Result<Arc<Runtime>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(counting);
        // `PLUGBOARD_WASM_PROFILE=perfmap`: name compiled plugin functions for `perf`
        // (/tmp/perf-PID.map), for adapter authors profiling their parsers.
        if std::env::var("PLUGBOARD_WASM_PROFILE").is_ok_and(|v| v == "perfmap") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // The engine without a pool is the fallback only where the pool itself is what fails
        // (the address space cannot be reserved); any other error stands.
        let pooled = |config: &Config| -> anyhow::Result<Compiler> {
            let mut with_pool = config.clone();
            with_pool
                .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool(&limits)));
            Compiler::new(&with_pool).or_else(|pool_error| {
                let compiler = Compiler::new(config)?;
                tracing::warn!(
                    "no instance pool ({pool_error:#}): each plugin sandbox maps its memory afresh"
                );
                Ok(compiler)
            })
        };
        let functions = Arc::new(FunctionCache::default());
        let mut optimising_config = config.clone();
        optimising_config
            .enable_incremental_compilation(functions.clone())
            .map_err(|e| anyhow::anyhow!("cannot keep compiled functions: {e}"))?;
        let optimising = pooled(&optimising_config)?;
        // Winch compiles for x86-64 and AArch64 only: elsewhere every plugin is compiled by
        // Cranelift before it serves.
        let quick = tiered
            .then(|| {
                config.strategy(Strategy::Winch);
                pooled(&config)
                    .inspect_err(|e| tracing::info!("no quick compiler ({e:#}): every plugin is compiled optimised before it serves"))
                    .ok()
            })
            .flatten();
        let engines: Vec<_> = std::iter::once(&optimising)
            .chain(&quick)
            .map(|c| c.engine.weak())
            .collect();
        std::thread::Builder::new()
            .name("plugboard-epoch".into())
            .spawn(move || {
                loop {
                    let mut alive = false;
                    for engine in engines.iter().filter_map(|e| e.upgrade()) {
                        engine.increment_epoch();
                        alive = true;
                    }
                    if !alive {
                        return;
                    }
                    std::thread::sleep(TICK);
                }
            })?;
        Ok(Arc::new(Runtime {
            optimising,
            quick,
            limits,
            cache,
            counting,
            optimising_later: Mutex::new(()),
            sandboxes: Sandboxes::new(limits.sandboxes, limits.sandbox_wait),
            functions,
        }))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles (or loads from the cache), checks the contract version, links, and asks the
    /// plugin who it is.
    pub fn load(
        self: &Arc<Self>,
        wasm: &[u8],
        source: PluginSource,
    ) -> Result<Arc<Plugin>, LoadError> {
        let source_name = source.to_string();
        let sha256 = super::cache::sha256_hex(wasm);
        let quick = self.quick.as_ref().filter(|_| {
            wasm.len() >= QUICK_TIER_MIN_BYTES
                && !self
                    .cache
                    .as_ref()
                    .is_some_and(|c| c.contains(&self.optimising.engine, &sha256))
        });
        // Winch may refuse what Cranelift compiles (on x86 it needs AVX for wasm SIMD):
        // then the component takes the optimising tier at once.
        let quick = quick.and_then(|compiler| match Component::new(&compiler.engine, wasm) {
            Ok(component) => Some((compiler, component)),
            Err(e) => {
                tracing::info!(source = %source_name, "quick compile refused, compiling optimised: {e:#}");
                None
            }
        });
        let optimised = quick.is_none();
        let (compiler, component) = match quick {
            Some(quick) => quick,
            None => (
                &self.optimising,
                self.compile_optimised(wasm, &sha256)
                    .map_err(|e| LoadError::Compile {
                        source_name: source_name.clone(),
                        reason: format!("{e:#}"),
                    })?,
            ),
        };
        let (version, contract) =
            contract::detect(&component, &compiler.engine).map_err(|error| {
                LoadError::Contract {
                    source_name: source_name.clone(),
                    error,
                }
            })?;
        let instantiate_error = |e: wasmtime::Error| LoadError::Instantiate {
            source_name: source_name.clone(),
            reason: format!("{e:#}"),
        };
        let compiled =
            Compiled::link(compiler, &component, version, optimised).map_err(instantiate_error)?;
        // Declared before the store: given back after it.
        let _sandbox = self
            .sandboxes
            .take(Priority::Check)
            .ok_or_else(|| LoadError::Busy {
                source_name: source_name.clone(),
                sandboxes: self.limits.sandboxes,
            })?;
        let mut store = self.new_store(&compiled.engine);
        let instance = compiled
            .pre
            .instantiate(&mut store)
            .map_err(instantiate_error)?;
        let info = instance.info(&mut store).map_err(|e| LoadError::Info {
            source_name: source_name.clone(),
            reason: format!("{e:#}"),
        })?;
        if info.name.trim().is_empty() {
            return Err(LoadError::Info {
                source_name,
                reason: "the adapter's name is empty".into(),
            });
        }
        let plugin = Arc::new(Plugin {
            label: format!("{} {}", info.name, info.version),
            info,
            source,
            sha256,
            version,
            contract,
            compiled: ArcSwap::from_pointee(compiled),
            runtime: Arc::clone(self),
            loaded_at: SystemTime::now(),
            faults: AtomicU64::new(0),
            instructions: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        });
        plugin.log_output(&mut store);
        if !optimised {
            self.optimise_later(&plugin, wasm.to_vec());
        }
        Ok(plugin)
    }

    /// Holds back background compiles while the guard lives: for tests and benchmarks that
    /// must see plugins run their quick code.
    pub fn pause_optimising(&self) -> std::sync::MutexGuard<'_, ()> {
        self.optimising_later
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn compile_optimised(&self, wasm: &[u8], sha256: &str) -> wasmtime::Result<Component> {
        match &self.cache {
            Some(cache) => cache.load_or_compile(&self.optimising.engine, wasm, sha256),
            None => Component::new(&self.optimising.engine, wasm),
        }
    }

    /// Compiled functions in the function cache, and their bytes.
    pub fn function_cache_size(&self) -> (usize, usize) {
        self.functions.size()
    }

    /// Compiles a plugin that serves quick code with Cranelift on a thread of its own, and
    /// hands the result to the plugin. A plugin replaced (and dropped) meanwhile is skipped.
    fn optimise_later(self: &Arc<Self>, plugin: &Arc<Plugin>, wasm: Vec<u8>) {
        let runtime = Arc::clone(self);
        let weak: Weak<Plugin> = Arc::downgrade(plugin);
        let spawned = std::thread::Builder::new()
            .name("plugboard-optimise".into())
            .spawn(move || {
                let _one_at_a_time = runtime
                    .optimising_later
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                // A version replaced meanwhile (only its last streams hold it) is not worth
                // the cores: the next one may be waiting for this lock.
                let Some((label, sha256, version)) = weak
                    .upgrade()
                    .filter(|p| !p.retired.load(Ordering::Relaxed))
                    .map(|p| (p.label.clone(), p.sha256.clone(), p.version))
                else {
                    return;
                };
                let start = Instant::now();
                let compiled = runtime
                    .compile_optimised(&wasm, &sha256)
                    .and_then(|c| Compiled::link(&runtime.optimising, &c, version, true));
                match (compiled, weak.upgrade()) {
                    (Ok(compiled), Some(plugin)) => {
                        plugin.compiled.store(Arc::new(compiled));
                        let seconds = start.elapsed().as_secs_f64();
                        tracing::info!(plugin = %label, "optimised code serves (compiled in {seconds:.1} s)");
                        crate::events::publish(crate::events::Event::AdapterOptimised {
                            adapter: plugin.info.name.clone(),
                            version: plugin.info.version.clone(),
                            sha256,
                            seconds,
                        });
                    }
                    (_, None) => {}
                    (Err(e), Some(_)) => {
                        tracing::warn!(plugin = %label, "cannot compile the optimised code, the quick code goes on serving: {e:#}")
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(plugin = %plugin.label, "cannot start the optimising compile: {e}");
        }
    }

    fn new_store(&self, engine: &Engine) -> Store<PluginState> {
        let output = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            cap: MemoryCap {
                limit: self.limits.memory_bytes,
                hit: false,
            },
            output,
            logged: 0,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.cap);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.budget_ticks());
        if self.counting {
            // Counted, not limited: the time budget still bounds a call.
            store.set_fuel(u64::MAX).expect("fuel is on");
        }
        store
    }

    /// The instructions a store has run, when counting.
    fn instructions_run(&self, store: &Store<PluginState>) -> Option<u64> {
        self.counting
            .then(|| store.get_fuel().ok())
            .flatten()
            .map(|left| u64::MAX - left)
    }

    fn budget_ticks(&self) -> u64 {
        (self.limits.call_budget.as_millis() / TICK.as_millis()).max(1) as u64
    }
}

/// A plugin's code, compiled by one engine and linked.
struct Compiled {
    engine: Engine,
    pre: AdapterPre,
    /// By Cranelift (else by Winch, until Cranelift's code replaces it).
    optimised: bool,
}

impl Compiled {
    fn link(
        compiler: &Compiler,
        component: &Component,
        version: ContractVersion,
        optimised: bool,
    ) -> wasmtime::Result<Compiled> {
        let pre = compiler.linker.instantiate_pre(component)?;
        Ok(Compiled {
            engine: compiler.engine.clone(),
            pre: AdapterPre::new(version, pre)?,
            optimised,
        })
    }
}

/// One version of one adapter, compiled and linked. Cheap to share; each call gets its own
/// store and instance.
pub struct Plugin {
    label: String,
    info: AdapterInfo,
    source: PluginSource,
    sha256: String,
    version: ContractVersion,
    contract: String,
    /// Swapped once when a quick-tier plugin's optimised code is ready; a session keeps the
    /// code it started with.
    compiled: ArcSwap<Compiled>,
    runtime: Arc<Runtime>,
    loaded_at: SystemTime,
    faults: AtomicU64,
    /// Instructions its requests have run, on a counting runtime.
    instructions: AtomicU64,
    /// No longer serves new requests (replaced or removed): not worth optimising.
    retired: AtomicBool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.label)
            .field("source", &self.source)
            .finish()
    }
}

impl Plugin {
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// `name version`, as errors and logs name the plugin.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn source(&self) -> &PluginSource {
        &self.source
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The contract version it was built against, e.g. `0.1.0`.
    pub fn contract(&self) -> &str {
        &self.contract
    }

    pub fn contract_version(&self) -> ContractVersion {
        self.version
    }

    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// How many calls this version failed by trapping, timing out, running out of memory or
    /// returning garbage.
    /// The wasm instructions this plugin's requests have run (instantiation and every call,
    /// each request's sandbox counted when it is dropped), on a runtime made by
    /// [`Runtime::counting_instructions`]; `None` on any other.
    pub fn instructions(&self) -> Option<u64> {
        self.runtime
            .counting
            .then(|| self.instructions.load(Ordering::Relaxed))
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Logs what the plugin printed since the last time, one line per log record.
    fn log_output(&self, store: &mut Store<PluginState>) {
        let state = store.data_mut();
        let contents = state.output.contents();
        if contents.len() <= state.logged {
            return;
        }
        let text = String::from_utf8_lossy(&contents[state.logged..]).into_owned();
        state.logged = contents.len();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "plugboard::plugin", plugin = %self.label, "{line}");
        }
    }

    /// Turns a wasm-level failure into a [`CallError`] that names the reason.
    fn fault(
        &self,
        store: &Store<PluginState>,
        call: &'static str,
        error: wasmtime::Error,
    ) -> CallError {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let plugin = self.label.clone();
        let limits = self.runtime.limits;
        let error = if store.data().cap.hit {
            CallError::OutOfMemory {
                plugin,
                call,
                limit_mib: limits.memory_bytes >> 20,
            }
        } else if matches!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) {
            CallError::Timeout {
                plugin,
                call,
                budget_ms: limits.call_budget.as_millis(),
            }
        } else {
            CallError::Trap {
                plugin,
                call,
                reason: trap_reason(&error),
            }
        };
        tracing::warn!(plugin = %self.label, "{error}");
        error
    }

    fn malformed(&self, call: &'static str, reason: String) -> CallError {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let error = CallError::Malformed {
            plugin: self.label.clone(),
            call,
            reason,
        };
        tracing::warn!(plugin = %self.label, "{error}");
        error
    }

    fn refused(&self, error: AdapterError) -> CallError {
        CallError::Adapter {
            plugin: self.label.clone(),
            error,
        }
    }

    /// Marks the plugin as no longer serving new requests (its host replaced or removed it):
    /// its optimising compile, if still to come, is skipped.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Whether the plugin runs Cranelift's code (always, but for the first seconds of a big
    /// component on a tiered runtime: see the module's doc).
    pub fn optimised(&self) -> bool {
        self.compiled.load().optimised
    }

    /// A fresh store and instance for one request's calls.
    pub fn session(self: &Arc<Self>) -> Result<Session, CallError> {
        self.session_for(Priority::Request)
    }

    /// A fresh store and instance, in a sandbox taken with `priority` (a plugin's load checks
    /// go before requests).
    pub fn session_for(self: &Arc<Self>, priority: Priority) -> Result<Session, CallError> {
        let busy = || CallError::Busy {
            plugin: self.label.clone(),
            sandboxes: self.runtime.limits.sandboxes,
        };
        let sandbox = self.runtime.sandboxes.take(priority).ok_or_else(busy)?;
        let compiled = self.compiled.load_full();
        let mut store = self.runtime.new_store(&compiled.engine);
        let instance = compiled.pre.instantiate(&mut store);
        self.log_output(&mut store);
        let instance = instance.map_err(|e| {
            // The gate keeps within the pool; this would be another process's doing.
            if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                busy()
            } else {
                self.fault(&store, "instantiate", e)
            }
        })?;
        Ok(Session {
            plugin: Arc::clone(self),
            store,
            instance,
            broken: false,
            _sandbox: sandbox,
        })
    }

    /// Renders a conversation into the model's prompt (in a session of its own).
    pub fn format_prompt(self: &Arc<Self>, request: &PromptRequest) -> Result<Prompt, CallError> {
        self.session()?.format_prompt(request)
    }

    /// Reads a whole output (in a session of its own).
    pub fn parse(
        self: &Arc<Self>,
        text: &str,
        options: &ParseOptions,
    ) -> Result<Parsed, CallError> {
        self.session()?.parse(text, options)
    }

    /// Reads only the complete calls of a whole output (in a session of its own).
    pub fn extract_tool_calls(
        self: &Arc<Self>,
        text: &str,
        options: &ParseOptions,
    ) -> Result<Vec<ToolCall>, CallError> {
        self.session()?.extract_tool_calls(text, options)
    }

    /// Starts reading one output as it is generated (in a session of its own).
    pub fn stream(self: &Arc<Self>, options: &ParseOptions) -> Result<PluginStream, CallError> {
        self.session()?.into_stream(options)
    }
}

/// One request's sandbox: a fresh store and instance of one plugin version, used for the
/// request's calls (typically render, then stream) and thrown away with the request. A call
/// that faults poisons it: a trapped instance never runs again.
pub struct Session {
    plugin: Arc<Plugin>,
    store: Store<PluginState>,
    instance: AdapterInstance,
    broken: bool,
    /// Last: given back after the store.
    _sandbox: Sandbox,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(run) = self.plugin.runtime.instructions_run(&self.store) {
            self.plugin.instructions.fetch_add(run, Ordering::Relaxed);
        }
    }
}

impl Session {
    /// The plugin version this session runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Whether a call of this session failed in a way that leaves the instance unusable (a
    /// trap, a timeout, garbage): its later calls fail, a fresh session is needed.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Runs one call with a fresh time budget.
    fn call<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&AdapterInstance, &mut Store<PluginState>) -> contract::Outcome<T>,
    ) -> Result<T, CallError> {
        if self.broken {
            return Err(CallError::Trap {
                plugin: self.plugin.label.clone(),
                call: name,
                reason: "an earlier call of this request failed".into(),
            });
        }
        self.store
            .set_epoch_deadline(self.plugin.runtime.budget_ticks());
        let outcome = f(&self.instance, &mut self.store);
        self.plugin.log_output(&mut self.store);
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(refusal)) => Err(self.plugin.refused(refusal)),
            Err(error) => {
                self.broken = true;
                Err(self.plugin.fault(&self.store, name, error))
            }
        }
    }

    /// Checks calls a plugin returned; garbage poisons the session.
    fn checked_calls<'c>(
        &mut self,
        name: &'static str,
        calls: impl Iterator<Item = &'c ToolCall>,
    ) -> Result<(), CallError> {
        for (i, call) in calls.enumerate() {
            if let Err(reason) = check_call(&call.name, &call.arguments) {
                self.broken = true;
                return Err(self
                    .plugin
                    .malformed(name, format!("tool call {i}: {reason}")));
            }
        }
        Ok(())
    }

    /// Renders a conversation into the model's prompt.
    pub fn format_prompt(&mut self, request: &PromptRequest) -> Result<Prompt, CallError> {
        self.call("format-prompt", |i, s| i.format_prompt(s, request))
    }

    /// The adapter's call grammar for these tools (`None` from adapters of contract 0.1 and
    /// from those that have none).
    pub fn call_grammar(
        &mut self,
        request: &GrammarRequest,
    ) -> Result<Option<CallGrammar>, CallError> {
        self.call("call-grammar", |i, s| i.call_grammar(s, request))
    }

    /// Reads a whole output.
    pub fn parse(&mut self, text: &str, options: &ParseOptions) -> Result<Parsed, CallError> {
        let parsed = self.call("parse-response", |i, s| i.parse_response(s, text, options))?;
        self.checked_calls("parse-response", parsed.tool_calls.iter())?;
        Ok(parsed)
    }

    /// Reads only the complete calls of a whole output.
    pub fn extract_tool_calls(
        &mut self,
        text: &str,
        options: &ParseOptions,
    ) -> Result<Vec<ToolCall>, CallError> {
        let calls = self.call("extract-tool-calls", |i, s| {
            i.extract_tool_calls(s, text, options)
        })?;
        self.checked_calls("extract-tool-calls", calls.iter())?;
        Ok(calls)
    }

    /// Starts reading one output as it is generated; the stream keeps this session (and so
    /// this plugin version) until it is dropped.
    pub fn into_stream(mut self, options: &ParseOptions) -> Result<PluginStream, CallError> {
        let parser = self.call("stream-parser", |i, s| {
            i.new_stream_parser(s, options).map(Ok)
        })?;
        Ok(PluginStream {
            session: self,
            parser,
            checker: StreamChecker::default(),
        })
    }
}

/// The message of a wasm failure, with the trap code when there is one.
fn trap_reason(error: &wasmtime::Error) -> String {
    let root = format!("{error:#}");
    let first = root.lines().next().unwrap_or("unknown failure").to_string();
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) if !first.contains(&trap.to_string()) => format!("{trap}: {first}"),
        _ => first,
    }
}

/// A call must have a name and arguments that are a JSON object. Read into a value, as the
/// API layers read them later: a check of the syntax alone lets through what they reject
/// (`1e400`, a lone surrogate escape).
fn check_call(name: &str, arguments: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the call has an empty name".into());
    }
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(other) => Err(format!(
            "arguments are a JSON {} not an object",
            json_kind(&other)
        )),
        Err(e) => Err(format!("arguments are not JSON ({e}): {arguments:?}")),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Checks that a plugin's stream events keep the contract's invariants.
#[derive(Default)]
struct StreamChecker {
    /// Per call index: arguments so far; `None` once ended or failed.
    open: std::collections::BTreeMap<u32, Option<String>>,
    next_index: u32,
}

impl StreamChecker {
    fn check(&mut self, events: &[StreamEvent]) -> Result<(), String> {
        for event in events {
            match event {
                StreamEvent::Content { .. } | StreamEvent::Reasoning { .. } => {}
                StreamEvent::ToolCallBegin { index, name, .. } => {
                    if *index < self.next_index {
                        return Err(format!("tool-call-begin reuses index {index}"));
                    }
                    if name.trim().is_empty() {
                        return Err(format!("tool-call-begin {index} has an empty name"));
                    }
                    self.next_index = index + 1;
                    self.open.insert(*index, Some(String::new()));
                }
                StreamEvent::ToolCallArguments { index, delta } => match self.open.get_mut(index) {
                    Some(Some(args)) => args.push_str(delta),
                    _ => return Err(format!("arguments for call {index}, which is not open")),
                },
                StreamEvent::ToolCallEnd { index } => match self.open.get_mut(index) {
                    Some(slot @ Some(_)) => {
                        let args = slot.take().unwrap_or_default();
                        check_call("call", &args).map_err(|r| format!("call {index}: {r}"))?;
                    }
                    _ => return Err(format!("tool-call-end for call {index}, which is not open")),
                },
                StreamEvent::Problem(problem) => {
                    if let Some(index) = problem.index {
                        self.next_index = self.next_index.max(index + 1);
                        if problem.kind != crate::adapter::ProblemKind::UnknownTool
                            && let Some(slot) = self.open.get_mut(&index)
                        {
                            *slot = None;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// One output being read by a plugin's stream parser.
pub struct PluginStream {
    session: Session,
    parser: ResourceAny,
    checker: StreamChecker,
}

impl PluginStream {
    /// The plugin version this stream runs on.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.session.plugin
    }

    fn run(
        &mut self,
        name: &'static str,
        f: impl FnOnce(
            &AdapterInstance,
            &mut Store<PluginState>,
            ResourceAny,
        ) -> contract::Outcome<Vec<StreamEvent>>,
    ) -> Result<Vec<StreamEvent>, CallError> {
        let parser = self.parser;
        let result = self.session.call(name, |i, s| f(i, s, parser));
        match result {
            Ok(events) => match self.checker.check(&events) {
                Ok(()) => Ok(events),
                Err(reason) => {
                    self.session.broken = true;
                    Err(self.session.plugin.malformed(name, reason))
                }
            },
            Err(error) => {
                // A refusal ends the stream too: the parser's state is unknown after it.
                self.session.broken = true;
                Err(error)
            }
        }
    }

    /// The next piece of output.
    pub fn push(&mut self, delta: &str) -> Result<Vec<StreamEvent>, CallError> {
        self.run("push", |i, s, p| i.stream_push(s, p, delta))
    }

    /// The output ended.
    pub fn finish(mut self) -> Result<Vec<StreamEvent>, CallError> {
        self.run("finish", |i, s, p| i.stream_finish(s, p))
    }
}

#[cfg(test)]
mod tests {
    use super::check_call;

    #[test]
    fn call_arguments_must_be_an_object_the_api_can_read() {
        assert!(check_call("f", r#"{"city": "Paris", "n": [1, 2.5e3]}"#).is_ok());
        for bad in [
            r#"{"n": 1e400}"#,
            r#"{"s": "\ud800"}"#,
            r#"{"s": "\udc00x"}"#,
            r#"[1]"#,
            r#""{}""#,
            r#"{"a": 1,}"#,
        ] {
            assert!(check_call("f", bad).is_err(), "{bad}");
        }
        assert!(check_call(" ", "{}").is_err());
    }
}
