//! Bedrock error answers and event-stream exceptions, classified.
//!
//! AWS answers errors with a JSON body `{"message": "..."}` (some services spell it
//! `Message`) and names the error in the `x-amzn-errortype` header
//! (`ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/`), or in the
//! body's `__type` (`com.amazon.coral.service#UnrecognizedClientException`). Streams report
//! mid-stream failures as exception frames (`throttlingException`, `validationException`,
//! `modelStreamErrorException`, ...), which the host delivers as `exception:<type>` events.

use llmgate_sdk::errors;
use llmgate_sdk::{ErrorClass as Class, GatewayError};

/// Read a non-2xx Bedrock answer. The status is kept; the class comes from the AWS error
/// type when there is one, else from the status, refined by the message.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> GatewayError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let kind = llmgate_sdk::header(headers, "x-amzn-errortype")
        .map(str::to_string)
        .or_else(|| field("__type"))
        .or_else(|| field("code"))
        .map(|t| error_type_name(&t).to_string())
        .filter(|t| !t.is_empty());
    let message = field("message")
        .or_else(|| field("Message"))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("Bedrock answered {status} with an empty body")
            } else {
                let cut: String = text.chars().take(300).collect();
                format!("Bedrock answered {status}: {cut}")
            }
        });
    let mut e = GatewayError::new(classify(kind.as_deref(), status, &message), status, message);
    e.code = kind;
    e
}

/// An exception frame in a stream: `kind` is the frame's exception type (the part after
/// `exception:`), `data` its JSON payload.
pub fn stream_exception(kind: &str, data: &str) -> GatewayError {
    let v: Option<serde_json::Value> = serde_json::from_str(data).ok();
    let text = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let message = text("message")
        .or_else(|| text("Message"))
        .or_else(|| text("originalMessage"))
        .unwrap_or_else(|| format!("Bedrock stream failed with {kind}"));
    let original = v
        .as_ref()
        .and_then(|v| v.get("originalStatusCode"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..=599).contains(s));
    let class = classify(Some(kind), 0, &message);
    let mut e = GatewayError::new(
        class,
        original.unwrap_or_else(|| status_for(class)),
        message,
    );
    e.code = Some(upper_first(kind));
    e
}

