//! The one error type of a provider plugin, the WIT [`GatewayError`]: constructors, and
//! how HTTP statuses, provider error codes and error bodies map onto its [`ErrorClass`].

use serde::Deserialize;

use crate::{ErrorClass, GatewayError, retry_after_ms};

/// Classify an upstream HTTP status.
pub fn class_for_status(status: u16) -> ErrorClass {
    match status {
        400 | 422 => ErrorClass::BadRequest,
        401 => ErrorClass::Auth,
        403 => ErrorClass::Permission,
        404 => ErrorClass::NotFound,
        408 | 504 => ErrorClass::Timeout,
        413 => ErrorClass::ContextLength,
        429 => ErrorClass::RateLimited,
        503 | 529 => ErrorClass::Overloaded,
        _ => ErrorClass::Upstream,
    }
}

/// Refine a class from a provider's error code, type or message.
pub fn refine(class: ErrorClass, code: Option<&str>, message: &str) -> ErrorClass {
    let code = code.unwrap_or("");
    let has = |s: &str| code.contains(s) || message.contains(s);
    if has("context_length_exceeded")
        || has("maximum context length")
        || has("prompt is too long")
        || has("too many tokens")
    {
        ErrorClass::ContextLength
    } else if has("content_filter") || has("content_policy") || has("content management policy") {
        ErrorClass::ContentFilter
    } else if has("insufficient_quota") || has("rate_limit") {
        ErrorClass::RateLimited
    } else if has("overloaded") {
        ErrorClass::Overloaded
    } else {
        class
    }
}

impl GatewayError {
    /// An error of `class` answered with `status`.
    pub fn new(class: ErrorClass, status: u16, message: impl Into<String>) -> Self {
        Self {
            class,
            status,
            message: message.into(),
            code: None,
            retry_after_ms: None,
        }
    }

    /// A 400 for a request the plugin cannot translate.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::BadRequest, 400, message)
    }

    /// A 502 for an upstream answer the plugin cannot understand.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Upstream, 502, message)
    }

    /// An upstream error answer: the status kept, the class from the status refined by the
    /// provider's code, message and code read from an Anthropic-shaped
    /// (`{"type":"error","error":{"type","message"}}`) or OpenAI-shaped
    /// (`{"error":{"message","type","code"}}`) body (any other body is quoted, cut to 300
    /// characters), `Retry-After`/`retry-after-ms` read from the headers.
    pub fn from_status(status: u16, headers: &[(String, String)], body: &[u8]) -> Self {
        let (class, message, code) =
            anthropic_shape(status, body).unwrap_or_else(|| openai_shape(status, body));
        Self {
            class,
            status,
            message,
            code,
            retry_after_ms: retry_after_ms(headers),
        }
    }
}

/// A converter's error about an upstream answer as a 502 naming it: `{what}: {message}`
/// (`unreadable Gemini stream: ...`), for `map_err`.
pub fn unreadable(what: &str) -> impl Fn(GatewayError) -> GatewayError + '_ {
    move |e| GatewayError::upstream(format!("{what}: {}", e.message))
}

impl From<crate::url::NotASegment> for GatewayError {
    fn from(e: crate::url::NotASegment) -> Self {
        Self::bad_request(e.to_string())
    }
}

type Read = (ErrorClass, String, Option<String>);

#[derive(Deserialize)]
struct AnthropicErrorIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    error: Option<AnthropicErrorDetailIn>,
}

#[derive(Deserialize)]
struct AnthropicErrorDetailIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

fn anthropic_shape(status: u16, body: &[u8]) -> Option<Read> {
    let parsed = serde_json::from_slice::<AnthropicErrorIn>(body).ok()?;
    let (Some("error"), Some(detail)) = (parsed.kind.as_deref(), parsed.error) else {
        return None;
    };
    let message = detail
        .message
        .unwrap_or_else(|| format!("upstream answered {status}"));
    let base = match detail.kind.as_deref() {
        Some("overloaded_error") => ErrorClass::Overloaded,
        Some("rate_limit_error") => ErrorClass::RateLimited,
        Some("authentication_error") => ErrorClass::Auth,
        Some("permission_error") => ErrorClass::Permission,
        Some("not_found_error") => ErrorClass::NotFound,
        Some("timeout_error") => ErrorClass::Timeout,
        Some("invalid_request_error") if status != 413 => ErrorClass::BadRequest,
        _ => class_for_status(status),
    };
    let lower = message.to_ascii_lowercase();
    let class = if lower.contains("prompt is too long") || lower.contains("exceed context limit") {
        ErrorClass::ContextLength
    } else {
        refine(base, detail.kind.as_deref(), &message)
    };
    Some((class, message, detail.kind))
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn openai_shape(status: u16, body: &[u8]) -> Read {
    let class = class_for_status(status);
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        let code = match error.code {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => error.kind,
        };
        let message = error
            .message
            .unwrap_or_else(|| format!("upstream answered {status}"));
        return (refine(class, code.as_deref(), &message), message, code);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("upstream answered {status} with an empty body")
    } else {
        let cut: String = text.chars().take(300).collect();
        format!("upstream answered {status}: {cut}")
    };
    (class, message, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        assert_eq!(class_for_status(429), ErrorClass::RateLimited);
        assert_eq!(class_for_status(500), ErrorClass::Upstream);
        assert_eq!(class_for_status(529), ErrorClass::Overloaded);
        assert_eq!(
            refine(ErrorClass::BadRequest, Some("context_length_exceeded"), ""),
            ErrorClass::ContextLength
        );
        assert_eq!(
            refine(ErrorClass::BadRequest, None, "bad"),
            ErrorClass::BadRequest
        );
    }

    #[test]
    fn reads_openai_errors() {
        let e = GatewayError::from_status(
            400,
            &[],
            br#"{"error":{"message":"This model's maximum context length is 128000 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.class, ErrorClass::ContextLength);
        assert_eq!(e.status, 400);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = GatewayError::from_status(502, &[], b"<html>bad gateway</html>");
        assert_eq!(e.class, ErrorClass::Upstream);
        assert!(e.message.contains("bad gateway"));
        let e = GatewayError::from_status(
            429,
            &[("Retry-After".into(), "2".into())],
            br#"{"error":{"code":429,"message":"slow down"}}"#,
        );
        assert_eq!(
            (e.class, e.code.as_deref(), e.retry_after_ms),
            (ErrorClass::RateLimited, Some("429"), Some(2000))
        );
    }
}
