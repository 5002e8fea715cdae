//! One `model_list` entry validated into a [`Deployment`]: provider and model, secrets
//! (kept by the host, masked everywhere else), timeouts, weights, prices and origin.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::raw::RawDeployment;
use super::validator::{Validator, scalar_string, yaml_to_json};
use super::{Deployment, Secret, secrets};

/// `litellm_params` that are secrets: applied by the host, never handed to plugins.
const SECRET_PARAMS: &[&str] = &[
    "api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "azure_ad_token",
    "client_secret",
    "vertex_credentials",
];

/// `litellm_params` the host itself consumes.
const HOST_PARAMS: &[&str] = &[
    "model",
    "api_base",
    "base_url",
    "api_version",
    "custom_llm_provider",
    "timeout",
    "stream_timeout",
    "weight",
    "rpm",
    "tpm",
    "order",
];

/// The provider prefix LiteLLM infers for a bare model name.
fn infer_provider(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    if m.starts_with("claude") {
        Some("anthropic")
    } else if m.starts_with("gemini") {
        Some("gemini")
    } else if m.starts_with("gpt-")
        || m.starts_with("chatgpt")
        || m.starts_with("o1")
        || m.starts_with("o3")
        || m.starts_with("o4")
        || m.starts_with("text-embedding")
        || m.starts_with("dall-e")
        || m.starts_with("gpt-image")
    {
        Some("openai")
    } else {
        None
    }
}

