//! Health probes, with LiteLLM's paths and answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::gateway::Gateway;

/// `GET /health/liveliness` (and `/health/liveness`): the process answers.
pub async fn liveliness() -> Json<&'static str> {
    Json("I'm alive!")
}

/// `GET /health/readiness`: ready to serve, with what is loaded and how the event loops
/// share the open connections (this request's own included).
pub async fn readiness(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let reg = gw.registry();
    let config = gw.config();
    Json(json!({
        "status": "healthy",
        "db": "connected",
        "db_path": gw.ledger().store().path(),
        "llmgate_version": env!("CARGO_PKG_VERSION"),
        "model_groups": config.groups.len() + config.wildcards.len(),
        "providers": reg.prefixes(),
        "policies": reg.policy_names(),
        "event_loops": gw.event_loops(),
        "open_connections_per_loop": gw.loop_connections(),
    }))
}
