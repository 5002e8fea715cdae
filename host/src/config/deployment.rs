//! One `model_list` entry validated into a [`Deployment`]: provider and model, secrets
//! (kept by the host, masked everywhere else), timeouts, weights, prices and origin.

use std::collections::BTreeMap;
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

/// One entry's `litellm_params`, with the key path their problems name.
struct Params<'a> {
    /// `model_list[i].litellm_params`.
    at: String,
    map: &'a BTreeMap<String, Value>,
}

impl Params<'_> {
    fn get(&self, k: &str) -> Option<&Value> {
        self.map.get(k)
    }

    /// The key path of param `k`.
    fn at(&self, k: &str) -> String {
        format!("{}.{k}", self.at)
    }
}

/// The credentials an entry names (literals or `os.environ/VAR`), applied by the host only.
struct Credentials {
    api_key: Option<Secret>,
    aws_access_key_id: Option<Secret>,
    aws_secret_access_key: Option<Secret>,
    aws_session_token: Option<Secret>,
}

/// An entry's timeouts and the numbers its policy weighs it by.
struct AttemptLimits {
    timeout: Duration,
    stream_timeout: Duration,
    weight: u32,
    rpm: u32,
    tpm: u32,
    order: u32,
}

impl Validator {
    /// Validate the `model_list` entry at `at` (the `index`-th deployment kept so far):
    /// `None` when it cannot be served at all (its problems are recorded).
    pub(super) fn deployment(
        &mut self,
        at: &str,
        d: &RawDeployment,
        index: usize,
        default_timeout: Duration,
    ) -> Option<Deployment> {
        let (model_name, params) = self.entry(at, d)?;
        let p = Params {
            at: format!("{at}.litellm_params"),
            map: params,
        };
        let (provider, model) = self.provider_and_model(&p, &model_name)?;
        let api_base = self.api_base(&p);
        let api_version = self.param_string(&p, "api_version");
        let keys = self.credentials(&p);
        let limits = self.attempt_limits(&p, default_timeout);
        let extra = self.extra_params(&p);
        let extra_headers = self.extra_headers(&p);
        let base_parts = api_base
            .as_deref()
            .map(secrets::ApiBase::split)
            .unwrap_or_default();
        let scrubber = scrubber(&extra, &extra_headers, &base_parts, &keys);
        let (model_info, id) = model_info_and_id(d.model_info.as_ref(), &model_name, index);
        let info = crate::models::info_for(&model, &extra, &model_info);
        Some(Deployment {
            id,
            model_name,
            provider,
            model,
            api_version,
            api_key: keys.api_key,
            aws_access_key_id: keys.aws_access_key_id,
            aws_secret_access_key: keys.aws_secret_access_key,
            aws_session_token: keys.aws_session_token,
            env: self.environment.clone(),
            params_json: serde_json::Value::Object(secrets::plugin_params(&extra)).to_string(),
            extra_headers,
            public_params: public_params(&extra, params),
            scrubber,
            timeout: limits.timeout,
            stream_timeout: limits.stream_timeout,
            weight: limits.weight,
            rpm: or_info(limits.rpm, &model_info, "rpm"),
            tpm: or_info(limits.tpm, &model_info, "tpm"),
            order: limits.order,
            model_info,
            prices: crate::pricing::Prices::from_info(&info),
            api_base_origin: api_base.as_deref().and_then(crate::net::origin_of),
            api_base: api_base.is_some().then(|| base_parts.public.clone()),
            api_base_credentials: base_parts,
            info,
        })
    }

