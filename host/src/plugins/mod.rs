//! The WASM plugin runtime: one wasmtime [`Engine`] with the pooling allocator and epoch
//! interruption, plugins compiled once (and cached on disk by content hash), linked into an
//! `InstancePre`, and a fresh, limited [`Store`] per use.
//!
//! Sandbox: guests get WASI with nothing behind it (no preopened dirs, no environment, no
//! sockets; stderr goes to a small in-memory buffer that is logged on a fault), a linear
//! memory cap per store, a CPU deadline per call, and caps on what crosses the boundary. A
//! trap fails that use only and is reported as a plugin fault naming the plugin.
//!
//! Instances come from a fixed pool (`llmgate.plugin_limits.max_instances`). When every
//! one is in use by requests in flight, a request that needs one is refused with
//! [`Error::PluginCapacity`](crate::error::Error::PluginCapacity) (503 with `Retry-After`):
//! the gateway is at capacity, which says nothing about the plugin or the deployment. Each
//! refusal is counted ([`Runtime::pool_exhausted_total`], in `GET /plugins`) and logged.
//!
//! Calls are async (wasmtime fibers): at every epoch tick a running guest yields to the
//! executor, so a plugin that spins never blocks a worker thread for more than one tick, and
//! it is interrupted once its call has run longer than the deadline.

pub mod policy;
pub mod provider;
mod rescan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::PluginLimits;
pub use crate::wit::types::{ErrorClass, GatewayError, LogLevel, SseEvent, Usage};
pub use policy::PolicyPlugin;
pub use provider::ProviderPlugin;

/// Epoch tick length: the granularity of plugin call deadlines.
const TICK: Duration = Duration::from_millis(5);
/// Bytes of guest stderr kept per store (shown with faults).
const STDERR_CAP: usize = 4096;
/// Log lines a single store may write through `host.log`.
const LOG_LINES_PER_STORE: u32 = 32;
/// Longest log line accepted from a plugin.
const LOG_LINE_CAP: usize = 2048;

/// The store's resource limiter: wasmtime's [`StoreLimits`], plus a count of how far the
/// guest has grown its memories since instantiation (a pooled instance is discarded once
/// that passes a threshold).
struct Limits {
    inner: StoreLimits,
    /// Bytes of linear memory growth granted since the store was created.
    grown: usize,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allow = self.inner.memory_growing(current, desired, maximum)?;
        if allow {
            self.grown = self.grown.saturating_add(desired.saturating_sub(current));
        }
        Ok(allow)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Per-store state: WASI plumbing and limits.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    stderr: MemoryOutputPipe,
    plugin: Arc<str>,
    /// The plugin's call and fault counters.
    counters: Arc<PluginCounters>,
    log_budget: u32,
    /// When the current call started, for the wall-clock backstop.
    call_started: std::time::Instant,
    call_timeout: Duration,
    /// Epoch ticks the current call has been seen running (its CPU time, in ticks).
    ticks: u32,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::wit::types::Host for State {}

impl crate::wit::provider_world::llmgate::plugin::host::Host for State {
    async fn log(&mut self, level: LogLevel, message: String) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let mut message = message;
        if message.len() > LOG_LINE_CAP {
            let mut cut = LOG_LINE_CAP;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// What one plugin's calls have come to, since start (the `/metrics` plugin counters).
#[derive(Debug, Default)]
pub struct PluginCounters {
    /// Calls into the plugin (each export call: plan, parse, stream event, route).
    pub calls: AtomicU64,
    /// Calls that trapped (a wasm trap other than the deadline, or memory exhausted).
    pub traps: AtomicU64,
    /// Calls interrupted at their CPU deadline.
    pub timeouts: AtomicU64,
}

/// A plugin misbehaved: trapped, timed out, exhausted memory, or returned invalid data.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `name@version`.
    pub plugin: Arc<str>,
    /// What happened, with the guest's stderr when it wrote any.
    pub message: String,
}

impl From<Fault> for crate::error::Error {
    fn from(f: Fault) -> Self {
        Self::Plugin {
            plugin: f.plugin.to_string(),
            message: f.message,
        }
    }
}

/// Why no instance could be made.
pub(crate) enum NoInstance {
    /// Every slot of the instance pool is in use (`max_instances`).
    PoolFull,
    /// The plugin faulted while being instantiated.
    Fault(Fault),
}

/// The engine, linker and limits shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    limits: PluginLimits,
    /// Requests refused because the instance pool was full.
    pool_exhausted: AtomicU64,
    /// Call and fault counters by plugin (`name@version`, or its file while it loads).
    counters: std::sync::Mutex<HashMap<Arc<str>, Arc<PluginCounters>>>,
    stop_ticker: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Runtime {
    /// Build the engine (pooling allocator sized from `limits`) and start the epoch ticker.
    pub fn new(limits: &PluginLimits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
        cfg.max_wasm_stack(1 << 20);
        let n = limits.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .max_memory_size(limits.memory_bytes)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .total_stacks(n)
            // Reuse a slot's touched pages instead of returning them to the kernel: with
            // PAGEMAP_SCAN (Linux 6.7+) only dirty pages are reset.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(2 << 20)
            .async_stack_keep_resident(256 << 10)
            .table_keep_resident(16 << 10);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = cache_dir {
            let mut cc = wasmtime::CacheConfig::new();
            cc.with_directory(dir);
            match wasmtime::Cache::new(cc) {
                Ok(cache) => {
                    cfg.cache(Some(cache));
                }
                Err(e) => tracing::warn!(dir = %dir.display(), "plugin cache disabled: {e:#}"),
            }
        }
        let engine = Engine::new(&cfg)
            .map_err(|e| anyhow::Error::from(e).context("creating the wasmtime engine"))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        crate::wit::provider_world::llmgate::plugin::host::add_to_linker::<
            State,
            wasmtime::component::HasSelf<State>,
        >(&mut linker, |s| s)?;
        crate::wit::types::add_to_linker::<State, wasmtime::component::HasSelf<State>>(
            &mut linker,
            |s| s,
        )?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("llmgate-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the epoch ticker")?
        };
        Ok(Self {
            engine,
            linker,
            limits: limits.clone(),
            pool_exhausted: AtomicU64::new(0),
            counters: std::sync::Mutex::default(),
            stop_ticker,
            ticker: Some(ticker),
        })
    }

