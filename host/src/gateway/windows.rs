//! rpm/tpm windows per calendar minute: a deployment's `rpm`/`tpm` (its attempts, its
//! tokens), and a key's `rpm_limit`/`tpm_limit` as seen across instances.
//!
//! Locally, a deployment's window is counted here and a key's in the ledger. With Redis
//! ([`crate::shared`]), one atomic check per admission (a key) or per attempt (a
//! deployment) counts the request in the shared window and answers what every instance
//! has counted, which the local counters then take as their floor: limits hold across
//! instances exactly while Redis answers. Only requests with a limit ask Redis; when it
//! does not answer, the local counters decide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::Deployment;
use crate::ledger::{Caller, Seen};
use crate::shared::{Check, Counter, Shared, window_key};

/// The current minute, unix seconds / 60.
fn minute_now() -> i64 {
    crate::ledger::unix_now().div_euclid(60)
}

/// One deployment's counts in one minute.
#[derive(Default, Clone, Copy)]
struct Window {
    minute: i64,
    requests: u64,
    tokens: u64,
}

impl Window {
    fn at(&mut self, minute: i64) -> &mut Self {
        if self.minute != minute {
            *self = Self {
                minute,
                ..Self::default()
            };
        }
        self
    }
}

/// The deployments' windows, and the shared Redis when there is one.
#[derive(Default)]
pub struct Windows {
    deployments: Mutex<HashMap<String, Window>>,
    shared: OnceLock<Arc<Shared>>,
}

/// A key's shared window check that counted the request, so a refusal after it (by the
/// ledger) can take it back.
pub(super) struct Counted {
    shared: Arc<Shared>,
    key: String,
}

impl Counted {
    /// The ledger refused the request after all: uncount it.
    pub(super) fn take_back(self) {
        self.shared.add(self.key, -1);
    }
}

impl Windows {
    /// Share windows (and cooldowns) through `shared` from now on (set once, at start).
    pub fn set_shared(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// The shared Redis, if one is configured.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.get()
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.deployments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What every instance has counted this minute against the caller's key, when it has
    /// an rpm or tpm limit and Redis answers (`None`: the ledger counts locally). A
    /// request within the limits is counted in the shared window here; one over them is
    /// not, and the ledger refuses it from the counts returned.
    pub(super) async fn key(&self, caller: &Caller) -> (Option<Seen>, Option<Counted>) {
        let (Some(shared), Caller::Key(entry)) = (self.shared.get(), caller) else {
            return (None, None);
        };
        let (token, rpm, tpm) = entry.rate_limits();
        if rpm.is_none() && tpm.is_none() {
            return (None, None);
        }
        let minute = minute_now();
        let rpm_key = window_key("key", &token, "rpm", minute);
        let mut counters = Vec::with_capacity(2);
        if let Some(limit) = rpm {
            counters.push(Counter {
                key: rpm_key.clone(),
                limit,
                add: 1,
            });
        }
        if let Some(limit) = tpm {
            counters.push(Counter {
                key: window_key("key", &token, "tpm", minute),
                limit,
                add: 0,
            });
        }
        let tpm_at = usize::from(rpm.is_some());
        match shared.check(&counters).await {
            Check::Local => (None, None),
            Check::Admitted(v) => {
                let seen = Seen {
                    requests: rpm.map_or(0, |_| v[0]),
                    tokens: tpm.map_or(0, |_| v[tpm_at]),
                    counted: rpm.is_some(),
                };
                let counted = rpm.map(|_| Counted {
                    shared: shared.clone(),
                    key: rpm_key,
                });
                (Some(seen), counted)
            }
            Check::Refused { index, count } => {
                let mut seen = Seen::default();
                if rpm.is_some() && index == 0 {
                    seen.requests = count;
                } else {
                    seen.tokens = count;
                }
                (Some(seen), None)
            }
        }
    }

    /// Whether an attempt may go to `dep` under its `rpm`/`tpm` this minute, counting it
    /// if so. Without limits: always, and nothing is counted.
    pub(super) async fn admit_attempt(&self, dep: &Deployment) -> bool {
        if dep.rpm == 0 && dep.tpm == 0 {
            return true;
        }
        let minute = minute_now();
        if let Some(shared) = self.shared.get() {
            let counters = deployment_counters(dep, minute);
            match shared.check(&counters).await {
                Check::Admitted(v) => {
                    self.floor(dep, minute, &v);
                    return true;
                }
                Check::Refused { index, count } => {
                    let mut v = vec![0; counters.len()];
                    v[index] = count;
                    self.floor(dep, minute, &v);
                    return false;
                }
                Check::Local => {}
            }
        }
        let mut local = self.local();
        let w = local.entry(dep.id.clone()).or_default().at(minute);
        let over = (dep.rpm > 0 && w.requests >= u64::from(dep.rpm))
            || (dep.tpm > 0 && w.tokens >= u64::from(dep.tpm));
        if !over {
            w.requests += 1;
        }
        !over
    }

    /// Take what Redis answered (in [`deployment_counters`]' order; counts that include
    /// this attempt when it was admitted) as the local floor.
    fn floor(&self, dep: &Deployment, minute: i64, v: &[u64]) {
        let mut local = self.local();
        let w = local.entry(dep.id.clone()).or_default().at(minute);
        let mut i = 0;
        if dep.rpm > 0 {
            w.requests = w.requests.max(v[i]);
            i += 1;
        }
        if dep.tpm > 0 {
            w.tokens = w.tokens.max(v[i]);
        }
    }

    /// Count `tokens` a request served by `dep` used, when it has a `tpm`.
    pub(super) fn tokens(&self, dep: &Deployment, tokens: u64) {
        if dep.tpm == 0 || tokens == 0 {
            return;
        }
        let minute = minute_now();
        {
            let mut local = self.local();
            let w = local.entry(dep.id.clone()).or_default().at(minute);
            w.tokens = w.tokens.saturating_add(tokens);
        }
        if let Some(shared) = self.shared.get() {
            let key = window_key("deployment", &dep.id, "tpm", minute);
            shared.add(key, i64::try_from(tokens).unwrap_or(i64::MAX));
        }
    }
}

/// A deployment's shared counters: rpm (counted per attempt), then tpm (checked only).
fn deployment_counters(dep: &Deployment, minute: i64) -> Vec<Counter> {
    let mut counters = Vec::with_capacity(2);
    if dep.rpm > 0 {
        counters.push(Counter {
            key: window_key("deployment", &dep.id, "rpm", minute),
            limit: u64::from(dep.rpm),
            add: 1,
        });
    }
    if dep.tpm > 0 {
        counters.push(Counter {
            key: window_key("deployment", &dep.id, "tpm", minute),
            limit: u64::from(dep.tpm),
            add: 0,
        });
    }
    counters
}
