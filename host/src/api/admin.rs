//! Admin routes: `GET /plugins`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use serde_json::json;

use crate::gateway::Gateway;

/// `GET /plugins`: every plugin file with name, version, kind, hash, load time, last error.
pub async fn plugins(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(e) = super::admin(&gw, &headers) {
        return super::openai_error(e);
    }
    let reg = gw.registry();
    Json(json!({ "plugins_dir": gw.config().plugins_dir, "plugins": reg.status })).into_response()
}
