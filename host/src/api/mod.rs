//! HTTP handlers, thin: extract, call the gateway, render. One module per dialect.

pub mod admin;
pub mod anthropic;
pub mod health;
pub mod keys;
pub mod openai;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;

use crate::error::{ApiError, Dialect, Error};
use crate::gateway::Gateway;
use crate::ledger::Caller;

/// Authenticate an API request (any valid key, or the master key).
pub fn caller(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, Error> {
    gw.ledger().authenticate(headers)
}

/// Authenticate a model-listing request (`/v1/models`, `/model/info`): like [`caller`], and a
/// virtual key must be usable (not blocked, expired or deleted), as the routes that serve
/// requests demand.
pub fn lister(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, Error> {
    let c = caller(gw, headers)?;
    if let Caller::Key(k) = &c {
        k.usable()?;
    }
    Ok(c)
}

/// Authenticate an admin request: the master key (or no master key configured).
pub fn admin(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, Error> {
    let c = caller(gw, headers)?;
    if c.is_admin() {
        Ok(c)
    } else {
        Err(Error::Forbidden(
            "this route needs the master key (general_settings.master_key); a virtual key may only call model routes and GET /key/info for itself".into(),
        ))
    }
}

/// Render an error in OpenAI's shape.
pub fn openai_error(e: Error) -> Response {
    ApiError(e, Dialect::OpenAi).into_response()
}

/// Read a request body up to `limit` bytes within `timeout`; larger bodies are refused with
/// 413, slower ones with 408 (`llmgate.client_body_timeout_seconds`).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let Ok(read) = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await else {
        return Err(Error::RequestTimeout {
            seconds: timeout.as_secs_f64(),
        });
    };
    match read {
        Ok(b) => Ok(b),
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util_limit::LengthLimitError>() {
                    return Err(Error::PayloadTooLarge { limit });
                }
                src = s.source();
            }
            if e.to_string().contains("length limit") {
                return Err(Error::PayloadTooLarge { limit });
            }
            Err(Error::BadRequest(format!(
                "could not read the request body: {e}"
            )))
        }
    }
}

mod http_body_util_limit {
    pub use http_body_util::LengthLimitError;
}
