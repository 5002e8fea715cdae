//! Anthropic-compatible routes: `POST /v1/messages` and `/v1/messages/count_tokens`.
//! Errors answer in Anthropic's shape (`{"type":"error","error":{...}}`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Dialect};
use crate::gateway::{Gateway, Request};
use crate::wit::types::Api;

/// `POST /v1/messages` (and `/messages`).
pub async fn messages(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    serve(&gw, Api::Messages, headers, body).await
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(&gw, Api::CountTokens, headers, body).await
}

async fn serve(gw: &Gateway, api: Api, headers: HeaderMap, body: Body) -> Response {
    let caller = match super::caller(gw, &headers) {
        Ok(c) => c,
        Err(e) => return ApiError(e, Dialect::Anthropic).into_response(),
    };
    let config = gw.config();
    let (limit, timeout) = (
        config.max_request_body_bytes,
        config.client.body_read_timeout,
    );
    let body = match super::read_body(&headers, body, limit, timeout).await {
        Ok(b) => b,
        Err(e) => return ApiError(e, Dialect::Anthropic).into_response(),
    };
    let req = Request {
        api,
        dialect: Dialect::Anthropic,
        headers,
        body,
        caller,
    };
    match gw.handle(req).await {
        Ok(resp) => resp,
        Err(e) => ApiError(e, Dialect::Anthropic).into_response(),
    }
}
