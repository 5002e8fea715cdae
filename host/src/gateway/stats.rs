//! Live per-deployment statistics the host keeps and hands to routing policies.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::config::Deployment;
use crate::plugins::ErrorClass;
use crate::wit::policy_api::Candidate;

fn now_ms() -> u64 {
    crate::ledger::unix_now_ms().max(0) as u64
}

/// Counters of one deployment.
#[derive(Default)]
pub struct DeploymentStats {
    in_flight: AtomicU32,
    successes: AtomicU64,
    failures: AtomicU64,
    /// Exponentially weighted latency, microseconds.
    latency_us: AtomicU64,
    /// Exponentially weighted time to first event of streams, microseconds.
    ttft_us: AtomicU64,
    /// Out of rotation until this unix time, ms (0: not cooling down).
    cooldown_until_ms: AtomicU64,
    /// Whether its last attempt failed.
    last_failed: std::sync::atomic::AtomicBool,
    /// Failures in the current minute and cooldowns so far.
    fails: std::sync::Mutex<Fails>,
}

/// A deployment's failures in the current minute, and the cooldowns it has had.
#[derive(Default)]
struct Fails {
    minute: u64,
    in_minute: u32,
    /// Cooldowns so far, by the HTTP status of the failure that started them.
    cooldowns: Vec<(u16, u64)>,
}

/// Whether a deployment serves, LiteLLM's `litellm_deployment_state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its last attempt answered (or it has had none).
    Healthy = 0,
    /// Its last attempt failed, and it is still in rotation.
    PartialOutage = 1,
    /// Cooling down: out of rotation.
    CompleteOutage = 2,
}

/// One deployment's live health: what `/metrics`, `/health/readiness` and the dashboard show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// Healthy, failing or cooling down.
    pub state: State,
    /// Attempts in flight now.
    pub in_flight: u32,
    /// Attempts that answered, since start.
    pub successes: u64,
    /// Attempts that failed, since start.
    pub failures: u64,
    /// Exponentially weighted latency of answered attempts, ms.
    pub latency_ms: f64,
    /// Exponentially weighted time to first event of streams, ms.
    pub ttft_ms: f64,
    /// Unix ms when its cooldown ends, while it cools down.
    pub cooldown_until_ms: Option<u64>,
    /// Cooldowns so far, by the HTTP status of the failure that started them.
    pub cooldowns: Vec<(u16, u64)>,
}

/// Statistics of every deployment, by id; a config reload swaps the map
/// ([`Stats::follow`]).
pub struct Stats {
    by_id: arc_swap::ArcSwap<HashMap<String, Arc<DeploymentStats>>>,
}

/// Decrements the in-flight count when the attempt ends, however it ends.
pub struct InFlight(Arc<DeploymentStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InFlight {
    /// Record the attempt's outcome.
    pub fn done(&self, ok: bool, latency_us: u64) {
        let s = &self.0;
        s.last_failed.store(!ok, Ordering::Relaxed);
        if ok {
            s.successes.fetch_add(1, Ordering::Relaxed);
            ewma(&s.latency_us, latency_us);
        } else {
            s.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Record a stream's time to first event.
    pub fn first_event(&self, ttft_us: u64) {
        ewma(&self.0.ttft_us, ttft_us);
    }
}

fn ewma(slot: &AtomicU64, sample: u64) {
    let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        })
    });
}

impl Stats {
    /// Counters for every deployment in the config.
    pub fn new(deployments: &[Arc<Deployment>]) -> Self {
        Self {
            by_id: arc_swap::ArcSwap::from_pointee(
                deployments
                    .iter()
                    .map(|d| (d.id.clone(), Arc::new(DeploymentStats::default())))
                    .collect(),
            ),
        }
    }

    /// Follow a new config's deployments: a kept one (same id) keeps its counters and
    /// cooldown, a new one starts fresh, a removed one is dropped (an attempt still running
    /// on it holds its counters until it ends). One caller at a time (the config reloader).
    pub fn follow(&self, deployments: &[Arc<Deployment>]) {
        let old = self.by_id.load();
        let next = deployments
            .iter()
            .map(|d| (d.id.clone(), old.get(&d.id).cloned().unwrap_or_default()))
            .collect();
        self.by_id.store(Arc::new(next));
    }

    fn get(&self, id: &str) -> Arc<DeploymentStats> {
        self.by_id.load().get(id).cloned().unwrap_or_default()
    }

