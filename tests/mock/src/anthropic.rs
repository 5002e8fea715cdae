//! Anthropic Messages API wire format: `POST /v1/messages` (plain and SSE streams) and
//! `POST /v1/messages/count_tokens`.
//!
//! Authentication is the `x-api-key` header (checked when `require_key` is set) and the
//! `anthropic-version` header is required. Token counts: the prompt is body bytes / 4, of which
//! `cache_creation_input_tokens` / `cache_read_input_tokens` take half when prompt caching
//! applies, `input_tokens` being the rest (as Anthropic reports only uncached input there);
//! output tokens are words.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::MockState;
use crate::behaviour::{Behaviour, MockError};
use crate::common::{
    StreamEnd, before_answer, contains_key, global_latency, header_str, pick_tool, prompt_tokens,
    split_in, stream_body, word_count,
};
use crate::openai::{TOOL_ARGUMENTS, word_pieces};
use crate::record::RecordedRequest;

/// The id of the mock's `tool_use` block.
pub const TOOL_USE_ID: &str = "toolu_mock_1";
/// The text of the mock's `thinking` block.
pub const THINKING_TEXT: &str = "mock thinking";
/// The signature of the mock's `thinking` block.
pub const THINKING_SIGNATURE: &str = "sig_mock";

/// An Anthropic-shaped error: `{"type": "error", "error": {"type": kind, "message": ...}}`.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    (status, Json(body)).into_response()
}

fn invalid_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// Anthropic's error `type` for an HTTP status.
fn error_type(code: u16) -> &'static str {
    match code {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    }
}

/// The error a `mock-error-*` model asks for.
fn mock_error_response(err: MockError) -> Response {
    match err {
        MockError::ContextLength => {
            invalid_request("prompt is too long: 250000 tokens > 200000 maximum")
        }
        MockError::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = if code == 529 {
                "Overloaded".to_owned()
            } else {
                format!(
                    "Mock upstream error: status {code} ({})",
                    status.canonical_reason().unwrap_or("unknown")
                )
            };
            let mut resp = error_response(status, error_type(code), &message);
            if code == 429 {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
    }
}

/// `None` if the `x-api-key` (when required) and `anthropic-version` headers are right.
fn check_headers(state: &MockState, headers: &HeaderMap) -> Option<Response> {
    if let Some(key) = state.opts.require_key.as_deref()
        && header_str(headers, "x-api-key") != Some(key)
    {
        return Some(error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    if header_str(headers, "anthropic-version").is_none() {
        return Some(invalid_request("anthropic-version: header is required"));
    }
    None
}

/// The text of the last user message: string content, or its `text` blocks joined, plus
/// `[image]` if it has an `image` block.
pub fn last_user_text(messages: &[Value]) -> String {
    let Some(msg) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match msg.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            let mut image = false;
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("image") => image = true,
                    Some("text") => {
                        text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    _ => {}
                }
            }
            if image {
                text.push_str("[image]");
            }
            text
        }
        _ => String::new(),
    }
}

