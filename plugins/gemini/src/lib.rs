//! llmgate provider plugin for Google AI Studio (the Gemini API).
//!
//! Gemini speaks neither client API, so both are translated:
//!
//! - `/v1/chat/completions` to `POST {base}/v1beta/models/{model}:generateContent` (or
//!   `:streamGenerateContent?alt=sse`) and back, streams included ([`convert`]).
//! - `/v1/messages` (Anthropic clients) through the SDK's Messages <-> chat completions
//!   conversion chained with the same chat <-> Gemini conversion.
//!
//! The key goes in `x-goog-api-key`; the host reads it from `GEMINI_API_KEY` or
//! `GOOGLE_API_KEY` when the deployment sets none.

pub mod convert;

use std::cell::RefCell;

use llmgate_sdk::anthropic::{self, ChatStreamToMessages};
use llmgate_sdk::provider::exports::llmgate::plugin::provider::{
    ClientResponse, Guest, GuestExchange, Inbound, Info, Prefix, UpstreamRequest,
};
use llmgate_sdk::{Api, Auth, Framing, GatewayError, Headers, SseEvent, Usage};
use serde_json::Value;

use crate::convert::{Failure, StreamToChat};

/// The plugin.
pub struct Gemini;

const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";

/// `litellm_params` that become request defaults when the client did not set them.
const DEFAULT_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "reasoning_effort",
    "response_format",
    "n",
];

impl Guest for Gemini {
    type Exchange = Exchange;

    fn describe() -> Info {
        Info {
            name: "gemini".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            prefixes: vec![Prefix {
                name: "gemini".into(),
                default_api_base: Some(DEFAULT_BASE.into()),
                api_key_env: vec!["GEMINI_API_KEY".into(), "GOOGLE_API_KEY".into()],
            }],
            apis: vec![Api::ChatCompletions, Api::Messages],
            native_apis: Vec::new(),
        }
    }
}

/// One attempt.
pub struct Exchange {
    req: Inbound,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    /// Gemini chunks to OpenAI chunks (every stream).
    to_chat: Option<StreamToChat>,
    /// OpenAI chunks on to Anthropic events (Messages inbound).
    to_messages: Option<ChatStreamToMessages>,
}

fn gateway_error(f: Failure) -> GatewayError {
    GatewayError {
        class: f.class,
        status: f.status,
        message: f.message,
        code: f.code,
        retry_after_ms: None,
    }
}

fn events(data: Vec<String>) -> Vec<SseEvent> {
    data.into_iter()
        .map(|data| SseEvent { event: None, data })
        .collect()
}

fn anthropic_events(events: Vec<SseEvent>) -> Vec<SseEvent> {
    events.into_iter().collect()
}

