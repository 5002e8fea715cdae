//! The HTTP server: routes and layers.
//!
//! Layers, outermost first:
//! 1. `log_requests`: one log line per request (method, path, status, duration, error kind).
//! 2. The routes below; unknown paths and methods answer in the error shape of the API
//!    the path belongs to (Anthropic's under `/messages`, else OpenAI's).
//!
//! Handlers stay thin: they read the body (bounded), call [`Gateway`], and render.

pub mod loops;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api;
use crate::error::{ApiError, Dialect, Error, ErrorKind};
use crate::gateway::Gateway;

/// The whole application; used by the real server and by in-process tests.
pub fn app(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(api::openai::chat_completions))
        .route("/chat/completions", post(api::openai::chat_completions))
        .route(
            "/openai/v1/chat/completions",
            post(api::openai::chat_completions),
        )
        .route("/v1/messages", post(api::anthropic::messages))
        .route("/messages", post(api::anthropic::messages))
        .route(
            "/v1/messages/count_tokens",
            post(api::anthropic::count_tokens),
        )
        .route("/messages/count_tokens", post(api::anthropic::count_tokens))
        .route(
            "/v1/images/generations",
            post(api::openai::images_generations),
        )
        .route("/images/generations", post(api::openai::images_generations))
        .route("/v1/images/edits", post(api::openai::images_edits))
        .route("/images/edits", post(api::openai::images_edits))
        .route("/v1/embeddings", post(api::openai::embeddings))
        .route("/embeddings", post(api::openai::embeddings))
        .route("/v1/models", get(api::openai::models))
        .route("/models", get(api::openai::models))
        .route("/v1/models/{*model}", get(api::openai::model))
        .route("/model/info", get(api::openai::model_info))
        .route("/v1/model/info", get(api::openai::model_info))
        .route("/models/{*model}", get(api::openai::model))
        .route("/health/liveliness", get(api::health::liveliness))
        .route("/health/liveness", get(api::health::liveliness))
        .route("/health/readiness", get(api::health::readiness))
        .route("/plugins", get(api::admin::plugins))
        .route("/key/generate", post(api::keys::generate))
        .route("/key/info", get(api::keys::info))
        .route("/key/update", post(api::keys::update))
        .route("/key/delete", post(api::keys::delete))
        .route("/key/list", get(api::keys::list))
        .route("/key/regenerate", post(api::keys::regenerate_body))
        .route("/key/{key}/regenerate", post(api::keys::regenerate))
        .route("/spend/logs", get(api::keys::spend_logs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(log_requests))
        .with_state(gateway)
}

fn dialect_for(path: &str) -> Dialect {
    if path.contains("/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

async fn not_found(req: Request) -> Response {
    let dialect = dialect_for(req.uri().path());
    ApiError(
        Error::RouteNotFound {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
        },
        dialect,
    )
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let dialect = dialect_for(req.uri().path());
    let mut resp = ApiError(
        Error::BadRequest(format!(
            "method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        )),
        dialect,
    )
    .into_response();
    *resp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    resp
}

async fn log_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    match resp.extensions().get::<ErrorKind>() {
        Some(kind) => {
            tracing::warn!(%method, %path, status, micros, error = kind.0, "request failed")
        }
        None => tracing::debug!(%method, %path, status, micros, "request"),
    }
    resp
}
