//! Conversion between Anthropic's Messages API and OpenAI's Chat Completions API.
//!
//! Pure functions over wire bytes, usable natively and inside `wasm32-wasip2` plugins:
//!
//! - Requests: [`messages_to_chat_request`] (Anthropic `/v1/messages` body to an OpenAI
//!   `/v1/chat/completions` body) and [`chat_to_messages_request`] (the reverse).
//! - Non-streamed responses: [`chat_response_to_messages`] and
//!   [`messages_response_to_chat`], which also return the call's [`Usage`].
//! - Streams: [`ChatStreamToMessages`] turns OpenAI chunks into Anthropic SSE events and
//!   [`MessagesStreamToChat`] turns Anthropic SSE events into OpenAI chunks; both emit
//!   [`SseEvent`]s and report the final [`Usage`].
//! - Native Messages answers passed through: [`response_usage`] and
//!   [`MessagesStreamUsage`] read their usage.
//! - Errors: [`error_to_anthropic`] writes an Anthropic error body
//!   ([`GatewayError::from_status`](crate::GatewayError::from_status) reads one).
//!
//! Parts of a body that are passed through (tool schemas, tool inputs) are copied verbatim
//! as raw JSON, so key order (which models are sensitive to) is preserved. Input that cannot
//! be converted is answered with a [`GatewayError`], never a panic: a 400 for a request, a
//! 502 for an upstream answer or stream (callers name the upstream with
//! [`errors::unreadable`](crate::errors::unreadable)).

mod native;
mod request;
mod response;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{GatewayError, SseEvent, Usage, now_nanos, now_secs};

pub use native::{MessagesStreamUsage, response_usage, usage_from};
pub use request::{DEFAULT_MAX_TOKENS, chat_to_messages_request, messages_to_chat_request};
pub use response::{chat_response_to_messages, messages_response_to_chat};
pub use stream::{ChatStreamToMessages, MessagesStreamToChat};

/// The Anthropic `error.type` for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

#[derive(Serialize)]
struct AnthropicErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorDetailOut<'a>,
}

#[derive(Serialize)]
struct AnthropicErrorDetailOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

fn anthropic_error_json(kind: &str, message: &str) -> String {
    let body = AnthropicErrorOut {
        kind: "error",
        error: AnthropicErrorDetailOut { kind, message },
    };
    // Serialising strings into JSON cannot fail; keep a valid body regardless.
    serde_json::to_string(&body).unwrap_or_else(|_| {
        format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"error"}}}}"#)
    })
}

/// An Anthropic error body: `{"type":"error","error":{"type":...,"message":...}}`, the
/// type chosen from `status` (see [`anthropic_error_type`]).
pub fn error_to_anthropic(status: u16, message: &str) -> Vec<u8> {
    anthropic_error_json(anthropic_error_type(status), message).into_bytes()
}

/// The `error` member of an Anthropic error body or `error` stream event.
#[derive(Deserialize)]
struct AnthropicErrorDetailIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Shared helpers.

/// A fresh id: `prefix` and 24 hex digits, unique within the process.
fn gen_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 over the clock and the counter.
    let mut x = (now_nanos() as u64) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    format!("{prefix}{x:016x}{:08x}", n as u32)
}

/// An Anthropic message id for an OpenAI completion id.
fn message_id(chat_id: Option<&str>) -> String {
    match chat_id.filter(|s| !s.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => gen_id("msg_"),
    }
}

/// An OpenAI completion id for an Anthropic message id.
fn chat_id(message_id: Option<&str>) -> String {
    match message_id.filter(|s| !s.is_empty()) {
        Some(id) => format!("chatcmpl-{}", id.strip_prefix("msg_").unwrap_or(id)),
        None => gen_id("chatcmpl-"),
    }
}

/// How a converter fails: [`GatewayError::bad_request`] for requests,
/// [`GatewayError::upstream`] for answers.
type Fail = fn(String) -> GatewayError;

fn parse_body<T: DeserializeOwned>(body: &[u8], what: &str, fail: Fail) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|e| fail(format!("invalid {what}: {e}")))
}

