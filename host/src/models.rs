//! The built-in model table: context window, output cap, modalities, reasoning support and
//! prices (USD per token) of the models our provider plugins serve. `model_info` and
//! `litellm_params` in config override any field per deployment.
//!
//! Prices are list prices at the time of writing (standard tier, prompts under any
//! long-context surcharge threshold); a deployment that is billed differently sets its own.

use serde_json::{Map, Value, json};

/// One model's facts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelFacts {
    /// Canonical name (the table key).
    pub name: &'static str,
    /// Provider family (`openai`, `anthropic`, `gemini`, ...).
    pub provider: &'static str,
    /// `chat`, `embedding` or `image_generation`.
    pub mode: &'static str,
    /// Context window, tokens.
    pub max_input_tokens: u64,
    /// Output cap, tokens.
    pub max_output_tokens: u64,
    /// USD per input token.
    pub input_cost_per_token: f64,
    /// USD per output token.
    pub output_cost_per_token: f64,
    /// USD per cached input token read (0: no discount known; the input price applies).
    pub cache_read_input_token_cost: f64,
    /// USD per input token written to the cache (0: the input price applies).
    pub cache_creation_input_token_cost: f64,
    /// Accepts images.
    pub supports_vision: bool,
    /// Produces reasoning/thinking.
    pub supports_reasoning: bool,
    /// Supports function/tool calling.
    pub supports_function_calling: bool,
}

const M: f64 = 1e6;

const fn chat(
    name: &'static str,
    provider: &'static str,
    ctx: u64,
    out: u64,
    price: (f64, f64, f64, f64),
    vision: bool,
    reasoning: bool,
) -> ModelFacts {
    ModelFacts {
        name,
        provider,
        mode: "chat",
        max_input_tokens: ctx,
        max_output_tokens: out,
        input_cost_per_token: price.0 / M,
        output_cost_per_token: price.1 / M,
        cache_read_input_token_cost: price.2 / M,
        cache_creation_input_token_cost: price.3 / M,
        supports_vision: vision,
        supports_reasoning: reasoning,
        supports_function_calling: true,
    }
}

