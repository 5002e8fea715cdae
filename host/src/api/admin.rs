//! Admin routes: `GET /plugins`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::Admin;
use crate::gateway::Gateway;

/// `GET /plugins`: every plugin file with name, version, kind, hash, load time, last error,
/// how many hot-reload rescans have run, and the instance pool (its size, and how many
/// requests were refused because it was full).
pub async fn plugins(State(gw): State<Arc<Gateway>>, _: Admin) -> Json<serde_json::Value> {
    let reg = gw.registry();
    let config = gw.config();
    Json(json!({
        "plugins_dir": config.plugins_dir,
        "hot_reload": {
            "enabled": config.hot_reload,
            "rescans": gw.reload_stats().scans.load(std::sync::atomic::Ordering::Relaxed),
        },
        "instance_pool": {
            "max_instances": gw.runtime().max_instances(),
            "exhausted_total": gw.runtime().pool_exhausted_total(),
        },
        "plugins": reg.status,
    }))
}
