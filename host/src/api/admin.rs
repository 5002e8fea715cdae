//! Admin routes: `GET /plugins`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::gateway::Gateway;

/// `GET /plugins`: every plugin file with name, version, kind, hash, load time, last error.
pub async fn plugins(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let reg = gw.registry();
    Json(json!({ "plugins_dir": gw.config().plugins_dir, "plugins": reg.status }))
}
