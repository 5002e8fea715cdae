//! Health probes, with LiteLLM's paths and answers.
//!
//! Readiness is open to monitoring without a key, so it only says whether the gateway
//! serves; what it is made of (the database path, providers, policies, model groups) is
//! for an admin caller (the master key, or anyone when no master key is configured).

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;

use super::{Admin, ApiError, Query};
use crate::config::Deployment;
use crate::error::{Dialect, Error};
use crate::gateway::{Gateway, Probe, State as DeploymentState};

/// `GET /health/liveliness` (and `/health/liveness`): the process answers.
pub async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

/// `GET /health/readiness`'s answer (fields by name, the order clients have always seen).
/// The fields that are `None` (what the gateway is made of) are only for an admin caller.
#[derive(Serialize)]
pub struct Readiness<'a> {
    /// Config reloads: the serving config's path and load time, counts, the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<crate::gateway::ConfigReloadStats>,
    db: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_path: Option<&'a Path>,
    /// PostgreSQL's URL without its password (admin only; `db_path` for SQLite).
    #[serde(skip_serializing_if = "Option::is_none")]
    db_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployments: Option<Vec<DeploymentView>>,
    deployments_healthy: usize,
    deployments_unhealthy: usize,
    event_loops: usize,
    llmgate_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_groups: Option<usize>,
    open_connections_per_loop: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    providers: Option<Vec<String>>,
    /// The shared Redis (`router_settings.redis_*`): `connected`, `down` (limits and
    /// cooldowns are per instance meanwhile) or `off` (not configured).
    redis: &'static str,
    /// Where the shared Redis is (no password), for an admin caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_at: Option<String>,
    status: &'static str,
}

/// A deployment as readiness shows it to an admin: what it is (no secret) and its live
/// health (passive: the outcome of the requests it served, and its cooldown).
#[derive(Serialize)]
pub struct DeploymentView {
    model_id: String,
    model_name: String,
    provider: String,
    model: String,
    api_base: Option<String>,
    #[serde(flatten)]
    health: crate::gateway::Health,
    /// The last active health check (`GET /health`, background rounds), if any ran.
    last_probe: Option<Probe>,
}

impl DeploymentView {
    /// The view of one deployment and its health.
    pub fn new(
        d: &crate::config::Deployment,
        health: crate::gateway::Health,
        last_probe: Option<Probe>,
    ) -> Self {
        Self {
            model_id: d.id.clone(),
            model_name: d.model_name.clone(),
            provider: d.provider.clone(),
            model: d.model.clone(),
            api_base: d.api_base.clone(),
            health,
            last_probe,
        }
    }
}

/// `GET /health/readiness`: ready to serve, and how the event loops share the open
/// connections (this request's own included). An admin caller also sees the database path
/// and what is loaded.
pub async fn readiness(State(gw): State<Arc<Gateway>>, admin: Result<Admin, ApiError>) -> Response {
    let deployments = gw.deployment_health();
    let healthy = deployments
        .iter()
        .filter(|(d, h)| is_healthy(&gw, d, h))
        .count();
    let mut v = Readiness {
        config: None,
        db: "connected",
        db_path: None,
        db_url: None,
        deployments: None,
        deployments_healthy: healthy,
        deployments_unhealthy: deployments.len() - healthy,
        event_loops: gw.event_loops(),
        llmgate_version: env!("CARGO_PKG_VERSION"),
        model_groups: None,
        open_connections_per_loop: gw.loop_connections(),
        policies: None,
        providers: None,
        redis: match gw.shared().map(|s| s.status()) {
            None => "off",
            Some(crate::shared::Status::Connected) => "connected",
            Some(crate::shared::Status::Down) => "down",
        },
        redis_at: None,
        status: "healthy",
    };
    if admin.is_ok() {
        let reg = gw.registry();
        let config = gw.config();
        v.config = Some(gw.config_reloads());
        let store = gw.ledger().store();
        v.db_path = store.path();
        v.db_url = store.path().is_none().then(|| store.location());
        v.model_groups = Some(config.groups.len() + config.wildcards.len());
        v.providers = Some(reg.prefixes());
        v.policies = Some(reg.policy_names());
        v.redis_at = gw.shared().map(|s| s.shown());
        v.deployments = Some(
            deployments
                .into_iter()
                .map(|(d, h)| {
                    let last = gw.probes().last(&d.id);
                    DeploymentView::new(&d, h, last)
                })
                .collect(),
        );
    }
    Json(v).into_response()
}

/// Whether a deployment counts as healthy in readiness's counts: in rotation, its last
/// attempt answered, and its last probe (if any) too.
fn is_healthy(gw: &Gateway, d: &Deployment, h: &crate::gateway::Health) -> bool {
    h.state == DeploymentState::Healthy && gw.probes().last(&d.id).is_none_or(|p| p.ok)
}

