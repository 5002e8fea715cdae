//! `GET /metrics`: Prometheus' text format, with LiteLLM's metric names
//! ([`crate::observe::metrics`]).
//!
//! On when `litellm_settings.callbacks` (or `success_callback`) names `prometheus`, or with
//! `llmgate.metrics: true`; otherwise a 404 that says how to turn it on. With
//! `litellm_settings.require_auth_for_metrics_endpoint: true` it asks for the master key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse as _, Response};

use super::{Admin, ApiError};
use crate::error::Error;
use crate::gateway::Gateway;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn metrics(
    State(gw): State<Arc<Gateway>>,
    admin: Result<Admin, ApiError>,
) -> Result<Response, ApiError> {
    let config = gw.config();
    if config.metrics_auth {
        admin?;
    }
    if gw.metrics().is_none() {
        return Err(Error::NotFound(
            "metrics are off: add `prometheus` to litellm_settings.callbacks, or set llmgate.metrics: true"
                .into(),
        )
        .into());
    }
    // Rendering walks every series: off the event loop, as LiteLLM does.
    let body = tokio::task::spawn_blocking(move || {
        let scrape = gw.scrape();
        gw.metrics().map(|m| m.render(&scrape)).unwrap_or_default()
    })
    .await
    .map_err(|e| Error::Internal(format!("rendering metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}
