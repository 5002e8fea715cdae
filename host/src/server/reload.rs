//! Hot reload: the plugins folder is watched, and a change (a `.wasm` added, replaced or
//! removed) builds a new [`Registry`](crate::plugins::Registry) ([`Runtime::rescan`](crate::plugins::Runtime::rescan)) that is swapped in atomically.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::gateway::Gateway;

/// How long the folder must be quiet before a rescan.
pub const QUIET: Duration = Duration::from_millis(150);
/// Fallback poll interval, for file systems that drop events.
pub const POLL: Duration = Duration::from_secs(2);

/// Stops the watcher when dropped (this plugin watcher, and the config reloader's).
pub struct Watch {
    stop: tokio::sync::watch::Sender<bool>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Watch {
    /// A guard that sends `true` on `stop` when dropped, and keeps `watcher` alive until then.
    pub(super) fn new(
        stop: tokio::sync::watch::Sender<bool>,
        watcher: Option<notify::RecommendedWatcher>,
    ) -> Self {
        Self {
            stop,
            _watcher: watcher,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Whether a watcher event is of a kind that can change a file: created, written, renamed or
/// removed, or a rescan request (`Any`). Opening and reading are not.
pub(super) fn is_change(e: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    matches!(
        e.kind,
        EventKind::Any
            | EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

/// Whether a watcher event can change the plugin set: something created, written, renamed
/// or removed, on a `.wasm` path (either side of a rename), or an event that names no path
/// (the watcher lost track and asks for a rescan). Opening and reading files is not a
/// change: the rescan itself reads every plugin file, and reacting to that would rescan
/// forever.
fn changes_plugins(e: &notify::Event) -> bool {
    let kind = is_change(e);
    let path = e.paths.is_empty()
        || e.paths
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "wasm"));
    kind && path
}

/// `(size, mtime)` of every `.wasm` in `dir`: the cheap "did anything change" check.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    crate::plugins::wasm_files(dir)
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
    Watch::new(stop, watcher)
}
