//! OpenAI wire helpers: usage and error bodies.

use serde::Deserialize;

use crate::errors::{self, Class};

/// Token usage in llmgate's terms: `input` excludes cached prompt tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached prompt tokens.
    pub input: u64,
    /// Completion tokens (reasoning included).
    pub output: u64,
    /// Cached prompt tokens.
    pub cache_read: u64,
    /// Prompt tokens written to the cache.
    pub cache_write: u64,
    /// Reasoning tokens (part of `output`).
    pub reasoning: u64,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    model: Option<String>,
}

/// `usage` and `model` of a chat completion or chunk, if present.
pub fn usage_and_model(body: &[u8]) -> (Option<Usage>, Option<String>) {
    let Ok(w) = serde_json::from_slice::<WithUsage>(body) else {
        return (None, None);
    };
    (w.usage.map(convert), w.model)
}

fn convert(u: RawUsage) -> Usage {
    let cached = u
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    let written = u
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cache_creation_tokens)
        .unwrap_or(0);
    Usage {
        input: u.prompt_tokens.saturating_sub(cached + written),
        output: u.completion_tokens,
        cache_read: cached,
        cache_write: written,
        reasoning: u
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
    }
}

/// A provider error, read from an OpenAI-style error body (or any body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// What kind of failure.
    pub class: Class,
    /// The upstream's message (or a description of the body).
    pub message: String,
    /// `error.code` or `error.type`.
    pub code: Option<String>,
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

/// Read an upstream error answer with `status`.
pub fn parse_error(status: u16, body: &[u8]) -> ProviderError {
    let class = errors::class_for_status(status);
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        let code = match error.code {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => error.kind,
        };
        let message = error
            .message
            .unwrap_or_else(|| format!("upstream answered {status}"));
        return ProviderError {
            class: errors::refine(class, code.as_deref(), &message),
            message,
            code,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("upstream answered {status} with an empty body")
    } else {
        let cut: String = text.chars().take(300).collect();
        format!("upstream answered {status}: {cut}")
    };
    ProviderError {
        class,
        message,
        code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_with_details() {
        let body = br#"{"model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":60},"completion_tokens_details":{"reasoning_tokens":5}}}"#;
        let (u, m) = usage_and_model(body);
        assert_eq!(
            u,
            Some(Usage {
                input: 40,
                output: 20,
                cache_read: 60,
                cache_write: 0,
                reasoning: 5
            })
        );
        assert_eq!(m.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(usage_and_model(br#"{"usage":null}"#).0, None);
    }

    #[test]
    fn reads_errors() {
        let e = parse_error(
            400,
            br#"{"error":{"message":"This model's maximum context length is 128000 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.class, Class::ContextLength);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = parse_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.class, Class::Upstream);
        assert!(e.message.contains("bad gateway"));
    }
}
