//! OpenAI-compatible routes: `/v1/chat/completions`, `/v1/models`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ApiError, Dialect};
use crate::gateway::{Gateway, Request};
use crate::plugins::bindings::types::Api;

/// `POST /v1/chat/completions` (and `/chat/completions`).
pub async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(&gw, Api::ChatCompletions, headers, body).await
}

/// `POST /v1/embeddings` (and `/embeddings`).
pub async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(&gw, Api::Embeddings, headers, body).await
}

async fn serve(gw: &Gateway, api: Api, headers: HeaderMap, body: Body) -> Response {
    let limit = gw.config().max_request_body_bytes;
    let body = match super::read_body(&headers, body, limit).await {
        Ok(b) => b,
        Err(e) => return ApiError(e, Dialect::OpenAi).into_response(),
    };
    let req = Request {
        api,
        dialect: Dialect::OpenAi,
        headers,
        body,
    };
    match gw.handle(req).await {
        Ok(resp) => resp,
        Err(e) => ApiError(e, Dialect::OpenAi).into_response(),
    }
}

/// `GET /v1/models/{model}`: one model group, or 404.
pub async fn model(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let config = gw.config();
    let Some(resolved) = config.resolve(&id) else {
        return ApiError(crate::error::Error::ModelNotFound(id), Dialect::OpenAi).into_response();
    };
    let owned_by = resolved
        .deployments
        .first()
        .map_or("llmgate", |&i| config.deployments[i].provider.as_str());
    Json(json!({ "id": id, "object": "model", "created": gw.started_at(), "owned_by": owned_by }))
        .into_response()
}

/// `GET /v1/models`: every model group (wildcards included, as LiteLLM lists them).
pub async fn models(State(gw): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let config = gw.config();
    let created = gw.started_at();
    let mut data: Vec<serde_json::Value> = Vec::new();
    let groups = config
        .groups
        .iter()
        .chain(config.wildcards.iter().map(|(k, v)| (k, v)));
    for (name, idx) in groups {
        let owned_by = idx
            .first()
            .map_or("llmgate", |&i| config.deployments[i].provider.as_str());
        data.push(
            json!({ "id": name, "object": "model", "created": created, "owned_by": owned_by }),
        );
    }
    Json(json!({ "object": "list", "data": data }))
}
