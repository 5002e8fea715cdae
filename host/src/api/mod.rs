//! HTTP handlers, thin: extract, call the gateway, render. One module per dialect.

pub mod admin;
pub mod anthropic;
mod error;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod openai;
pub mod spend;
pub mod ui;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use bytes::Bytes;

use crate::error::{Dialect, Error};
use crate::gateway::{Gateway, Request};
use crate::ledger::Caller;
use crate::wit::types::Api;
pub use error::{ApiError, dialect_for};

/// Serializes `value` with its object keys by name, as `serde_json::json!` did: for a view
/// field whose type declares its fields in another order, so the answer keeps the order
/// clients have always seen.
pub(crate) fn by_name<T: serde::Serialize, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// The dialect of the route a request matched (its template, so that a model name in the
/// path cannot change it), else of its path.
fn route_dialect(parts: &Parts) -> Dialect {
    match parts.extensions.get::<MatchedPath>() {
        Some(route) => dialect_for(route.as_str()),
        None => dialect_for(parts.uri.path()),
    }
}

/// Any caller with a valid key (or the master key): `Authorization: Bearer` or `x-api-key`.
pub struct AnyKey(pub Caller);

/// A caller of a model-listing route (`/v1/models`, `/model/info`): like [`AnyKey`], and a
/// virtual key must be usable (not blocked, expired or deleted), as the routes that serve
/// requests demand.
pub struct Lister(pub Caller);

/// An admin caller: the master key (or anyone when no master key is configured).
pub struct Admin(pub Caller);

impl FromRequestParts<Arc<Gateway>> for AnyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        gw.ledger()
            .authenticate(&parts.headers)
            .map(Self)
            .map_err(|e| ApiError(e, route_dialect(parts)))
    }
}

impl FromRequestParts<Arc<Gateway>> for Lister {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let AnyKey(caller) = AnyKey::from_request_parts(parts, gw).await?;
        if let Caller::Key(k) = &caller {
            k.usable().map_err(|e| ApiError(e, route_dialect(parts)))?;
        }
        Ok(Self(caller))
    }
}

impl FromRequestParts<Arc<Gateway>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let AnyKey(caller) = AnyKey::from_request_parts(parts, gw).await?;
        if caller.is_admin() {
            return Ok(Self(caller));
        }
        Err(ApiError(
            Error::Forbidden(
                "this route needs the master key (general_settings.master_key); a virtual key may only call model routes and GET /key/info for itself".into(),
            ),
            route_dialect(parts),
        ))
    }
}

/// A query string read into `T` (a struct of the parameters a route accepts; others are
/// ignored). A repeated parameter counts once, its last value, as axum's `Query` reads a map.
/// Values are checked by the route (`T`'s methods), so that its messages name the parameter.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse as _;
        let axum::extract::Query(map) = axum::extract::Query::<
            std::collections::HashMap<String, String>,
        >::from_request_parts(parts, state)
        .await
        .map_err(|r| r.into_response())?;
        let params: serde_json::Map<String, serde_json::Value> = map
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        T::deserialize(serde_json::Value::Object(params))
            .map(Self)
            .map_err(|e| {
                ApiError(Error::BadRequest(e.to_string()), route_dialect(parts)).into_response()
            })
    }
}

/// A model request as its handler receives it: the caller ([`AnyKey`]), then the headers
/// and the body, bounded ([`bounded_body`]), extracted in that order. Every model route
/// takes this one extractor and names only its API and dialect. A request refused here (no
/// key, a body too large or too slow) is refused by [`ModelCall::serve`], which knows the
/// API to record it under.
pub struct ModelCall {
    gw: Arc<Gateway>,
    read: Result<Read, Refused>,
}

/// A model request's caller, headers and body.
struct Read {
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
}

/// Why a model request could not be read, and by whom (`None`: not authenticated).
struct Refused {
    caller: Option<Caller>,
    error: Error,
}

impl FromRequest<Arc<Gateway>> for ModelCall {
    type Rejection = std::convert::Infallible;

    async fn from_request(
        req: axum::extract::Request,
        gw: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let read = match AnyKey::from_request_parts(&mut parts, gw).await {
            Err(ApiError(error, _)) => Err(Refused {
                caller: None,
                error,
            }),
            Ok(AnyKey(caller)) => match bounded_body(&parts, body, gw).await {
                Ok(body) => Ok(Read {
                    caller,
                    headers: parts.headers,
                    body,
                }),
                Err(ApiError(error, _)) => Err(Refused {
                    caller: Some(caller),
                    error,
                }),
            },
        };
        Ok(Self {
            gw: gw.clone(),
            read,
        })
    }
}

/// The request body, bounded: `max_request_body_bytes` (413) and
/// `llmgate.client_body_timeout_seconds` (408), as [`read_body`] reads it.
async fn bounded_body(parts: &Parts, body: Body, gw: &Gateway) -> Result<Bytes, ApiError> {
    let (limit, timeout) = {
        let config = gw.config();
        (
            config.max_request_body_bytes,
            config.client.body_read_timeout,
        )
    };
    read_body(&parts.headers, body, limit, timeout)
        .await
        .map_err(|e| ApiError(e, route_dialect(parts)))
}

impl ModelCall {
    /// Hand the request to the gateway as `api`; its errors answer in `dialect`'s shape.
    pub(crate) async fn serve(
        self,
        api: Api,
        dialect: Dialect,
    ) -> Result<axum::response::Response, ApiError> {
        let read = self.read.map_err(|r| {
            self.gw.refused(api, r.caller.as_ref(), "", &r.error);
            ApiError(r.error, dialect)
        })?;
        let req = Request {
            api,
            dialect,
            headers: read.headers,
            body: read.body,
            caller: read.caller,
        };
        self.gw.handle(req).await.map_err(|e| ApiError(e, dialect))
    }
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

/// Asserts that `view` serializes its object keys by name at every depth, as the `json!`
/// answers the views replaced did (a `Value`'s map is ordered by key).
#[cfg(test)]
pub(crate) fn assert_keys_by_name<T: serde::Serialize>(view: &T) {
    let text = serde_json::to_string(view).unwrap();
    let by_name = serde_json::to_value(view).unwrap().to_string();
    assert_eq!(text, by_name);
}
