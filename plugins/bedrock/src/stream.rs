//! Bedrock `converse-stream` events -> OpenAI chat completion chunks.
//!
//! The host decodes the AWS event-stream frames; each arrives as an event named by its
//! `:event-type` (`messageStart`, `contentBlockStart`, `contentBlockDelta`,
//! `contentBlockStop`, `messageStop`, `metadata`) with the JSON payload as data, or as
//! `exception:<type>` for an exception frame. Out come the `data:` payloads of OpenAI
//! chunks: a role chunk first, content / `reasoning_content` / `tool_calls` deltas (tool
//! indexes count tool blocks from 0), the finish chunk at `messageStop`, then after
//! `metadata` a usage chunk (`choices: []`) when the client asked for
//! `stream_options.include_usage`, and the literal `[DONE]`.

use std::collections::HashMap;

use llmgate_sdk::Usage;
use serde_json::{Value, json};

use llmgate_sdk::GatewayError;

use crate::errors;
use crate::response::{finish_reason, usage_from, usage_json};

const EVENTS: &[&str] = &[
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
];

/// Stream translation state for one attempt.
#[derive(Debug)]
pub struct ConverseStreamToChat {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    started: bool,
    /// `contentBlockIndex` of each tool block -> its OpenAI tool call index.
    tools: HashMap<u64, usize>,
    saw_stop: bool,
    saw_metadata: bool,
    usage: Option<Usage>,
}