    /// A fresh store for one use of `plugin`, with the memory cap and an armed deadline.
    fn store(&self, plugin: &Arc<str>) -> Store<State> {
        let stderr = MemoryOutputPipe::new(STDERR_CAP);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .table_elements(1 << 16)
            .instances(64)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            State {
                wasi,
                table: ResourceTable::new(),
                limits: Limits {
                    inner: limits,
                    grown: 0,
                },
                stderr,
                plugin: plugin.clone(),
                counters: self.counters_of(plugin),
                log_budget: LOG_LINES_PER_STORE,
                call_started: std::time::Instant::now(),
                call_timeout: self.limits.call_timeout,
                ticks: 0,
            },
        );
        store.limiter(|s| &mut s.limits);
        // Every tick the guest is seen running: yield to the executor, or interrupt a call
        // that has run for its deadline. Ticks count running time, not time spent waiting
        // to be scheduled, so a loaded machine does not fail well-behaved calls; a
        // wall-clock backstop of 20 deadlines still ends a call however it is scheduled.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            s.ticks = s.ticks.saturating_add(1);
            let budget = (s.call_timeout.as_micros() / TICK.as_micros()).max(1);
            if u128::from(s.ticks) > budget || s.call_started.elapsed() > s.call_timeout * 20 {
                Ok(wasmtime::UpdateDeadline::Interrupt)
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// The counters of `plugin`, made on its first store.
    fn counters_of(&self, plugin: &Arc<str>) -> Arc<PluginCounters> {
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(plugin.clone()).or_default().clone()
    }

    /// Every plugin's counters, by `name@version` (or the file of one that never loaded).
    pub fn plugin_counters(&self) -> Vec<(Arc<str>, Arc<PluginCounters>)> {
        let all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Start the deadline clock for a call (and count it).
    fn arm(&self, store: &mut Store<State>) {
        let s = store.data_mut();
        s.counters.calls.fetch_add(1, Ordering::Relaxed);
        s.call_started = std::time::Instant::now();
        s.ticks = 0;
        store.set_epoch_deadline(1);
    }

    /// How many fresh instances of one provider plugin are made ahead of need: two (one
    /// attempt takes one while the next is made), none when the instance budget is small.
    fn ready_cap(&self) -> usize {
        if self.limits.max_instances < 64 { 0 } else { 2 }
    }

    /// How many idle instances of one routing policy may be kept for reuse: a few (calls
    /// are short, so concurrent use is bounded by the worker threads), and none when the
    /// instance budget is so small that idle instances could starve real requests.
    fn policy_pool_cap(&self) -> usize {
        (self.limits.max_instances / 64).min(4) as usize
    }

    /// Turn a wasmtime error from a call into a fault naming the plugin.
    fn fault(&self, store: &Store<State>, err: &wasmtime::Error) -> Fault {
        let oom = || {
            format!(
                "ran out of memory (cap {} MiB)",
                self.limits.memory_bytes >> 20
            )
        };
        let root = err.root_cause().to_string();
        let counters = &store.data().counters;
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => &counters.timeouts,
            _ => &counters.traps,
        }
        .fetch_add(1, Ordering::Relaxed);
        let mut message = match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => {
                format!(
                    "exceeded its CPU deadline of {:?}",
                    self.limits.call_timeout
                )
            }
            Some(wasmtime::Trap::MemoryOutOfBounds) => "memory access out of bounds".to_string(),
            Some(trap) => format!("trapped: {trap}"),
            None if root.contains("growing memory") || root.contains("memory limit") => oom(),
            // Not a trap: wasmtime's own message, without the wasm backtrace frames.
            None => root,
        };
        let stderr = store.data().stderr.contents();
        if !stderr.is_empty() {
            let text = String::from_utf8_lossy(&stderr);
            if text.contains("memory allocation") {
                message = format!(
                    "ran out of memory (cap {} MiB)",
                    self.limits.memory_bytes >> 20
                );
            }
            message.push_str("; plugin stderr: ");
            message.push_str(text.trim());
        }
        Fault {
            plugin: store.data().plugin.clone(),
            message,
        }
    }

