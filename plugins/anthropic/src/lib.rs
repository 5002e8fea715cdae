//! llmgate provider plugin for Anthropic.
//!
//! - `/v1/messages` and `/v1/messages/count_tokens` pass through untouched but for `model`:
//!   `cache_control`, `thinking`, tool use, images, and the `anthropic-version` and
//!   `anthropic-beta` headers survive, and the cache usage fields are read for costing.
//! - `/v1/chat/completions` is translated to Messages and back (streams included) with the
//!   SDK's shared conversion.

use std::cell::RefCell;

use llmgate_sdk::anthropic::{self as conv, MessagesStreamToChat};
use llmgate_sdk::json::{self, TopLevel};
use llmgate_sdk::provider::exports::llmgate::plugin::provider::{
    ClientResponse, Guest, GuestExchange, Inbound, Info, Prefix, UpstreamRequest,
};
use llmgate_sdk::{Api, Auth, ErrorClass, Framing, GatewayError, Headers, SseEvent, Usage};

/// The plugin.
pub struct Anthropic;

const DEFAULT_BASE: &str = "https://api.anthropic.com";
const DEFAULT_VERSION: &str = "2023-06-01";

impl Guest for Anthropic {
    type Exchange = Exchange;

    fn describe() -> Info {
        Info {
            name: "anthropic".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            prefixes: vec![Prefix {
                name: "anthropic".into(),
                default_api_base: Some(DEFAULT_BASE.into()),
                api_key_env: vec!["ANTHROPIC_API_KEY".into()],
            }],
            apis: vec![Api::Messages, Api::CountTokens, Api::ChatCompletions],
            native_apis: vec![Api::Messages, Api::CountTokens],
        }
    }
}

/// One attempt.
pub struct Exchange {
    req: Inbound,
    state: RefCell<State>,
}

struct State {
    /// Native stream bookkeeping.
    usage: Usage,
    saw_stop: bool,
    saw_error: bool,
    /// Translating stream (chat completions inbound).
    to_chat: Option<MessagesStreamToChat>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            usage: Usage {
                input: 0,
                output: 0,
                cache_read: 0,
                cache_write: 0,
                reasoning: 0,
            },
            saw_stop: false,
            saw_error: false,
            to_chat: None,
        }
    }
}

/// `{api_base}/v1/<path>`, whether or not `api_base` already ends in `/v1`.
fn url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