impl ConverseStreamToChat {
    /// A translator producing chunks for `model` (the name the client asked for).
    pub fn new(model: &str, id: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: id.to_string(),
            created,
            model: model.to_string(),
            include_usage,
            started: false,
            tools: HashMap::new(),
            saw_stop: false,
            saw_metadata: false,
            usage: None,
        }
    }

    /// Set the chunks' `id` (known once the upstream's headers arrive).
    pub fn set_id(&mut self, id: &str) {
        self.id = id.to_string();
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
        .to_string()
    }

    fn start(&mut self, out: &mut Vec<String>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    /// One upstream event in; zero or more chunk payloads out.
    pub fn on_event(
        &mut self,
        event: Option<&str>,
        data: &str,
    ) -> Result<Vec<String>, GatewayError> {
        let event = event.unwrap_or("");
        if let Some(kind) = event.strip_prefix("exception:") {
            return Err(errors::stream_exception(kind, data));
        }
        let mut out = Vec::new();
        if self.saw_metadata {
            return Ok(out);
        }
        let payload: Value = serde_json::from_str(data).map_err(|_| {
            GatewayError::upstream(format!("Bedrock sent a `{event}` event that is not JSON"))
        })?;
        // Tolerate the wrapped form `{"contentBlockDelta": {...}}`.
        let (event, payload) = match payload.as_object() {
            Some(o) if !EVENTS.contains(&event) && o.len() == 1 => {
                match o
                    .iter()
                    .next()
                    .filter(|(k, _)| EVENTS.contains(&k.as_str()))
                {
                    Some((k, v)) => (k.clone(), v.clone()),
                    None => (event.to_string(), payload),
                }
            }
            _ => (event.to_string(), payload),
        };
        match event.as_str() {
            "messageStart" => self.start(&mut out),
            "contentBlockStart" => {
                self.start(&mut out);
                if let Some(tu) = payload.pointer("/start/toolUse") {
                    let idx = self.tool_index(&payload);
                    let call = json!({
                        "index": idx,
                        "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or(""),
                        "type": "function",
                        "function": {
                            "name": tu.get("name").and_then(Value::as_str).unwrap_or(""),
                            "arguments": "",
                        },
                    });
                    out.push(self.chunk(json!({"tool_calls": [call]}), None));
                }
            }
            "contentBlockDelta" => {
                self.start(&mut out);
                let Some(delta) = payload.get("delta") else {
                    return Ok(out);
                };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    out.push(self.chunk(json!({"content": t}), None));
                } else if let Some(tu) = delta.get("toolUse") {
                    let idx = self.tool_index(&payload);
                    let args = tu.get("input").and_then(Value::as_str).unwrap_or("");
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": idx, "function": {"arguments": args}}]}),
                        None,
                    ));
                } else if let Some(r) = delta.get("reasoningContent") {
                    if let Some(t) = r.get("text").and_then(Value::as_str) {
                        out.push(self.chunk(json!({"reasoning_content": t}), None));
                    } else if let Some(sig) = r.get("signature").and_then(Value::as_str) {
                        out.push(self.chunk(
                            json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": sig}]}),
                            None,
                        ));
                    } else if let Some(data) = r.get("redactedContent").and_then(Value::as_str) {
                        out.push(self.chunk(
                            json!({"thinking_blocks": [{"type": "redacted_thinking", "data": data}]}),
                            None,
                        ));
                    }
                }
            }
            "messageStop" => {
                self.start(&mut out);
                self.saw_stop = true;
                let stop = payload
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                out.push(self.chunk(json!({}), Some(finish_reason(stop))));
            }
            "metadata" => {
                self.saw_metadata = true;
                let usage = payload.get("usage").map(usage_from);
                if let Some(u) = usage {
                    self.usage = Some(u);
                }
                if self.include_usage {
                    let u = usage.unwrap_or_default();
                    out.push(
                        json!({
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": usage_json(&u),
                        })
                        .to_string(),
                    );
                }
                out.push("[DONE]".to_string());
            }
            // contentBlockStop and anything new.
            _ => {}
        }
        Ok(out)
    }

    fn tool_index(&mut self, payload: &Value) -> usize {
        let block = payload
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let next = self.tools.len();
        *self.tools.entry(block).or_insert(next)
    }

    /// The upstream stream ended: the usage of the call, or an error if it was cut short
    /// (no `messageStop` or no `metadata`).
    pub fn finish(&mut self) -> Result<Option<Usage>, GatewayError> {
        if !self.saw_stop {
            return Err(GatewayError::upstream(
                "Bedrock stream ended before messageStop",
            ));
        }
        if !self.saw_metadata {
            return Err(GatewayError::upstream(
                "Bedrock stream ended before its metadata (usage) event",
            ));
        }
        Ok(self.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(conv: &mut ConverseStreamToChat, events: &[(&str, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        for (e, d) in events {
            out.extend(conv.on_event(Some(e), d).unwrap());
        }
        out
    }

    fn parsed(chunks: &[String]) -> Vec<Value> {
        chunks
            .iter()
            .filter(|c| *c != "[DONE]")
            .map(|c| serde_json::from_str(c).unwrap())
            .collect()
    }

    /// A realistic Claude tool-use stream, as the host delivers it.
    const TOOL_STREAM: &[(&str, &str)] = &[
        ("messageStart", r#"{"p":"abcdefghijkl","role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Need the weather."}},"p":"abc"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"EqoBCkgI"}},"p":"abc"}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0,"p":"abcd"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"Let me "},"p":"ab"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"text":"check."},"p":"ab"}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":1,"p":"abcd"}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":2,"p":"abc","start":{"toolUse":{"name":"get_weather","toolUseId":"tooluse_Q1"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"city\":"}},"p":"a"}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":" \"Paris\"}"}},"p":"a"}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":2,"p":"abcd"}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":3,"start":{"toolUse":{"name":"get_time","toolUseId":"tooluse_Q2"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":3,"delta":{"toolUse":{"input":"{}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":3}"#),
        ("messageStop", r#"{"p":"abcdefgh","stopReason":"tool_use"}"#),
        (
            "metadata",
            r#"{"metrics":{"latencyMs":1234},"p":"abc","usage":{"inputTokens":300,"outputTokens":57,"totalTokens":2357,"cacheReadInputTokens":2000}}"#,
        ),
    ];

    #[test]
    fn tool_stream_with_usage() {
        let mut conv =
            ConverseStreamToChat::new("claude-sonnet", "placeholder", 1_700_000_000, true);
        conv.set_id("chatcmpl-req9");
        let out = run(&mut conv, TOOL_STREAM);
        assert_eq!(out.last().map(String::as_str), Some("[DONE]"));
        let chunks = parsed(&out);
        for c in &chunks {
            assert_eq!(c["id"], "chatcmpl-req9");
            assert_eq!(c["model"], "claude-sonnet");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["created"], 1_700_000_000u64);
        }
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"].get(0))
            .map(|c| &c["delta"])
            .collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
        assert_eq!(
            deltas[1],
            &json!({"reasoning_content": "Need the weather."})
        );
        assert_eq!(
            deltas[2],
            &json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqoBCkgI"}]})
        );
        assert_eq!(deltas[3], &json!({"content": "Let me "}));
        assert_eq!(deltas[4], &json!({"content": "check."}));
        assert_eq!(
            deltas[5],
            &json!({"tool_calls": [{"index": 0, "id": "tooluse_Q1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
        );
        assert_eq!(
            deltas[6],
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})
        );
        assert_eq!(
            deltas[7],
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Paris\"}"}}]})
        );
        assert_eq!(deltas[8]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[8]["tool_calls"][0]["id"], "tooluse_Q2");
        assert_eq!(deltas[9]["tool_calls"][0]["index"], 1);
        assert_eq!(deltas[10], &json!({}));
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        let last = &chunks[chunks.len() - 1];
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 2300);
        assert_eq!(last["usage"]["completion_tokens"], 57);
        let want = Usage {
            input: 300,
            output: 57,
            cache_read: 2000,
            cache_write: 0,
            reasoning: 0,
        };
        assert_eq!(conv.finish().unwrap(), Some(want));
        // Events after the end are ignored.
        assert!(
            conv.on_event(Some("contentBlockDelta"), r#"{"delta":{"text":"x"}}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn text_stream_without_usage_chunk() {
        let mut conv = ConverseStreamToChat::new("m", "id", 0, false);
        let out = run(
            &mut conv,
            &[
                ("messageStart", r#"{"role":"assistant"}"#),
                (
                    "contentBlockDelta",
                    r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
                ),
                ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
                ("messageStop", r#"{"stopReason":"max_tokens"}"#),
                (
                    "metadata",
                    r#"{"usage":{"inputTokens":5,"outputTokens":1,"totalTokens":6},"metrics":{"latencyMs":9}}"#,
                ),
            ],
        );
        assert_eq!(out.len(), 4);
        assert_eq!(out[3], "[DONE]");
        let chunks = parsed(&out);
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(
            conv.finish().unwrap().map(|u| (u.input, u.output)),
            Some((5, 1))
        );
    }

    #[test]
    fn role_chunk_even_without_message_start_and_wrapped_payloads() {
        let mut conv = ConverseStreamToChat::new("m", "id", 0, false);
        let out = conv
            .on_event(
                None,
                r#"{"contentBlockDelta":{"contentBlockIndex":0,"delta":{"text":"x"}}}"#,
            )
            .unwrap();
        let chunks = parsed(&out);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "x");
    }

    #[test]
    fn exceptions_and_cut_streams() {
        let mut conv = ConverseStreamToChat::new("m", "id", 0, false);
        run(&mut conv, &TOOL_STREAM[..5]);
        let e = conv
            .on_event(
                Some("exception:throttlingException"),
                r#"{"message":"Too many requests, please wait before trying again."}"#,
            )
            .unwrap_err();
        assert_eq!(e.class, llmgate_sdk::ErrorClass::RateLimited);
        assert_eq!(e.status, 429);
        assert!(conv.finish().unwrap_err().message.contains("messageStop"));

        let mut conv = ConverseStreamToChat::new("m", "id", 0, false);
        run(&mut conv, &TOOL_STREAM[..15]);
        assert!(conv.finish().unwrap_err().message.contains("metadata"));

        let mut conv = ConverseStreamToChat::new("m", "id", 0, false);
        assert!(
            conv.on_event(Some("contentBlockDelta"), "not json")
                .is_err()
        );
    }
}
