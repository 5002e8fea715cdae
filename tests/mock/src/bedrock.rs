//! AWS Bedrock Runtime Converse API wire format: `POST /model/{modelId}/converse` (JSON) and
//! `POST /model/{modelId}/converse-stream` (binary AWS event stream,
//! `application/vnd.amazon.eventstream`). The model id arrives percent-encoded
//! (`anthropic.claude-3-5-sonnet-20240620-v1%3A0`) and is decoded.
//!
//! Authentication (when `require_key` is set): a SigV4 `authorization` header
//! `AWS4-HMAC-SHA256 Credential=<key>/...` (the key is the access key id; the signature itself
//! is not verified) plus `x-amz-date` and `x-amz-content-sha256` = hex SHA-256 of the body; or a
//! Bedrock API key as `Authorization: Bearer <key>`. Errors are `{"message": ...}` with the
//! error name in the `x-amzn-errortype` header.
//!
//! Stream event payloads carry a `"p"` padding field, as Bedrock's do.

use std::sync::Arc;

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameValue, Message};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::MockState;
use crate::behaviour::{Behaviour, MockError};
use crate::common::{
    StreamEnd, before_answer, contains_key, global_latency, header_str, pick_tool, prompt_tokens,
    split_in, stream_body, word_count,
};
use crate::openai::{TOOL_ARGUMENTS, word_pieces};
use crate::record::RecordedRequest;