/// The text of `system`: a string, or its text blocks joined.
fn system_text(req: &Value) -> String {
    match req.get("system") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// One content block of the answer.
enum Block {
    Thinking,
    Text(String),
    ToolUse { name: String },
}

impl Block {
    fn to_json(&self) -> Value {
        match self {
            Block::Thinking => json!({
                "type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE,
            }),
            Block::Text(text) => json!({ "type": "text", "text": text }),
            Block::ToolUse { name } => json!({
                "type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": { "q": "mock" },
            }),
        }
    }

    fn output_tokens(&self) -> u64 {
        match self {
            Block::Thinking => word_count(THINKING_TEXT),
            Block::Text(text) => word_count(text),
            Block::ToolUse { .. } => word_count(TOOL_ARGUMENTS),
        }
    }

    /// The `content_block_start` block and the deltas of a stream.
    fn stream_parts(&self) -> (Value, Vec<Value>) {
        match self {
            Block::Thinking => {
                let mut deltas: Vec<Value> = word_pieces(THINKING_TEXT)
                    .into_iter()
                    .map(|p| json!({ "type": "thinking_delta", "thinking": p }))
                    .collect();
                deltas.push(json!({ "type": "signature_delta", "signature": THINKING_SIGNATURE }));
                (
                    json!({ "type": "thinking", "thinking": "", "signature": "" }),
                    deltas,
                )
            }
            Block::Text(text) => (
                json!({ "type": "text", "text": "" }),
                word_pieces(text)
                    .into_iter()
                    .map(|p| json!({ "type": "text_delta", "text": p }))
                    .collect(),
            ),
            Block::ToolUse { name } => {
                // Like the real API: an empty first piece, then the JSON in pieces.
                let pieces = std::iter::once(String::new()).chain(split_in(TOOL_ARGUMENTS, 3));
                (
                    json!({ "type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {} }),
                    pieces
                        .map(|p| json!({ "type": "input_json_delta", "partial_json": p }))
                        .collect(),
                )
            }
        }
    }
}

/// Token counts reported in `usage`.
struct Usage {
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_read: u64,
}

impl Usage {
    fn to_json(&self, output: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output,
        })
    }
}

/// The tool to call, if this request should be answered with a `tool_use` block.
fn tool_to_call(req: &Value, user_text: &str) -> Option<String> {
    let first = req.get("tools")?.as_array()?.first()?;
    let choice = req.get("tool_choice");
    let kind = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
    let forced = match kind {
        Some("tool") => choice.and_then(|c| c.get("name")).and_then(Value::as_str),
        _ => None,
    };
    let first_name = first.get("name").and_then(Value::as_str).unwrap_or("tool");
    pick_tool(Some(first_name), forced, kind == Some("none"), user_text)
}

/// Record, apply the latency option, check the headers and parse the body.
async fn admit(
    state: &MockState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, Response> {
    state
        .recorder
        .push(RecordedRequest::new(method, uri, headers, body));
    global_latency(state).await;
    if let Some(resp) = check_headers(state, headers) {
        return Err(resp);
    }
    match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(invalid_request(
            "There was an error parsing the body of your request: expected a JSON object",
        )),
    }
}

/// `POST /v1/messages`.
pub async fn messages(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match admit(&state, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return invalid_request("model: Field required");
    };
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return invalid_request("max_tokens: Field required");
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return invalid_request("messages: Field required");
    };

    let behaviour = Behaviour::from_model(model);
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    before_answer(&behaviour, stream).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err);
    }
    if behaviour.malformed && !stream {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"id": "msg_broken"#,
        )
            .into_response();
    }

    let user_text = last_user_text(messages);
    let mut blocks = Vec::new();
    let thinking = req.pointer("/thinking/type").and_then(Value::as_str);
    if matches!(thinking, Some("enabled" | "adaptive")) {
        blocks.push(Block::Thinking);
    }
    let tool = tool_to_call(&req, &user_text);
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    blocks.push(match tool {
        Some(name) => Block::ToolUse { name },
        None => Block::Text(format!("echo: {user_text}")),
    });

    let prompt = prompt_tokens(&body);
    let (mut cache_creation, mut cache_read) = (0, 0);
    let cache_control = ["system", "messages", "tools"].iter().any(|k| {
        req.get(*k)
            .is_some_and(|v| contains_key(v, "cache_control"))
    });
    if cache_control {
        if state.prompt_cache_hit(&format!("anthropic:{}", system_text(&req))) {
            cache_read = prompt / 2;
        } else {
            cache_creation = prompt / 2;
        }
    } else if behaviour.cached {
        cache_read = prompt / 2;
    }
    let usage = Usage {
        input: prompt - cache_creation - cache_read,
        output: blocks.iter().map(Block::output_tokens).sum(),
        cache_creation,
        cache_read,
    };
    let id = format!("msg_mock_{}", state.next_id());

    if stream {
        return stream_response(&id, model, &blocks, &usage, stop_reason, behaviour);
    }
    Json(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks.iter().map(Block::to_json).collect::<Vec<_>>(),
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage.to_json(usage.output),
    }))
    .into_response()
}

fn sse_event(kind: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

fn stream_response(
    id: &str,
    model: &str,
    blocks: &[Block],
    usage: &Usage,
    stop_reason: &str,
    behaviour: Behaviour,
) -> Response {
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({ "type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage.to_json(1),
        }}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas) = block.stream_parts();
        events.push((
            "content_block_start",
            json!({ "type": "content_block_start", "index": index, "content_block": start }),
        ));
        if index == 0 {
            events.push(("ping", json!({ "type": "ping" })));
        }
        for delta in deltas {
            events.push((
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": index, "delta": delta }),
            ));
        }
        events.push((
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": index }),
        ));
    }
    events.push((
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": usage.output },
        }),
    ));
    events.push(("message_stop", json!({ "type": "message_stop" })));

    let mut end = StreamEnd::Clean;
    let mut bytes: Vec<Bytes>;
    if behaviour.malformed {
        // The start, then a broken event, then the body just ends.
        bytes = events
            .iter()
            .take(2)
            .map(|(k, v)| sse_event(k, &v.to_string()))
            .collect();
        bytes.push(sse_event("content_block_delta", "{not json"));
    } else if behaviour.disconnect || behaviour.stream_error {
        // Cut after the second delta (or before message_delta if there are fewer).
        let mut deltas = 0;
        let cut = events
            .iter()
            .position(|(k, _)| {
                deltas += usize::from(*k == "content_block_delta");
                deltas == 2 || *k == "message_delta"
            })
            .map_or(events.len(), |i| {
                i + usize::from(events[i].0 == "content_block_delta")
            });
        bytes = events[..cut]
            .iter()
            .map(|(k, v)| sse_event(k, &v.to_string()))
            .collect();
        if behaviour.stream_error {
            let err = json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } });
            bytes.push(sse_event("error", &err.to_string()));
        } else {
            end = StreamEnd::Abort;
        }
    } else {
        bytes = events
            .iter()
            .map(|(k, v)| sse_event(k, &v.to_string()))
            .collect();
    }
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        stream_body(bytes, behaviour.slow_ms, end),
    )
        .into_response()
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` (N = body bytes / 4).
pub async fn count_tokens(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match admit(&state, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return invalid_request("model: Field required");
    };
    if req.get("messages").and_then(Value::as_array).is_none() {
        return invalid_request("messages: Field required");
    }
    let behaviour = Behaviour::from_model(model);
    before_answer(&behaviour, false).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err);
    }
    Json(json!({ "input_tokens": prompt_tokens(&body) })).into_response()
}
