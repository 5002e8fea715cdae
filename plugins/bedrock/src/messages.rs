//! Anthropic `/v1/messages` clients: chained through the SDK's Messages <-> chat
//! conversion (Messages -> chat -> Converse, Converse -> chat -> Messages), plus what that
//! chain loses and Claude on Bedrock needs back:
//!
//! - the client's exact `thinking` setting (the chat form only has a coarse
//!   `reasoning_effort`);
//! - thinking blocks with their signatures, in assistant turns that use tools (with
//!   extended thinking on, Claude requires them there, unchanged), carried as LiteLLM-style
//!   `thinking_blocks` on the chat message;
//! - the signatures of the thinking the model returns (in whole answers and as
//!   `signature_delta` events in streams), so that the client can send them back.

use llmgate_sdk::anthropic::{self, ChatStreamToMessages};
use llmgate_sdk::plugin::Request;
use llmgate_sdk::via_chat::Conversion;
use llmgate_sdk::{GatewayError, SseEvent as Event, Usage};
use serde_json::{Value, json};

/// The chat request for a Messages body, for Bedrock model `model_id`.
pub fn messages_to_chat(body: &[u8], model_id: &str) -> Result<Vec<u8>, GatewayError> {
    let chat = anthropic::messages_to_chat_request(body, model_id)?;
    let (Ok(original), Ok(mut out)) = (
        serde_json::from_slice::<Value>(body),
        serde_json::from_slice::<Value>(&chat),
    ) else {
        return Ok(chat);
    };
    if let Some(t) = original.get("thinking").filter(|t| t.is_object()) {
        out["thinking"] = t.clone();
    }
    // Thinking blocks of assistant turns with tool use, keyed by their first tool_use id.
    let mut by_tool: Vec<(String, Vec<Value>)> = Vec::new();
    for m in original
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let Some(blocks) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        let thinking: Vec<Value> = blocks
            .iter()
            .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                Some("thinking") => Some(json!({
                    "type": "thinking",
                    "thinking": b.get("thinking").cloned().unwrap_or_else(|| json!("")),
                    "signature": b.get("signature").cloned().unwrap_or_else(|| json!("")),
                })),
                Some("redacted_thinking") => Some(json!({
                    "type": "redacted_thinking",
                    "data": b.get("data").cloned().unwrap_or_else(|| json!("")),
                })),
                _ => None,
            })
            .collect();
        let first_tool = blocks.iter().find_map(|b| {
            (b.get("type").and_then(Value::as_str) == Some("tool_use"))
                .then(|| b.get("id").and_then(Value::as_str))
                .flatten()
        });
        if let (false, Some(id)) = (thinking.is_empty(), first_tool) {
            by_tool.push((id.to_string(), thinking));
        }
    }
    if !by_tool.is_empty()
        && let Some(messages) = out.get_mut("messages").and_then(Value::as_array_mut)
    {
        for m in messages.iter_mut() {
            let first_call = m
                .pointer("/tool_calls/0/id")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(id) = first_call
                && let Some((_, blocks)) = by_tool.iter().find(|(t, _)| *t == id)
            {
                m["thinking_blocks"] = Value::Array(blocks.clone());
            }
        }
    }
    serde_json::to_vec(&out).map_err(|e| GatewayError::bad_request(e.to_string()))
}

/// The Messages answer for a chat completion made from a Converse answer: the SDK's
/// conversion, with the thinking blocks (signatures, redacted blocks) of the chat
/// message's `thinking_blocks` restored.
pub fn chat_to_messages_response(
    chat: &[u8],
    requested_model: &str,
) -> Result<(Vec<u8>, Usage), GatewayError> {
    let (body, usage) = anthropic::chat_response_to_messages(chat, requested_model)?;
    let blocks = serde_json::from_slice::<Value>(chat)
        .ok()
        .and_then(|v| {
            v.pointer("/choices/0/message/thinking_blocks")
                .and_then(Value::as_array)
                .cloned()
        })
        .filter(|b| !b.is_empty());
    let Some(blocks) = blocks else {
        return Ok((body, usage));
    };
    let Ok(mut msg) = serde_json::from_slice::<Value>(&body) else {
        return Ok((body, usage));
    };
    if let Some(content) = msg.get_mut("content").and_then(Value::as_array_mut) {
        content.retain(|b| b.get("type").and_then(Value::as_str) != Some("thinking"));
        for (i, b) in blocks.into_iter().enumerate() {
            content.insert(i, b);
        }
    }
    let body = serde_json::to_vec(&msg).map_err(|e| GatewayError::upstream(e.to_string()))?;
    Ok((body, usage))
}

/// The conversion steps of `/v1/messages` over Bedrock: [`messages_to_chat`] (for the
/// Bedrock model id), [`chat_to_messages_response`], and as the stream converter, chat
/// chunks -> Anthropic events with thinking signatures forwarded as `signature_delta`
/// events of the open thinking block.
pub struct KeepThinking {
    inner: ChatStreamToMessages,
    open_thinking: Option<u64>,
}

impl Conversion for KeepThinking {
    /// A stream cut short is reported as Converse saw it (`... before messageStop`).
    const CONVERTER_ERROR_WINS: bool = false;

    fn request(req: &Request) -> Result<Vec<u8>, GatewayError> {
        messages_to_chat(&req.body, crate::endpoint::model_id(&req.deployment.model))
    }

    fn response(chat: &[u8], requested_model: &str) -> Result<(Vec<u8>, Usage), GatewayError> {
        chat_to_messages_response(chat, requested_model)
    }

    fn stream(requested_model: &str) -> Self {
        Self {
            inner: ChatStreamToMessages::new(requested_model),
            open_thinking: None,
        }
    }

