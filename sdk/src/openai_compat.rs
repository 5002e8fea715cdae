//! Every OpenAI-shaped upstream: [`OpenAiExchange`], parameterised by an [`Endpoint`] (how
//! URLs are built, where the key goes, how errors read). [`OpenAiCompatible`] is the
//! endpoint of OpenAI and its look-alikes (URLs under the prefix's `api_base`, bearer key),
//! so a new OpenAI-compatible provider is one [`Prefix`](crate::plugin::Prefix) row in a
//! plugin's table.
//!
//! - Chat completions and embeddings pass through: `model` becomes the deployment's model,
//!   `litellm_params` defaults fill in what the client did not set, streams ask for usage
//!   (and the usage chunk is hidden from clients that did not ask for it), usage and errors
//!   are read back. The body is never parsed whole.
//! - Image generations (JSON, `model` rewritten) and edits (multipart, forwarded with the
//!   client's content type, the `model` form field rewritten) pass through.
//! - Messages (Anthropic clients): wrap the exchange in [`ViaChat`](crate::via_chat::ViaChat).

use std::marker::PhantomData;

use crate::json;
use crate::multipart::rewrite_field;
use crate::plan::Plan;
use crate::plugin::{Answer, ClientResponse, Exchange, Request, UpstreamRequest, json_response};
use crate::{Api, Auth, GatewayError, SseEvent, Usage};

/// The inbound APIs an OpenAI-shaped plugin serves (Messages through `ViaChat`).
pub const APIS: &[Api] = &[
    Api::ChatCompletions,
    Api::Messages,
    Api::Embeddings,
    Api::ImagesGenerations,
    Api::ImagesEdits,
];

/// The inbound APIs an OpenAI-shaped upstream speaks natively.
pub const NATIVE_APIS: &[Api] = &[
    Api::ChatCompletions,
    Api::Embeddings,
    Api::ImagesGenerations,
    Api::ImagesEdits,
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
pub trait Endpoint: 'static {
    /// The upstream URL of `op` for this request (an error if it cannot be built, e.g. a
    /// deployment without the `api_base` it needs).
    fn url(req: &Request, op: Operation) -> Result<String, GatewayError>;

    /// Where the host puts the key.
    fn auth() -> Auth {
        Auth::Bearer
    }

    /// An error answer as a gateway error.
    fn error(answer: &Answer) -> GatewayError {
        GatewayError::from_status(answer.status, &answer.headers, &answer.body)
    }
}

/// OpenAI and the OpenAI-compatible upstreams: `{api_base}{path}` (the base defaulting to
/// the prefix's), bearer key.
pub struct OpenAiCompatible;

impl Endpoint for OpenAiCompatible {
    fn url(req: &Request, op: Operation) -> Result<String, GatewayError> {
        Ok(endpoint_url(req.base()?, op.path()))
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

/// One attempt against an OpenAI-shaped upstream reached through `E`.
pub struct OpenAiExchange<E> {
    req: Request,
    /// We added `stream_options.include_usage`: hide the usage-only chunk from the client.
    hide_usage_chunk: bool,
    usage: Option<Usage>,
    saw_done: bool,
    saw_finish: bool,
    endpoint: PhantomData<E>,
}

impl<E: Endpoint> OpenAiExchange<E> {
    /// The client's request.
    pub fn request(&self) -> &Request {
        &self.req
    }

    fn plan(&self, op: Operation, body: Vec<u8>) -> Result<Plan, GatewayError> {
        let req = &self.req;
        let mut plan = Plan::post(req, E::url(req, op)?, E::auth(), body);
        if let Some(org) = req.param_str("organization") {
            plan = plan.header("openai-organization", org);
        }
        for (k, v) in &req.headers {
            if k.starts_with("openai-") || k == "x-stainless-retry-count" {
                plan = plan.forward(k.clone(), v.clone());
            }
        }
        Ok(plan)
    }

    /// Image edits: the multipart body goes through with the client's content type; only
    /// the `model` form field is rewritten.
    fn plan_image_edit(&self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let body = rewrite_field(&req.content_type, &req.body, "model", &req.deployment.model)
            .unwrap_or_else(|| req.body.clone());
        Ok(self
            .plan(Operation::ImagesEdits, body)?
            .content_type(req.content_type.clone())
            .build())
    }
}

impl<E: Endpoint> Exchange for OpenAiExchange<E> {
    fn new(req: Request) -> Self {
        Self {
            req,
            hide_usage_chunk: false,
            usage: None,
            saw_done: false,
            saw_finish: false,
            endpoint: PhantomData,
        }
    }

    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let op = match req.api {
            Api::ChatCompletions => Operation::ChatCompletions,
            Api::Embeddings => Operation::Embeddings,
            Api::ImagesGenerations => Operation::ImagesGenerations,
            Api::ImagesEdits => return self.plan_image_edit(),
            Api::Messages | Api::CountTokens => {
                return Err(GatewayError::bad_request(format!(
                    "the {} plugin serves /v1/chat/completions, /v1/messages, /v1/embeddings and /v1/images/*",
                    req.plugin
                )));
            }
        };
        let top = req.top_level()?;
        let mut edits: Vec<(&str, Vec<u8>)> = Vec::new();
        if op != Operation::ImagesGenerations {
            for (key, v) in req.param_defaults(|k| top.has(k)) {
                edits.push((key, serde_json::to_vec(v).unwrap_or_default()));
            }
        }
        self.hide_usage_chunk = req.stream && op == Operation::ChatCompletions && !req.wants_usage;
        if self.hide_usage_chunk {
            let mut opts = top
                .get("stream_options")
                .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok())
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({}));
            opts["include_usage"] = serde_json::Value::Bool(true);
            edits.push((
                "stream_options",
                serde_json::to_vec(&opts).unwrap_or_default(),
            ));
        }
        let body = req.patched_body(&edits)?;
        Ok(self.plan(op, body)?.build())
    }

    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError> {
        let Answer { status, body, .. } = answer;
        if json::validate(&body).is_err() {
            return Err(GatewayError::upstream(format!(
                "upstream {} answered {status} with a body that is not JSON",
                self.req.deployment.id
            )));
        }
        let (usage, model) = match self.req.api {
            Api::ImagesGenerations | Api::ImagesEdits => (image_usage(&body), None),
            _ => crate::openai::usage_and_model(&body),
        };
        Ok(json_response(status, body, usage, model))
    }

    fn on_error(&self, answer: &Answer) -> GatewayError {
        E::error(answer)
    }

    fn on_event(&mut self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.saw_done = true;
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
            self.saw_finish = true;
        }
        if matches!(self.req.api, Api::ImagesGenerations | Api::ImagesEdits) {
            // Image streams end with an `image_generation.completed` (or
            // `image_edit.completed`) event that carries the usage.
            if has(".completed\"") {
                self.saw_finish = true;
                if let Some(u) = image_usage(bytes) {
                    self.usage = Some(u);
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
                if let (Some(u), _) = crate::openai::usage_and_model(bytes) {
                    self.usage = Some(u);
                }
                let no_choices = v
                    .get("choices")
                    .and_then(|c| c.as_array())
                    .is_none_or(Vec::is_empty);
                if self.hide_usage_chunk && no_choices {
                    return Ok(Vec::new());
                }
            }
        }
        Ok(vec![event])
    }

    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        if !self.saw_done && !self.saw_finish {
            return Err(GatewayError::upstream(
                "upstream stream ended before the response was complete",
            ));
        }
        Ok((Vec::new(), self.usage))
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
        ..Usage::default()
    })
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