    /// The entry's unknown keys (warned about), its `model_name` and its `litellm_params`;
    /// `None` when either is missing.
    fn entry<'d>(
        &mut self,
        at: &str,
        d: &'d RawDeployment,
    ) -> Option<(String, &'d BTreeMap<String, Value>)> {
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
        let Some(params) = &d.litellm_params else {
            self.problem(
                &format!("{at}.litellm_params"),
                "missing (needs at least `model`)",
            );
            return None;
        };
        Some((model_name, params))
    }

    /// `model` (and `custom_llm_provider`): the provider prefix and the upstream model.
    fn provider_and_model(&mut self, p: &Params, model_name: &str) -> Option<(String, String)> {
        let Some(full_model) = p
            .get("model")
            .and_then(scalar_string)
            .filter(|m| !m.is_empty())
        else {
            self.problem(
                &p.at("model"),
                "missing (write it as provider/model, e.g. openai/gpt-4o)",
            );
            return None;
        };
        let explicit = self.param_string(p, "custom_llm_provider");
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
                        &p.at("model"),
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
                &p.at("model"),
                "a wildcard model needs a wildcard model_name (e.g. `openai/*`)",
            );
        }
        Some((provider, model))
    }

    /// Param `k` as a string ([`Validator::string`]), `None` when unset.
    fn param_string(&mut self, p: &Params, k: &str) -> Option<String> {
        p.get(k).and_then(|v| self.string(&p.at(k), v))
    }

    /// `api_base` (or LiteLLM's `base_url`), which must be an http(s) URL.
    fn api_base(&mut self, p: &Params) -> Option<String> {
        let at = p.at("api_base");
        let base = self.string(&at, p.get("api_base").or_else(|| p.get("base_url"))?)?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            self.problem(&at, "must start with http:// or https://");
        }
        Some(base)
    }

    /// `api_key` and the AWS keys: secrets, literal or `os.environ/VAR` (empty is unset).
    fn credentials(&mut self, p: &Params) -> Credentials {
        let mut secret = |k: &str| p.get(k).and_then(|v| self.secret(&p.at(k), v));
        Credentials {
            api_key: secret("api_key"),
            aws_access_key_id: secret("aws_access_key_id"),
            aws_secret_access_key: secret("aws_secret_access_key"),
            aws_session_token: secret("aws_session_token"),
        }
    }

    /// `timeout` (default: `litellm_settings.request_timeout`), `stream_timeout` (default:
    /// `timeout`), `weight` (default 1), `rpm`, `tpm` and `order` (default 0).
    fn attempt_limits(&mut self, p: &Params, default_timeout: Duration) -> AttemptLimits {
        let mut seconds = |k: &str| p.get(k).and_then(|t| self.seconds(&p.at(k), t));
        let timeout = seconds("timeout").unwrap_or(default_timeout);
        let stream_timeout = seconds("stream_timeout").unwrap_or(timeout);
        let mut uint = |k: &str, default: u32| self.uint(&p.at(k), p.get(k)).unwrap_or(default);
        AttemptLimits {
            timeout,
            stream_timeout,
            weight: uint("weight", 1),
            rpm: uint("rpm", 0),
            tpm: uint("tpm", 0),
            order: uint("order", 0),
        }
    }

    /// The params the host does not consume and that are not secrets, as JSON
    /// (`os.environ/VAR` resolved; an unset variable leaves its param out).
    fn extra_params(&mut self, p: &Params) -> serde_json::Map<String, serde_json::Value> {
        let mut extra = serde_json::Map::new();
        for (k, val) in p.map {
            if SECRET_PARAMS.contains(&k.as_str()) || HOST_PARAMS.contains(&k.as_str()) {
                continue;
            }
            let json = match val {
                Value::String(s) if s.starts_with("os.environ/") => {
                    match self.string(&p.at(k), val) {
                        Some(s) => serde_json::Value::String(s),
                        None => continue,
                    }
                }
                other => yaml_to_json(other),
            };
            extra.insert(k.clone(), json);
        }
        extra
    }

    /// `extra_headers`: a mapping of valid header names to valid header text.
    fn extra_headers(&mut self, p: &Params) -> Vec<(String, Secret)> {
        let at = p.at("extra_headers");
        match p.get("extra_headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(name, val)| self.extra_header(&at, name, val))
                .collect(),
            Some(_) => {
                self.problem(&at, "must be a mapping of header names to values");
                Vec::new()
            }
        }
    }

    /// One `extra_headers` entry: its name lowercased, its value.
    fn extra_header(&mut self, at: &str, name: &Value, val: &Value) -> Option<(String, Secret)> {
        let Some(name) = scalar_string(name) else {
            self.problem(at, "header names must be strings");
            return None;
        };
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.problem(at, &format!("`{name}` is not a valid header name"));
            return None;
        }
        let at_name = format!("{at}.{name}");
        let v = self.string(&at_name, val)?;
        if http::HeaderValue::from_str(&v).is_err() {
            self.problem(&at_name, "is not valid header text");
            return None;
        }
        Some((name.to_ascii_lowercase(), Secret(v)))
    }
}

/// Masks every secret of the deployment: secret-looking params, header values, the
/// credentials `api_base` carries and the keys.
fn scrubber(
    extra: &serde_json::Map<String, serde_json::Value>,
    extra_headers: &[(String, Secret)],
    base: &secrets::ApiBase,
    keys: &Credentials,
) -> secrets::Scrubber {
    let mut texts = secrets::secret_texts(extra);
    texts.extend(extra_headers.iter().map(|(_, v)| v.0.clone()));
    texts.extend(base.secrets());
    texts.extend(
        [
            &keys.api_key,
            &keys.aws_access_key_id,
            &keys.aws_secret_access_key,
            &keys.aws_session_token,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.0.clone()),
    );
    secrets::Scrubber::new(texts)
}

/// The params `/model/info` shows: `extra`, with every secret param the entry sets masked.
fn public_params(
    extra: &serde_json::Map<String, serde_json::Value>,
    params: &BTreeMap<String, Value>,
) -> serde_json::Value {
    let mut shown = extra.clone();
    for k in SECRET_PARAMS {
        if params.contains_key(*k) {
            shown.insert(
                (*k).to_string(),
                serde_json::Value::String(secrets::MASK.into()),
            );
        }
    }
    serde_json::Value::Object(secrets::masked_params(&shown))
}

/// `model_info` as JSON (`{}` when absent), and the deployment's id: `model_info.id`
/// (a string or a number), else `<model_name>-<index>`.
/// A `litellm_params` limit, else the same key of `model_info` (LiteLLM reads both).
fn or_info(param: u32, model_info: &serde_json::Value, key: &str) -> u32 {
    if param > 0 {
        return param;
    }
    model_info
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn model_info_and_id(
    raw: Option<&BTreeMap<String, Value>>,
    model_name: &str,
    index: usize,
) -> (serde_json::Value, String) {
    let model_info = raw
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
    (model_info, id)
}
