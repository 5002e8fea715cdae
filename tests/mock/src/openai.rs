//! OpenAI chat-completions wire format: request parsing, responses, SSE streams and errors.

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
    StreamEnd, before_answer, global_latency, pick_tool, prompt_tokens, stream_body, unix_now,
    word_count,
};
use crate::record::RecordedRequest;

/// The id of the only model the mock lists.
pub const MODEL_ID: &str = "mock-gpt";
/// Suffix appended to the requested model in responses, like a dated snapshot name.
pub const MODEL_SUFFIX: &str = "-2024-08-06";
/// The `system_fingerprint` of every response.
pub const FINGERPRINT: &str = "fp_mock";
/// The id of the mock's tool call.
pub const TOOL_CALL_ID: &str = "call_mock_1";
/// The arguments of the mock's tool call.
pub const TOOL_ARGUMENTS: &str = r#"{"q":"mock"}"#;

/// Which service speaks the OpenAI wire format: OpenAI itself, or Azure OpenAI (its own error
/// bodies and content-filter annotations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `api.openai.com`.
    OpenAi,
    /// Azure OpenAI.
    Azure,
}

/// An OpenAI-shaped error response.
pub fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
    (status, Json(body)).into_response()
}

pub(crate) fn invalid_request(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        code,
    )
}

/// The error a `mock-error-*` model asks for.
pub(crate) fn mock_error_response(err: MockError, flavor: Flavor) -> Response {
    if let (Flavor::Azure, MockError::Status(code)) = (flavor, err) {
        return crate::azure::status_error(code);
    }
    match err {
        MockError::ContextLength => invalid_request(
            "This model's maximum context length is 128000 tokens. However, your messages \
             resulted in more tokens. Please reduce the length of the messages.",
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        MockError::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (kind, err_code) = match code {
                429 => ("rate_limit_error", Some("rate_limit_exceeded")),
                500.. => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            let message = format!(
                "Mock upstream error: status {code} ({})",
                status.canonical_reason().unwrap_or("unknown")
            );
            let mut resp = error_response(status, &message, kind, None, err_code);
            if code == 429 || code == 503 {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
    }
}

/// OpenAI's 401 for a wrong or missing key.
fn unauthorized(given: Option<&str>) -> Response {
    let given = given.unwrap_or("");
    let masked = if given.len() > 8 && given.is_ascii() {
        format!("{}{}", &given[..3], "*".repeat(given.len() - 7)) + &given[given.len() - 4..]
    } else {
        "*".repeat(given.chars().count())
    };
    let message = format!(
        "Incorrect API key provided: {masked}. You can find your API key at \
         https://platform.openai.com/account/api-keys."
    );
    error_response(
        StatusCode::UNAUTHORIZED,
        &message,
        "invalid_request_error",
        None,
        Some("invalid_api_key"),
    )
}

/// `None` if the request is authorised, else the 401 response.
pub(crate) fn check_auth(state: &MockState, headers: &HeaderMap) -> Option<Response> {
    let key = state.opts.require_key.as_deref()?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.and_then(|a| a.strip_prefix("Bearer ")) == Some(key) {
        None
    } else {
        Some(unauthorized(
            auth.map(|a| a.strip_prefix("Bearer ").unwrap_or(a)),
        ))
    }
}

/// The text of the last user message: string content, or the `text` parts joined, plus
/// `[image]` if any `image_url` part is present.
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
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut image = false;
            for part in parts {
                if part.get("type").and_then(Value::as_str) == Some("image_url") {
                    image = true;
                } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                    text.push_str(t);
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

/// Split `content` into one piece per word, each piece carrying the whitespace before it
/// (and the last one any trailing whitespace), so the pieces concatenate to `content`.
pub fn word_pieces(content: &str) -> Vec<&str> {
    let mut starts = Vec::new();
    let mut start = 0;
    let mut has_word = false;
    let mut prev_ws = false;
    for (i, c) in content.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws && has_word {
            // Whitespace after a word starts the next piece.
            starts.push(start);
            start = i;
            has_word = false;
        }
        has_word |= !ws;
        prev_ws = ws;
    }
    if (has_word || starts.is_empty()) && start < content.len() {
        starts.push(start);
    }
    // Each piece runs to the next piece's start; the last one to the end (trailing whitespace).
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| &content[s..starts.get(n + 1).copied().unwrap_or(content.len())])
        .collect()
}

/// What the assistant answers.
enum Answer {
    Text(String),
    ToolCall { name: String },
}

/// Token counts reported in `usage`.
struct Usage {
    prompt: u64,
    completion: u64,
    cached: u64,
}

impl Usage {
    fn to_json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": { "cached_tokens": self.cached },
            "completion_tokens_details": { "reasoning_tokens": 0 },
        })
    }
}