    fn on_chunk(&mut self, data: &str) -> Result<Vec<Event>, GatewayError> {
        let mut out = self.inner.on_chunk(data)?;
        for ev in &out {
            self.track(ev);
        }
        if data.contains("\"signature\"")
            && let Some(index) = self.open_thinking
            && let Ok(v) = serde_json::from_str::<Value>(data)
        {
            let sigs = v
                .pointer("/choices/0/delta/thinking_blocks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| b.get("signature").and_then(Value::as_str))
                .filter(|s| !s.is_empty());
            for sig in sigs {
                out.push(Event {
                    event: Some("content_block_delta".into()),
                    data: json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": sig},
                    })
                    .to_string(),
                });
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<(Vec<Event>, Option<Usage>), GatewayError> {
        self.inner.finish()
    }
}

impl KeepThinking {
    fn track(&mut self, ev: &Event) {
        match ev.event.as_deref() {
            Some("content_block_start") => {
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    self.open_thinking = (v.pointer("/content_block/type").and_then(Value::as_str)
                        == Some("thinking"))
                    .then(|| v.get("index").and_then(Value::as_u64))
                    .flatten();
                }
            }
            Some("content_block_stop") => self.open_thinking = None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::chat_to_converse;
    use crate::response::converse_to_chat;
    use crate::stream::ConverseStreamToChat;

    const MODEL: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";

    #[test]
    fn requests_keep_thinking_and_signed_blocks_of_tool_turns() {
        let body = json!({
            "model": "claude", "max_tokens": 16000, "stream": true,
            "system": "Be brief.",
            "thinking": {"type": "enabled", "budget_tokens": 10000},
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "EqQBCgIYAhIM"},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"}]}
            ]
        });
        let chat = messages_to_chat(&serde_json::to_vec(&body).unwrap(), MODEL).unwrap();
        let out = chat_to_converse(&chat, MODEL, &serde_json::Map::new()).unwrap();
        assert!(out.include_usage);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["system"], json!([{"text": "Be brief."}]));
        assert_eq!(v["inferenceConfig"]["maxTokens"], 16000);
        assert_eq!(
            v["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 10000})
        );
        assert_eq!(
            v["messages"][1]["content"],
            json!([
                {"reasoningContent": {"reasoningText": {"text": "Use the tool.", "signature": "EqQBCgIYAhIM"}}},
                {"reasoningContent": {"redactedContent": "EmwKAhgBEgy3"}},
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}}
            ])
        );
        assert_eq!(
            v["messages"][2]["content"][0]["toolResult"]["toolUseId"],
            "toolu_01"
        );
        assert_eq!(
            v["toolConfig"]["tools"][0]["toolSpec"]["name"],
            "get_weather"
        );
    }

    #[test]
    fn answers_keep_signatures() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[
            {"reasoningContent":{"reasoningText":{"text":"Think.","signature":"SIG1"}}},
            {"text":"Hi there"},
            {"toolUse":{"toolUseId":"tu1","name":"ls","input":{"path":"."}}}
        ]}},"stopReason":"tool_use","usage":{"inputTokens":7,"outputTokens":3,"totalTokens":10,"cacheReadInputTokens":100}}"#;
        let (chat, usage) = converse_to_chat(body, "claude", "chatcmpl-1", 0).unwrap();
        let (msg, u2) = chat_to_messages_response(&chat, "claude").unwrap();
        assert_eq!(usage, u2);
        let v: Value = serde_json::from_slice(&msg).unwrap();
        assert_eq!(
            v["content"],
            json!([
                {"type": "thinking", "thinking": "Think.", "signature": "SIG1"},
                {"type": "text", "text": "Hi there"},
                {"type": "tool_use", "id": "tu1", "name": "ls", "input": {"path": "."}}
            ])
        );
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["usage"]["cache_read_input_tokens"], 100);
        assert_eq!(v["usage"]["input_tokens"], 7);
    }

    #[test]
    fn streams_forward_signatures() {
        let mut conv = ConverseStreamToChat::new("claude", "chatcmpl-x", 0, true);
        let mut to_messages = KeepThinking::stream("claude");
        let events = [
            ("messageStart", r#"{"role":"assistant"}"#),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Hmm."}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"SIG2"}}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"text":"Hello"}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
            (
                "contentBlockStart",
                r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tu1","name":"ls"}}}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"path\":\".\"}"}}}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":2}"#),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
            (
                "metadata",
                r#"{"usage":{"inputTokens":10,"outputTokens":5,"totalTokens":15}}"#,
            ),
        ];
        let mut out: Vec<Value> = Vec::new();
        for (e, d) in events {
            for chunk in conv.on_event(Some(e), d).unwrap() {
                for ev in to_messages.on_chunk(&chunk).unwrap() {
                    out.push(serde_json::from_str(&ev.data).unwrap());
                }
            }
        }
        let (rest, usage) = to_messages.finish().unwrap();
        assert!(rest.is_empty());
        let kinds: Vec<String> = out
            .iter()
            .map(|e| {
                let t = e["type"].as_str().unwrap_or("").to_string();
                match e.pointer("/delta/type").and_then(Value::as_str) {
                    Some(d) if t == "content_block_delta" => format!("{t}:{d}"),
                    _ => t,
                }
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta:thinking_delta",
                "content_block_delta:signature_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta:text_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta:input_json_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(out[3]["index"], out[1]["index"]);
        assert_eq!(out[3]["delta"]["signature"], "SIG2");
        assert_eq!(out[11]["delta"]["stop_reason"], "tool_use");
        assert_eq!(usage.map(|u| (u.input, u.output)), Some((10, 5)));
    }
}
