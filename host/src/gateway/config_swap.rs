//! Config reload's swap: a validated [`Config`] replaces the live one atomically, the
//! deployment stats follow it, and what reloads did is counted ([`ConfigReloadStats`]).
//!
//! Loading and validating happen above (`server::config_reload`), off the request path; a
//! request holds the config it started with ([`super::Call`]) until it ends.

use std::sync::{Arc, Mutex};

use super::Gateway;
use crate::config::Config;

/// What config reloads have done: for `/health/readiness`, `/metrics` and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigReloadStats {
    /// Where the serving config came from (a file path, or `command line`).
    pub path: String,
    /// Unix time (s) the serving config was loaded: the start, or the last good reload.
    pub loaded_at: u64,
    /// Reloads that swapped in a new config.
    #[serde(rename = "reloads")]
    pub ok: u64,
    /// Reloads refused (the file could not be read, parsed or validated).
    #[serde(rename = "failed_reloads")]
    pub failed: u64,
    /// Why the last reload was refused, until a later reload succeeds.
    pub last_error: Option<String>,
}

/// The reload counters, behind one lock (taken only by reloads and by admin readers).
#[derive(Debug)]
pub(super) struct ConfigReloads(Mutex<ConfigReloadStats>);

impl ConfigReloads {
    /// Counters for the config loaded at start.
    pub(super) fn new(config: &Config, now: u64) -> Self {
        Self(Mutex::new(ConfigReloadStats {
            path: config.source.clone(),
            loaded_at: now,
            ok: 0,
            failed: 0,
            last_error: None,
        }))
    }

    fn update(&self, f: impl FnOnce(&mut ConfigReloadStats)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Gateway {
    /// Swap in `next`, a validated config: the settings that need a restart keep their
    /// running values (their names are returned), the deployment stats follow the new
    /// model list, and requests already running finish on the config they started with.
    /// Clears the last reload error. One caller at a time (the config reloader).
    pub fn swap_config(&self, mut next: Config) -> Vec<&'static str> {
        let running = self.config();
        let needs_restart = crate::config::keep_restart_settings(&running, &mut next);
        // Counters for new deployments exist before a request can pick them.
        self.stats.follow(&next.deployments);
        if let Some(m) = self.metrics() {
            m.set_deployments(
                next.deployments
                    .iter()
                    .map(|d| super::metric_labels(d))
                    .collect(),
            );
        }
        let source = next.source.clone();
        self.config.store(Arc::new(next));
        self.config_reloads.update(|s| {
            s.ok += 1;
            s.path = source;
            s.loaded_at = unix_now();
            s.last_error = None;
        });
        needs_restart
    }

    /// Count a refused reload and keep `error` (no secret in it) until a reload succeeds.
    pub fn config_reload_failed(&self, error: String) {
        self.config_reloads.update(|s| {
            s.failed += 1;
            s.last_error = Some(error);
        });
    }

    /// What config reloads have done so far.
    pub fn config_reloads(&self) -> ConfigReloadStats {
        self.config_reloads
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