    /// Count an attempt as in flight until the guard drops.
    pub fn start(&self, id: &str) -> InFlight {
        let s = self.get(id);
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(s)
    }

    /// Count a failed attempt: a `Retry-After` cools the deployment down for that long;
    /// more than `allowed_fails` failures within a minute cool it down for `cooldown`.
    /// Only failures that say something about the deployment count (not bad requests).
    /// `status`: the failure's HTTP status, which the cooldown is counted under.
    /// Returns the cooldown's length in ms when the failure starts (or lengthens) one.
    pub fn failed(
        &self,
        id: &str,
        class: ErrorClass,
        status: u16,
        retry_after_ms: Option<u32>,
        allowed_fails: u32,
        cooldown: std::time::Duration,
    ) -> Option<u64> {
        if !matches!(
            class,
            ErrorClass::RateLimited
                | ErrorClass::Overloaded
                | ErrorClass::Upstream
                | ErrorClass::Timeout
                | ErrorClass::Auth
                | ErrorClass::NotFound
        ) {
            return None;
        }
        let s = self.get(id);
        let now = now_ms();
        let mut f = s.fails.lock().unwrap_or_else(|p| p.into_inner());
        let until = if let Some(ms) = retry_after_ms.filter(|ms| *ms > 0) {
            Some(now + u64::from(ms))
        } else {
            let minute = now / 60_000;
            if f.minute != minute {
                (f.minute, f.in_minute) = (minute, 0);
            }
            f.in_minute += 1;
            (f.in_minute > allowed_fails).then(|| now + cooldown.as_millis() as u64)
        };
        if let Some(until) = until {
            // A new cooldown, not one extended while it runs.
            if s.cooldown_until_ms.fetch_max(until, Ordering::Relaxed) <= now {
                match f.cooldowns.iter_mut().find(|(st, _)| *st == status) {
                    Some((_, n)) => *n += 1,
                    None => f.cooldowns.push((status, 1)),
                }
            }
            drop(f);
            tracing::warn!(
                deployment = id,
                cooldown_ms = until - now,
                "deployment cooling down"
            );
            return Some(until - now);
        }
        None
    }

    /// Cool `id` down for `ms` from now, as another instance did (shared through Redis):
    /// out of rotation here too; its own failure counts are left alone.
    pub fn cool_down_for(&self, id: &str, ms: u64) {
        let Some(s) = self.by_id.load().get(id).cloned() else {
            return;
        };
        s.cooldown_until_ms
            .fetch_max(now_ms().saturating_add(ms), Ordering::Relaxed);
    }

    /// A deployment's live health.
    pub fn health(&self, id: &str) -> Health {
        let s = self.get(id);
        let now = now_ms();
        let until = s.cooldown_until_ms.load(Ordering::Relaxed);
        let state = if until > now {
            State::CompleteOutage
        } else if s.last_failed.load(Ordering::Relaxed) {
            State::PartialOutage
        } else {
            State::Healthy
        };
        let cooldowns = s
            .fails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cooldowns
            .clone();
        Health {
            state,
            in_flight: s.in_flight.load(Ordering::Relaxed),
            successes: s.successes.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            latency_ms: s.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ttft_ms: s.ttft_us.load(Ordering::Relaxed) as f64 / 1000.0,
            cooldown_until_ms: (until > now).then_some(until),
            cooldowns,
        }
    }

    /// The policy's view of a deployment.
    pub fn candidate(&self, d: &Deployment) -> Candidate {
        let s = self.get(&d.id);
        let ok = s.successes.load(Ordering::Relaxed);
        let bad = s.failures.load(Ordering::Relaxed);
        Candidate {
            id: d.id.clone(),
            model_group: d.model_name.clone(),
            provider: d.provider.clone(),
            model: d.model.clone(),
            healthy: s.cooldown_until_ms.load(Ordering::Relaxed) <= now_ms(),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            error_rate: if ok + bad == 0 {
                0.0
            } else {
                bad as f32 / (ok + bad) as f32
            },
            latency_ms_p50: (s.latency_us.load(Ordering::Relaxed) / 1000) as u32,
            ttft_ms_p50: (s.ttft_us.load(Ordering::Relaxed) / 1000) as u32,
            price_in: d.prices.input,
            price_out: d.prices.output,
            weight: d.weight,
            rpm: d.rpm,
            tpm: d.tpm,
            order: d.order,
            max_input_tokens: d
                .info
                .get("max_input_tokens")
                .and_then(serde_json::Value::as_u64)
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}