    /// Why making an instance (or starting a call, which takes a fiber stack from the same
    /// pool) failed: the pool is full, or the plugin faulted.
    fn no_instance(&self, store: &Store<State>, err: &wasmtime::Error) -> NoInstance {
        if err
            .chain()
            .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
        {
            NoInstance::PoolFull
        } else {
            NoInstance::Fault(self.fault(store, err))
        }
    }

    /// Refuse a request that needs an instance of `plugin` when there is none: count it,
    /// log it (once, here), and answer 503 with `Retry-After`.
    fn refuse(&self, plugin: &str, why: NoInstance) -> crate::error::Error {
        match why {
            NoInstance::Fault(f) => f.into(),
            NoInstance::PoolFull => {
                let total = self.pool_exhausted.fetch_add(1, Ordering::Relaxed) + 1;
                let max = self.limits.max_instances;
                tracing::warn!(
                    plugin,
                    max_instances = max,
                    exhausted_total = total,
                    "plugin instance pool exhausted: all {max} instances are in use; answering 503 with Retry-After (raise llmgate.plugin_limits.max_instances to serve more requests at once)"
                );
                crate::error::Error::PluginCapacity(format!(
                    "The gateway is at capacity: all {max} plugin instances (llmgate.plugin_limits.max_instances) are in use by requests in flight. Retry shortly."
                ))
            }
        }
    }

    /// Requests refused since start because every plugin instance was in use.
    pub fn pool_exhausted_total(&self) -> u64 {
        self.pool_exhausted.load(Ordering::Relaxed)
    }

    /// The size of the instance pool (`llmgate.plugin_limits.max_instances`).
    pub fn max_instances(&self) -> u32 {
        self.limits.max_instances
    }

    /// Compile a component from bytes (uses the disk cache when configured).
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        Ok(Component::new(&self.engine, bytes)?)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Origin {
    /// The `.wasm` file.
    pub file: PathBuf,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// When it was loaded (unix seconds).
    pub loaded_at: u64,
}

/// What `GET /plugins` shows for one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// Plugin name (file stem when it failed to load).
    pub name: String,
    /// Plugin version.
    pub version: Option<String>,
    /// `provider` or `policy`.
    pub kind: Option<&'static str>,
    /// Provider prefixes served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Source file, hash, load time.
    #[serde(flatten)]
    pub origin: Origin,
    /// The last load error for this file, if any.
    pub last_error: Option<String>,
}

/// Every loaded plugin, looked up per request. Immutable: a reload builds a new one.
#[derive(Default)]
pub struct Registry {
    providers: HashMap<String, Arc<ProviderPlugin>>,
    policies: HashMap<String, Arc<PolicyPlugin>>,
    /// Status rows for `GET /plugins`.
    pub status: Vec<PluginStatus>,
}

impl Registry {
    /// The provider plugin serving `prefix`.
    pub fn provider(&self, prefix: &str) -> Option<&Arc<ProviderPlugin>> {
        self.providers.get(prefix)
    }