/// The tool to call, if this request should be answered with a tool call.
fn tool_to_call(req: &Value, user_text: &str) -> Option<String> {
    let first = req.get("tools")?.as_array()?.first()?;
    let choice = req.get("tool_choice");
    let forced = choice
        .and_then(|c| c.pointer("/function/name"))
        .and_then(Value::as_str);
    let first_name = first
        .pointer("/function/name")
        .and_then(Value::as_str)
        .unwrap_or("tool");
    let disabled = choice.and_then(Value::as_str) == Some("none");
    pick_tool(Some(first_name), forced, disabled, user_text)
}

/// Identity fields shared by a response and all its chunks.
struct Envelope {
    id: String,
    created: u64,
    model: String,
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    global_latency(&state).await;
    if let Some(resp) = check_auth(&state, &headers) {
        return resp;
    }
    Json(json!({
        "object": "list",
        "data": [{ "id": MODEL_ID, "object": "model", "created": 1_700_000_000, "owned_by": "mock" }]
    }))
    .into_response()
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .recorder
        .push(RecordedRequest::new(&method, &uri, &headers, &body));
    global_latency(&state).await;
    if let Some(resp) = check_auth(&state, &headers) {
        return resp;
    }
    chat_answer(&state, &body, None, Flavor::OpenAi).await
}

/// Answer an (authorised, recorded) chat-completions request. `deployment`, if given, is the
/// model (Azure deployments), else the body's `model` is.
pub(crate) async fn chat_answer(
    state: &MockState,
    body: &Bytes,
    deployment: Option<&str>,
    flavor: Flavor,
) -> Response {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
                 payload, but what was sent was not valid JSON.)",
                None,
                None,
            );
        }
    };
    let Some(model) = deployment.or_else(|| req.get("model").and_then(Value::as_str)) else {
        return invalid_request("you must provide a model parameter", None, None);
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return invalid_request(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        );
    };

    let behaviour = Behaviour::from_model(model);
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);

    // Non-streamed answers (and errors) wait before the headers; streams before the first chunk.
    before_answer(&behaviour, stream).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err, flavor);
    }
    if model.contains("content-filter") {
        return invalid_request(
            "Your request was rejected as a result of our safety system. Your prompt may \
             contain text that is not allowed by our content management policy.",
            None,
            Some("content_policy_violation"),
        );
    }
    if behaviour.malformed && !stream {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"id": "broken"#,
        )
            .into_response();
    }

    let user_text = last_user_text(messages);
    let answer = match tool_to_call(&req, &user_text) {
        Some(name) => Answer::ToolCall { name },
        None => Answer::Text(format!("echo: {user_text}")),
    };
    let prompt = prompt_tokens(body);
    let usage = Usage {
        prompt,
        completion: match &answer {
            Answer::Text(t) => word_count(t),
            Answer::ToolCall { .. } => word_count(TOOL_ARGUMENTS),
        },
        cached: if behaviour.cached { prompt / 2 } else { 0 },
    };
    let env = Envelope {
        id: format!("chatcmpl-{}", state.next_id()),
        created: unix_now(),
        model: format!("{model}{MODEL_SUFFIX}"),
    };

    if stream {
        let include_usage = req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        stream_response(&env, &answer, &usage, include_usage, behaviour, flavor)
    } else {
        let answer = match (behaviour.oversize, answer) {
            (true, Answer::Text(t)) => Answer::Text(t + &" pad".repeat(OVERSIZE_PLAIN_BYTES / 4)),
            (_, a) => a,
        };
        let body = completion_json(&env, &answer, &usage, flavor).to_string();
        let half = Bytes::from(body[..body.len() / 2].to_owned());
        let json = [(header::CONTENT_TYPE, "application/json")];
        if behaviour.reset_body {
            return (json, crate::common::reset_body(half)).into_response();
        }
        if behaviour.truncate {
            return (json, half).into_response();
        }
        (json, body).into_response()
    }
}

