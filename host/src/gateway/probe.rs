//! Active health: a tiny real request to a deployment (LiteLLM's `/health` probe), the last
//! probe of each deployment, and the background rounds of `background_health_checks`.
//!
//! A probe runs the client path of one attempt ([`super::attempt::probe`]) with a request
//! the gateway writes itself (chat: one `ping` message and `max_tokens: 1`; `mode:
//! embedding`: an embedding of `ping`). It takes no ledger ticket: no spend, no spend log
//! row, no key spend. Its outcome feeds passive health as a client attempt's does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{Call, Gateway};
use crate::config::Deployment;
use crate::error::{Dialect, Error};
use crate::ledger::Caller;
use crate::wit::types::Api;

/// How many probes of one round run at once.
const CONCURRENCY: usize = 8;

/// One probe's outcome, as `/health` and readiness show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// The deployment answered.
    pub ok: bool,
    /// Why it did not (secrets masked), when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix ms the probe ended.
    pub checked_at_ms: u64,
    /// How long it took, ms.
    pub latency_ms: u64,
}

/// The last probe of every deployment, by id.
#[derive(Default)]
pub struct Probes(Mutex<HashMap<String, Probe>>);

impl Probes {
    /// The last probe of deployment `id`, if it has had one.
    pub fn last(&self, id: &str) -> Option<Probe> {
        self.lock().get(id).cloned()
    }

    fn record(&self, id: &str, probe: Probe) {
        self.lock().insert(id.to_string(), probe);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Probe>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a probe sends, by the deployment's `mode` (`model_info.mode`, else the built-in
/// model table's); `None`: not probed (image,
/// audio and other modes cost more than a ping, and wildcard deployments name no model).
fn probe_request(dep: &Deployment) -> Option<(Api, serde_json::Value)> {
    if dep.model.contains('*') {
        return None;
    }
    let mode = dep
        .info
        .get("mode")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("chat");
    let model = &dep.model_name;
    match mode {
        "chat" | "completion" => Some((
            Api::ChatCompletions,
            serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
            }),
        )),
        "embedding" => Some((
            Api::Embeddings,
            serde_json::json!({"model": model, "input": "ping"}),
        )),
        _ => None,
    }
}

/// Whether `dep` is probed at all (see [`probe_request`]).
pub fn probed(dep: &Deployment) -> bool {
    probe_request(dep).is_some()
}

/// The longest a probe of `dep` may take: its `model_info.health_check_timeout`, else the
/// config's `health_check_timeout`.
fn probe_timeout(dep: &Deployment, default: Duration) -> Duration {
    dep.model_info
        .get("health_check_timeout")
        .and_then(serde_json::Value::as_f64)
        .filter(|s| *s > 0.0 && *s <= 3600.0)
        .map_or(default, Duration::from_secs_f64)
}

impl Gateway {
    /// Probe `dep` now with a tiny real request, record the outcome as its last probe and in
    /// its live stats; `None` when `dep` is not probed (see [`probed`]).
    pub async fn probe(&self, dep: &Arc<Deployment>) -> Option<Probe> {
        let (api, body) = probe_request(dep)?;
        let config = self.config();
        let limit = probe_timeout(dep, config.health_checks.timeout);
        let call = Call {
            config,
            registry: self.registry(),
            id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            api,
            dialect: Dialect::OpenAi,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
            content_type: "application/json".into(),
            caller: Caller::Master,
            model: dep.model_name.clone(),
            stream: false,
            max_output: 1,
            group: dep.model_name.clone(),
            capture: None,
            deployments: Vec::new(),
            trace: None,
        };
        let ran = super::attempt::probe(self, &call, dep, limit).await;
        let probe = Probe {
            ok: ran.is_ok(),
            error: ran.err().as_ref().map(Error::to_string),
            checked_at_ms: crate::ledger::unix_now_ms().max(0) as u64,
            latency_ms: call.started.elapsed().as_millis() as u64,
        };
        if let Some(e) = &probe.error {
            tracing::warn!(deployment = %dep.id, "health check failed: {e}");
        }
        self.probes.record(&dep.id, probe.clone());
        Some(probe)
    }

    /// Probe `deps`, a bounded number at once; the outcomes in the order of `deps` (those
    /// not probed left out).
    pub async fn probe_all(&self, deps: Vec<Arc<Deployment>>) -> Vec<(Arc<Deployment>, Probe)> {
        futures_util::stream::iter(deps)
            .map(|d| async move {
                let p = self.probe(&d).await;
                p.map(|p| (d, p))
            })
            .buffered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// The last probe of each deployment.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }
}

/// The background health checks, while `general_settings.background_health_checks` is on;
/// they stop when this is dropped.
pub struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Start probing every deployment each `health_check_interval`, if the config asks for it.
pub fn background(gw: Arc<Gateway>) -> Option<Background> {
    let checks = gw.config().health_checks;
    if !checks.background {
        return None;
    }
    tracing::info!(
        interval_s = checks.interval.as_secs_f64(),
        "background health checks on"
    );
    Some(Background(tokio::spawn(async move {
        let mut tick = tokio::time::interval(checks.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let deps = gw.config().deployments.clone();
            let done = gw.probe_all(deps).await;
            let bad = done.iter().filter(|(_, p)| !p.ok).count();
            tracing::debug!(probed = done.len(), unhealthy = bad, "health check round");
        }
    })))
}
