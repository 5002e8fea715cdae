//! Azure OpenAI: the OpenAI wire format under `/openai/deployments/{deployment}/...` (model =
//! deployment name, `api-version` query required) and the newer `/openai/v1/...` paths, with
//! `api-key` authentication, Azure's error bodies and content-filter annotations.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::MockState;
use crate::common::{global_latency, header_str, query_param};
use crate::images;
use crate::openai::{self, Flavor};
use crate::record::RecordedRequest;

/// An Azure-shaped error: `{"error": {"code": "<code>", "message": ...}}`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// The error of a `mock-error-NNN` deployment.
pub(crate) fn status_error(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if code == 429 {
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version \
         2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. \
         Please retry after 1 second. Please go here: https://aka.ms/oai/quotaincrease if you \
         would like to further increase the default rate limit."
            .to_owned()
    } else {
        format!(
            "Mock upstream error: status {code} ({})",
            status.canonical_reason().unwrap_or("unknown")
        )
    };
    let mut resp = error_response(status, &code.to_string(), &message);
    if code == 429 || code == 503 {
        let headers = resp.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert("retry-after-ms", HeaderValue::from_static("1000"));
    }
    resp
}

/// `None` if the request may proceed, else Azure's 404 (no `api-version` query, when
/// `needs_version`) or 401 (wrong `api-key`; `Authorization: Bearer <key>`, as used with Entra
/// ID tokens, is accepted too).
pub(crate) fn gate(
    state: &MockState,
    uri: &Uri,
    headers: &HeaderMap,
    needs_version: bool,
) -> Option<Response> {
    if needs_version && query_param(uri.query(), "api-version").is_none_or(str::is_empty) {
        return Some(error_response(
            StatusCode::NOT_FOUND,
            "404",
            "Resource not found",
        ));
    }
    let key = state.opts.require_key.as_deref()?;
    let bearer = header_str(headers, "authorization").and_then(|a| a.strip_prefix("Bearer "));
    if header_str(headers, "api-key") == Some(key) || bearer == Some(key) {
        return None;
    }
    Some(error_response(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
         provide a valid key for an active subscription and use a correct regional API \
         endpoint for your resource.",
    ))
}

fn filtered_safe() -> Value {
    json!({ "filtered": false, "severity": "safe" })
}

/// The `content_filter_results` of a choice: nothing filtered.
pub(crate) fn content_filter_results() -> Value {
    json!({
        "hate": filtered_safe(),
        "self_harm": filtered_safe(),
        "sexual": filtered_safe(),
        "violence": filtered_safe(),
    })
}

/// The `prompt_filter_results` of a response: nothing filtered.
pub(crate) fn prompt_filter_results() -> Value {
    let mut results = content_filter_results();
    results["jailbreak"] = json!({ "filtered": false, "detected": false });
    json!([{ "prompt_index": 0, "content_filter_results": results }])
}

/// The first chunk of an Azure stream: no choices, only the prompt's filter results.
pub(crate) fn prompt_filter_chunk() -> Value {
    json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": prompt_filter_results(),
    })
}

/// Record, apply the latency option and check the request; `None` if it may proceed.
async fn admit(
    state: &MockState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    needs_version: bool,
) -> Option<Response> {
    state
        .recorder
        .push(RecordedRequest::new(method, uri, headers, body));
    global_latency(state).await;
    gate(state, uri, headers, needs_version)
}

/// `POST /openai/deployments/{deployment}/chat/completions?api-version=...`.
pub async fn deployment_chat(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = admit(&state, &method, &uri, &headers, &body, true).await {
        return resp;
    }
    openai::chat_answer(&state, &body, Some(&deployment), Flavor::Azure).await
}

/// `POST /openai/deployments/{deployment}/embeddings?api-version=...`.
pub async fn deployment_embeddings(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = admit(&state, &method, &uri, &headers, &body, true).await {
        return resp;
    }
    openai::embeddings_answer(&body, Some(&deployment), Flavor::Azure).await
}

/// `POST /openai/deployments/{deployment}/images/generations?api-version=...`.
pub async fn deployment_image_generations(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    images::generations(
        &state,
        &method,
        &uri,
        &headers,
        &body,
        Some(&deployment),
        Flavor::Azure,
    )
    .await
}

/// `POST /openai/deployments/{deployment}/images/edits?api-version=...` (multipart).
pub async fn deployment_image_edits(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    images::edits(
        &state,
        &method,
        &uri,
        &headers,
        &body,
        Some(&deployment),
        Flavor::Azure,
    )
    .await
}

/// `POST /openai/v1/chat/completions` (model from the body, `api-version` optional).
pub async fn v1_chat(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = admit(&state, &method, &uri, &headers, &body, false).await {
        return resp;
    }
    openai::chat_answer(&state, &body, None, Flavor::Azure).await
}

/// `POST /openai/v1/embeddings`.
pub async fn v1_embeddings(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(resp) = admit(&state, &method, &uri, &headers, &body, false).await {
        return resp;
    }
    openai::embeddings_answer(&body, None, Flavor::Azure).await
}

/// `POST /openai/v1/images/generations`.
pub async fn v1_image_generations(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    images::generations(&state, &method, &uri, &headers, &body, None, Flavor::Azure).await
}

/// `POST /openai/v1/images/edits` (multipart).
pub async fn v1_image_edits(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    images::edits(&state, &method, &uri, &headers, &body, None, Flavor::Azure).await
}