/// Size of an `oversize` stream event (bytes, about): above the gateway's 16 MiB event cap.
const OVERSIZE_BYTES: usize = 17 << 20;
/// Size of an `oversize` non-streamed answer (bytes, about): set `max_response_body_bytes`
/// below it.
const OVERSIZE_PLAIN_BYTES: usize = 2 << 20;

fn completion_json(env: &Envelope, answer: &Answer, usage: &Usage, flavor: Flavor) -> Value {
    let (message, finish) = match answer {
        Answer::Text(text) => (
            json!({ "role": "assistant", "content": text, "refusal": null }),
            "stop",
        ),
        Answer::ToolCall { name } => (
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": { "name": name, "arguments": TOOL_ARGUMENTS },
                }],
                "refusal": null,
            }),
            "tool_calls",
        ),
    };
    let mut v = json!({
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }],
        "usage": usage.to_json(),
    });
    if flavor == Flavor::Azure {
        v["prompt_filter_results"] = crate::azure::prompt_filter_results();
        v["choices"][0]["content_filter_results"] = crate::azure::content_filter_results();
    }
    v
}

fn sse(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// Build the chunk events and stream them as SSE.
fn stream_response(
    env: &Envelope,
    answer: &Answer,
    usage: &Usage,
    include_usage: bool,
    behaviour: Behaviour,
    flavor: Flavor,
) -> Response {
    let chunk = |choices: Value| {
        let mut v = json!({
            "id": env.id,
            "object": "chat.completion.chunk",
            "created": env.created,
            "model": env.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        v
    };
    let delta = |delta: Value, finish: Option<&str>| {
        chunk(json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]))
    };

    let mut deltas = Vec::new();
    let finish = match answer {
        Answer::Text(text) => {
            deltas.push(delta(json!({ "role": "assistant", "content": "" }), None));
            let mut pieces = word_pieces(text);
            if behaviour.disconnect || behaviour.stream_error || behaviour.truncate {
                pieces.resize(2, "");
            }
            for piece in pieces {
                deltas.push(delta(json!({ "content": piece }), None));
            }
            "stop"
        }
        Answer::ToolCall { name } => {
            deltas.push(delta(
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": TOOL_CALL_ID,
                        "type": "function",
                        "function": { "name": name, "arguments": "" },
                    }],
                }),
                None,
            ));
            let mut pieces = crate::common::split_in(TOOL_ARGUMENTS, 3);
            if behaviour.disconnect || behaviour.stream_error || behaviour.truncate {
                pieces.truncate(2);
            }
            for piece in pieces {
                deltas.push(delta(
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                    None,
                ));
            }
            "tool_calls"
        }
    };

    let headers = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if behaviour.comments_only {
        let every = std::time::Duration::from_millis(100);
        let body = crate::common::endless_body(Vec::new(), every, |_| {
            Bytes::from_static(b": keep-alive\n\n")
        });
        return (headers, body).into_response();
    }
    if behaviour.endless {
        let first = deltas
            .first()
            .map(|d| sse(&d.to_string()))
            .into_iter()
            .collect();
        let template = delta(json!({ "content": " more" }), None).to_string();
        let every = std::time::Duration::from_millis(50);
        let body = crate::common::endless_body(first, every, move |_| sse(&template));
        return (headers, body).into_response();
    }
    if behaviour.oversize {
        let big = delta(json!({ "content": "x".repeat(OVERSIZE_BYTES) }), None);
        deltas.insert(1, big);
    }

    let mut events: Vec<Bytes> = Vec::new();
    if flavor == Flavor::Azure {
        // Azure first sends a chunk without choices carrying the prompt's content-filter results.
        events.push(sse(&crate::azure::prompt_filter_chunk().to_string()));
    }
    if behaviour.malformed {
        // One valid chunk, then garbage, then a normal end.
        if let Some(first) = deltas.first() {
            events.push(sse(&first.to_string()));
        }
        events.push(sse("{not json}"));
        events.push(sse("[DONE]"));
    } else {
        events.extend(deltas.iter().map(|d| sse(&d.to_string())));
        if behaviour.stream_error {
            // OpenAI reports mid-stream failures as an `error` object in a data event.
            let err = json!({ "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error", "param": null, "code": null,
            }});
            events.push(sse(&err.to_string()));
        } else if !behaviour.disconnect && !behaviour.reset_body && !behaviour.truncate {
            events.push(sse(&delta(json!({}), Some(finish)).to_string()));
            if include_usage {
                let mut last = chunk(json!([]));
                last["usage"] = usage.to_json();
                events.push(sse(&last.to_string()));
            }
            events.push(sse("[DONE]"));
        }
    }

    let disconnect = (behaviour.disconnect || behaviour.reset_body)
        && !behaviour.malformed
        && !behaviour.stream_error;
    let end = if disconnect {
        StreamEnd::Abort
    } else {
        StreamEnd::Clean
    };
    (headers, stream_body(events, behaviour.slow_ms, end)).into_response()
}

