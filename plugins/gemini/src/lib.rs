//! llmgate provider plugin for Google AI Studio (the Gemini API).
//!
//! Gemini speaks neither client API, so both are translated:
//!
//! - `/v1/chat/completions` to `POST {base}/v1beta/models/{model}:generateContent` (or
//!   `:streamGenerateContent?alt=sse`) and back, streams included ([`convert`]).
//! - `/v1/messages` (Anthropic clients) through the SDK's [`ViaChat`]: Messages <-> chat
//!   completions, chained with the same chat <-> Gemini conversion.
//!
//! The key goes in `x-goog-api-key`; the host reads it from `GEMINI_API_KEY` or
//! `GOOGLE_API_KEY` when the deployment sets none.

pub mod convert;

use llmgate_sdk::chat::ChatRequest;
use llmgate_sdk::plugin::DEFAULT_PARAMS;
use llmgate_sdk::prelude::*;
use llmgate_sdk::via_chat::ViaChat;
use serde_json::Value;

use crate::convert::StreamToChat;

/// The plugin.
pub struct Gemini;

impl Provider for Gemini {
    const DESCRIPTION: Description = Description {
        name: "gemini",
        version: env!("CARGO_PKG_VERSION"),
        prefixes: &[Prefix::new(
            "gemini",
            Some("https://generativelanguage.googleapis.com"),
            &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        )],
        apis: &[Api::ChatCompletions, Api::Messages],
        native_apis: &[],
    };
    type Exchange = ViaChat<Chat>;
}

/// One chat completions attempt.
pub struct Chat {
    req: Request,
    /// Gemini chunks to OpenAI chunks (streamed attempts).
    stream: Option<StreamToChat>,
}

fn events(chunks: Vec<String>) -> Vec<SseEvent> {
    chunks.into_iter().map(SseEvent::data).collect()
}

impl Exchange for Chat {
    const UPSTREAM: &'static str = "Gemini";

    fn new(req: Request) -> Self {
        Self { req, stream: None }
    }

    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let dep = &req.deployment;
        if req.api != Api::ChatCompletions {
            return Err(GatewayError::bad_request(
                "the gemini plugin serves /v1/chat/completions and /v1/messages",
            ));
        }
        let mut chat = ChatRequest::from_slice(&req.body)?;
        chat.fill_defaults(&req.params, DEFAULT_PARAMS)?;
        let body = serde_json::to_vec(&convert::from_chat(&chat, &dep.model)?)
            .map_err(|e| GatewayError::bad_request(format!("cannot encode the request: {e}")))?;
        if req.stream {
            // A Messages client's converter reports the input tokens of the first chunk.
            let messages = req.translated_from == Some(Api::Messages);
            let to_chat = StreamToChat::new(&req.model, messages || chat.wants_usage());
            self.stream = Some(if messages {
                to_chat.with_early_usage()
            } else {
                to_chat
            });
        }
        let url = convert::endpoint_url(
            req.base()?,
            dep.api_version.as_deref(),
            &dep.model,
            req.stream,
        )?;
        let auth = Auth::Header("x-goog-api-key".into());
        Ok(Plan::post(req, url, auth, body).build())
    }

    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError> {
        let status = answer.status;
        let v: Value = serde_json::from_slice(&answer.body).map_err(|_| {
            GatewayError::upstream(format!(
                "Gemini answered {status} with a body that is not JSON (deployment {})",
                self.req.deployment.id
            ))
        })?;
        let (chat, usage) = convert::gemini_to_chat(&v, &self.req.model)?;
        let model = v
            .get("modelVersion")
            .and_then(Value::as_str)
            .map(Into::into);
        let chat = serde_json::to_vec(&chat)
            .map_err(|e| GatewayError::upstream(format!("cannot encode the response: {e}")))?;
        Ok(json_response(status, chat, Some(usage), model))
    }

    fn on_error(&self, answer: &Answer) -> GatewayError {
        convert::parse_error(answer.status, &answer.body)
    }

    fn on_event(&mut self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let to_chat = self.stream.as_mut().ok_or_else(|| {
            GatewayError::upstream("stream event for a request that did not stream")
        })?;
        Ok(events(to_chat.on_chunk(&event.data)?))
    }

    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let to_chat = self.stream.as_mut().ok_or_else(|| {
            GatewayError::upstream("stream finished for a request that did not stream")
        })?;
        let (chunks, usage) = to_chat.finish()?;
        Ok((events(chunks), usage))
    }
}

export_provider!(Gemini);

#[cfg(test)]
mod tests {
    use super::*;
    use llmgate_sdk::plugin::{Deployment, ExchangeCell, GuestExchange, Inbound};
    use llmgate_sdk::{ErrorClass, Framing};
    use serde_json::json;

    fn exchange(api: Api, stream: bool, body: Value) -> ExchangeCell<Gemini> {
        let mut dep = Deployment::new("d1", "gemini", "gemini-2.5-flash");
        dep.params_json = r#"{"temperature":0.5,"extra_headers":{"X-Trace":"1"}}"#.into();
        let body = serde_json::to_vec(&body).unwrap();
        ExchangeCell::new(Inbound::json(api, "my-group", stream, &body, dep))
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