/// `ThrottlingException:http://...` or `com.amazon...#ThrottlingException` to
/// `ThrottlingException`.
fn error_type_name(raw: &str) -> &str {
    let raw = raw.split(':').next().unwrap_or(raw);
    raw.rsplit('#').next().unwrap_or(raw).trim()
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A status for an error that came without one (stream exceptions).
fn status_for(class: Class) -> u16 {
    match class {
        Class::BadRequest | Class::ContextLength | Class::ContentFilter => 400,
        Class::Auth => 401,
        Class::Permission => 403,
        Class::NotFound => 404,
        Class::RateLimited => 429,
        Class::Overloaded => 503,
        Class::Timeout => 504,
        Class::Upstream => 502,
    }
}

fn is_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "too long",
        "too many input tokens",
        "context length",
        "context window",
        "maximum context",
        "exceeds the maximum number of tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn classify(kind: Option<&str>, status: u16, message: &str) -> Class {
    let kind = kind.unwrap_or("").to_ascii_lowercase();
    match kind.as_str() {
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            Class::RateLimited
        }
        "serviceunavailableexception" | "modelnotreadyexception" => Class::Overloaded,
        "accessdeniedexception" => Class::Permission,
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "expiredtokenexception"
        | "missingauthenticationtokenexception" => Class::Auth,
        "modeltimeoutexception" => Class::Timeout,
        "resourcenotfoundexception" => Class::NotFound,
        "validationexception" => {
            if is_context_length(message) {
                Class::ContextLength
            } else if message
                .to_ascii_lowercase()
                .contains("model identifier is invalid")
            {
                Class::NotFound
            } else {
                Class::BadRequest
            }
        }
        "modelerrorexception" | "internalserverexception" | "modelstreamerrorexception" => {
            if is_context_length(message) {
                Class::ContextLength
            } else {
                Class::Upstream
            }
        }
        _ => {
            let class = if status == 0 {
                Class::Upstream
            } else {
                errors::class_for_status(status)
            };
            if matches!(class, Class::BadRequest | Class::ContextLength)
                && is_context_length(message)
            {
                Class::ContextLength
            } else {
                class
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> Vec<(String, String)> {
        vec![("x-amzn-errortype".to_string(), v.to_string())]
    }

    #[test]
    fn throttling_from_header() {
        let e = parse_error(
            429,
            &h("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Too many tokens, please wait before trying again."}"#,
        );
        assert_eq!(e.class, Class::RateLimited);
        assert_eq!(e.status, 429);
        assert_eq!(e.code.as_deref(), Some("ThrottlingException"));
        assert_eq!(
            e.message,
            "Too many tokens, please wait before trying again."
        );
    }

    #[test]
    fn validation_context_length_and_plain() {
        let e = parse_error(
            400,
            &h("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Input is too long for requested model."}"#,
        );
        assert_eq!(e.class, Class::ContextLength);
        let e = parse_error(
            400,
            &h("ValidationException"),
            br#"{"message":"The model returned the following errors: prompt is too long: 212000 tokens > 200000 maximum"}"#,
        );
        assert_eq!(e.class, Class::ContextLength);
        let e = parse_error(
            400,
            &h("ValidationException"),
            br#"{"message":"messages: roles must alternate between \"user\" and \"assistant\""}"#,
        );
        assert_eq!(e.class, Class::BadRequest);
        let e = parse_error(
            400,
            &h("ValidationException"),
            br#"{"message":"The provided model identifier is invalid."}"#,
        );
        assert_eq!(e.class, Class::NotFound);
    }

    #[test]
    fn other_types() {
        let cases = [
            ("ServiceUnavailableException", 503, Class::Overloaded),
            ("ModelNotReadyException", 429, Class::Overloaded),
            ("AccessDeniedException", 403, Class::Permission),
            ("UnrecognizedClientException", 403, Class::Auth),
            ("ExpiredTokenException", 403, Class::Auth),
            ("ModelTimeoutException", 408, Class::Timeout),
            ("ResourceNotFoundException", 404, Class::NotFound),
            ("InternalServerException", 500, Class::Upstream),
            ("ModelErrorException", 424, Class::Upstream),
        ];
        for (kind, status, class) in cases {
            let e = parse_error(status, &h(kind), br#"{"message":"x"}"#);
            assert_eq!(e.class, class, "{kind}");
            assert_eq!(e.status, status);
        }
    }

    #[test]
    fn capitalised_message_and_type_in_body() {
        let e = parse_error(
            403,
            &[],
            br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
        );
        assert_eq!(e.class, Class::Auth);
        assert_eq!(e.code.as_deref(), Some("UnrecognizedClientException"));
        assert_eq!(
            e.message,
            "The security token included in the request is invalid."
        );
    }

    #[test]
    fn untyped_and_non_json() {
        let e = parse_error(503, &[], b"<html>Service Unavailable</html>");
        assert_eq!(e.class, Class::Overloaded);
        assert!(e.message.contains("Service Unavailable"));
        assert_eq!(e.code, None);
        let e = parse_error(500, &[], b"");
        assert_eq!(e.class, Class::Upstream);
        assert!(e.message.contains("empty body"));
    }

    #[test]
    fn stream_exceptions() {
        let e = stream_exception(
            "throttlingException",
            r#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        assert_eq!((e.class, e.status), (Class::RateLimited, 429));
        assert_eq!(e.code.as_deref(), Some("ThrottlingException"));
        let e = stream_exception("serviceUnavailableException", r#"{"message":"busy"}"#);
        assert_eq!((e.class, e.status), (Class::Overloaded, 503));
        let e = stream_exception(
            "validationException",
            r#"{"message":"Input is too long for requested model."}"#,
        );
        assert_eq!((e.class, e.status), (Class::ContextLength, 400));
        let e = stream_exception(
            "modelStreamErrorException",
            r#"{"message":"model failed","originalStatusCode":500,"originalMessage":"boom"}"#,
        );
        assert_eq!((e.class, e.status), (Class::Upstream, 500));
        let e = stream_exception("internalServerException", "not json");
        assert_eq!((e.class, e.status), (Class::Upstream, 502));
        assert!(e.message.contains("internalServerException"));
    }
}
