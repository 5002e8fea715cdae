//! The gateway's one error type: every failure a client can see, its HTTP status, and how
//! it is rendered in each API dialect. Errors become HTTP in exactly one place
//! ([`Error::render`]), at the edge.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::wit::types::ErrorClass;

/// Which API's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error":{"message","type","param","code"}}`
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`
    Anthropic,
}

/// Everything that can go wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or missing something.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is larger than `max_request_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The client did not send the whole request body in time.
    #[error(
        "the request body did not arrive within {seconds} s (llmgate.client_body_timeout_seconds)"
    )]
    RequestTimeout {
        /// The configured timeout.
        seconds: f64,
    },
    /// No model group, alias or wildcard matches the requested model.
    #[error("model `{0}` is not served by this gateway; GET /v1/models lists the models")]
    ModelNotFound(String),
    /// No route for this path.
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// No provider plugin is loaded for a deployment's provider prefix.
    #[error(
        "no provider plugin serves `{provider}/` (deployment {deployment}); loaded providers: {loaded}"
    )]
    NoProvider {
        /// The missing prefix.
        provider: String,
        /// The deployment that needs it.
        deployment: String,
        /// The prefixes that are loaded.
        loaded: String,
    },
    /// The upstream (or the plugin on its behalf) reported an error.
    #[error("{message}")]
    Upstream {
        /// Error class.
        class: ErrorClass,
        /// HTTP status to answer with.
        status: u16,
        /// Message for the client.
        message: String,
        /// Provider error code, if any.
        code: Option<String>,
        /// Upstream's Retry-After in ms.
        retry_after_ms: Option<u32>,
    },
    /// A plugin trapped, ran out of time or memory, or returned something invalid.
    #[error("plugin {plugin} failed: {message}")]
    Plugin {
        /// `name@version`.
        plugin: String,
        /// What happened.
        message: String,
    },
    /// The gateway cannot serve the request (no deployment available, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// Every plugin instance (`llmgate.plugin_limits.max_instances`) is in use by requests
    /// in flight: the gateway is at capacity, not the deployment at fault.
    #[error("{0}")]
    PluginCapacity(String),
    /// A bug or an unexpected condition.
    #[error("internal error: {0}")]
    Internal(String),
    /// No key, an unknown key, an expired or blocked key.
    #[error("Authentication Error, {0}")]
    Unauthorized(String),
    /// A valid key that may not do this (model not allowed, admin route).
    #[error("{0}")]
    Forbidden(String),
    /// The key (or one of its model budgets) has spent its budget for this window.
    #[error("Budget has been exceeded! {scope} Current cost: {spend}, Max budget: {max_budget}")]
    BudgetExceeded {
        /// What ran out (`Key=sk-...abcd over budget.`).
        scope: String,
        /// USD spent (settled requests only).
        spend: f64,
        /// The cap, USD.
        max_budget: f64,
    },
    /// The key's budget is not spent, but requests in flight have reserved the rest of it:
    /// a retry once they settle can succeed.
    #[error("{message}")]
    BudgetHeld {
        /// The real spend, the reservations and the budget.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// Strict admission: this request's worst case does not fit in what is left of the
    /// budget, whatever else is in flight (waiting does not help; a smaller `max_tokens` may).
    #[error("{0}")]
    BudgetTooSmall(String),
    /// A key's rpm, tpm or parallel-request limit is reached.
    #[error("{message}")]
    RateLimited {
        /// Which limit, and its values.
        message: String,
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
        /// `x-ratelimit-*` headers.
        headers: Vec<(&'static str, String)>,
    },
    /// An admin lookup found nothing (unknown key).
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            Self::BadRequest(_) => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::RequestTimeout { .. } => 408,
            Self::ModelNotFound(_) | Self::RouteNotFound { .. } => 404,
            Self::NoProvider { .. } | Self::Plugin { .. } | Self::Internal(_) => 500,
            Self::Upstream { status, .. } => *status,
            Self::Unavailable(_) | Self::PluginCapacity(_) => 503,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::BudgetExceeded { .. } | Self::BudgetTooSmall(_) => 400,
            Self::RateLimited { .. } | Self::BudgetHeld { .. } => 429,
            Self::NotFound(_) => 404,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    /// The error's class, for retry and fallback decisions.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::BadRequest(_) | Self::PayloadTooLarge { .. } | Self::RequestTimeout { .. } => {
                ErrorClass::BadRequest
            }
            Self::ModelNotFound(_) | Self::RouteNotFound { .. } => ErrorClass::NotFound,
            Self::Upstream { class, .. } => *class,
            Self::NoProvider { .. } | Self::Plugin { .. } | Self::Internal(_) => {
                ErrorClass::Upstream
            }
            Self::Unavailable(_) | Self::PluginCapacity(_) => ErrorClass::Overloaded,
            Self::Unauthorized(_) => ErrorClass::Auth,
            Self::Forbidden(_) | Self::BudgetExceeded { .. } | Self::BudgetTooSmall(_) => {
                ErrorClass::Permission
            }
            Self::RateLimited { .. } | Self::BudgetHeld { .. } => ErrorClass::RateLimited,
            Self::NotFound(_) => ErrorClass::NotFound,
        }
    }

    /// A short, low-cardinality name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::ModelNotFound(_) => "model_not_found",
            Self::RouteNotFound { .. } => "route_not_found",
            Self::NoProvider { .. } => "no_provider",
            Self::Upstream { .. } => "upstream",
            Self::Plugin { .. } => "plugin_fault",
            Self::Unavailable(_) => "unavailable",
            Self::PluginCapacity(_) => "plugin_capacity",
            Self::Internal(_) => "internal",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::BudgetHeld { .. } => "budget_held",
            Self::BudgetTooSmall(_) => "budget_too_small",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotFound(_) => "not_found",
        }
    }

    /// OpenAI's `error.type` for this error.
    fn openai_type(&self) -> &'static str {
        match self {
            Self::BadRequest(_)
            | Self::PayloadTooLarge { .. }
            | Self::RequestTimeout { .. }
            | Self::ModelNotFound(_)
            | Self::RouteNotFound { .. } => "invalid_request_error",
            Self::Upstream { class, .. } => match class {
                ErrorClass::BadRequest
                | ErrorClass::ContextLength
                | ErrorClass::ContentFilter
                | ErrorClass::NotFound => "invalid_request_error",
                ErrorClass::Auth => "authentication_error",
                ErrorClass::Permission => "permission_error",
                ErrorClass::RateLimited => "rate_limit_error",
                ErrorClass::Overloaded | ErrorClass::Upstream => "api_error",
                ErrorClass::Timeout => "timeout_error",
            },
            Self::NoProvider { .. } | Self::Plugin { .. } | Self::Internal(_) => "server_error",
            Self::Unavailable(_) | Self::PluginCapacity(_) => "service_unavailable",
            Self::Unauthorized(_) => "auth_error",
            Self::Forbidden(_) => "permission_error",
            Self::BudgetExceeded { .. } | Self::BudgetTooSmall(_) => "budget_exceeded",
            Self::RateLimited { .. } | Self::BudgetHeld { .. } => "rate_limit_error",
            Self::NotFound(_) => "not_found_error",
        }
    }

    /// Anthropic's `error.type` for this error.
    fn anthropic_type(&self) -> &'static str {
        match self.status().as_u16() {
            400 | 413 | 422 => {
                if matches!(self, Self::PayloadTooLarge { .. }) {
                    "request_too_large"
                } else {
                    "invalid_request_error"
                }
            }
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 | 503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }

    fn code(&self) -> Option<String> {
        match self {
            Self::Upstream { code, .. } => code.clone(),
            Self::ModelNotFound(_) => Some("model_not_found".into()),
            Self::Plugin { .. } => Some("plugin_fault".into()),
            Self::Unauthorized(_) => Some("401".into()),
            Self::Forbidden(_) => Some("403".into()),
            Self::BudgetExceeded { .. } => Some("budget_exceeded".into()),
            Self::BudgetTooSmall(_) => Some("budget_too_small_for_request".into()),
            Self::BudgetHeld { .. } => Some("budget_held_by_requests_in_flight".into()),
            Self::PluginCapacity(_) => Some("plugin_instances_exhausted".into()),
            Self::RateLimited { .. } => Some("429".into()),
            _ => None,
        }
    }

    /// The JSON body in `dialect`'s error shape.
    pub fn body(&self, dialect: Dialect) -> serde_json::Value {
        let message = self.to_string();
        match dialect {
            Dialect::OpenAi => json!({
                "error": {
                    "message": message,
                    "type": self.openai_type(),
                    "param": serde_json::Value::Null,
                    "code": self.code(),
                }
            }),
            Dialect::Anthropic => json!({
                "type": "error",
                "error": { "type": self.anthropic_type(), "message": message }
            }),
        }
    }

    /// The whole HTTP response in `dialect`'s error shape.
    pub fn render(&self, dialect: Dialect) -> Response {
        let mut resp = (self.status(), axum::Json(self.body(dialect))).into_response();
        if let Self::Upstream {
            retry_after_ms: Some(ms),
            ..
        } = self
        {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        let retry_after = match self {
            Self::BudgetHeld {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::PluginCapacity(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        if let Self::RateLimited {
            retry_after_secs,
            headers,
            ..
        } = self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(v) {
                    resp.headers_mut().insert(*k, v);
                }
            }
        }
        if matches!(self, Self::PayloadTooLarge { .. }) {
            // The rest of the body is not read: the connection cannot be reused.
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp.extensions_mut().insert(ErrorKind(self.kind()));
        resp
    }
}

/// Put on error responses so the logging layer can name the error kind once.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);
