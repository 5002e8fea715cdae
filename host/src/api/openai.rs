//! OpenAI-compatible routes: `/v1/chat/completions`, `/v1/models`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;
use serde_json::Value;

use super::{ApiError, Lister, ModelCall};
use crate::config::Config;
use crate::error::{Dialect, Error};
use crate::gateway::Gateway;
use crate::ledger::Caller;
use crate::wit::types::Api;

/// `POST /v1/chat/completions` (and `/chat/completions`).
pub async fn chat_completions(call: ModelCall) -> Result<Response, ApiError> {
    call.serve(Api::ChatCompletions, Dialect::OpenAi).await
}

/// `POST /v1/embeddings` (and `/embeddings`).
pub async fn embeddings(call: ModelCall) -> Result<Response, ApiError> {
    call.serve(Api::Embeddings, Dialect::OpenAi).await
}

/// `POST /v1/images/generations` (and `/images/generations`): JSON.
pub async fn images_generations(call: ModelCall) -> Result<Response, ApiError> {
    call.serve(Api::ImagesGenerations, Dialect::OpenAi).await
}

/// `POST /v1/images/edits` (and `/images/edits`): multipart, one or more `image[]` parts.
pub async fn images_edits(call: ModelCall) -> Result<Response, ApiError> {
    call.serve(Api::ImagesEdits, Dialect::OpenAi).await
}

/// A `/v1/models` entry: OpenAI's fields, plus (from the group's first deployment) what
/// agents configure themselves from. Fields by name, the order clients have always seen.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ModelEntry<'a> {
    /// A group without deployments: OpenAI's fields only.
    Bare {
        /// Unix seconds: when the gateway started.
        created: u64,
        /// The name the caller uses.
        id: &'a str,
        /// `model`.
        object: &'static str,
        /// `llmgate`.
        owned_by: &'static str,
    },
    /// A group described by its first deployment.
    Described(Box<Described<'a>>),
}

/// A model group's entry with the context window, output cap, modalities, reasoning and
/// prices of its first deployment.
#[derive(Serialize)]
pub struct Described<'a> {
    context_length: Option<&'a Value>,
    created: u64,
    id: &'a str,
    input_modalities: Vec<&'static str>,
    max_input_tokens: Option<&'a Value>,
    max_output_tokens: Option<&'a Value>,
    object: &'static str,
    owned_by: &'a str,
    pricing: Pricing,
    supports_function_calling: bool,
    supports_reasoning: bool,
    supports_vision: bool,
}

/// USD per token, as decimal strings (`None`: not known).
#[derive(Serialize)]
pub struct Pricing {
    completion: Option<String>,
    input_cache_read: Option<String>,
    input_cache_write: Option<String>,
    prompt: Option<String>,
}

impl<'a> ModelEntry<'a> {
    /// The entry named `id` of the group served by deployments `idx`.
    fn of(config: &'a Config, id: &'a str, idx: &[usize], created: u64) -> Self {
        let Some(d) = idx.first().map(|&i| &config.deployments[i]) else {
            return Self::Bare {
                created,
                id,
                object: "model",
                owned_by: "llmgate",
            };
        };
        let info = &d.info;
        let flag = |k: &str| info.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut modalities = vec!["text"];
        if flag("supports_vision") {
            modalities.push("image");
        }
        let per_token = |k: &str| info.get(k).and_then(Value::as_f64).map(|p| format!("{p}"));
        Self::Described(Box::new(Described {
            context_length: info.get("max_input_tokens"),
            created,
            id,
            input_modalities: modalities,
            max_input_tokens: info.get("max_input_tokens"),
            max_output_tokens: info.get("max_output_tokens"),
            object: "model",
            owned_by: &d.provider,
            pricing: Pricing {
                completion: per_token("output_cost_per_token"),
                input_cache_read: per_token("cache_read_input_token_cost"),
                input_cache_write: per_token("cache_creation_input_token_cost"),
                prompt: per_token("input_cost_per_token"),
            },
            supports_function_calling: flag("supports_function_calling"),
            supports_reasoning: flag("supports_reasoning"),
            supports_vision: flag("supports_vision"),
        }))
    }
}

/// `GET /v1/models/{model}`: one model group, or 404.
pub async fn model(
    State(gw): State<Arc<Gateway>>,
    Lister(caller): Lister,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let config = gw.config();
    let Some(resolved) = config.resolve(&id).filter(|r| visible(&caller, r.group)) else {
        return Err(Error::ModelNotFound(id).into());
    };
    let entry = ModelEntry::of(&config, &id, resolved.deployments, gw.started_at());
    Ok(Json(entry).into_response())
}

/// Whether `caller` may see model group `group` (a key's `models` allowlist).
fn visible(caller: &Caller, group: &str) -> bool {
    match caller {
        Caller::Key(k) => crate::ledger::model_allowed(&k.record().models, group),
        _ => true,
    }
}

