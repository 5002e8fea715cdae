//! OpenAI-compatible routes: `/v1/chat/completions`, `/v1/models`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::json;

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

/// The `/v1/models` entry of a group: OpenAI's fields, plus what agents configure
/// themselves from (context window, output cap, modalities, reasoning, prices) taken from the
/// group's first deployment.
fn model_entry(config: &Config, name: &str, idx: &[usize], created: u64) -> serde_json::Value {
    let Some(d) = idx.first().map(|&i| &config.deployments[i]) else {
        return json!({ "id": name, "object": "model", "created": created, "owned_by": "llmgate" });
    };
    let info = &d.info;
    let num = |k: &str| info.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let flag = |k: &str| {
        info.get(k)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let mut modalities = vec!["text"];
    if flag("supports_vision") {
        modalities.push("image");
    }
    let per_token = |k: &str| {
        info.get(k)
            .and_then(serde_json::Value::as_f64)
            .map(|p| format!("{p}"))
    };
    json!({
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": d.provider,
        "context_length": num("max_input_tokens"),
        "max_input_tokens": num("max_input_tokens"),
        "max_output_tokens": num("max_output_tokens"),
        "input_modalities": modalities,
        "supports_reasoning": flag("supports_reasoning"),
        "supports_function_calling": flag("supports_function_calling"),
        "supports_vision": flag("supports_vision"),
        "pricing": {
            "prompt": per_token("input_cost_per_token"),
            "completion": per_token("output_cost_per_token"),
            "input_cache_read": per_token("cache_read_input_token_cost"),
            "input_cache_write": per_token("cache_creation_input_token_cost"),
        },
    })
}

/// `GET /v1/models/{model}`: one model group, or 404.
pub async fn model(
    State(gw): State<Arc<Gateway>>,
    Lister(caller): Lister,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = gw.config();
    let Some(resolved) = config.resolve(&id).filter(|r| visible(&caller, r.group)) else {
        return Err(Error::ModelNotFound(id).into());
    };
    let mut entry = model_entry(
        &config,
        resolved.group,
        resolved.deployments,
        gw.started_at(),
    );
    entry["id"] = json!(id);
    Ok(Json(entry))
}

/// Whether `caller` may see model group `group` (a key's `models` allowlist).
fn visible(caller: &Caller, group: &str) -> bool {
    match caller {
        Caller::Key(k) => crate::ledger::model_allowed(&k.record().models, group),
        _ => true,
    }
}

/// `GET /v1/models`: every model group the caller may use (wildcards included, as LiteLLM
/// lists them).
pub async fn models(
    State(gw): State<Arc<Gateway>>,
    Lister(caller): Lister,
) -> Json<serde_json::Value> {
    let config = gw.config();
    let created = gw.started_at();
    let groups = config
        .groups
        .iter()
        .chain(config.wildcards.iter().map(|(k, v)| (k, v)));
    let mut data: Vec<serde_json::Value> = groups
        .filter(|(name, _)| visible(&caller, name))
        .map(|(name, idx)| model_entry(&config, name, idx, created))
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
            let mut e = model_entry(&config, target, idx, created);
            e["id"] = json!(name);
            data.push(e);
        }
    }
    Json(json!({ "object": "list", "data": data }))
}

/// `GET /model/info` (and `/v1/model/info`): every deployment, LiteLLM's shape, no secrets:
/// credential-like params and `extra_headers` values are masked, and `api_base` is shown
/// without userinfo or credential query parameters.
pub async fn model_info(
    State(gw): State<Arc<Gateway>>,
    Lister(caller): Lister,
) -> Json<serde_json::Value> {
    let config = gw.config();
    let data: Vec<serde_json::Value> = config
        .deployments
        .iter()
        .filter(|d| visible(&caller, &d.model_name))
        .map(|d| {
            // Host params left out, every credential-like param masked (config::secrets).
            let mut params = d.public_params.clone();
            params["model"] = json!(format!("{}/{}", d.provider, d.model));
            if let Some(b) = &d.api_base {
                params["api_base"] = json!(b);
            }
            let mut info = d.info.clone();
            info["id"] = json!(d.id);
            json!({ "model_name": d.model_name, "litellm_params": params, "model_info": info })
        })
        .collect();
    Json(json!({ "data": data }))
}
