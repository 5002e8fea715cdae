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

use super::{Admin, ApiError};
use crate::gateway::Gateway;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    deployments: Option<Vec<DeploymentView>>,
    event_loops: usize,
    llmgate_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_groups: Option<usize>,
    open_connections_per_loop: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    providers: Option<Vec<String>>,
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
}

impl DeploymentView {
    /// The view of one deployment and its health.
    pub fn new(d: &crate::config::Deployment, health: crate::gateway::Health) -> Self {
        Self {
            model_id: d.id.clone(),
            model_name: d.model_name.clone(),
            provider: d.provider.clone(),
            model: d.model.clone(),
            api_base: d.api_base.clone(),
            health,
        }
    }
}

/// `GET /health/readiness`: ready to serve, and how the event loops share the open
/// connections (this request's own included). An admin caller also sees the database path
/// and what is loaded.
pub async fn readiness(State(gw): State<Arc<Gateway>>, admin: Result<Admin, ApiError>) -> Response {
    let mut v = Readiness {
        config: None,
        db: "connected",
        db_path: None,
        deployments: None,
        event_loops: gw.event_loops(),
        llmgate_version: env!("CARGO_PKG_VERSION"),
        model_groups: None,
        open_connections_per_loop: gw.loop_connections(),
        policies: None,
        providers: None,
        status: "healthy",
    };
    if admin.is_ok() {
        let reg = gw.registry();
        let config = gw.config();
        v.config = Some(gw.config_reloads());
        v.db_path = Some(gw.ledger().store().path());
        v.model_groups = Some(config.groups.len() + config.wildcards.len());
        v.providers = Some(reg.prefixes());
        v.policies = Some(reg.policy_names());
        let deployments = gw.deployment_health();
        v.deployments = Some(
            deployments
                .into_iter()
                .map(|(d, h)| DeploymentView::new(&d, h))
                .collect(),
        );
    }
    Json(v).into_response()
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
            deployments: Some(Vec::new()),
            event_loops: 2,
            llmgate_version: "0",
            model_groups: Some(3),
            open_connections_per_loop: Some(vec![1, 0]),
            policies: Some(vec!["ordered".into()]),
            providers: Some(vec!["openai".into()]),
            status: "healthy",
        };
        assert_keys_by_name(&v);
        // Without the admin's fields.
        (v.db_path, v.model_groups, v.policies, v.providers) = (None, None, None, None);
        v.deployments = None;
        v.open_connections_per_loop = None;
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({
                "status": "healthy", "db": "connected", "llmgate_version": "0",
                "event_loops": 2, "open_connections_per_loop": null,
            })
        );
    }
}