/// Whether the client asked for `stream_options.include_usage`.
fn wants_usage(chat: &Value) -> bool {
    chat.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

impl GuestExchange for Exchange {
    fn new(req: Inbound) -> Self {
        Self {
            req,
            state: RefCell::new(State::default()),
        }
    }

    fn build_request(&self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let dep = &req.deployment;
        let mut chat: Value = match req.api {
            Api::ChatCompletions => serde_json::from_slice(&req.body).map_err(|e| {
                GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
            })?,
            Api::Messages => {
                let body = anthropic::messages_to_chat_request(&req.body, &dep.model)
                    .map_err(|e| GatewayError::bad_request(e.to_string()))?;
                serde_json::from_slice(&body).map_err(|e| {
                    GatewayError::upstream(format!("messages translation produced bad JSON: {e}"))
                })?
            }
            _ => {
                return Err(GatewayError::bad_request(
                    "the gemini plugin serves /v1/chat/completions and /v1/messages",
                ));
            }
        };
        let params: serde_json::Map<String, Value> =
            serde_json::from_str(&dep.params_json).unwrap_or_default();
        if let Some(obj) = chat.as_object_mut() {
            for key in DEFAULT_PARAMS {
                if let Some(v) = params.get(*key)
                    && obj.get(*key).is_none_or(Value::is_null)
                {
                    obj.insert((*key).to_string(), v.clone());
                }
            }
        }
        let body = convert::chat_to_gemini(&chat, &dep.model).map_err(gateway_error)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| GatewayError::bad_request(format!("cannot encode the request: {e}")))?;

        if req.stream {
            let mut st = self.state.borrow_mut();
            // The Messages converter needs the usage chunk to report usage.
            let include_usage = req.api == Api::Messages || wants_usage(&chat);
            let to_chat = StreamToChat::new(&req.model, include_usage);
            st.to_chat = Some(if req.api == Api::Messages {
                to_chat.with_early_usage()
            } else {
                to_chat
            });
            if req.api == Api::Messages {
                st.to_messages = Some(ChatStreamToMessages::new(&req.model));
            }
        }

        let base = dep.api_base.as_deref().unwrap_or(DEFAULT_BASE);
        let url = convert::endpoint_url(base, dep.api_version.as_deref(), &dep.model, req.stream)?;
        let mut headers: Headers = vec![("content-type".into(), "application/json".into())];
        if let Some(extra) = params.get("extra_headers").and_then(Value::as_object) {
            for (k, v) in extra {
                if let Some(v) = v.as_str() {
                    headers.push((k.to_ascii_lowercase(), v.into()));
                }
            }
        }
        Ok(UpstreamRequest {
            method: "POST".into(),
            url,
            headers,
            body,
            auth: Auth::Header("x-goog-api-key".into()),
            framing: if req.stream {
                Framing::Sse
            } else {
                Framing::None
            },
        })
    }

    fn on_body(
        &self,
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    ) -> Result<ClientResponse, GatewayError> {
        if !(200..300).contains(&status) {
            let mut e = gateway_error(convert::parse_error(status, &body));
            e.retry_after_ms = llmgate_sdk::retry_after_ms(&headers);
            return Err(e);
        }
        let v: Value = serde_json::from_slice(&body).map_err(|_| {
            GatewayError::upstream(format!(
                "Gemini answered {status} with a body that is not JSON (deployment {})",
                self.req.deployment.id
            ))
        })?;
        let (chat, usage) = convert::gemini_to_chat(&v, &self.req.model).map_err(gateway_error)?;
        let model = v
            .get("modelVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let chat = serde_json::to_vec(&chat)
            .map_err(|e| GatewayError::upstream(format!("cannot encode the response: {e}")))?;
        let body = if self.req.api == Api::Messages {
            anthropic::chat_response_to_messages(&chat, &self.req.model)
                .map_err(|e| GatewayError::upstream(format!("unreadable Gemini response: {e}")))?
                .0
        } else {
            chat
        };
        Ok(ClientResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            usage: Some(usage),
            model,
        })
    }

    fn on_stream_start(&self, _status: u16, _headers: Headers) -> Result<Headers, GatewayError> {
        Ok(Vec::new())
    }

    fn on_event(&self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let to_chat = st.to_chat.as_mut().ok_or_else(|| {
            GatewayError::upstream("stream event for a request that did not stream")
        })?;
        let chunks = to_chat.on_chunk(&event.data).map_err(gateway_error)?;
        match st.to_messages.as_mut() {
            None => Ok(events(chunks)),
            Some(conv) => {
                let mut out = Vec::new();
                for chunk in &chunks {
                    let evs = conv.on_chunk(chunk).map_err(|e| {
                        GatewayError::upstream(format!("unreadable Gemini stream: {e}"))
                    })?;
                    out.extend(anthropic_events(evs));
                }
                Ok(out)
            }
        }
    }

    fn finish(&self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        let to_chat = st.to_chat.as_mut().ok_or_else(|| {
            GatewayError::upstream("stream finished for a request that did not stream")
        })?;
        let (chunks, usage) = to_chat.finish().map_err(gateway_error)?;
        let usage: Option<Usage> = usage;
        match st.to_messages.as_mut() {
            None => Ok((events(chunks), usage)),
            Some(conv) => {
                let mut out = Vec::new();
                for chunk in &chunks {
                    let evs = conv.on_chunk(chunk).map_err(|e| {
                        GatewayError::upstream(format!("unreadable Gemini stream: {e}"))
                    })?;
                    out.extend(anthropic_events(evs));
                }
                let (evs, conv_usage) = conv.finish().map_err(|e| {
                    GatewayError::upstream(format!("Gemini stream ended early: {e}"))
                })?;
                out.extend(anthropic_events(evs));
                Ok((out, usage.or(conv_usage)))
            }
        }
    }
}

// Exported only in the component: natively (unit tests) the cdylib cannot link the
// component-model export names (`cabi_post_llmgate:plugin/...` is not a valid symbol for
// the native linker's version script).
#[cfg(target_arch = "wasm32")]
llmgate_sdk::export_guest_provider!(Gemini);

#[cfg(test)]
mod tests {
    use super::*;
    use llmgate_sdk::ErrorClass;
    use llmgate_sdk::provider::exports::llmgate::plugin::provider::Deployment;
    use serde_json::json;

    fn exchange(api: Api, stream: bool, body: Value) -> Exchange {
        Exchange::new(Inbound {
            api,
            model: "my-group".into(),
            stream,
            body: serde_json::to_vec(&body).unwrap(),
            content_type: "application/json".into(),
            headers: Vec::new(),
            deployment: Deployment {
                id: "d1".into(),
                provider: "gemini".into(),
                model: "gemini-2.5-flash".into(),
                api_base: None,
                api_version: None,
                params_json: r#"{"temperature":0.5,"extra_headers":{"X-Trace":"1"}}"#.into(),
            },
        })
    }