/// The `toolUseId` of the mock's tool use.
pub const TOOL_USE_ID: &str = "tooluse_mock_1";
/// The text of the mock's reasoning block.
pub const THINKING_TEXT: &str = "mock thinking";
/// The signature of the mock's reasoning block.
pub const THINKING_SIGNATURE: &str = "sig_mock";
/// The content type of event-stream responses.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Encode one AWS event-stream message (prelude, string headers, payload, checksums) with
/// `aws-smithy-eventstream`. Names over 255 bytes and values over 32 KiB are cut.
pub fn encode_event_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let message = headers.iter().fold(
        Message::new(Bytes::copy_from_slice(payload)),
        |m, (name, value)| {
            let name = cut(name, 255);
            let value = cut(value, usize::from(i16::MAX as u16));
            m.add_header(Header::new(
                name.to_string(),
                FrameValue::String(value.to_string().into()),
            ))
        },
    );
    let mut frame = Vec::new();
    // Cannot fail: the lengths are within the format's limits.
    let _ = write_message_to(&message, &mut frame);
    frame
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One decoded event-stream message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFrame {
    /// The headers in order; non-string values are rendered as text.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl EventFrame {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A header value as text.
fn header_text(value: &FrameValue) -> String {
    match value {
        FrameValue::Bool(b) => b.to_string(),
        FrameValue::Byte(n) => n.to_string(),
        FrameValue::Int16(n) => n.to_string(),
        FrameValue::Int32(n) => n.to_string(),
        FrameValue::Int64(n) => n.to_string(),
        FrameValue::ByteArray(b) => String::from_utf8_lossy(b).into_owned(),
        FrameValue::String(s) => s.as_str().to_owned(),
        FrameValue::Timestamp(t) => t
            .to_millis()
            .map_or_else(|_| t.to_string(), |ms| ms.to_string()),
        FrameValue::Uuid(u) => format!("{u:032x}"),
        other => format!("{other:?}"),
    }
}

/// Decode a sequence of event-stream messages, checking both CRCs of each.
pub fn decode_event_frames(buf: &[u8]) -> Result<Vec<EventFrame>, String> {
    let mut buf = Bytes::copy_from_slice(buf);
    let mut frames = Vec::new();
    while !buf.is_empty() {
        let message = read_message_from(&mut buf).map_err(|e| e.to_string())?;
        frames.push(EventFrame {
            headers: message
                .headers()
                .iter()
                .map(|h| (h.name().as_str().to_owned(), header_text(h.value())))
                .collect(),
            payload: message.payload().to_vec(),
        });
    }
    Ok(frames)
}

/// A Bedrock-shaped error: body `{"message": ...}`, header `x-amzn-errortype: <kind>`.
pub fn error_response(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut resp = (status, Json(json!({ "message": message }))).into_response();
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    resp
}

fn validation(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// The error a `mock-error-*` model asks for.
fn mock_error_response(err: MockError) -> Response {
    let code = match err {
        MockError::ContextLength => return validation("Input is too long for requested model."),
        MockError::Status(code) => code,
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let generic = format!(
        "Mock upstream error: status {code} ({})",
        status.canonical_reason().unwrap_or("unknown")
    );
    let (kind, message) = match code {
        403 => (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        404 => (
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        408 => (
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.",
        ),
        424 => ("ModelErrorException", generic.as_str()),
        429 => (
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        503 => (
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        500.. => (
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request \
             again.",
        ),
        _ => ("ValidationException", generic.as_str()),
    };
    error_response(status, kind, message)
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `None` if the request is authorised (see the module docs), else a 403.
fn check_auth(state: &MockState, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let key = state.opts.require_key.as_deref()?;
    let unrecognized = || {
        error_response(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let auth = header_str(headers, "authorization").unwrap_or_default();
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return (token != key).then(unrecognized);
    }
    let access_key = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split_once('/'))
        .map(|(k, _)| k);
    if access_key != Some(key) {
        return Some(unrecognized());
    }
    let hash_ok = header_str(headers, "x-amz-content-sha256") == Some(sha256_hex(body).as_str());
    if header_str(headers, "x-amz-date").is_none() || !hash_ok {
        return Some(error_response(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.",
        ));
    }
    None
}

/// The text of the last user message: its `text` blocks joined, plus `[image]` if it has an
/// `image` block.
pub fn last_user_text(messages: &[Value]) -> String {
    let Some(msg) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    let mut text = String::new();
    let mut image = false;
    for block in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if block.get("image").is_some() {
            image = true;
        }
    }
    if image {
        text.push_str("[image]");
    }
    text
}

/// The tool to call, if this request should be answered with a `toolUse` block.
fn tool_to_call(req: &Value, user_text: &str) -> Option<String> {
    let config = req.get("toolConfig")?;
    let first = config
        .get("tools")?
        .as_array()?
        .iter()
        .find_map(|t| t.pointer("/toolSpec/name").and_then(Value::as_str));
    let forced = config
        .pointer("/toolChoice/tool/name")
        .and_then(Value::as_str);
    pick_tool(first, forced, false, user_text)
}

/// One content block of the answer.
enum Block {
    Reasoning,
    Text(String),
    ToolUse { name: String },
}

/// Token counts reported in `usage`.
struct Usage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    /// Whether prompt caching is in play (then the cache fields are reported).
    caching: bool,
}

impl Usage {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "inputTokens": self.input,
            "outputTokens": self.output,
            "totalTokens": self.input + self.output + self.cache_read + self.cache_write,
        });
        if self.caching {
            v["cacheReadInputTokens"] = json!(self.cache_read);
            v["cacheWriteInputTokens"] = json!(self.cache_write);
        }
        v
    }
}

/// `POST /model/{modelId}/converse`.
pub async fn converse(
    State(state): State<Arc<MockState>>,
    Path(model_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &model_id, &method, &uri, &headers, &body, false).await
}

/// `POST /model/{modelId}/converse-stream`.
pub async fn converse_stream(
    State(state): State<Arc<MockState>>,
    Path(model_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&state, &model_id, &method, &uri, &headers, &body, true).await
}

fn request_id(state: &MockState) -> HeaderValue {
    let id = format!("00000000-0000-4000-8000-{:012x}", state.next_id());
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("mock"))
}

async fn handle(
    state: &MockState,
    model_id: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    stream: bool,
) -> Response {
    state
        .recorder
        .push(RecordedRequest::new(method, uri, headers, body));
    global_latency(state).await;
    if let Some(resp) = check_auth(state, headers, body) {
        return resp;
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "Malformed request body: expected a JSON object.",
            );
        }
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return validation(
            "1 validation error detected: Value null at 'messages' failed to satisfy \
             constraint: Member must not be null",
        );
    };

    let behaviour = Behaviour::from_model(model_id);
    before_answer(&behaviour, stream).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err);
    }
    if behaviour.malformed && !stream {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"output": {"message": "#,
        )
            .into_response();
    }

    let user_text = last_user_text(messages);
    let mut blocks = Vec::new();
    if req
        .pointer("/additionalModelRequestFields/thinking/type")
        .and_then(Value::as_str)
        == Some("enabled")
    {
        blocks.push(Block::Reasoning);
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

    let prompt = prompt_tokens(body);
    let cache_point = ["system", "messages", "toolConfig"]
        .iter()
        .any(|k| req.get(*k).is_some_and(|v| contains_key(v, "cachePoint")));
    let (mut cache_read, mut cache_write) = (0, 0);
    if cache_point {
        let system: String = req
            .get("system")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        if state.prompt_cache_hit(&format!("bedrock:{system}")) {
            cache_read = prompt / 2;
        } else {
            cache_write = prompt / 2;
        }
    } else if behaviour.cached {
        cache_read = prompt / 2;
    }
    let output = blocks
        .iter()
        .map(|b| match b {
            Block::Reasoning => word_count(THINKING_TEXT),
            Block::Text(t) => word_count(t),
            Block::ToolUse { .. } => word_count(TOOL_ARGUMENTS),
        })
        .sum();
    let usage = Usage {
        input: prompt - cache_read - cache_write,
        output,
        cache_read,
        cache_write,
        caching: cache_point || behaviour.cached,
    };

    let mut resp = if stream {
        stream_response(&blocks, &usage, stop_reason, behaviour)
    } else {
        let content: Vec<Value> = blocks
            .iter()
            .map(|b| match b {
                Block::Reasoning => json!({ "reasoningContent": { "reasoningText": {
                    "text": THINKING_TEXT, "signature": THINKING_SIGNATURE,
                }}}),
                Block::Text(t) => json!({ "text": t }),
                Block::ToolUse { name } => json!({ "toolUse": {
                    "toolUseId": TOOL_USE_ID, "name": name, "input": { "q": "mock" },
                }}),
            })
            .collect();
        Json(json!({
            "output": { "message": { "role": "assistant", "content": content } },
            "stopReason": stop_reason,
            "usage": usage.to_json(),
            "metrics": { "latencyMs": 1 },
        }))
        .into_response()
    };
    resp.headers_mut()
        .insert("x-amzn-requestid", request_id(state));
    resp
}

