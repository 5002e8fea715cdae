//! OpenAI wire helpers: usage (error bodies are read by
//! [`GatewayError::from_status`](crate::GatewayError::from_status)).

use serde::Deserialize;

use crate::Usage;

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
}