/// Fallback for unknown paths: OpenAI's 404 shape.
pub async fn not_found(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Recorded too, so a test can prove nothing reached a path the mock does not serve.
    state
        .recorder
        .push(RecordedRequest::new(&method, &uri, &headers, &body));
    error_response(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {})", uri.path()),
        "invalid_request_error",
        None,
        None,
    )
}

/// `POST /v1/embeddings`: one deterministic 8-dimensional vector per input string.
pub async fn embeddings(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .recorder
        .push(RecordedRequest::new(&method, &uri, &headers, &body));
    global_latency(&state).await;
    if let Some(resp) = check_auth(&state, &headers) {
        return resp;
    }
    embeddings_answer(&body, None, Flavor::OpenAi).await
}

/// Answer an (authorised, recorded) embeddings request; `deployment` overrides the body's model.
pub(crate) async fn embeddings_answer(
    body: &Bytes,
    deployment: Option<&str>,
    flavor: Flavor,
) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return invalid_request(
            "We could not parse the JSON body of your request.",
            None,
            None,
        );
    };
    let Some(model) = deployment.or_else(|| req.get("model").and_then(Value::as_str)) else {
        return invalid_request("you must provide a model parameter", None, None);
    };
    let behaviour = Behaviour::from_model(model);
    before_answer(&behaviour, false).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err, flavor);
    }
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => return invalid_request("'input' is a required property", Some("input"), None),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v: Vec<f64> = (0..8u32)
                .map(|d| f64::from((s.len() as u32 + d) % 7) / 7.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens: usize = inputs
        .iter()
        .map(|s| s.split_whitespace().count().max(1))
        .sum();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate() {
        for s in [
            "echo: hello world",
            "echo: ",
            "  a  b\tc \n",
            "echo:",
            "",
            "x",
        ] {
            let pieces = word_pieces(s);
            assert_eq!(pieces.concat(), s, "{s:?}");
            assert_eq!(
                pieces.len(),
                s.split_whitespace().count().max(usize::from(!s.is_empty()))
            );
        }
        assert_eq!(word_pieces("echo: a b"), vec!["echo:", " a", " b"]);
    }

    #[test]
    fn user_text_parts() {
        let msgs = vec![
            json!({"role": "user", "content": "first"}),
            json!({"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": " here"},
            ]}),
            json!({"role": "assistant", "content": "ignored"}),
        ];
        assert_eq!(last_user_text(&msgs), "look here[image]");
    }
}