    fn gemini_text_response() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi there"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "r",
        }))
        .unwrap()
    }

    #[test]
    fn chat_completions_round_trip() {
        let ex = exchange(
            Api::ChatCompletions,
            false,
            json!({"model": "my-group", "messages": [{"role": "user", "content": "Hi"}]}),
        );
        let up = ex.build_request().unwrap();
        assert_eq!(
            up.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert!(matches!(&up.auth, Auth::Header(h) if h == "x-goog-api-key"));
        assert!(matches!(up.framing, Framing::None));
        assert!(up.headers.contains(&("x-trace".into(), "1".into())));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["contents"][0]["parts"][0]["text"], "Hi");
        // litellm_params default applied.
        assert_eq!(body["generationConfig"]["temperature"], 0.5);

        let resp = ex.on_body(200, Vec::new(), gemini_text_response()).unwrap();
        let chat: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(chat["choices"][0]["message"]["content"], "Hi there");
        assert_eq!(chat["model"], "my-group");
        assert_eq!(resp.model.as_deref(), Some("gemini-2.5-flash-001"));
        let usage = resp.usage.unwrap();
        assert_eq!((usage.input, usage.output), (7, 3));

        let err = ex
            .on_body(
                429,
                vec![("retry-after".into(), "2".into())],
                br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#
                    .to_vec(),
            )
            .unwrap_err();
        assert!(matches!(err.class, ErrorClass::RateLimited));
        assert_eq!(err.status, 429);
        assert_eq!(err.retry_after_ms, Some(2000));
    }

    #[test]
    fn chat_stream() {
        let ex = exchange(
            Api::ChatCompletions,
            true,
            json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true}),
        );
        let up = ex.build_request().unwrap();
        assert!(up.url.ends_with(":streamGenerateContent?alt=sse"));
        assert!(matches!(up.framing, Framing::Sse));
        let data = String::from_utf8(gemini_text_response()).unwrap();
        let out = ex.on_event(SseEvent { event: None, data }).unwrap();
        assert_eq!(out.len(), 3); // role, content, finish
        let (tail, usage) = ex.finish().unwrap();
        // No include_usage: only [DONE].
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].data, "[DONE]");
        assert_eq!(usage.map(|u| u.input), Some(7));
    }

    #[test]
    fn messages_round_trip() {
        let req = json!({
            "model": "claude-sonnet",
            "max_tokens": 256,
            "system": "Be kind.",
            "messages": [{"role": "user", "content": "Hi"}],
        });
        let ex = exchange(Api::Messages, false, req.clone());
        let up = ex.build_request().unwrap();
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be kind.");
        assert_eq!(body["contents"][0]["parts"][0]["text"], "Hi");
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 256);
        let resp = ex.on_body(200, Vec::new(), gemini_text_response()).unwrap();
        let msg: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(msg["type"], "message");
        assert_eq!(msg["content"][0]["text"], "Hi there");
        assert_eq!(msg["model"], "my-group");

        let mut req = req;
        req["stream"] = json!(true);
        let ex = exchange(Api::Messages, true, req);
        ex.build_request().unwrap();
        let data = String::from_utf8(gemini_text_response()).unwrap();
        let mut out = ex.on_event(SseEvent { event: None, data }).unwrap();
        let (tail, usage) = ex.finish().unwrap();
        out.extend(tail);
        let names: Vec<&str> = out.iter().filter_map(|e| e.event.as_deref()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        let start: Value = serde_json::from_str(&out[0].data).unwrap();
        assert_eq!(start["message"]["usage"]["input_tokens"], 7);
        assert_eq!(names.last(), Some(&"message_stop"));
        assert!(names.contains(&"content_block_delta"));
        assert!(names.contains(&"message_delta"));
        let text: String = out
            .iter()
            .filter(|e| e.event.as_deref() == Some("content_block_delta"))
            .filter_map(|e| {
                let v: Value = serde_json::from_str(&e.data).ok()?;
                v["delta"]["text"].as_str().map(str::to_string)
            })
            .collect();
        assert_eq!(text, "Hi there");
        assert_eq!(usage.map(|u| u.output), Some(3));
    }

    #[test]
    fn stream_cut_short_is_an_error() {
        let ex = exchange(
            Api::Messages,
            true,
            json!({"model": "c", "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
        );
        ex.build_request().unwrap();
        ex.on_event(SseEvent {
            event: None,
            data: r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}]}"#.into(),
        })
        .unwrap();
        let err = ex.finish().unwrap_err();
        assert!(matches!(err.class, ErrorClass::Upstream));
    }
}
