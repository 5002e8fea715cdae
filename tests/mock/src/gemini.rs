//! Google Gemini (AI Studio, Generative Language API) wire format:
//! `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (SSE with
//! `?alt=sse`, else a streamed JSON array) and `:countTokens`; the same under `/v1/models/`.
//!
//! Authentication (when `require_key` is set) is the `x-goog-api-key` header or the `key` query
//! parameter: no key at all gets Google's 403 `PERMISSION_DENIED`, a wrong one its 400
//! `INVALID_ARGUMENT` with reason `API_KEY_INVALID`. Token counts: prompt = body bytes / 4,
//! candidates = words, `totalTokenCount` = prompt + candidates + thoughts.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::MockState;
use crate::behaviour::{Behaviour, MockError};
use crate::common::{
    StreamEnd, before_answer, global_latency, header_str, pick_tool, prompt_tokens, query_param,
    stream_body, word_count,
};
use crate::openai::{TOOL_ARGUMENTS, word_pieces};
use crate::record::RecordedRequest;

/// The text of the mock's thought part.
pub const THINKING_TEXT: &str = "mock thinking";

/// Google's canonical status name for an HTTP status.
fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500.. => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

/// The error object `{"code", "message", "status"}` (plus `details` if not empty).
fn error_json(code: u16, message: &str, details: Vec<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message, "status": status_name(code) });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json!({ "error": error })
}

/// A Google-shaped error: `{"error": {"code": N, "message": ..., "status": ...}}`.
pub fn error_response(code: u16, message: &str) -> Response {
    error_with_details(code, message, Vec::new())
}

fn error_with_details(code: u16, message: &str, details: Vec<Value>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(error_json(code, message, details))).into_response()
}

/// The error a `mock-error-*` model asks for.
fn mock_error_response(err: MockError) -> Response {
    match err {
        MockError::ContextLength => error_response(
            400,
            "The input token count (1250000) exceeds the maximum number of tokens allowed \
             (1048576).",
        ),
        MockError::Status(code) => {
            let message = match code {
                429 => "Resource has been exhausted (e.g. check quota).".to_owned(),
                500 => "An internal error has occurred. Please retry or report in \
                        https://developers.generativeai.google/guide/troubleshooting"
                    .to_owned(),
                503 => "The model is overloaded. Please try again later.".to_owned(),
                _ => format!(
                    "Mock upstream error: status {code} ({})",
                    StatusCode::from_u16(code)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("unknown")
                ),
            };
            let details = if code == 429 {
                vec![json!({
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "1s",
                })]
            } else {
                Vec::new()
            };
            error_with_details(code, &message, details)
        }
    }
}

/// `None` if the API key (header `x-goog-api-key` or query `key`) is right or not required.
fn check_auth(state: &MockState, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    let key = state.opts.require_key.as_deref()?;
    let given = header_str(headers, "x-goog-api-key").or(query_param(uri.query(), "key"));
    match given {
        Some(k) if k == key => None,
        None => Some(error_response(
            403,
            "Method doesn't allow unregistered callers (callers without established \
             identity). Please use API Key or other form of API consumer identity to call this \
             API.",
        )),
        Some(_) => Some(error_with_details(
            400,
            "API key not valid. Please pass a valid API key.",
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": { "service": "generativelanguage.googleapis.com" },
            })],
        )),
    }
}

/// The text of the last user content: its `text` parts joined, plus `[image]` if it has an
/// `inlineData` or `fileData` part.
pub fn last_user_text(contents: &[Value]) -> String {
    let Some(content) = contents.iter().rev().find(|c| {
        c.get("role")
            .and_then(Value::as_str)
            .is_none_or(|r| r == "user")
    }) else {
        return String::new();
    };
    let mut text = String::new();
    let mut image = false;
    for part in content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if ["inlineData", "inline_data", "fileData", "file_data"]
            .iter()
            .any(|k| part.get(*k).is_some())
        {
            image = true;
        }
    }
    if image {
        text.push_str("[image]");
    }
    text
}

/// The function to call, if this request should be answered with a `functionCall` part.
fn function_to_call(req: &Value, user_text: &str) -> Option<String> {
    let first = req
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| {
            t.get("functionDeclarations")
                .or_else(|| t.get("function_declarations"))
        })
        .filter_map(Value::as_array)
        .flatten()
        .find_map(|f| f.get("name").and_then(Value::as_str));
    let config = req
        .pointer("/toolConfig/functionCallingConfig")
        .or_else(|| req.pointer("/tool_config/function_calling_config"));
    let mode = config.and_then(|c| c.get("mode")).and_then(Value::as_str);
    let forced = config
        .and_then(|c| {
            c.get("allowedFunctionNames")
                .or_else(|| c.get("allowed_function_names"))
        })
        .and_then(|a| a.get(0))
        .and_then(Value::as_str);
    pick_tool(first, forced, mode == Some("NONE"), user_text)
}

/// Token counts reported in `usageMetadata`.
#[derive(Clone, Copy)]
struct Usage {
    prompt: u64,
    candidates: u64,
    thoughts: u64,
    cached: u64,
}

impl Usage {
    fn to_json(self) -> Value {
        json!({
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.candidates,
            "totalTokenCount": self.prompt + self.candidates + self.thoughts,
            "cachedContentTokenCount": self.cached,
            "thoughtsTokenCount": self.thoughts,
        })
    }
}

/// Identity of a response and all its chunks.
struct Envelope {
    model: String,
    response_id: String,
}

