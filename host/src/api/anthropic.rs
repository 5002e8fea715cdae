//! Anthropic-compatible routes: `POST /v1/messages` and `/v1/messages/count_tokens`.
//! Errors answer in Anthropic's shape (`{"type":"error","error":{...}}`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{AnyKey, ApiError, Bounded};
use crate::error::Dialect;
use crate::gateway::Gateway;
use crate::wit::types::Api;

/// `POST /v1/messages` (and `/messages`).
pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    AnyKey(caller): AnyKey,
    headers: HeaderMap,
    Bounded(body): Bounded,
) -> Result<Response, ApiError> {
    super::serve(
        &gw,
        Api::Messages,
        Dialect::Anthropic,
        caller,
        headers,
        body,
    )
    .await
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    AnyKey(caller): AnyKey,
    headers: HeaderMap,
    Bounded(body): Bounded,
) -> Result<Response, ApiError> {
    super::serve(
        &gw,
        Api::CountTokens,
        Dialect::Anthropic,
        caller,
        headers,
        body,
    )
    .await
}
