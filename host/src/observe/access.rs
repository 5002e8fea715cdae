//! The access log: one INFO line per request, target `llmgate::access`, in the log's format
//! (text, or JSON with `--json-logs`). It names the key by alias and hash, never the key.
//! Turn it off with `LLMGATE_LOG=...,llmgate::access=off` (or `llmgate.access_log: false`).

use super::{Facts, Record, Sink};

/// The access log sink.
pub struct AccessLog;

impl Sink for AccessLog {
    fn record(&self, r: &Record<'_>) {
        let (log, facts) = (r.log, r.facts);
        let alias = log
            .metadata
            .get("user_api_key_alias")
            .and_then(serde_json::Value::as_str);
        let attempts = facts.attempts.len();
        tracing::info!(
            target: "llmgate::access",
            call_id = %log.request_id,
            caller = facts.caller,
            key_alias = alias,
            key_hash = (!log.api_key.is_empty()).then_some(log.api_key.as_str()),
            api = facts.api,
            model = %facts.requested_model,
            group = (!log.model_group.is_empty()).then_some(log.model_group.as_str()),
            deployment = (!log.model_id.is_empty()).then_some(log.model_id.as_str()),
            provider = (!log.custom_llm_provider.is_empty()).then_some(log.custom_llm_provider.as_str()),
            stream = facts.stream,
            status = facts.status,
            attempts,
            latency_ms = Facts::latency_ms(log),
            ttft_ms = Facts::ttft_ms(log),
            input_tokens = log.prompt_tokens,
            output_tokens = log.completion_tokens,
            cache_read_tokens = log.cache_read_input_tokens,
            cache_write_tokens = log.cache_creation_input_tokens,
            cost = log.spend,
            error = facts.error_class,
            "request"
        );
    }
}