/// Bedrock's `"p"` padding value for the `n`-th event.
fn padding(n: usize) -> &'static str {
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    &ALPHABET[..1 + (n * 7) % (ALPHABET.len() - 1)]
}

fn event_frame(kind: &str, payload: &[u8]) -> Bytes {
    Bytes::from(encode_event_frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    ))
}

fn stream_response(
    blocks: &[Block],
    usage: &Usage,
    stop_reason: &str,
    behaviour: Behaviour,
) -> Response {
    let mut events: Vec<(&str, Value)> = vec![("messageStart", json!({ "role": "assistant" }))];
    for (index, block) in blocks.iter().enumerate() {
        let delta = |d: Value| {
            (
                "contentBlockDelta",
                json!({ "contentBlockIndex": index, "delta": d }),
            )
        };
        match block {
            Block::Reasoning => {
                for piece in word_pieces(THINKING_TEXT) {
                    events.push(delta(json!({ "reasoningContent": { "text": piece } })));
                }
                events.push(delta(
                    json!({ "reasoningContent": { "signature": THINKING_SIGNATURE } }),
                ));
            }
            Block::Text(text) => {
                for piece in word_pieces(text) {
                    events.push(delta(json!({ "text": piece })));
                }
            }
            Block::ToolUse { name } => {
                events.push((
                    "contentBlockStart",
                    json!({ "contentBlockIndex": index, "start": {
                        "toolUse": { "toolUseId": TOOL_USE_ID, "name": name },
                    }}),
                ));
                for piece in split_in(TOOL_ARGUMENTS, 3) {
                    events.push(delta(json!({ "toolUse": { "input": piece } })));
                }
            }
        }
        events.push(("contentBlockStop", json!({ "contentBlockIndex": index })));
    }
    events.push(("messageStop", json!({ "stopReason": stop_reason })));
    events.push((
        "metadata",
        json!({ "usage": usage.to_json(), "metrics": { "latencyMs": 1 } }),
    ));
    let encode = |(n, (kind, mut payload)): (usize, (&str, Value))| {
        payload["p"] = json!(padding(n));
        event_frame(kind, payload.to_string().as_bytes())
    };

    let mut end = StreamEnd::Clean;
    let frames: Vec<Bytes> = if behaviour.malformed {
        let mut frames: Vec<Bytes> = events.into_iter().take(1).enumerate().map(encode).collect();
        frames.push(event_frame("contentBlockDelta", b"{not json"));
        frames
    } else if behaviour.disconnect || behaviour.stream_error {
        // Cut after the second delta (or before messageStop if there are fewer).
        let mut deltas = 0;
        let cut = events
            .iter()
            .position(|(k, _)| {
                deltas += usize::from(*k == "contentBlockDelta");
                deltas == 2 || *k == "messageStop"
            })
            .map_or(events.len(), |i| {
                i + usize::from(events[i].0 == "contentBlockDelta")
            });
        events.truncate(cut);
        let mut frames: Vec<Bytes> = events.into_iter().enumerate().map(encode).collect();
        if behaviour.stream_error {
            frames.push(Bytes::from(encode_event_frame(
                &[
                    (":exception-type", "throttlingException"),
                    (":content-type", "application/json"),
                    (":message-type", "exception"),
                ],
                br#"{"message":"Too many requests, please wait before trying again."}"#,
            )));
        } else {
            end = StreamEnd::Abort;
        }
        frames
    } else {
        events.into_iter().enumerate().map(encode).collect()
    };
    (
        [(header::CONTENT_TYPE, EVENT_STREAM_CONTENT_TYPE)],
        stream_body(frames, behaviour.slow_ms, end),
    )
        .into_response()
}
