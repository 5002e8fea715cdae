//! Config reload without a restart: on SIGHUP, and when `config.yaml` changes, the config
//! is loaded exactly as at start (same file, same command-line overrides, the environment
//! read again) and, if valid, swapped in ([`Gateway::swap_config`]).
//!
//! - **SIGHUP** is handled from before the gateway listens, so `kill -HUP` never ends it.
//! - **The file watch** (`llmgate.watch_config`, default on) watches the file's folder and
//!   filters on its name, since editors and deploy tools replace a file by renaming another
//!   over it; events are debounced ([`QUIET`]) and a poll every [`POLL`] (size, mtime)
//!   catches missed ones.
//! - **Off the request path:** reading and validating run on a blocking thread.
//! - **A bad config never replaces a good one:** the old one keeps serving; the reason is
//!   logged at ERROR, counted, and shown to admins in `/health/readiness` until a later
//!   reload succeeds. Settings that need a restart keep their running values, named in one
//!   WARN line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Overrides;
use crate::gateway::Gateway;

/// How long the file must be quiet before it is read.
pub const QUIET: Duration = Duration::from_millis(200);
/// Fallback poll interval, for file systems that drop events.
pub const POLL: Duration = Duration::from_secs(2);

/// Where the config comes from: what `config::load` was called with at start.
#[derive(Debug, Clone)]
pub struct Source {
    /// `--config`, if any (none: the command line alone; SIGHUP re-reads the environment).
    pub path: Option<PathBuf>,
    /// The command-line overrides.
    pub overrides: Overrides,
}

/// Stops the reloader (signal handler and file watch) when dropped.
pub type ConfigReload = super::reload::Watch;

/// What wakes the reloader.
enum Wake {
    Signal,
    FileEvent,
    Poll,
    Stop,
}

/// Install the SIGHUP handler now and start reloading `gateway`'s config from `source`;
/// the file is watched too unless `llmgate.watch_config` is off. Call it on the runtime
/// that serves, before listening.
pub fn start(gateway: Arc<Gateway>, source: Source) -> anyhow::Result<ConfigReload> {
    let hup = hangup()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let file = source
        .path
        .clone()
        .filter(|_| gateway.config().watch_config);
    let watcher = file.as_deref().and_then(|p| watch_file(p, tx.clone()));
    let reloader = Reloader {
        gateway,
        source,
        file,
        _events: tx,
    };
    tokio::spawn(reloader.run(hup, rx, stopped));
    Ok(ConfigReload::new(stop, watcher))
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup() -> anyhow::Result<Hangup> {
    use anyhow::Context as _;
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")
}

#[cfg(not(unix))]
fn hangup() -> anyhow::Result<Hangup> {
    Ok(())
}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangup) {
    if h.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending::<()>().await;
}

/// A watcher on `file`'s folder that sends on `tx` for every change naming `file`.
fn watch_file(
    file: &Path,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = file.file_name()?.to_os_string();
    let handler = move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| changes_file(&e, &name)) {
            let _ = tx.send(());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("config reload: no file watcher ({e}); polling every {POLL:?}");
            return None;
        }
    };
    match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "config reload: cannot watch the config folder ({e}); polling every {POLL:?}");
            None
        }
    }
}

/// Whether a watcher event may have changed the file named `name`: created, written,
/// renamed or removed (either side of a rename), or an event naming no path. Reads are not.
fn changes_file(e: &notify::Event, name: &std::ffi::OsStr) -> bool {
    let kind = super::reload::is_change(e);
    let path = e.paths.is_empty() || e.paths.iter().any(|p| p.file_name() == Some(name));
    kind && path
}

/// `(size, mtime)` of the file: the poll's "did it change" check.
fn fingerprint(file: Option<&Path>) -> Option<(u64, Option<SystemTime>)> {
    let m = std::fs::metadata(file?).ok()?;
    Some((m.len(), m.modified().ok()))
}

/// The reload loop's state.
struct Reloader {
    gateway: Arc<Gateway>,
    source: Source,
    /// The watched file (none: SIGHUP only).
    file: Option<PathBuf>,
    /// Keeps the event channel open when no watcher holds it (polling only).
    _events: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Reloader {
    async fn run(
        self,
        mut hup: Hangup,
        mut events: tokio::sync::mpsc::UnboundedReceiver<()>,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last = fingerprint(self.file.as_deref());
        loop {
            let wake = tokio::select! {
                _ = stopped.changed() => Wake::Stop,
                () = next_hangup(&mut hup) => Wake::Signal,
                Some(()) = events.recv() => Wake::FileEvent,
                () = tokio::time::sleep(POLL), if self.file.is_some() => Wake::Poll,
            };
            let why = match wake {
                Wake::Stop => return,
                Wake::Signal => "SIGHUP",
                Wake::Poll if fingerprint(self.file.as_deref()) == last => continue,
                Wake::Poll | Wake::FileEvent => {
                    if !quiet(&mut events, &mut stopped).await {
                        return;
                    }
                    "file change"
                }
            };
            last = fingerprint(self.file.as_deref());
            self.reload(why).await;
        }
    }

    /// Load, validate and swap; log what happened.
    async fn reload(&self, why: &'static str) {
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            crate::config::load(source.path.as_deref(), &source.overrides)
        })
        .await;
        let config = match loaded {
            Ok(Ok(config)) => config,
            Ok(Err(e)) => return self.refused(why, e.0.join("; ")),
            Err(e) => return self.refused(why, format!("the loader stopped: {e}")),
        };
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        self.warn_unserved(&config);
        let (deployments, groups) = (config.deployments.len(), config.groups.len());
        let needs_restart = self.gateway.swap_config(config);
        if !needs_restart.is_empty() {
            tracing::warn!(
                "config reload: kept the running value of {} (takes effect after a restart)",
                needs_restart.join(", ")
            );
        }
        tracing::info!(
            trigger = why,
            deployments,
            groups,
            "config reloaded: new config serving"
        );
    }

    /// A refused reload: logged, counted, shown in readiness; the old config keeps serving.
    fn refused(&self, why: &'static str, error: String) {
        tracing::error!(
            trigger = why,
            "config reload refused, the running config keeps serving: {error}"
        );
        self.gateway.config_reload_failed(error);
    }

    /// As at start: a deployment whose provider no loaded plugin serves is a warning.
    fn warn_unserved(&self, config: &crate::config::Config) {
        let registry = self.gateway.registry();
        for d in &config.deployments {
            if registry.provider(&d.provider).is_none() {
                tracing::warn!(
                    deployment = %d.id,
                    "no provider plugin serves `{}/`; requests to it will fail",
                    d.provider
                );
            }
        }
    }
}

/// Wait until no file event came for [`QUIET`]; false if the reloader was stopped.
async fn quiet(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            _ = stopped.changed() => return false,
            e = events.recv() => if e.is_none() { return false },
            () = tokio::time::sleep(QUIET) => return true,
        }
    }
}
