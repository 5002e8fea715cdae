//! The exchange logic of every OpenAI-shaped upstream, parameterised by an [`Endpoint`]
//! (how URLs are built and where the key goes).
//!
//! Shared by the `openai` plugin and the `azure` plugin. The `azure` crate compiles this
//! file as a module of its own (`#[path]`) rather than depending on this crate: Cargo
//! unifies a dependency's features across every package of one build, so when
//! `scripts/build-plugins.sh` builds all plugins in one invocation a dependency on this
//! crate would bring the `openai` plugin's WIT exports into the `azure` component.
//!
//! - Chat completions and embeddings pass through: `model` becomes the deployment's model,
//!   `litellm_params` defaults fill in what the client did not set, streams ask for usage
//!   (and the usage chunk is hidden from clients that did not ask for it), usage and errors
//!   are read back. The body is never parsed whole.
//! - Messages (Anthropic clients) are translated to chat completions and back with the SDK.
//! - Image generations (JSON, `model` rewritten) and edits (multipart, forwarded with the
//!   client's content type, the `model` form field rewritten) pass through.

use std::cell::RefCell;

use llmgate_sdk::anthropic;
use llmgate_sdk::json::{self, TopLevel};
use llmgate_sdk::provider::exports::llmgate::plugin::provider::{
    ClientResponse, Inbound, UpstreamRequest,
};
use llmgate_sdk::{Api, Auth, ErrorClass, Framing, GatewayError, Headers, SseEvent, Usage};

/// `litellm_params` that become chat request defaults when the client did not set them.
pub const DEFAULT_PARAMS: &[&str] = &[
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
    "user",
    "n",
];

/// The OpenAI operation an upstream request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /chat/completions`.
    ChatCompletions,
    /// `POST /embeddings`.
    Embeddings,
    /// `POST /images/generations`.
    ImagesGenerations,
    /// `POST /images/edits` (multipart).
    ImagesEdits,
}

impl Operation {
    /// The path below the API base, with a leading slash.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Embeddings => "/embeddings",
            Self::ImagesGenerations => "/images/generations",
            Self::ImagesEdits => "/images/edits",
        }
    }
}

/// How an OpenAI-shaped upstream is reached.
pub struct Endpoint {
    /// The plugin's name, for error messages.
    pub plugin: &'static str,
    /// The upstream URL of `op` for this request (an error if it cannot be built, e.g. a
    /// deployment without the `api_base` it needs).
    pub url: fn(&Inbound, Operation) -> Result<String, GatewayError>,
    /// Where the host puts the key.
    pub auth: fn() -> Auth,
}

/// One attempt against an OpenAI-shaped upstream.
pub struct Exchange {
    req: Inbound,
    endpoint: &'static Endpoint,
    state: RefCell<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// We added `stream_options.include_usage`: hide the usage-only chunk from the client.
    hide_usage_chunk: bool,
    usage: Option<Usage>,
    saw_done: bool,
    saw_finish: bool,
    /// Translating the stream for an Anthropic `/v1/messages` client.
    to_messages: Option<anthropic::ChatStreamToMessages>,
}

fn events(evs: Vec<anthropic::Event>) -> Vec<SseEvent> {
    evs.into_iter().map(SseEvent::from).collect()
}

impl Exchange {
    /// An exchange for `req` that reaches its upstream through `endpoint`.
    pub fn with_endpoint(req: Inbound, endpoint: &'static Endpoint) -> Self {
        Self {
            req,
            endpoint,
            state: RefCell::new(StreamState::default()),
        }
    }

    /// The client's request.
    pub fn inbound(&self) -> &Inbound {
        &self.req
    }

    /// Plan the upstream request (`build-request`).
    pub fn plan(&self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let translated;
        let (op, body): (Operation, &[u8]) = match req.api {
            Api::ChatCompletions => (Operation::ChatCompletions, &req.body),
            Api::Embeddings => (Operation::Embeddings, &req.body),
            Api::ImagesGenerations => (Operation::ImagesGenerations, &req.body),
            Api::ImagesEdits => return self.plan_image_edit(),
            Api::Messages => {
                // Anthropic inbound: translate to chat completions, and the answer back.
                translated = anthropic::messages_to_chat_request(&req.body, &req.deployment.model)
                    .map_err(|e| GatewayError::bad_request(e.to_string()))?;
                if req.stream {
                    self.state.borrow_mut().to_messages =
                        Some(anthropic::ChatStreamToMessages::new(&req.model));
                }
                (Operation::ChatCompletions, &translated)
            }
            Api::CountTokens => {
                return Err(GatewayError::bad_request(format!(
                    "the {} plugin serves /v1/chat/completions, /v1/messages, /v1/embeddings and /v1/images/*",
                    self.endpoint.plugin
                )));
            }
        };
        let top = TopLevel::parse(body).map_err(|e| {
            GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
        })?;
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&req.deployment.params_json).unwrap_or_default();

