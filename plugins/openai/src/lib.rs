//! llmgate provider plugin for OpenAI and every OpenAI-compatible upstream (Groq, DeepSeek,
//! OpenRouter, Together, Fireworks, Mistral, xAI, vLLM, LM Studio, Kilo Gateway, ...).
//!
//! Chat completions pass through: the plugin rewrites `model` to the deployment's model,
//! fills `litellm_params` defaults the client did not set, asks for streamed usage so the
//! gateway can cost streams (and hides that usage chunk from clients that did not ask for
//! it), and reads usage and errors back. It never parses the whole request body.
//! Anthropic `/v1/messages` clients are translated to chat completions and back; image
//! generations and edits pass through. The logic lives in [`exchange`], which the `azure`
//! plugin shares.

pub mod exchange;

use llmgate_sdk::provider::exports::llmgate::plugin::provider::{
    ClientResponse, Guest, GuestExchange, Inbound, Info, Prefix, UpstreamRequest,
};
use llmgate_sdk::{Api, Auth, GatewayError, Headers, SseEvent, Usage};

use crate::exchange::{Endpoint, Operation, endpoint_url};

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
            apis: vec![
                Api::ChatCompletions,
                Api::Messages,
                Api::Embeddings,
                Api::ImagesGenerations,
                Api::ImagesEdits,
            ],
            native_apis: vec![
                Api::ChatCompletions,
                Api::Embeddings,
                Api::ImagesGenerations,
                Api::ImagesEdits,
            ],
        }
    }
}

/// `{api_base}{path}`, the base defaulting to the prefix's.
fn openai_url(req: &Inbound, op: Operation) -> Result<String, GatewayError> {
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
    Ok(endpoint_url(&base, op.path()))
}

/// OpenAI and the OpenAI-compatible upstreams: bearer key, URLs under `api_base`.
pub static OPENAI: Endpoint = Endpoint {
    plugin: "openai",
    url: openai_url,
    auth: || Auth::Bearer,
};

/// One attempt.
pub struct Exchange(exchange::Exchange);

impl GuestExchange for Exchange {
    fn new(req: Inbound) -> Self {
        Self(exchange::Exchange::with_endpoint(req, &OPENAI))
    }

    fn build_request(&self) -> Result<UpstreamRequest, GatewayError> {
        self.0.plan()
    }

    fn on_body(
        &self,
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    ) -> Result<ClientResponse, GatewayError> {
        self.0.answer(status, &headers, body)
    }

    fn on_stream_start(&self, _status: u16, _headers: Headers) -> Result<Headers, GatewayError> {
        Ok(Vec::new())
    }

    fn on_event(&self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        self.0.event(event)
    }

    fn finish(&self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        self.0.end()
    }
}

// Exported only in the wasm component: natively (unit tests, clippy) the cdylib's WIT
// export names do not link.
#[cfg(target_arch = "wasm32")]
llmgate_sdk::export_provider!(OpenAi);

#[cfg(test)]
mod tests {
    use llmgate_sdk::provider::exports::llmgate::plugin::provider::Deployment;
    use serde_json::{Value, json};

    use super::*;

    fn inbound(api: Api, stream: bool, body: &[u8], content_type: &str) -> Inbound {
        Inbound {
            api,
            model: "alias".into(),
            stream,
            body: body.to_vec(),
            content_type: content_type.into(),
            headers: Vec::new(),
            deployment: Deployment {
                id: "d1".into(),
                provider: "openai".into(),
                model: "gpt-image-1".into(),
                api_base: None,
                api_version: None,
                params_json: r#"{"temperature":0.1}"#.into(),
            },
        }
    }

    #[test]
    fn chat_streams_ask_for_usage_and_hide_it() {
        let body = br#"{"model":"alias","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let ex = Exchange::new(inbound(
            Api::ChatCompletions,
            true,
            body,
            "application/json",
        ));
        let plan = ex.build_request().unwrap();
        assert_eq!(plan.url, "https://api.openai.com/v1/chat/completions");
        assert!(matches!(plan.auth, Auth::Bearer));
        let v: Value = serde_json::from_slice(&plan.body).unwrap();
        assert_eq!(v["model"], "gpt-image-1");
        assert_eq!(v["temperature"], 0.1);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        let ev = |d: &str| SseEvent {
            event: None,
            data: d.into(),
        };
        let usage = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        assert!(ex.on_event(ev(usage)).unwrap().is_empty());
        assert_eq!(ex.on_event(ev("[DONE]")).unwrap().len(), 1);
        assert_eq!(
            ex.finish().unwrap().1.map(|u| (u.input, u.output)),
            Some((3, 2))
        );
    }

    #[test]
    fn images() {
        let body = br#"{"model":"alias","prompt":"a cat","n":1}"#;
        let plan = Exchange::new(inbound(
            Api::ImagesGenerations,
            false,
            body,
            "application/json",
        ))
        .build_request()
        .unwrap();
        assert_eq!(plan.url, "https://api.openai.com/v1/images/generations");
        let v: Value = serde_json::from_slice(&plan.body).unwrap();
        assert_eq!(v, json!({"model":"gpt-image-1","prompt":"a cat","n":1}));

        let ct = "multipart/form-data; boundary=X";
        let body = b"--X\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nalias\r\n--X\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n--X--\r\n";
        let ex = Exchange::new(inbound(Api::ImagesEdits, false, body, ct));
        let plan = ex.build_request().unwrap();
        assert_eq!(plan.url, "https://api.openai.com/v1/images/edits");
        assert_eq!(plan.headers[0], ("content-type".into(), ct.into()));
        assert!(
            plan.body
                .windows(b"\r\n\r\ngpt-image-1\r\n".len())
                .any(|w| w == b"\r\n\r\ngpt-image-1\r\n")
        );
        let answer = br#"{"created":1,"data":[{"b64_json":"iVBORw0KGgo="}]}"#;
        let resp = ex.on_body(200, Vec::new(), answer.to_vec()).unwrap();
        assert_eq!(resp.body, answer.to_vec());
        assert!(resp.usage.is_none());

        // A streamed image generation ends with its `completed` event.
        let ex = Exchange::new(inbound(
            Api::ImagesGenerations,
            true,
            br#"{"model":"alias","prompt":"x","stream":true}"#,
            "application/json",
        ));
        let plan = ex.build_request().unwrap();
        assert!(!String::from_utf8_lossy(&plan.body).contains("stream_options"));
        ex.on_event(SseEvent {
            event: Some("image_generation.completed".into()),
            data: r#"{"type":"image_generation.completed","b64_json":"x","usage":{"input_tokens":5,"output_tokens":100}}"#.into(),
        })
        .unwrap();
        assert_eq!(
            ex.finish().unwrap().1.map(|u| (u.input, u.output)),
            Some((5, 100))
        );
    }
}
