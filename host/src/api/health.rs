//! Health probes, with LiteLLM's paths and answers.
//!
//! Readiness is open to monitoring without a key, so it only says whether the gateway
//! serves; what it is made of (the database path, providers, policies, model groups) is
//! for an admin caller (the master key, or anyone when no master key is configured).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::{Admin, ApiError};
use crate::gateway::Gateway;

/// `GET /health/liveliness` (and `/health/liveness`): the process answers.
pub async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

/// `GET /health/readiness`: ready to serve, and how the event loops share the open
/// connections (this request's own included). An admin caller also sees the database path
/// and what is loaded.
pub async fn readiness(
    State(gw): State<Arc<Gateway>>,
    admin: Result<Admin, ApiError>,
) -> Json<serde_json::Value> {
    let mut v = json!({
        "status": "healthy",
        "db": "connected",
        "llmgate_version": env!("CARGO_PKG_VERSION"),
        "event_loops": gw.event_loops(),
        "open_connections_per_loop": gw.loop_connections(),
    });
    if admin.is_ok() {
        let reg = gw.registry();
        let config = gw.config();
        v["db_path"] = json!(gw.ledger().store().path());
        v["model_groups"] = json!(config.groups.len() + config.wildcards.len());
        v["providers"] = json!(reg.prefixes());
        v["policies"] = json!(reg.policy_names());
    }
    Json(v)
}
