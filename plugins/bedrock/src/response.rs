//! Bedrock Converse response -> OpenAI chat completion.

use llmgate_sdk::Usage;
use serde_json::{Value, json};

use llmgate_sdk::GatewayError;

/// OpenAI `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence, and anything new.
        _ => "stop",
    }
}

/// Converse `usage` (`inputTokens` excludes cache reads and writes) in llmgate's terms.
pub fn usage_from(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input: n("inputTokens"),
        output: n("outputTokens"),
        cache_read: n("cacheReadInputTokens"),
        cache_write: n("cacheWriteInputTokens"),
        reasoning: 0,
    }
}

/// An OpenAI `usage` object: `prompt_tokens` counts cached tokens too, and the cache
/// split is given both the OpenAI way (`prompt_tokens_details`) and the LiteLLM way.
pub fn usage_json(u: &Usage) -> Value {
    let prompt = u.input + u.cache_read + u.cache_write;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": u.output,
        "total_tokens": prompt + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "cache_creation_tokens": u.cache_write},
        "cache_read_input_tokens": u.cache_read,
        "cache_creation_input_tokens": u.cache_write,
    })
}

/// Translate a Converse answer. `requested_model` is the name the client used; `id` and
/// `created` fill the completion's `id` and `created`.
pub fn converse_to_chat(
    body: &[u8],
    requested_model: &str,
    id: &str,
    created: u64,
) -> Result<(Vec<u8>, Usage), GatewayError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| GatewayError::upstream("Bedrock answered with a body that is not JSON"))?;
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| GatewayError::upstream("Bedrock answered without output.message.content"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks: Vec<Value> = Vec::new();
    let mut tool_calls: Vec<Value> = Vec::new();
    for block in content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(r) = block.get("reasoningContent") {
            if let Some(rt) = r.get("reasoningText") {
                let t = rt.get("text").and_then(Value::as_str).unwrap_or("");
                reasoning.push_str(t);
                let mut tb = json!({"type": "thinking", "thinking": t});
                if let Some(sig) = rt.get("signature").and_then(Value::as_str) {
                    tb["signature"] = sig.into();
                }
                thinking_blocks.push(tb);
            } else if let Some(data) = r.get("redactedContent").and_then(Value::as_str) {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": data}));
            }
        } else if let Some(tu) = block.get("toolUse") {
            let input = tu.get("input").cloned().unwrap_or_else(|| json!({}));
            tool_calls.push(json!({
                "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                "type": "function",
                "function": {
                    "name": tu.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": input.to_string(),
                },
            }));
        }
    }
    let mut message = json!({"role": "assistant"});
    message["content"] = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        text.into()
    };
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    if !thinking_blocks.is_empty() {
        message["thinking_blocks"] = thinking_blocks.into();
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = tool_calls.into();
    }
    let stop = v
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let usage = v.get("usage").map(usage_from).unwrap_or_default();
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": requested_model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop)}],
        "usage": usage_json(&usage),
    });
    let body = serde_json::to_vec(&out)
        .map_err(|e| GatewayError::upstream(format!("cannot encode the response: {e}")))?;
    Ok((body, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_answer() {
        let body = br#"{
            "metrics": {"latencyMs": 1021},
            "output": {"message": {"content": [{"text": "Hello! How can I help?"}], "role": "assistant"}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 12, "outputTokens": 9, "totalTokens": 21}
        }"#;
        let (out, usage) =
            converse_to_chat(body, "claude-sonnet", "chatcmpl-req1", 1_700_000_000).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-req1",
                "object": "chat.completion",
                "created": 1_700_000_000u64,
                "model": "claude-sonnet",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
                    "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 0},
                    "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0
                }
            })
        );
        assert_eq!(
            usage,
            Usage {
                input: 12,
                output: 9,
                cache_read: 0,
                cache_write: 0,
                reasoning: 0
            }
        );
        // The SDK's reader agrees on the numbers.
        let (u, _) = llmgate_sdk::openai::usage_and_model(&out);
        assert_eq!(u, Some(usage));
    }

    #[test]
    fn tool_use_reasoning_and_cache_usage() {
        let body = br#"{
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "The user wants weather.", "signature": "EqoBCkgIARABGAIiQ"}}},
                {"text": "I'll look that up."},
                {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris", "unit": "c"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 20, "outputTokens": 40, "totalTokens": 1560, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 500}
        }"#;
        let (out, usage) = converse_to_chat(body, "m", "id", 0).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], "I'll look that up.");
        assert_eq!(msg["reasoning_content"], "The user wants weather.");
        assert_eq!(
            msg["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "The user wants weather.", "signature": "EqoBCkgIARABGAIiQ"}])
        );
        assert_eq!(
            msg["tool_calls"],
            json!([{"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}}])
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 1520);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1000);
        assert_eq!(
            usage,
            Usage {
                input: 20,
                output: 40,
                cache_read: 1000,
                cache_write: 500,
                reasoning: 0
            }
        );
        assert_eq!(llmgate_sdk::openai::usage_and_model(&out).0, Some(usage));
    }

    #[test]
    fn tool_only_answer_has_null_content() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f","input":{}}}]}},"stopReason":"tool_use","usage":{"inputTokens":1,"outputTokens":2}}"#;
        let (out, _) = converse_to_chat(body, "m", "id", 0).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn finish_reasons() {
        for (stop, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), want);
        }
    }

    #[test]
    fn malformed_answers() {
        assert!(converse_to_chat(b"nope", "m", "id", 0).is_err());
        let e = converse_to_chat(br#"{"output":{}}"#, "m", "id", 0).unwrap_err();
        assert_eq!(e.class, llmgate_sdk::ErrorClass::Upstream);
    }
}
