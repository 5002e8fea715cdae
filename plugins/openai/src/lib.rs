//! llmgate provider plugin for OpenAI and every OpenAI-compatible upstream (Groq, DeepSeek,
//! OpenRouter, Together, Fireworks, Mistral, xAI, vLLM, LM Studio, Kilo Gateway, ...).
//!
//! Chat completions pass through: the plugin rewrites `model` to the deployment's model,
//! fills `litellm_params` defaults the client did not set, asks for streamed usage so the
//! gateway can cost streams (and hides that usage chunk from clients that did not ask for
//! it), and reads usage and errors back. It never parses the whole request body.
//! Anthropic `/v1/messages` clients are translated to chat completions and back; image
//! generations and edits pass through. The logic is the SDK's
//! [`OpenAiExchange`](llmgate_sdk::openai_compat::OpenAiExchange), which the `azure`
//! plugin shares; this crate is its table of prefixes.

use llmgate_sdk::openai_compat::{APIS, NATIVE_APIS, OpenAiCompatible, OpenAiExchange};
use llmgate_sdk::plugin::{Description, Prefix, Provider};
use llmgate_sdk::via_chat::ViaChat;

/// The plugin.
pub struct OpenAi;

/// Every prefix served: `(prefix, default api_base, key env vars)`.
pub const PREFIXES: &[Prefix] = &[
    Prefix::new(
        "openai",
        Some("https://api.openai.com/v1"),
        &["OPENAI_API_KEY"],
    ),
    Prefix::new("custom_openai", None, &["OPENAI_API_KEY"]),
    Prefix::new("openai_like", None, &[]),
    Prefix::new("hosted_vllm", None, &["HOSTED_VLLM_API_KEY"]),
    Prefix::new("vllm", None, &["VLLM_API_KEY"]),
    Prefix::new(
        "lm_studio",
        Some("http://localhost:1234/v1"),
        &["LM_STUDIO_API_KEY"],
    ),
    Prefix::new("ollama_chat", Some("http://localhost:11434/v1"), &[]),
    Prefix::new(
        "groq",
        Some("https://api.groq.com/openai/v1"),
        &["GROQ_API_KEY"],
    ),
    Prefix::new(
        "deepseek",
        Some("https://api.deepseek.com/v1"),
        &["DEEPSEEK_API_KEY"],
    ),
    Prefix::new(
        "openrouter",
        Some("https://openrouter.ai/api/v1"),
        &["OPENROUTER_API_KEY", "OR_API_KEY"],
    ),
    Prefix::new(
        "together_ai",
        Some("https://api.together.xyz/v1"),
        &["TOGETHERAI_API_KEY", "TOGETHER_API_KEY"],
    ),
    Prefix::new(
        "fireworks_ai",
        Some("https://api.fireworks.ai/inference/v1"),
        &["FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"],
    ),
    Prefix::new(
        "mistral",
        Some("https://api.mistral.ai/v1"),
        &["MISTRAL_API_KEY"],
    ),
    Prefix::new("xai", Some("https://api.x.ai/v1"), &["XAI_API_KEY"]),
    Prefix::new(
        "perplexity",
        Some("https://api.perplexity.ai"),
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
    ),
    Prefix::new(
        "deepinfra",
        Some("https://api.deepinfra.com/v1/openai"),
        &["DEEPINFRA_API_KEY"],
    ),
    Prefix::new(
        "cerebras",
        Some("https://api.cerebras.ai/v1"),
        &["CEREBRAS_API_KEY"],
    ),
    Prefix::new(
        "nvidia_nim",
        Some("https://integrate.api.nvidia.com/v1"),
        &["NVIDIA_NIM_API_KEY"],
    ),
    Prefix::new(
        "moonshot",
        Some("https://api.moonshot.ai/v1"),
        &["MOONSHOT_API_KEY"],
    ),
    Prefix::new(
        "kilocode",
        Some("https://api.kilo.ai/api/gateway"),
        &["KILOCODE_API_KEY"],
    ),
];

impl Provider for OpenAi {
    const DESCRIPTION: Description = Description {
        name: "openai",
        version: env!("CARGO_PKG_VERSION"),
        prefixes: PREFIXES,
        apis: APIS,
        native_apis: NATIVE_APIS,
    };
    type Exchange = ViaChat<OpenAiExchange<OpenAiCompatible>>;
}

llmgate_sdk::export_provider!(OpenAi);

#[cfg(test)]
mod tests;
