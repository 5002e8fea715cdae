//! llmgate provider plugin for OpenAI and every OpenAI-compatible upstream (Groq, DeepSeek,
//! OpenRouter, Together, Fireworks, Mistral, xAI, vLLM, LM Studio, Kilo Gateway, ...).
//!
//! Chat completions pass through: the plugin rewrites `model` to the deployment's model,
//! fills `litellm_params` defaults the client did not set, asks for streamed usage so the
//! gateway can cost streams (and hides that usage chunk from clients that did not ask for
//! it), and reads usage and errors back. It never parses the whole request body.

use std::cell::RefCell;

use llmgate_sdk::json::{self, TopLevel};
use llmgate_sdk::provider::exports::llmgate::plugin::provider::{
    ClientResponse, Guest, GuestExchange, Inbound, Info, Prefix, UpstreamRequest,
};
use llmgate_sdk::{Api, Auth, ErrorClass, Framing, GatewayError, Headers, SseEvent, Usage};

/// The plugin.
pub struct OpenAi;

/// `(prefix, default api_base, key env vars)`.
const PREFIXES: &[(&str, Option<&str>, &[&str])] = &[
    (
        "openai",
        Some("https://api.openai.com/v1"),
        &["OPENAI_API_KEY"],
    ),
    ("custom_openai", None, &["OPENAI_API_KEY"]),
    ("openai_like", None, &[]),
    ("hosted_vllm", None, &["HOSTED_VLLM_API_KEY"]),
    ("vllm", None, &["VLLM_API_KEY"]),
    (
        "lm_studio",
        Some("http://localhost:1234/v1"),
        &["LM_STUDIO_API_KEY"],
    ),
    ("ollama_chat", Some("http://localhost:11434/v1"), &[]),
    (
        "groq",
        Some("https://api.groq.com/openai/v1"),
        &["GROQ_API_KEY"],
    ),
    (
        "deepseek",
        Some("https://api.deepseek.com/v1"),
        &["DEEPSEEK_API_KEY"],
    ),
    (
        "openrouter",
        Some("https://openrouter.ai/api/v1"),
        &["OPENROUTER_API_KEY", "OR_API_KEY"],
    ),
    (
        "together_ai",
        Some("https://api.together.xyz/v1"),
        &["TOGETHERAI_API_KEY", "TOGETHER_API_KEY"],
    ),
    (
        "fireworks_ai",
        Some("https://api.fireworks.ai/inference/v1"),
        &["FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"],
    ),
    (
        "mistral",
        Some("https://api.mistral.ai/v1"),
        &["MISTRAL_API_KEY"],
    ),
    ("xai", Some("https://api.x.ai/v1"), &["XAI_API_KEY"]),
    (
        "perplexity",
        Some("https://api.perplexity.ai"),
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
    ),
    (
        "deepinfra",
        Some("https://api.deepinfra.com/v1/openai"),
        &["DEEPINFRA_API_KEY"],
    ),
    (
        "cerebras",
        Some("https://api.cerebras.ai/v1"),
        &["CEREBRAS_API_KEY"],
    ),
    (
        "nvidia_nim",
        Some("https://integrate.api.nvidia.com/v1"),
        &["NVIDIA_NIM_API_KEY"],
    ),
    (
        "moonshot",
        Some("https://api.moonshot.ai/v1"),
        &["MOONSHOT_API_KEY"],
    ),
    (
        "kilocode",
        Some("https://api.kilo.ai/api/gateway"),
        &["KILOCODE_API_KEY"],
    ),
];

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
    "user",
    "n",
];

impl Guest for OpenAi {
    type Exchange = Exchange;

    fn describe() -> Info {
        Info {
            name: "openai".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            prefixes: PREFIXES
                .iter()
                .map(|(name, base, env)| Prefix {
                    name: (*name).into(),
                    default_api_base: base.map(Into::into),
                    api_key_env: env.iter().map(|e| (*e).into()).collect(),
                })
                .collect(),
            apis: vec![Api::ChatCompletions, Api::Embeddings],
            native_apis: vec![Api::ChatCompletions, Api::Embeddings],
        }
    }
}