fn usage_from(v: &serde_json::Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Usage {
        input: n("input_tokens"),
        output: n("output_tokens"),
        cache_read: n("cache_read_input_tokens"),
        cache_write: n("cache_creation_input_tokens"),
        reasoning: 0,
    }
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
        let base = dep
            .api_base
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE.to_string());
        let model = json::quote(&dep.model);
        let (path, body) = match req.api {
            Api::Messages | Api::CountTokens => {
                let top = TopLevel::parse(&req.body).map_err(|e| {
                    GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
                })?;
                let path = if req.api == Api::Messages {
                    "messages"
                } else {
                    "messages/count_tokens"
                };
                (path, top.patch(&[("model", Some(&model))]))
            }
            Api::ChatCompletions => {
                let body = conv::chat_to_messages_request(&req.body, &dep.model)
                    .map_err(|e| GatewayError::bad_request(e.to_string()))?;
                if req.stream {
                    self.state.borrow_mut().to_chat = Some(MessagesStreamToChat::new(
                        &req.model,
                        wants_usage(&req.body),
                    ));
                }
                ("messages", body)
            }
            _ => {
                return Err(GatewayError::bad_request(
                    "the anthropic plugin serves messages and chat completions",
                ));
            }
        };
        let mut headers: Headers = vec![("content-type".into(), "application/json".into())];
        let version =
            llmgate_sdk::header(&req.headers, "anthropic-version").unwrap_or(DEFAULT_VERSION);
        headers.push(("anthropic-version".into(), version.into()));
        if let Some(beta) = llmgate_sdk::header(&req.headers, "anthropic-beta") {
            headers.push(("anthropic-beta".into(), beta.into()));
        }
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&dep.params_json).unwrap_or_default();
        if let Some(extra) = params.get("extra_headers").and_then(|v| v.as_object()) {
            for (k, v) in extra {
                if let Some(v) = v.as_str() {
                    headers.push((k.to_ascii_lowercase(), v.into()));
                }
            }
        }
        let streamed = req.stream && req.api != Api::CountTokens;
        Ok(UpstreamRequest {
            method: "POST".into(),
            url: url(&base, path),
            headers,
            body,
            auth: Auth::Header("x-api-key".into()),
            framing: if streamed {
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
            let e = conv::parse_anthropic_error(status, &body);
            return Err(GatewayError {
                class: ErrorClass::from(e.class),
                status,
                message: e.message,
                code: e.code,
                retry_after_ms: llmgate_sdk::retry_after_ms(&headers),
            });
        }
        let json_headers = vec![("content-type".to_string(), "application/json".to_string())];
        match self.req.api {
            Api::ChatCompletions => {
                let (body, usage) = conv::messages_response_to_chat(&body, &self.req.model)
                    .map_err(|e| {
                        GatewayError::upstream(format!("unreadable Anthropic response: {e}"))
                    })?;
                Ok(ClientResponse {
                    status,
                    headers: json_headers,
                    body,
                    usage: Some(usage.into()),
                    model: None,
                })
            }
            _ => {
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
                    GatewayError::upstream("Anthropic answered with a body that is not JSON")
                })?;
                let usage = v.get("usage").map(usage_from);
                let model = v.get("model").and_then(|m| m.as_str()).map(str::to_string);
                Ok(ClientResponse {
                    status,
                    headers: json_headers,
                    body,
                    usage,
                    model,
                })
            }
        }
    }

    fn on_stream_start(&self, _status: u16, _headers: Headers) -> Result<Headers, GatewayError> {
        Ok(Vec::new())
    }

    fn on_event(&self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let mut st = self.state.borrow_mut();
        if let Some(conv) = st.to_chat.as_mut() {
            let out = conv
                .on_event(event.event.as_deref(), &event.data)
                .map_err(|e| GatewayError::upstream(format!("unreadable Anthropic stream: {e}")))?;
            return Ok(out.into_iter().map(SseEvent::from).collect());
        }
        // Native: pass through, reading usage as it goes.
        let v: serde_json::Value = serde_json::from_str(&event.data).map_err(|_| {
            GatewayError::upstream(format!(
                "Anthropic sent a stream event that is not JSON (deployment {})",
                self.req.deployment.id
            ))
        })?;
        match v.get("type").and_then(|t| t.as_str()) {
            Some("message_start") => {
                if let Some(u) = v.pointer("/message/usage") {
                    let u = usage_from(u);
                    st.usage.input = u.input;
                    st.usage.cache_read = u.cache_read;
                    st.usage.cache_write = u.cache_write;
                    st.usage.output = u.output;
                }
            }
            Some("message_delta") => {
                if let Some(u) = v.get("usage") {
                    let d = usage_from(u);
                    st.usage.output = d.output.max(st.usage.output);
                    if d.input > 0 {
                        st.usage.input = d.input;
                    }
                    if d.cache_read > 0 {
                        st.usage.cache_read = d.cache_read;
                    }
                    if d.cache_write > 0 {
                        st.usage.cache_write = d.cache_write;
                    }
                }
            }
            Some("message_stop") => st.saw_stop = true,
            Some("error") => st.saw_error = true,
            _ => {}
        }
        Ok(vec![event])
    }

    fn finish(&self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let mut st = self.state.borrow_mut();
        if let Some(conv) = st.to_chat.as_mut() {
            let (events, usage) = conv.finish().map_err(|e| {
                GatewayError::upstream(format!("Anthropic stream ended early: {e}"))
            })?;
            return Ok((
                events.into_iter().map(SseEvent::from).collect(),
                usage.map(Into::into),
            ));
        }
        if st.saw_error {
            // The provider's own error event already reached the client.
            return Ok((Vec::new(), Some(st.usage)));
        }
        if !st.saw_stop {
            return Err(GatewayError::upstream(
                "upstream stream ended before message_stop",
            ));
        }
        Ok((Vec::new(), Some(st.usage)))
    }
}

fn wants_usage(body: &[u8]) -> bool {
    TopLevel::parse(body)
        .ok()
        .and_then(|t| t.get("stream_options").map(<[u8]>::to_vec))
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|v| v.get("include_usage").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

#[cfg(target_arch = "wasm32")]
llmgate_sdk::export_provider!(Anthropic);

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn urls() {
        assert_eq!(
            url("https://api.anthropic.com", "messages"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            url("http://x/v1/", "messages/count_tokens"),
            "http://x/v1/messages/count_tokens"
        );
    }
}