        let model = json::quote(&req.deployment.model);
        let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
        if op != Operation::ImagesGenerations {
            for key in DEFAULT_PARAMS {
                if let Some(v) = params.get(*key)
                    && !top.has(key)
                {
                    owned.push((
                        (*key).to_string(),
                        serde_json::to_vec(v).unwrap_or_default(),
                    ));
                }
            }
        }
        let mut hide_usage_chunk = false;
        if req.stream && op == Operation::ChatCompletions {
            let wants_usage = top
                .get("stream_options")
                .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok())
                .map(|v| v.get("include_usage").and_then(serde_json::Value::as_bool));
            match wants_usage {
                Some(Some(true)) => {}
                Some(_) | None => {
                    hide_usage_chunk = true;
                    let mut opts = top
                        .get("stream_options")
                        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok())
                        .filter(serde_json::Value::is_object)
                        .unwrap_or_else(|| serde_json::json!({}));
                    opts["include_usage"] = serde_json::Value::Bool(true);
                    owned.push((
                        "stream_options".into(),
                        serde_json::to_vec(&opts).unwrap_or_default(),
                    ));
                }
            }
        }
        self.state.borrow_mut().hide_usage_chunk = hide_usage_chunk;

        let mut edits: Vec<(&str, Option<&[u8]>)> = vec![("model", Some(&model))];
        edits.extend(owned.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))));
        let body = top.patch(&edits);

        let mut headers: Headers = vec![("content-type".into(), "application/json".into())];
        self.common_headers(&params, &mut headers);
        Ok(UpstreamRequest {
            method: "POST".into(),
            url: (self.endpoint.url)(req, op)?,
            headers,
            body,
            auth: (self.endpoint.auth)(),
            framing: if req.stream {
                Framing::Sse
            } else {
                Framing::None
            },
        })
    }

    /// Image edits: the multipart body goes through with the client's content type; only
    /// the `model` form field is rewritten.
    fn plan_image_edit(&self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&req.deployment.params_json).unwrap_or_default();
        let body =
            rewrite_multipart_field(&req.content_type, &req.body, "model", &req.deployment.model)
                .unwrap_or_else(|| req.body.clone());
        let mut headers: Headers = vec![("content-type".into(), req.content_type.clone())];
        self.common_headers(&params, &mut headers);
        Ok(UpstreamRequest {
            method: "POST".into(),
            url: (self.endpoint.url)(req, Operation::ImagesEdits)?,
            headers,
            body,
            auth: (self.endpoint.auth)(),
            framing: if req.stream {
                Framing::Sse
            } else {
                Framing::None
            },
        })
    }

    /// `openai-organization`, `extra_headers` and the forwardable client headers.
    fn common_headers(
        &self,
        params: &serde_json::Map<String, serde_json::Value>,
        headers: &mut Headers,
    ) {
        if let Some(org) = params.get("organization").and_then(|v| v.as_str()) {
            headers.push(("openai-organization".into(), org.into()));
        }
        if let Some(extra) = params.get("extra_headers").and_then(|v| v.as_object()) {
            for (k, v) in extra {
                if let Some(v) = v.as_str() {
                    headers.push((k.to_ascii_lowercase(), v.into()));
                }
            }
        }
        for (k, v) in &self.req.headers {
            if k.starts_with("openai-") || k == "x-stainless-retry-count" {
                headers.push((k.clone(), v.clone()));
            }
        }
    }

    /// The whole upstream answer (`on-body`).
    pub fn answer(
        &self,
        status: u16,
        headers: &Headers,
        body: Vec<u8>,
    ) -> Result<ClientResponse, GatewayError> {
        if !(200..300).contains(&status) {
            return Err(upstream_error(status, headers, &body));
        }
        let json_headers = vec![("content-type".to_string(), "application/json".to_string())];
        if self.req.api == Api::Messages {
            let (body, usage) = anthropic::chat_response_to_messages(&body, &self.req.model)
                .map_err(|e| {
                    GatewayError::upstream(format!("unreadable upstream response: {e}"))
                })?;
            return Ok(ClientResponse {
                status,
                headers: json_headers,
                body,
                usage: Some(usage.into()),
                model: None,
            });
        }
        if json::validate(&body).is_err() {
            return Err(GatewayError::upstream(format!(
                "upstream {} answered {status} with a body that is not JSON",
                self.req.deployment.id
            )));
        }
        let (usage, model) = match self.req.api {
            Api::ImagesGenerations | Api::ImagesEdits => (image_usage(&body), None),
            _ => {
                let (u, m) = llmgate_sdk::openai::usage_and_model(&body);
                (u.map(Into::into), m)
            }
        };
        Ok(ClientResponse {
            status,
            headers: json_headers,
            body,
            usage,
            model,
        })
    }

    /// One upstream event (`on-event`).
    pub fn event(&self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let mut st = self.state.borrow_mut();
        if let Some(conv) = st.to_messages.as_mut() {
            let out = conv
                .on_chunk(&event.data)
                .map_err(|e| GatewayError::upstream(format!("unreadable upstream stream: {e}")))?;
            return Ok(events(out));
        }
        let data = event.data.trim();
        if data == "[DONE]" {
            st.saw_done = true;
            return Ok(vec![event]);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = data.as_bytes();
        if json::validate(bytes).is_err() {
            return Err(GatewayError::upstream(format!(
                "upstream {} sent a stream chunk that is not JSON",
                self.req.deployment.id
            )));
        }
        let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        if has("\"error\"") {
            // An error mid-stream: the provider's own error event, passed to the client.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                && v.get("error").is_some_and(|e| !e.is_null())
            {
                return Ok(vec![event]);
            }
        }
        if has("\"finish_reason\":\"") || has("\"finish_reason\": \"") {
            st.saw_finish = true;
        }
        if matches!(self.req.api, Api::ImagesGenerations | Api::ImagesEdits) {
            // Image streams end with an `image_generation.completed` (or
            // `image_edit.completed`) event that carries the usage.
            if has(".completed\"") {
                st.saw_finish = true;
                if let Some(u) = image_usage(bytes) {
                    st.usage = Some(u);
                }
            }
            return Ok(vec![event]);
        }
        if has("\"usage\"") {
            let v: serde_json::Value = serde_json::from_str(data).map_err(|e| {
                GatewayError::upstream(format!(
                    "upstream sent a stream chunk that is not JSON: {e}"
                ))
            })?;
            if v.get("usage").is_some_and(|u| !u.is_null()) {
                let (usage, _) = llmgate_sdk::openai::usage_and_model(bytes);
                if let Some(u) = usage {
                    st.usage = Some(u.into());
                }
                let no_choices = v
                    .get("choices")
                    .and_then(|c| c.as_array())
                    .is_none_or(Vec::is_empty);
                if st.hide_usage_chunk && no_choices {
                    return Ok(Vec::new());
                }
            }
        }
        Ok(vec![event])
    }

    /// The upstream stream ended (`finish`).
    pub fn end(&self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let mut st = self.state.borrow_mut();
        if let Some(conv) = st.to_messages.as_mut() {
            let (evs, usage) = conv
                .finish()
                .map_err(|e| GatewayError::upstream(format!("upstream stream ended early: {e}")))?;
            return Ok((events(evs), usage.map(Into::into)));
        }
        if !st.saw_done && !st.saw_finish {
            return Err(GatewayError::upstream(
                "upstream stream ended before the response was complete",
            ));
        }
        Ok((Vec::new(), st.usage))
    }
}

