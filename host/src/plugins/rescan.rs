//! Rescanning the plugins folder: compare it with the current [`Registry`] and build the
//! one it should now be, reusing every plugin whose file did not change. The watcher that
//! calls it on every change, and swaps the result in, is [`crate::server::reload`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Loaded, PluginStatus, Registry, Runtime};

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