impl Envelope {
    /// A `GenerateContentResponse` with these parts.
    fn response(&self, parts: Vec<Value>, finish: Option<&str>, usage: Usage) -> Value {
        let mut candidate = json!({ "content": { "role": "model", "parts": parts }, "index": 0 });
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage.to_json(),
            "modelVersion": self.model,
            "responseId": self.response_id,
        })
    }
}

/// `POST /v1beta/models/{model}:{method}` (and `/v1/models/...`).
pub async fn models_action(
    State(state): State<Arc<MockState>>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .recorder
        .push(RecordedRequest::new(&method, &uri, &headers, &body));
    global_latency(&state).await;
    if let Some(resp) = check_auth(&state, &uri, &headers) {
        return resp;
    }
    let Some((model, action)) = rest.rsplit_once(':') else {
        return error_response(404, &format!("models/{rest} is not found for API version."));
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        "countTokens" => return count_tokens(model, &body).await,
        _ => {
            return error_response(
                404,
                &format!("Method {action} is not found for models/{model}."),
            );
        }
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error_response(
                400,
                "Invalid JSON payload received. Expected a JSON object.",
            );
        }
    };
    let Some(contents) = req
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return error_response(
            400,
            "* GenerateContentRequest.contents: contents is not specified\n",
        );
    };

    let behaviour = Behaviour::from_model(model);
    before_answer(&behaviour, stream).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err);
    }
    if behaviour.malformed && !stream {
        return (
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            r#"{"candidates": ["#,
        )
            .into_response();
    }

    let user_text = last_user_text(contents);
    let thinking = req
        .pointer("/generationConfig/thinkingConfig/includeThoughts")
        .or_else(|| req.pointer("/generation_config/thinking_config/include_thoughts"))
        .and_then(Value::as_bool)
        == Some(true);
    let call = function_to_call(&req, &user_text);
    let text = format!("echo: {user_text}");
    let prompt = prompt_tokens(&body);
    let usage = Usage {
        prompt,
        candidates: if call.is_some() {
            word_count(TOOL_ARGUMENTS)
        } else {
            word_count(&text)
        },
        thoughts: if thinking {
            word_count(THINKING_TEXT)
        } else {
            0
        },
        cached: if behaviour.cached { prompt / 2 } else { 0 },
    };
    let env = Envelope {
        model: model.to_owned(),
        response_id: format!("mock-resp-{}", state.next_id()),
    };
    let thought_part = json!({ "text": THINKING_TEXT, "thought": true });
    let call_part =
        |name: &str| json!({ "functionCall": { "name": name, "args": { "q": "mock" } } });

    if !stream {
        let mut parts = Vec::new();
        if thinking {
            parts.push(thought_part);
        }
        parts.push(match &call {
            Some(name) => call_part(name),
            None => json!({ "text": text }),
        });
        return Json(env.response(parts, Some("STOP"), usage)).into_response();
    }

    // One chunk per thought, word or function call; usage is cumulative.
    let mut chunks = Vec::new();
    let mut so_far = Usage {
        candidates: 0,
        thoughts: 0,
        ..usage
    };
    if thinking {
        so_far.thoughts = usage.thoughts;
        chunks.push(env.response(vec![thought_part], None, so_far));
    }
    match &call {
        Some(name) => {
            so_far.candidates = usage.candidates;
            chunks.push(env.response(vec![call_part(name)], None, so_far));
        }
        None => {
            let mut streamed = String::new();
            for piece in word_pieces(&text) {
                streamed.push_str(piece);
                so_far.candidates = word_count(&streamed);
                chunks.push(env.response(vec![json!({ "text": piece })], None, so_far));
            }
        }
    }
    if let Some(last) = chunks.last_mut() {
        last["candidates"][0]["finishReason"] = json!("STOP");
    }
    let sse = query_param(uri.query(), "alt") == Some("sse");
    stream_response(chunks, sse, behaviour)
}

fn stream_response(chunks: Vec<Value>, sse: bool, behaviour: Behaviour) -> Response {
    let mut items: Vec<String> = chunks.iter().map(Value::to_string).collect();
    let mut end = StreamEnd::Clean;
    if behaviour.malformed {
        items.truncate(1);
        items.push("{not json".to_owned());
    } else if behaviour.disconnect || behaviour.stream_error {
        items.truncate(2);
        if behaviour.stream_error {
            items.push(
                error_json(
                    503,
                    "The model is overloaded. Please try again later.",
                    Vec::new(),
                )
                .to_string(),
            );
        } else {
            end = StreamEnd::Abort;
        }
    }
    let (content_type, events): (&str, Vec<Bytes>) = if sse {
        (
            "text/event-stream",
            items
                .iter()
                .map(|i| Bytes::from(format!("data: {i}\r\n\r\n")))
                .collect(),
        )
    } else {
        // Without `alt=sse`: one JSON array, streamed element by element.
        let mut events: Vec<Bytes> = items
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let sep = if n == 0 { "[" } else { "\n,\r\n" };
                Bytes::from(format!("{sep}{i}"))
            })
            .collect();
        if end == StreamEnd::Clean && !behaviour.malformed {
            events.push(Bytes::from_static(b"\n]"));
        }
        ("application/json; charset=UTF-8", events)
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        stream_body(events, behaviour.slow_ms, end),
    )
        .into_response()
}

/// `:countTokens`: `{"totalTokens": N}` (N = body bytes / 4).
async fn count_tokens(model: &str, body: &Bytes) -> Response {
    let behaviour = Behaviour::from_model(model);
    before_answer(&behaviour, false).await;
    if let Some(err) = behaviour.error {
        return mock_error_response(err);
    }
    Json(json!({ "totalTokens": prompt_tokens(body) })).into_response()
}