impl Validator {
    pub(super) fn deployment(
        &mut self,
        at: &str,
        d: RawDeployment,
        index: usize,
        default_timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Deployment> {
        for key in d.other.keys() {
            self.warn(&format!("{at}.{key}"), "unknown key, ignored");
        }
        let model_name = match d.model_name.as_ref().and_then(scalar_string) {
            Some(n) if !n.trim().is_empty() => n,
            _ => {
                self.problem(
                    &format!("{at}.model_name"),
                    "missing (the name clients ask for)",
                );
                return None;
            }
        };
        let Some(params) = d.litellm_params else {
            self.problem(
                &format!("{at}.litellm_params"),
                "missing (needs at least `model`)",
            );
            return None;
        };
        let p = |k: &str| params.get(k);
        let Some(full_model) = p("model").and_then(scalar_string).filter(|m| !m.is_empty()) else {
            self.problem(
                &format!("{at}.litellm_params.model"),
                "missing (write it as provider/model, e.g. openai/gpt-4o)",
            );
            return None;
        };
        let explicit = match p("custom_llm_provider") {
            Some(v) => self.string(&format!("{at}.litellm_params.custom_llm_provider"), v, env),
            None => None,
        };
        let (provider, model) = match (explicit, full_model.split_once('/')) {
            (Some(prov), _) => {
                let m = full_model
                    .strip_prefix(&format!("{prov}/"))
                    .unwrap_or(&full_model)
                    .to_string();
                (prov, m)
            }
            (None, Some((prov, m))) if !prov.is_empty() && !m.is_empty() => {
                (prov.to_string(), m.to_string())
            }
            (None, _) => match infer_provider(&full_model) {
                Some(prov) => (prov.to_string(), full_model.clone()),
                None => {
                    self.problem(
                        &format!("{at}.litellm_params.model"),
                        &format!(
                            "cannot tell the provider of `{full_model}`; write it as provider/model (e.g. openai/{full_model})"
                        ),
                    );
                    return None;
                }
            },
        };
        if model.contains('*') && !model_name.contains('*') {
            self.problem(
                &format!("{at}.litellm_params.model"),
                "a wildcard model needs a wildcard model_name (e.g. `openai/*`)",
            );
        }
        let api_base = match p("api_base").or_else(|| p("base_url")) {
            Some(v) => self.string(&format!("{at}.litellm_params.api_base"), v, env),
            None => None,
        };
        if let Some(base) = &api_base
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            self.problem(
                &format!("{at}.litellm_params.api_base"),
                "must start with http:// or https://",
            );
        }
        let api_version = match p("api_version") {
            Some(v) => self.string(&format!("{at}.litellm_params.api_version"), v, env),
            None => None,
        };
        let api_key = match p("api_key") {
            Some(v) => self.secret(&format!("{at}.litellm_params.api_key"), v, env),
            None => None,
        };
        let mut aws = |k: &str| match p(k) {
            Some(v) => self.secret(&format!("{at}.litellm_params.{k}"), v, env),
            None => None,
        };
        let aws_access_key_id = aws("aws_access_key_id");
        let aws_secret_access_key = aws("aws_secret_access_key");
        let aws_session_token = aws("aws_session_token");
        let timeout = match p("timeout") {
            Some(t) => self.seconds(&format!("{at}.litellm_params.timeout"), t),
            None => None,
        }
        .unwrap_or(default_timeout);
        let stream_timeout = match p("stream_timeout") {
            Some(t) => self.seconds(&format!("{at}.litellm_params.stream_timeout"), t),
            None => None,
        }
        .unwrap_or(timeout);
        let weight = self
            .uint(&format!("{at}.litellm_params.weight"), p("weight"))
            .unwrap_or(1);
        let rpm = self
            .uint(&format!("{at}.litellm_params.rpm"), p("rpm"))
            .unwrap_or(0);
        let tpm = self
            .uint(&format!("{at}.litellm_params.tpm"), p("tpm"))
            .unwrap_or(0);
        let order = self
            .uint(&format!("{at}.litellm_params.order"), p("order"))
            .unwrap_or(0);

        let mut extra = serde_json::Map::new();
        for (k, val) in &params {
            if SECRET_PARAMS.contains(&k.as_str()) || HOST_PARAMS.contains(&k.as_str()) {
                continue;
            }
            let json = match val {
                Value::String(s) if s.starts_with("os.environ/") => {
                    match self.string(&format!("{at}.litellm_params.{k}"), val, env) {
                        Some(s) => serde_json::Value::String(s),
                        None => continue,
                    }
                }
                other => yaml_to_json(other),
            };
            extra.insert(k.clone(), json);
        }
        let mut extra_headers = Vec::new();
        match params.get("extra_headers") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, val) in m {
                    let at_h = format!("{at}.litellm_params.extra_headers");
                    let Some(name) = scalar_string(k) else {
                        self.problem(&at_h, "header names must be strings");
                        continue;
                    };
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        self.problem(&at_h, &format!("`{name}` is not a valid header name"));
                        continue;
                    }
                    if let Some(v) = self.string(&format!("{at_h}.{name}"), val, env) {
                        if http::HeaderValue::from_str(&v).is_err() {
                            self.problem(&format!("{at_h}.{name}"), "is not valid header text");
                            continue;
                        }
                        extra_headers.push((name.to_ascii_lowercase(), Secret(v)));
                    }
                }
            }
            Some(_) => self.problem(
                &format!("{at}.litellm_params.extra_headers"),
                "must be a mapping of header names to values",
            ),
        }
        let base_parts = api_base
            .as_deref()
            .map(secrets::ApiBase::split)
            .unwrap_or_default();
        let mut secret_texts = secrets::secret_texts(&extra);
        secret_texts.extend(extra_headers.iter().map(|(_, v)| v.0.clone()));
        secret_texts.extend(base_parts.secrets());
        secret_texts.extend(
            [
                &api_key,
                &aws_access_key_id,
                &aws_secret_access_key,
                &aws_session_token,
            ]
            .into_iter()
            .flatten()
            .map(|s| s.0.clone()),
        );
        let mut shown = extra.clone();
        for k in SECRET_PARAMS {
            if params.contains_key(*k) {
                shown.insert(
                    (*k).to_string(),
                    serde_json::Value::String(secrets::MASK.into()),
                );
            }
        }
        let public_params = serde_json::Value::Object(secrets::masked_params(&shown));
        let model_info = d
            .model_info
            .as_ref()
            .map(|m| {
                serde_json::Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), yaml_to_json(v)))
                        .collect(),
                )
            })
            .unwrap_or_else(|| serde_json::json!({}));
        let id = model_info
            .get("id")
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .unwrap_or_else(|| format!("{model_name}-{index}"));
        let info = crate::models::info_for(&model, &extra, &model_info);
        Some(Deployment {
            id,
            model_name,
            provider,
            model,
            api_version,
            api_key,
            aws_access_key_id,
            aws_secret_access_key,
            aws_session_token,
            env: self.environment.clone(),
            params_json: serde_json::Value::Object(secrets::plugin_params(&extra)).to_string(),
            extra_headers,
            public_params,
            scrubber: secrets::Scrubber::new(secret_texts),
            timeout,
            stream_timeout,
            weight,
            rpm,
            tpm,
            order,
            model_info,
            prices: crate::pricing::Prices::from_info(&info),
            api_base_origin: api_base.as_deref().and_then(crate::net::origin_of),
            api_base: api_base.is_some().then(|| base_parts.public.clone()),
            api_base_credentials: base_parts,
            info,
        })
    }
}