/// The table. Prices per million tokens: (input, output, cache read, cache write).
pub static MODELS: &[ModelFacts] = &[
    // OpenAI
    chat(
        "gpt-5",
        "openai",
        272_000,
        128_000,
        (1.25, 10.0, 0.125, 0.0),
        true,
        true,
    ),
    chat(
        "gpt-5-mini",
        "openai",
        272_000,
        128_000,
        (0.25, 2.0, 0.025, 0.0),
        true,
        true,
    ),
    chat(
        "gpt-5-nano",
        "openai",
        272_000,
        128_000,
        (0.05, 0.4, 0.005, 0.0),
        true,
        true,
    ),
    chat(
        "gpt-4.1",
        "openai",
        1_047_576,
        32_768,
        (2.0, 8.0, 0.5, 0.0),
        true,
        false,
    ),
    chat(
        "gpt-4.1-mini",
        "openai",
        1_047_576,
        32_768,
        (0.4, 1.6, 0.1, 0.0),
        true,
        false,
    ),
    chat(
        "gpt-4.1-nano",
        "openai",
        1_047_576,
        32_768,
        (0.1, 0.4, 0.025, 0.0),
        true,
        false,
    ),
    chat(
        "gpt-4o",
        "openai",
        128_000,
        16_384,
        (2.5, 10.0, 1.25, 0.0),
        true,
        false,
    ),
    chat(
        "gpt-4o-mini",
        "openai",
        128_000,
        16_384,
        (0.15, 0.6, 0.075, 0.0),
        true,
        false,
    ),
    chat(
        "o3",
        "openai",
        200_000,
        100_000,
        (2.0, 8.0, 0.5, 0.0),
        true,
        true,
    ),
    chat(
        "o3-mini",
        "openai",
        200_000,
        100_000,
        (1.1, 4.4, 0.55, 0.0),
        false,
        true,
    ),
    chat(
        "o4-mini",
        "openai",
        200_000,
        100_000,
        (1.1, 4.4, 0.275, 0.0),
        true,
        true,
    ),
    chat(
        "o1",
        "openai",
        200_000,
        100_000,
        (15.0, 60.0, 7.5, 0.0),
        true,
        true,
    ),
    ModelFacts {
        name: "gpt-image-1",
        provider: "openai",
        mode: "image_generation",
        max_input_tokens: 0,
        max_output_tokens: 0,
        input_cost_per_token: 5.0 / M,
        output_cost_per_token: 40.0 / M,
        cache_read_input_token_cost: 0.0,
        cache_creation_input_token_cost: 0.0,
        supports_vision: true,
        supports_reasoning: false,
        supports_function_calling: false,
    },
    ModelFacts {
        name: "text-embedding-3-small",
        provider: "openai",
        mode: "embedding",
        max_input_tokens: 8191,
        max_output_tokens: 0,
        input_cost_per_token: 0.02 / M,
        output_cost_per_token: 0.0,
        cache_read_input_token_cost: 0.0,
        cache_creation_input_token_cost: 0.0,
        supports_vision: false,
        supports_reasoning: false,
        supports_function_calling: false,
    },
    ModelFacts {
        name: "text-embedding-3-large",
        provider: "openai",
        mode: "embedding",
        max_input_tokens: 8191,
        max_output_tokens: 0,
        input_cost_per_token: 0.13 / M,
        output_cost_per_token: 0.0,
        cache_read_input_token_cost: 0.0,
        cache_creation_input_token_cost: 0.0,
        supports_vision: false,
        supports_reasoning: false,
        supports_function_calling: false,
    },
    // Anthropic
    chat(
        "claude-opus-4-6",
        "anthropic",
        200_000,
        64_000,
        (5.0, 25.0, 0.5, 6.25),
        true,
        true,
    ),
    chat(
        "claude-opus-4-5",
        "anthropic",
        200_000,
        64_000,
        (5.0, 25.0, 0.5, 6.25),
        true,
        true,
    ),
    chat(
        "claude-opus-4-1",
        "anthropic",
        200_000,
        32_000,
        (15.0, 75.0, 1.5, 18.75),
        true,
        true,
    ),
    chat(
        "claude-opus-4",
        "anthropic",
        200_000,
        32_000,
        (15.0, 75.0, 1.5, 18.75),
        true,
        true,
    ),
    chat(
        "claude-sonnet-4-5",
        "anthropic",
        200_000,
        64_000,
        (3.0, 15.0, 0.3, 3.75),
        true,
        true,
    ),
    chat(
        "claude-sonnet-4",
        "anthropic",
        200_000,
        64_000,
        (3.0, 15.0, 0.3, 3.75),
        true,
        true,
    ),
    chat(
        "claude-3-7-sonnet",
        "anthropic",
        200_000,
        64_000,
        (3.0, 15.0, 0.3, 3.75),
        true,
        true,
    ),
    chat(
        "claude-3-5-sonnet",
        "anthropic",
        200_000,
        8192,
        (3.0, 15.0, 0.3, 3.75),
        true,
        false,
    ),
    chat(
        "claude-haiku-4-5",
        "anthropic",
        200_000,
        64_000,
        (1.0, 5.0, 0.1, 1.25),
        true,
        true,
    ),
    chat(
        "claude-3-5-haiku",
        "anthropic",
        200_000,
        8192,
        (0.8, 4.0, 0.08, 1.0),
        true,
        false,
    ),
    chat(
        "claude-3-haiku",
        "anthropic",
        200_000,
        4096,
        (0.25, 1.25, 0.03, 0.3),
        true,
        false,
    ),
    // Google
    chat(
        "gemini-2.5-pro",
        "gemini",
        1_048_576,
        65_535,
        (1.25, 10.0, 0.31, 0.0),
        true,
        true,
    ),
    chat(
        "gemini-2.5-flash",
        "gemini",
        1_048_576,
        65_535,
        (0.3, 2.5, 0.075, 0.0),
        true,
        true,
    ),
    chat(
        "gemini-2.5-flash-lite",
        "gemini",
        1_048_576,
        65_535,
        (0.1, 0.4, 0.025, 0.0),
        true,
        true,
    ),
    chat(
        "gemini-2.0-flash",
        "gemini",
        1_048_576,
        8192,
        (0.1, 0.4, 0.025, 0.0),
        true,
        false,
    ),
    chat(
        "gemini-3-pro-preview",
        "gemini",
        1_048_576,
        65_535,
        (2.0, 12.0, 0.2, 0.0),
        true,
        true,
    ),
    // Others served through the openai plugin
    chat(
        "deepseek-chat",
        "deepseek",
        128_000,
        8192,
        (0.27, 1.1, 0.07, 0.0),
        false,
        false,
    ),
    chat(
        "deepseek-reasoner",
        "deepseek",
        128_000,
        65_536,
        (0.55, 2.19, 0.14, 0.0),
        false,
        true,
    ),
];

