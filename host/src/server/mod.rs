//! The HTTP server: routes and layers.
//!
//! Layers, outermost first:
//! 1. `log_requests`: one log line per request (method, path, status, duration, error kind).
//! 2. The routes below; unknown paths and methods answer in the error shape of the API
//!    the path belongs to (Anthropic's under `/messages`, else OpenAI's).
//!
//! Handlers stay thin: they read the body (bounded), call [`Gateway`], and render.

pub mod alerts;
pub mod config_reload;
pub mod conn;
pub mod loops;
pub mod reload;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::{self, ApiError};
use crate::error::{Error, ErrorKind};
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
        .route("/health", get(api::health::endpoints))
        .route("/health/liveliness", get(api::health::liveliness))
        .route("/health/liveness", get(api::health::liveliness))
        .route("/health/readiness", get(api::health::readiness))
        .route("/plugins", get(api::admin::plugins))
        .route("/metrics", get(api::metrics::metrics))
        .route("/metrics/", get(api::metrics::metrics))
        .route("/key/generate", post(api::keys::generate))
        .route("/key/info", get(api::keys::info))
        .route("/key/update", post(api::keys::update))
        .route("/key/delete", post(api::keys::delete))
        .route("/key/block", post(api::keys::block))
        .route("/key/unblock", post(api::keys::unblock))
        .route("/key/list", get(api::keys::list))
        .route("/key/regenerate", post(api::keys::regenerate_body))
        .route("/key/{key}/regenerate", post(api::keys::regenerate))
        .route("/spend/logs", get(api::keys::spend_logs))
        .route("/spend/logs/ui", get(api::spend::logs_ui))
        .route("/spend/tags", get(api::spend::tags))
        .route("/global/spend/report", get(api::spend::report))
        .route("/global/spend/logs", get(api::spend::logs))
        .route("/global/spend/keys", get(api::spend::keys))
        .route("/global/spend/models", get(api::spend::models))
        .route("/user/daily/activity", get(api::spend::daily_activity))
        .route("/ui", get(api::ui::index))
        .route("/ui/", get(api::ui::index))
        .route("/ui/{*file}", get(api::ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(log_requests))
        .with_state(gateway)
}

/// The path as logs show it: the matched route's template (`/key/{key}/regenerate`), so a
/// key or other value in the path never reaches a log line; for a path no route matched,
/// the path with every segment that could be a credential masked. Query strings are never
/// logged.
fn loggable_path(req: &Request) -> String {
    if let Some(route) = req.extensions().get::<axum::extract::MatchedPath>() {
        return route.as_str().to_string();
    }
    let path = req.uri().path();
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if could_be_secret(segment) {
            "<redacted>"
        } else {
            segment
        });
    }
    out
}

/// A path segment that may be a key: `sk-…` as LiteLLM's keys are, or a long run of
/// token characters mixing letters and digits.
fn could_be_secret(segment: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '%');
    segment.starts_with("sk-")
        || (segment.len() >= 20
            && segment.chars().all(token)
            && segment.chars().any(|c| c.is_ascii_digit())
            && segment.chars().any(|c| c.is_ascii_alphabetic()))
}

async fn not_found(req: Request) -> Response {
    let dialect = api::dialect_for(req.uri().path());
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
    let dialect = api::dialect_for(req.uri().path());
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
    let path = loggable_path(&req);
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

/// Raise the soft limit on open file descriptors to the hard limit (each client connection
/// and each upstream connection holds one); returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("could not raise the open file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The client connection cap when the config sets none: half of the descriptors left after
/// a reserve for the store, plugins and listeners (every client connection may need an
/// upstream one too), at most 10,000.
pub fn default_max_connections(fd_limit: u64) -> usize {
    (fd_limit.saturating_sub(128) / 2).clamp(16, 10_000) as usize
}
