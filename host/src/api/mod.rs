//! HTTP handlers, thin: extract, call the gateway, render. One module per dialect.

pub mod admin;
pub mod anthropic;
pub mod health;
pub mod openai;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;

use crate::error::Error;

/// Read a request body up to `limit` bytes; larger bodies are refused with 413.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    match axum::body::to_bytes(body, limit).await {
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
