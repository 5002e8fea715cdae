//! Hot reload: the plugins folder is watched, and a change (a `.wasm` added, replaced or
//! removed) builds a new [`Registry`] that is swapped in atomically.
//!
//! - **Debounced:** events are collected until the folder has been quiet for
//!   [`QUIET`], so a file written in pieces, or copied and renamed, loads once, complete.
//!   A poll every [`POLL`] (sizes and modification times) catches missed events.
//! - **Off the request path:** compiling is CPU-heavy, so a rescan runs on a blocking
//!   thread; requests keep being served by the current registry meanwhile.
//! - **Checked before it serves:** a file is compiled, instantiated and asked to describe
//!   itself (the same checks as at start) before it can replace anything.
//! - **Atomic, and in-flight requests finish on the old version:** a request holds the
//!   registry (and its plugins) it started with until it ends.
//! - **A broken file never replaces a working plugin:** the plugin previously loaded from
//!   that file keeps serving, and its `GET /plugins` row carries the new error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::{Loaded, PluginStatus, Registry, Runtime};
use crate::gateway::Gateway;

/// How long the folder must be quiet before a rescan.
pub const QUIET: Duration = Duration::from_millis(150);
/// Fallback poll interval, for file systems that drop events.
pub const POLL: Duration = Duration::from_secs(2);

/// Stops the watcher when dropped.
pub struct Watch {
    stop: tokio::sync::watch::Sender<bool>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Whether a watcher event can change the plugin set: something created, written, renamed
/// or removed, on a `.wasm` path (either side of a rename), or an event that names no path
/// (the watcher lost track and asks for a rescan). Opening and reading files is not a
/// change: the rescan itself reads every plugin file, and reacting to that would rescan
/// forever.
fn changes_plugins(e: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    let kind = matches!(
        e.kind,
        EventKind::Any
            | EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    );
    let path = e.paths.is_empty()
        || e.paths
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "wasm"));
    kind && path
}

/// `(size, mtime)` of every `.wasm` in `dir`: the cheap "did anything change" check.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    super::wasm_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((p, m.len(), m.modified().ok()))
        })
        .collect()
}

/// Watch `gateway`'s plugins folder and swap in a new registry on every change.
pub fn watch(gateway: Arc<Gateway>) -> Watch {
    let dir = gateway.config().plugins_dir.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = {
        use notify::Watcher as _;
        let tx = tx.clone();
        match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|e| changes_plugins(&e)) {
                let _ = tx.send(());
            }
        }) {
            Ok(mut w) => match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "hot reload: cannot watch the plugins folder ({e}); polling every {POLL:?}");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("hot reload: no file watcher ({e}); polling every {POLL:?}");
                None
            }
        }
    };
    tokio::spawn(async move {
        let mut last = fingerprint(&dir);
        loop {
            // Wait for an event, a poll tick, or the stop signal.
            let event = tokio::select! {
                _ = stopped.changed() => return,
                e = rx.recv() => e.is_some(),
                () = tokio::time::sleep(POLL) => false,
            };
            if !event {
                let now = fingerprint(&dir);
                if now == last {
                    continue;
                }
            }
            // Debounce: until the folder is quiet.
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    e = rx.recv() => if e.is_none() { return },
                    () = tokio::time::sleep(QUIET) => break,
                }
            }
            last = fingerprint(&dir);
            gateway.reload_stats().scans.fetch_add(1, Ordering::Relaxed);
            let gw = gateway.clone();
            let handle = tokio::runtime::Handle::current();
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                let current = gw.registry();
                let runtime = gw.runtime().clone();
                let dir = gw.config().plugins_dir.clone();
                let next = handle.block_on(runtime.rescan(&dir, &current));
                if let Some(next) = next {
                    gw.set_registry(next);
                    true
                } else {
                    false
                }
            })
            .await;
            match result {
                Ok(true) => tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "hot reload: new plugin set serving"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!("hot reload: rescan failed: {e}"),
            }
        }
    });
    Watch {
        stop,
        _watcher: watcher,
    }
}

/// What the current registry has from one file.
struct FromFile {
    sha256: String,
    loaded: Vec<Loaded>,
    status: PluginStatus,
}

impl Registry {
    /// The plugins loaded from each file (by path).
    fn by_file(&self) -> HashMap<PathBuf, FromFile> {
        let mut out: HashMap<PathBuf, FromFile> = HashMap::new();
        for s in &self.status {
            out.insert(
                s.origin.file.clone(),
                FromFile {
                    sha256: s.origin.sha256.clone(),
                    loaded: Vec::new(),
                    status: s.clone(),
                },
            );
        }
        let mut add = |file: &Path, l: Loaded| {
            if let Some(f) = out.get_mut(file)
                && !f.loaded.iter().any(|x| x.same(&l))
            {
                f.loaded.push(l);
            }
        };
        for p in self.providers.values() {
            add(&p.origin.file, Loaded::Provider(p.clone()));
        }
        for p in self.policies.values() {
            add(&p.origin.file, Loaded::Policy(p.clone()));
        }
        out
    }
}

impl Loaded {
    fn same(&self, other: &Loaded) -> bool {
        match (self, other) {
            (Loaded::Provider(a), Loaded::Provider(b)) => Arc::ptr_eq(a, b),
            (Loaded::Policy(a), Loaded::Policy(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Runtime {
    /// Compare `dir` with `current` and build the registry it should now be; `None` when
    /// nothing changed. Unchanged files keep their loaded plugins (no recompile).
    pub async fn rescan(self: &Arc<Self>, dir: &Path, current: &Registry) -> Option<Registry> {
        let mut old = current.by_file();
        let files = super::wasm_files(dir).ok()?;
        let mut next = Registry::default();
        let mut changed = files.len() != old.len();
        for path in files {
            let Ok(bytes) = std::fs::read(&path) else {
                changed = true;
                continue;
            };
            let sha = hex::encode(Sha256::digest(&bytes));
            let prev = old.remove(&path);
            if let Some(p) = &prev
                && p.sha256 == sha
                && (p.status.last_error.is_none() || p.loaded.is_empty())
            {
                // Unchanged.
                p.loaded.iter().for_each(|l| next.insert(l));
                next.status.push(p.status.clone());
                continue;
            }
            changed = true;
            let started = Instant::now();
            match self.load_file(&path).await {
                Ok(l) => {
                    tracing::info!(file = %path.display(), plugin = %l.status().name, version = ?l.status().version, ms = started.elapsed().as_millis() as u64, "hot reload: plugin loaded");
                    next.insert(&l);
                    next.status.push(l.status());
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(file = %path.display(), "hot reload: plugin failed to load, {}: {error}", if prev.as_ref().is_some_and(|p| !p.loaded.is_empty()) { "the previous version keeps serving" } else { "nothing is served from it" });
                    match prev {
                        Some(p) if !p.loaded.is_empty() => {
                            p.loaded.iter().for_each(|l| next.insert(l));
                            // The row keeps the serving plugin's name, version and hash.
                            let mut status = p.status;
                            status.last_error = Some(error);
                            next.status.push(status);
                        }
                        _ => next.status.push(PluginStatus::failed(&path, sha, error)),
                    }
                }
            }
        }
        for (file, _) in old {
            tracing::info!(file = %file.display(), "hot reload: plugin file removed; its plugins are unloaded");
            changed = true;
        }
        changed.then_some(next)
    }
}