fn parse_raw<T: DeserializeOwned>(raw: &RawValue, what: &str) -> Result<T, GatewayError> {
    serde_json::from_str(raw.get())
        .map_err(|e| GatewayError::bad_request(format!("invalid {what}: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, GatewayError> {
    serde_json::to_string(value)
        .map_err(|e| GatewayError::upstream(format!("cannot serialise: {e}")))
}

fn to_json_bytes<T: Serialize>(value: &T, fail: Fail) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(value).map_err(|e| fail(format!("cannot serialise: {e}")))
}

/// A `content`-like field: a string, an array of parts, or absent/null.
enum Content<T> {
    Text(String),
    Parts(Vec<T>),
    Null,
}

fn content<T: DeserializeOwned>(
    raw: Option<&RawValue>,
    what: &str,
) -> Result<Content<T>, GatewayError> {
    let Some(raw) = raw else {
        return Ok(Content::Null);
    };
    match raw.get().as_bytes().first() {
        Some(b'"') => parse_raw(raw, what).map(Content::Text),
        Some(b'[') => parse_raw(raw, what).map(Content::Parts),
        Some(b'n') => Ok(Content::Null),
        _ => Err(GatewayError::bad_request(format!(
            "invalid {what}: expected a string or an array"
        ))),
    }
}

fn empty_object() -> Result<Box<RawValue>, GatewayError> {
    RawValue::from_string("{}".to_owned()).map_err(|e| GatewayError::bad_request(e.to_string()))
}

/// A tool call's `arguments` (a JSON string, or an object some servers send) as the raw
/// JSON object for an Anthropic `input`. Empty arguments give `{}`. With `strict`, anything
/// that is not a JSON object is an error; otherwise it becomes `{}`.
fn arguments_to_input(
    arguments: Option<&RawValue>,
    strict: bool,
    what: &str,
) -> Result<Box<RawValue>, GatewayError> {
    let fail = |why: String| {
        if strict {
            Err(GatewayError::bad_request(format!("invalid {what}: {why}")))
        } else {
            empty_object()
        }
    };
    let Some(raw) = arguments else {
        return empty_object();
    };
    let text = raw.get();
    if text.starts_with('{') {
        return Ok(raw.to_owned());
    }
    if text == "null" {
        return empty_object();
    }
    let Ok(s) = serde_json::from_str::<String>(text) else {
        return fail("expected a JSON string".into());
    };
    if s.trim().is_empty() {
        return empty_object();
    }
    match serde_json::from_str::<Box<RawValue>>(&s) {
        Ok(v) if v.get().starts_with('{') => Ok(v),
        Ok(_) => fail("arguments are not a JSON object".into()),
        Err(e) => fail(format!("arguments are not valid JSON ({e})")),
    }
}

// ---------------------------------------------------------------------------------------
// Stop reasons.

/// OpenAI `finish_reason` to Anthropic `stop_reason`.
fn stop_reason_for(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        // Some servers say `stop` after tool calls; Anthropic clients run tools on `tool_use`.
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` to OpenAI `finish_reason`.
fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

// ---------------------------------------------------------------------------------------
// Usage on the wire.

#[derive(Deserialize, Default)]
struct ChatUsageIn {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<ChatPromptDetailsIn>,
    completion_tokens_details: Option<ChatCompletionDetailsIn>,
}

#[derive(Deserialize)]
struct ChatPromptDetailsIn {
    cached_tokens: Option<u64>,
    cache_creation_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatCompletionDetailsIn {
    reasoning_tokens: Option<u64>,
}

impl ChatUsageIn {
    fn to_usage(&self) -> Usage {
        let details = self.prompt_tokens_details.as_ref();
        let cache_read = details.and_then(|d| d.cached_tokens).unwrap_or(0);
        let cache_write = details.and_then(|d| d.cache_creation_tokens).unwrap_or(0);
        Usage {
            input: self
                .prompt_tokens
                .unwrap_or(0)
                .saturating_sub(cache_read.saturating_add(cache_write)),
            output: self.completion_tokens.unwrap_or(0),
            cache_read,
            cache_write,
            reasoning: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

#[derive(Deserialize, Default)]
struct AnthropicUsageIn {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl AnthropicUsageIn {
    fn to_usage(&self) -> Usage {
        Usage {
            input: self.input_tokens.unwrap_or(0),
            output: self.output_tokens.unwrap_or(0),
            cache_read: self.cache_read_input_tokens.unwrap_or(0),
            cache_write: self.cache_creation_input_tokens.unwrap_or(0),
            reasoning: 0,
        }
    }
}

#[derive(Serialize)]
struct AnthropicUsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<&Usage> for AnthropicUsageOut {
    fn from(u: &Usage) -> Self {
        Self {
            input_tokens: u.input,
            cache_creation_input_tokens: u.cache_write,
            cache_read_input_tokens: u.cache_read,
            output_tokens: u.output,
        }
    }
}

#[derive(Serialize)]
struct ChatUsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: ChatPromptDetailsOut,
    completion_tokens_details: ChatCompletionDetailsOut,
}

#[derive(Serialize)]
struct ChatPromptDetailsOut {
    cached_tokens: u64,
    /// Not an OpenAI field; llmgate's usage reader takes it as cache writes.
    #[serde(skip_serializing_if = "is_zero")]
    cache_creation_tokens: u64,
}

#[derive(Serialize)]
struct ChatCompletionDetailsOut {
    reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<&Usage> for ChatUsageOut {
    fn from(u: &Usage) -> Self {
        let prompt = u
            .input
            .saturating_add(u.cache_read)
            .saturating_add(u.cache_write);
        Self {
            prompt_tokens: prompt,
            completion_tokens: u.output,
            total_tokens: prompt.saturating_add(u.output),
            prompt_tokens_details: ChatPromptDetailsOut {
                cached_tokens: u.cache_read,
                cache_creation_tokens: u.cache_write,
            },
            completion_tokens_details: ChatCompletionDetailsOut {
                reasoning_tokens: u.reasoning,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire types shared by requests and responses.

/// An OpenAI tool call as sent in requests and returned in responses.
#[derive(Deserialize)]
struct ChatToolCallIn {
    id: Option<String>,
    function: Option<ChatFunctionCallIn>,
}

#[derive(Deserialize)]
struct ChatFunctionCallIn {
    name: Option<String>,
    arguments: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct ChatToolCallOut {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: ChatFunctionCallOut,
}

#[derive(Serialize)]
struct ChatFunctionCallOut {
    name: String,
    arguments: String,
}

/// An Anthropic content block as written by this module.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    Image {
        source: SourceOut,
    },
    Document {
        source: SourceOut,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Box<RawValue>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ContentOut>,
        #[serde(skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SourceOut {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

/// Anthropic `content`: a string or blocks.
#[derive(Serialize)]
#[serde(untagged)]
enum ContentOut {
    Text(String),
    Blocks(Vec<BlockOut>),
}

#[cfg(test)]
mod tests;