/// Find a model by the name a deployment uses: exact, then without provider or vendor
/// prefixes (`openrouter/anthropic/`, `us.anthropic.`), without Bedrock version suffixes
/// (`-v1:0`) and date suffixes (`-20250514`, `-2024-08-06`), then the longest known prefix.
pub fn lookup(model: &str) -> Option<&'static ModelFacts> {
    let lower = model.to_ascii_lowercase();
    let mut name = lower.rsplit('/').next().unwrap_or(&lower).to_string();
    // Bedrock ids: [region.]vendor.model[-vN[:M]]
    for vendor in ["anthropic.", "amazon.", "meta.", "mistral.", "google."] {
        if let Some(i) = name.find(vendor) {
            name = name[i + vendor.len()..].to_string();
        }
    }
    if let Some(i) = name.rfind("-v") {
        let tail = &name[i + 2..];
        if tail.chars().next().is_some_and(|c| c.is_ascii_digit())
            && tail.chars().all(|c| c.is_ascii_digit() || c == ':')
        {
            name.truncate(i);
        }
    }
    if let Some(f) = MODELS.iter().find(|m| m.name == name) {
        return Some(f);
    }
    // Longest table name that the model starts with, at a `-` boundary.
    MODELS
        .iter()
        .filter(|m| {
            name.starts_with(m.name)
                && name[m.name.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c == '-' || c == '@' || c == ':')
        })
        .max_by_key(|m| m.name.len())
}

/// The model-info object for a deployment: the built-in facts for its model, overridden by
/// `litellm_params` prices and then `model_info` (LiteLLM's field names).
pub fn info_for(model: &str, params: &Map<String, Value>, model_info: &Value) -> Value {
    let mut out = match lookup(model) {
        Some(f) => json!({
            "key": f.name,
            "litellm_provider": f.provider,
            "mode": f.mode,
            "max_input_tokens": f.max_input_tokens,
            "max_output_tokens": f.max_output_tokens,
            "max_tokens": f.max_output_tokens,
            "input_cost_per_token": f.input_cost_per_token,
            "output_cost_per_token": f.output_cost_per_token,
            "cache_read_input_token_cost": f.cache_read_input_token_cost,
            "cache_creation_input_token_cost": f.cache_creation_input_token_cost,
            "supports_vision": f.supports_vision,
            "supports_reasoning": f.supports_reasoning,
            "supports_function_calling": f.supports_function_calling,
        }),
        None => json!({ "key": model, "mode": "chat" }),
    };
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    for k in [
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "output_cost_per_reasoning_token",
    ] {
        if let Some(v) = params.get(k) {
            obj.insert(k.into(), v.clone());
        }
    }
    if let Some(mi) = model_info.as_object() {
        for (k, v) in mi {
            obj.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_models_by_the_names_people_use() {
        assert_eq!(lookup("gpt-4o").unwrap().name, "gpt-4o");
        assert_eq!(lookup("gpt-4o-2024-08-06").unwrap().name, "gpt-4o");
        assert_eq!(lookup("gpt-4o-mini").unwrap().name, "gpt-4o-mini");
        assert_eq!(
            lookup("claude-sonnet-4-20250514").unwrap().name,
            "claude-sonnet-4"
        );
        assert_eq!(
            lookup("anthropic/claude-opus-4-6").unwrap().name,
            "claude-opus-4-6"
        );
        assert_eq!(
            lookup("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
                .unwrap()
                .name,
            "claude-3-5-sonnet"
        );
        assert_eq!(
            lookup("openrouter/google/gemini-2.5-flash").unwrap().name,
            "gemini-2.5-flash"
        );
        assert!(lookup("mystery-model").is_none());
        assert!(lookup("gpt-4ox").is_none());
    }

    #[test]
    fn config_overrides_the_table() {
        let params: Map<String, Value> =
            serde_json::from_str(r#"{"input_cost_per_token": 0.001}"#).unwrap();
        let v = info_for("gpt-4o", &params, &json!({"max_input_tokens": 1000}));
        assert_eq!(v["input_cost_per_token"], 0.001);
        assert_eq!(v["max_input_tokens"], 1000);
        assert_eq!(v["max_output_tokens"], 16_384);
        assert_eq!(v["supports_vision"], true);
    }
}