    /// The policy plugin named `name`.
    pub fn policy(&self, name: &str) -> Option<&Arc<PolicyPlugin>> {
        self.policies.get(name)
    }

    /// Served provider prefixes, sorted.
    pub fn prefixes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.providers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Loaded policy names, sorted.
    pub fn policy_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.policies.keys().cloned().collect();
        v.sort();
        v
    }
}

/// A plugin file, loaded and checked.
pub enum Loaded {
    /// A provider adapter.
    Provider(Arc<ProviderPlugin>),
    /// A routing policy.
    Policy(Arc<PolicyPlugin>),
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Runtime {
    /// Load one `.wasm` file: hash, compile, link, instantiate once and self-check.
    pub async fn load_file(self: &Arc<Self>, path: &Path) -> anyhow::Result<Loaded> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let origin = Origin {
            file: path.to_path_buf(),
            sha256,
            loaded_at: unix_now(),
        };
        let component = self
            .compile(&bytes)
            .with_context(|| format!("{} is not a valid WASM component", path.display()))?;
        let ty = component.component_type();
        let mut exports = ty.exports(&self.engine).map(|(name, _)| name.to_string());
        let kind = exports.find_map(|name| {
            if name.starts_with("llmgate:plugin/provider@") {
                Some(true)
            } else if name.starts_with("llmgate:plugin/policy@") {
                Some(false)
            } else {
                None
            }
        });
        match kind {
            Some(true) => Ok(Loaded::Provider(Arc::new(
                ProviderPlugin::load(self.clone(), &component, origin).await?,
            ))),
            Some(false) => Ok(Loaded::Policy(Arc::new(
                PolicyPlugin::load(self.clone(), &component, origin).await?,
            ))),
            None => anyhow::bail!(
                "{} exports neither llmgate:plugin/provider nor llmgate:plugin/policy (version 0.1.0)",
                path.display()
            ),
        }
    }

    /// Load every `*.wasm` in `dir` into a registry. Files that fail are listed with their
    /// error; with `previous`, a failed file keeps the previous registry's plugin from it.
    pub async fn load_dir(self: &Arc<Self>, dir: &Path) -> anyhow::Result<Registry> {
        let files =
            wasm_files(dir).with_context(|| format!("reading plugins folder {}", dir.display()))?;
        let mut reg = Registry::default();
        for path in files {
            let started = std::time::Instant::now();
            match self.load_file(&path).await {
                Ok(l) => {
                    let ms = started.elapsed().as_millis() as u64;
                    match &l {
                        Loaded::Provider(p) => {
                            tracing::info!(plugin = %p.id(), file = %path.display(), ms, "loaded provider plugin")
                        }
                        Loaded::Policy(p) => {
                            tracing::info!(plugin = %p.id(), file = %path.display(), ms, "loaded routing policy")
                        }
                    }
                    reg.insert(&l);
                    reg.status.push(l.status());
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), "plugin failed to load: {e:#}");
                    reg.status
                        .push(PluginStatus::failed(&path, String::new(), format!("{e:#}")));
                }
            }
        }
        Ok(reg)
    }
}

/// The `.wasm` files in `dir`, sorted (load order: a later file wins a shared prefix).
pub(crate) fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

impl PluginStatus {
    /// The row of a file that did not load (and serves nothing).
    fn failed(path: &Path, sha256: String, error: String) -> Self {
        Self {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            version: None,
            kind: None,
            prefixes: Vec::new(),
            origin: Origin {
                file: path.to_path_buf(),
                sha256,
                loaded_at: unix_now(),
            },
            last_error: Some(error),
        }
    }
}

impl Registry {
    /// Serve a loaded plugin: a provider under each of its prefixes (a later one wins a
    /// shared prefix), a policy under its name.
    fn insert(&mut self, l: &Loaded) {
        match l {
            Loaded::Provider(p) => {
                for prefix in &p.prefixes {
                    if let Some(prev) = self.providers.insert(prefix.name.clone(), p.clone())
                        && !Arc::ptr_eq(&prev, p)
                    {
                        tracing::warn!(prefix = %prefix.name, replaced = %prev.id(), by = %p.id(), "two provider plugins serve one prefix; the later file wins");
                    }
                }
            }
            Loaded::Policy(p) => {
                self.policies.insert(p.name.clone(), p.clone());
            }
        }
    }
}

impl Loaded {
    /// Its row in `GET /plugins`.
    fn status(&self) -> PluginStatus {
        match self {
            Loaded::Provider(p) => p.status(),
            Loaded::Policy(p) => p.status(),
        }
    }
}