/// `GET /v1/models`'s answer.
#[derive(Serialize)]
pub struct ModelList<'a> {
    data: Vec<ModelEntry<'a>>,
    object: &'static str,
}

/// `GET /v1/models`: every model group the caller may use (wildcards included, as LiteLLM
/// lists them).
pub async fn models(State(gw): State<Arc<Gateway>>, Lister(caller): Lister) -> Response {
    let config = gw.config();
    let created = gw.started_at();
    let groups = config
        .groups
        .iter()
        .chain(config.wildcards.iter().map(|(k, v)| (k, v)));
    let mut data: Vec<ModelEntry<'_>> = groups
        .filter(|(name, _)| visible(&caller, name))
        .map(|(name, idx)| ModelEntry::of(&config, name, idx, created))
        .collect();
    // Aliases and auto models, described by the group they (first) route to.
    let routing = &config.routing;
    let extra = routing
        .aliases
        .iter()
        .map(|(alias, target)| (alias.as_str(), target.as_str()))
        .chain(routing.auto.iter().flat_map(|a| {
            a.names
                .iter()
                .map(|n| (n.as_str(), a.groups.first().map_or("", String::as_str)))
        }));
    for (name, target) in extra {
        if let Some(idx) = config.groups.get(target)
            && visible(&caller, name)
        {
            data.push(ModelEntry::of(&config, name, idx, created));
        }
    }
    Json(ModelList {
        data,
        object: "list",
    })
    .into_response()
}

/// One deployment in `/model/info`.
#[derive(Serialize)]
pub struct DeploymentView<'a> {
    /// Its public params, `model` as `provider/model` and `api_base` without credentials.
    litellm_params: Value,
    /// The model's info, with the deployment's `id`.
    model_info: Value,
    model_name: &'a str,
}

/// `GET /model/info`'s answer.
#[derive(Serialize)]
pub struct ModelInfo<'a> {
    data: Vec<DeploymentView<'a>>,
}

/// `GET /model/info` (and `/v1/model/info`): every deployment, LiteLLM's shape, no secrets:
/// credential-like params and `extra_headers` values are masked, and `api_base` is shown
/// without userinfo or credential query parameters.
pub async fn model_info(State(gw): State<Arc<Gateway>>, Lister(caller): Lister) -> Response {
    let config = gw.config();
    let data = config
        .deployments
        .iter()
        .filter(|d| visible(&caller, &d.model_name))
        .map(|d| {
            // Host params left out, every credential-like param masked (config::secrets).
            let mut params = d.public_params.clone();
            params["model"] = Value::String(format!("{}/{}", d.provider, d.model));
            if let Some(b) = &d.api_base {
                params["api_base"] = Value::String(b.clone());
            }
            let mut info = d.info.clone();
            info["id"] = Value::String(d.id.clone());
            DeploymentView {
                litellm_params: params,
                model_info: info,
                model_name: &d.model_name,
            }
        })
        .collect();
    Json(ModelInfo { data }).into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::assert_keys_by_name;

    #[test]
    fn model_views_show_their_fields_by_name() {
        let info = json!({"max_input_tokens": 10, "max_output_tokens": 5});
        let described = ModelEntry::Described(Box::new(Described {
            context_length: info.get("max_input_tokens"),
            created: 1,
            id: "m",
            input_modalities: vec!["text", "image"],
            max_input_tokens: info.get("max_input_tokens"),
            max_output_tokens: info.get("absent"),
            object: "model",
            owned_by: "openai",
            pricing: Pricing {
                completion: Some("0.5".into()),
                input_cache_read: None,
                input_cache_write: Some("0.25".into()),
                prompt: Some("1".into()),
            },
            supports_function_calling: true,
            supports_reasoning: false,
            supports_vision: true,
        }));
        let bare = ModelEntry::Bare {
            created: 1,
            id: "b",
            object: "model",
            owned_by: "llmgate",
        };
        let list = ModelList {
            data: vec![described, bare],
            object: "list",
        };
        assert_keys_by_name(&list);
        let v = serde_json::to_value(&list).unwrap();
        assert_eq!(v["data"][0]["max_output_tokens"], Value::Null);
        assert_eq!(v["data"][0]["pricing"]["input_cache_read"], Value::Null);
        assert_eq!(
            v["data"][1],
            json!({"id": "b", "object": "model", "created": 1, "owned_by": "llmgate"})
        );
        let info = ModelInfo {
            data: vec![DeploymentView {
                litellm_params: json!({"model": "openai/m", "api_base": "http://x"}),
                model_info: json!({"id": "d"}),
                model_name: "m",
            }],
        };
        assert_keys_by_name(&info);
    }
}