/// One attempt.
pub struct Exchange {
    req: Inbound,
    state: RefCell<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// We added `stream_options.include_usage`: hide the usage-only chunk from the client.
    hide_usage_chunk: bool,
    usage: Option<Usage>,
    saw_done: bool,
    saw_finish: bool,
}

impl GuestExchange for Exchange {
    fn new(req: Inbound) -> Self {
        Self {
            req,
            state: RefCell::new(StreamState::default()),
        }
    }

    fn build_request(&self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let endpoint = match req.api {
            Api::ChatCompletions => "/chat/completions",
            Api::Embeddings => "/embeddings",
            _ => {
                return Err(GatewayError::bad_request(
                    "the openai plugin serves /v1/chat/completions and /v1/embeddings",
                ));
            }
        };
        let top = TopLevel::parse(&req.body).map_err(|e| {
            GatewayError::bad_request(format!("request body is not valid JSON: {e}"))
        })?;
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&req.deployment.params_json).unwrap_or_default();

        let model = json::quote(&req.deployment.model);
        let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
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
        let mut hide_usage_chunk = false;
        if req.stream && req.api == Api::ChatCompletions {
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

        let base = req
            .deployment
            .api_base
            .clone()
            .or_else(|| {
                PREFIXES
                    .iter()
                    .find(|(p, _, _)| *p == req.deployment.provider)
                    .and_then(|(_, b, _)| b.map(str::to_string))
            })
            .ok_or_else(|| {
                GatewayError::bad_request(format!(
                    "deployment {} needs api_base for provider {}",
                    req.deployment.id, req.deployment.provider
                ))
            })?;
        let url = endpoint_url(&base, endpoint);

        let mut headers: Headers = vec![("content-type".into(), "application/json".into())];
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
        for (k, v) in &req.headers {
            if k.starts_with("openai-") || k == "x-stainless-retry-count" {
                headers.push((k.clone(), v.clone()));
            }
        }
        Ok(UpstreamRequest {
            method: "POST".into(),
            url,
            headers,
            body,
            auth: Auth::Bearer,
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
            return Err(upstream_error(status, &headers, &body));
        }
        let (usage, model) = llmgate_sdk::openai::usage_and_model(&body);
        if json::validate(&body).is_err() {
            return Err(GatewayError::upstream(format!(
                "upstream {} answered {status} with a body that is not JSON",
                self.req.deployment.id
            )));
        }
        Ok(ClientResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            usage: usage.map(Into::into),
            model,
        })
    }

    fn on_stream_start(&self, _status: u16, _headers: Headers) -> Result<Headers, GatewayError> {
        Ok(Vec::new())
    }

    fn on_event(&self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let mut st = self.state.borrow_mut();
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

    fn finish(&self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let st = self.state.borrow();
        if !st.saw_done && !st.saw_finish {
            return Err(GatewayError::upstream(
                "upstream stream ended before the response was complete",
            ));
        }
        Ok((Vec::new(), st.usage))
    }
}

/// `{api_base}{endpoint}`, tolerating a base that already names the endpoint.
fn endpoint_url(base: &str, endpoint: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(endpoint) {
        base.to_string()
    } else {
        format!("{base}{endpoint}")
    }
}

fn upstream_error(status: u16, headers: &Headers, body: &[u8]) -> GatewayError {
    let e = llmgate_sdk::openai::parse_error(status, body);
    GatewayError {
        class: ErrorClass::from(e.class),
        status,
        message: e.message,
        code: e.code,
        retry_after_ms: llmgate_sdk::retry_after_ms(headers),
    }
}

llmgate_sdk::export_provider!(OpenAi);

#[cfg(test)]
mod tests {
    use super::endpoint_url;

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
    }
}