/// `{api_base}{endpoint}`, tolerating a base that already names the endpoint.
pub fn endpoint_url(base: &str, endpoint: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(endpoint) {
        base.to_string()
    } else {
        format!("{base}{endpoint}")
    }
}

/// An OpenAI-shaped error answer as a gateway error (status kept, `Retry-After` read).
pub fn upstream_error(status: u16, headers: &Headers, body: &[u8]) -> GatewayError {
    let e = llmgate_sdk::openai::parse_error(status, body);
    GatewayError {
        class: ErrorClass::from(e.class),
        status,
        message: e.message,
        code: e.code,
        retry_after_ms: llmgate_sdk::retry_after_ms(headers),
    }
}

/// The usage of an image answer or `*.completed` stream event (`gpt-image-1` reports
/// `input_tokens`/`output_tokens`); `None` when it has none (DALL-E).
pub fn image_usage(body: &[u8]) -> Option<Usage> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let u = v.get("usage").filter(|u| u.is_object())?;
    let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Some(Usage {
        input: n("input_tokens"),
        output: n("output_tokens"),
        cache_read: 0,
        cache_write: 0,
        reasoning: 0,
    })
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<&str> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// A copy of a `multipart/form-data` body with the value of the (non-file) form field
/// `name` replaced by `value`; `None` when the body is not multipart or has no such field
/// (the caller then forwards it unchanged). File contents are never looked into: parts are
/// found by their delimiters, which multipart bodies guarantee do not occur inside parts.
pub fn rewrite_multipart_field(
    content_type: &str,
    body: &[u8],
    name: &str,
    value: &str,
) -> Option<Vec<u8>> {
    let boundary = multipart_boundary(content_type)?;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let first = format!("--{boundary}");
    // After the first, every delimiter starts on its own line.
    let delim = format!("\r\n--{boundary}");
    let mut pos = find(body, first.as_bytes())? + first.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return None;
        }
        // A part: CRLF, headers, blank line, content; then CRLF and the next delimiter.
        let next = pos + find(&body[pos..], delim.as_bytes())?;
        let start = if body[pos..next].starts_with(b"\r\n") {
            pos + 2
        } else {
            pos
        };
        let head_end = start + find(&body[start..next], b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&body[start..head_end]).to_ascii_lowercase();
        let disposition = head
            .lines()
            .find(|l| l.starts_with("content-disposition:"))
            .unwrap_or("");
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if param("name").as_deref() == Some(name) && param("filename").is_none() {
            let mut out = Vec::with_capacity(body.len() + value.len());
            out.extend_from_slice(&body[..head_end + 4]);
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(&body[next..]);
            return Some(out);
        }
        pos = next + delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            endpoint_url("https://api.openai.com/v1/", "/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url("http://x/v1/chat/completions", "/chat/completions"),
            "http://x/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url("http://x/v1", "/embeddings"),
            "http://x/v1/embeddings"
        );
        assert_eq!(
            endpoint_url("http://x/v1", Operation::ImagesEdits.path()),
            "http://x/v1/images/edits"
        );
    }

    const EDIT: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"model.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG--XyZ-ish name=\"model\"\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nmy-image-alias\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it blue\r\n--XyZ--\r\n";

    #[test]
    fn rewrites_the_model_form_field_only() {
        let out = rewrite_multipart_field(
            "multipart/form-data; boundary=XyZ",
            EDIT,
            "model",
            "gpt-image-1",
        )
        .unwrap();
        let want = String::from_utf8_lossy(EDIT).replace("my-image-alias", "gpt-image-1");
        assert_eq!(String::from_utf8_lossy(&out), want);
        // Quoted boundary, upper-case header names.
        let body = b"--b\r\nCONTENT-DISPOSITION: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n";
        let out = rewrite_multipart_field(
            "multipart/form-data; boundary=\"b\"",
            body,
            "model",
            "dall-e-2",
        )
        .unwrap();
        assert_eq!(
            out,
            b"--b\r\nCONTENT-DISPOSITION: form-data; name=\"model\"\r\n\r\ndall-e-2\r\n--b--\r\n"
        );
    }

    #[test]
    fn leaves_other_bodies_alone() {
        assert!(rewrite_multipart_field("application/json", b"{}", "model", "m").is_none());
        let no_model =
            b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--b--\r\n";
        assert!(
            rewrite_multipart_field("multipart/form-data; boundary=b", no_model, "model", "m")
                .is_none()
        );
        assert!(
            rewrite_multipart_field(
                "multipart/form-data; boundary=b",
                b"--b\r\ngarbage",
                "model",
                "m"
            )
            .is_none()
        );
    }

    #[test]
    fn image_usage_is_read() {
        let body = br#"{"created":1,"data":[{"b64_json":"iVBORw0KGgo="}],"usage":{"input_tokens":50,"output_tokens":4160,"total_tokens":4210,"input_tokens_details":{"text_tokens":50,"image_tokens":0}}}"#;
        assert_eq!(
            image_usage(body).map(|u| (u.input, u.output)),
            Some((50, 4160))
        );
        assert!(image_usage(br#"{"created":1,"data":[{"url":"https://x"}]}"#).is_none());
    }
}
