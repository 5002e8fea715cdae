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
    /// Failures in the current minute: `(minute, count)`.
    fails: std::sync::Mutex<(u64, u32)>,
}

/// Statistics of every deployment, by id.
pub struct Stats {
    by_id: HashMap<String, Arc<DeploymentStats>>,
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
            by_id: deployments
                .iter()
                .map(|d| (d.id.clone(), Arc::new(DeploymentStats::default())))
                .collect(),
        }
    }

    fn get(&self, id: &str) -> Arc<DeploymentStats> {
        self.by_id.get(id).cloned().unwrap_or_default()
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
    pub fn failed(
        &self,
        id: &str,
        class: ErrorClass,
        retry_after_ms: Option<u32>,
        allowed_fails: u32,
        cooldown: std::time::Duration,
    ) {
        if !matches!(
            class,
            ErrorClass::RateLimited
                | ErrorClass::Overloaded
                | ErrorClass::Upstream
                | ErrorClass::Timeout
                | ErrorClass::Auth
                | ErrorClass::NotFound
        ) {
            return;
        }
        let s = self.get(id);
        let now = now_ms();
        let until = if let Some(ms) = retry_after_ms.filter(|ms| *ms > 0) {
            Some(now + u64::from(ms))
        } else {
            let minute = now / 60_000;
            let mut f = s.fails.lock().unwrap_or_else(|p| p.into_inner());
            if f.0 != minute {
                *f = (minute, 0);
            }
            f.1 += 1;
            (f.1 > allowed_fails).then(|| now + cooldown.as_millis() as u64)
        };
        if let Some(until) = until {
            s.cooldown_until_ms.fetch_max(until, Ordering::Relaxed);
            tracing::warn!(
                deployment = id,
                cooldown_ms = until - now,
                "deployment cooling down"
            );
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