/// `GET /health`'s query: `model`, a model group (or any name a client may ask for).
#[derive(serde::Deserialize, Default)]
pub struct HealthQuery {
    model: Option<String>,
}

/// `GET /health`'s answer, LiteLLM's shape.
#[derive(Serialize)]
pub struct EndpointsHealth {
    healthy_count: usize,
    healthy_endpoints: Vec<Endpoint>,
    unhealthy_count: usize,
    unhealthy_endpoints: Vec<Endpoint>,
}

/// One probed deployment, named without a secret.
#[derive(Serialize)]
pub struct Endpoint {
    api_base: Option<String>,
    checked_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    latency_ms: u64,
    /// `provider/model`.
    model: String,
    model_id: String,
    model_name: String,
}

impl Endpoint {
    /// The view of `d` and its probe.
    fn new(d: &Deployment, p: Probe) -> Self {
        Self {
            api_base: d.api_base.clone(),
            checked_at_ms: p.checked_at_ms,
            error: p.error,
            latency_ms: p.latency_ms,
            model: format!("{}/{}", d.provider, d.model),
            model_id: d.id.clone(),
            model_name: d.model_name.clone(),
        }
    }
}

/// `GET /health` (admin: probes cost money): probe every deployment (or those `?model=`
/// resolves to) with a tiny real request and list the healthy and unhealthy ones, with
/// the error. With `background_health_checks` on, answer from the latest background round
/// instead (deployments not probed yet are left out). Deployments whose mode is not probed
/// (images, audio, wildcards) are left out.
pub async fn endpoints(
    State(gw): State<Arc<Gateway>>,
    _admin: Admin,
    Query(q): Query<HealthQuery>,
) -> Result<Json<EndpointsHealth>, ApiError> {
    let deps = selected(&gw, q.model.as_deref()).map_err(|e| ApiError(e, Dialect::OpenAi))?;
    let probed = if gw.config().health_checks.background {
        deps.into_iter()
            .filter_map(|d| gw.probes().last(&d.id).map(|p| (d, p)))
            .collect()
    } else {
        gw.probe_all(deps).await
    };
    let (good, bad): (Vec<_>, Vec<_>) = probed.into_iter().partition(|(_, p)| p.ok);
    let view = |v: Vec<(Arc<Deployment>, Probe)>| -> Vec<Endpoint> {
        v.into_iter().map(|(d, p)| Endpoint::new(&d, p)).collect()
    };
    Ok(Json(EndpointsHealth {
        healthy_count: good.len(),
        healthy_endpoints: view(good),
        unhealthy_count: bad.len(),
        unhealthy_endpoints: view(bad),
    }))
}

/// The deployments `/health` looks at: all, or those `model` resolves to.
fn selected(gw: &Gateway, model: Option<&str>) -> Result<Vec<Arc<Deployment>>, Error> {
    let config = gw.config();
    let Some(model) = model else {
        return Ok(config.deployments.clone());
    };
    if model.is_empty() {
        return Err(Error::BadRequest(
            "model: must name a model group (or be left out to check every deployment)".into(),
        ));
    }
    let resolved = config
        .resolve(model)
        .ok_or_else(|| Error::ModelNotFound(model.to_string()))?;
    Ok(resolved
        .deployments
        .iter()
        .map(|&i| config.deployments[i].clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::assert_keys_by_name;

    #[test]
    fn readiness_shows_its_fields_by_name() {
        let mut v = Readiness {
            config: None,
            db: "connected",
            db_path: Some(Path::new("/x/llmgate.db")),
            db_url: Some("postgresql://u@h:5432/d"),
            deployments: Some(Vec::new()),
            deployments_healthy: 1,
            deployments_unhealthy: 0,
            event_loops: 2,
            llmgate_version: "0",
            model_groups: Some(3),
            open_connections_per_loop: Some(vec![1, 0]),
            policies: Some(vec!["ordered".into()]),
            providers: Some(vec!["openai".into()]),
            redis: "off",
            redis_at: None,
            status: "healthy",
        };
        assert_keys_by_name(&v);
        // Without the admin's fields.
        (v.db_path, v.model_groups, v.policies, v.providers) = (None, None, None, None);
        v.db_url = None;
        v.deployments = None;
        v.open_connections_per_loop = None;
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({
                "status": "healthy", "db": "connected", "llmgate_version": "0",
                "event_loops": 2, "open_connections_per_loop": null,
                "deployments_healthy": 1, "deployments_unhealthy": 0, "redis": "off",
            })
        );
    }
}
