//! Anthropic-compatible routes: `POST /v1/messages` and `/v1/messages/count_tokens`.
//! Errors answer in Anthropic's shape (`{"type":"error","error":{...}}`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{AnyKey, ApiError, Bounded};
use crate::error::Dialect;
use crate::gateway::{Gateway, Request};
use crate::plugins::bindings::types::Api;

/// `POST /v1/messages` (and `/messages`).
pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    AnyKey(caller): AnyKey,
    headers: HeaderMap,
    Bounded(body): Bounded,
) -> Result<Response, ApiError> {
    serve(&gw, Api::Messages, caller, headers, body).await
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    AnyKey(caller): AnyKey,
    headers: HeaderMap,
    Bounded(body): Bounded,
) -> Result<Response, ApiError> {
    serve(&gw, Api::CountTokens, caller, headers, body).await
}

/// Errors answer in Anthropic's shape.
async fn serve(
    gw: &Gateway,
    api: Api,
    caller: crate::ledger::Caller,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let req = Request {
        api,
        dialect: Dialect::Anthropic,
        headers,
        body,
        caller,
    };
    gw.handle(req)
        .await
        .map_err(|e| ApiError(e, Dialect::Anthropic))
}
