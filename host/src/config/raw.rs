//! The LiteLLM-compatible `config.yaml` as it is written: serde types only, no validation.
//!
//! Sections LiteLLM knows are accepted with their LiteLLM names; keys llmgate does not act on
//! are kept (as `serde_yaml_ng::Value`) so validation can warn about them instead of refusing a
//! LiteLLM user's config. The `llmgate:` section is ours and strict.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    /// Deployments.
    #[serde(default)]
    pub model_list: Vec<RawDeployment>,
    /// LiteLLM router settings (`fallbacks`, `num_retries`, `routing_strategy`, ...).
    #[serde(default)]
    pub router_settings: BTreeMap<String, Value>,
    /// LiteLLM library settings (`drop_params`, `num_retries`, `request_timeout`, ...).
    #[serde(default)]
    pub litellm_settings: BTreeMap<String, Value>,
    /// Proxy settings (`master_key`, `database_url`, ...).
    #[serde(default)]
    pub general_settings: BTreeMap<String, Value>,
    /// Environment variables to set before the rest is read (LiteLLM feature).
    #[serde(default)]
    pub environment_variables: BTreeMap<String, Value>,
    /// llmgate's own settings.
    #[serde(default)]
    pub llmgate: RawLlmgate,
    /// Anything else at the top level (warned about).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One `model_list` entry.
#[derive(Debug, Deserialize)]
pub struct RawDeployment {
    /// The name clients ask for (a model group; several entries may share it).
    pub model_name: Option<Value>,
    /// Where and how to call it.
    #[serde(default)]
    pub litellm_params: Option<BTreeMap<String, Value>>,
    /// Metadata: `id`, context window, prices, capabilities.
    #[serde(default)]
    pub model_info: Option<BTreeMap<String, Value>>,
    /// Anything else (warned about).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl RawDeployment {
    /// The entry a `--model` quick start stands for: `model_name` serving `model`, at
    /// `api_base` when given.
    pub fn quick_start(model_name: &str, model: &str, api_base: Option<&str>) -> Self {
        let text = |s: &str| Value::String(s.to_string());
        let mut params = BTreeMap::from([("model".to_string(), text(model))]);
        if let Some(base) = api_base {
            params.insert("api_base".to_string(), text(base));
        }
        Self {
            model_name: Some(text(model_name)),
            litellm_params: Some(params),
            model_info: None,
            other: BTreeMap::new(),
        }
    }
}

/// The `llmgate:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlmgate {
    /// Folder the plugins are loaded from.
    pub plugins_dir: Option<String>,
    /// Where compiled plugins are cached.
    pub plugin_cache_dir: Option<String>,
    /// Sandbox limits for every plugin call.
    #[serde(default)]
    pub plugin_limits: RawPluginLimits,
    /// Routing: the default policy and per-group policies.
    #[serde(default)]
    pub routing: RawRouting,
    /// Largest request body accepted, in bytes.
    pub max_request_body_bytes: Option<usize>,
    /// Largest upstream response body read (non-streamed), in bytes.
    pub max_response_body_bytes: Option<usize>,
    /// Seconds to wait for requests in flight on shutdown.
    pub shutdown_grace_seconds: Option<u64>,
    /// A started stream fails when no event (data, not SSE comments) arrives for this many
    /// seconds (default 600).
    pub stream_idle_timeout_seconds: Option<u64>,
    /// A started stream fails once it has run this many seconds (default 3600; 0: no limit).
    pub max_stream_duration_seconds: Option<u64>,
    /// Watch the plugins folder and reload changed plugins (default true).
    pub hot_reload: Option<bool>,
    /// Watch `config.yaml` and reload it when it changes (default true; SIGHUP always
    /// reloads).
    pub watch_config: Option<bool>,
    /// One INFO line per request, target `llmgate::access` (default true).
    pub access_log: Option<bool>,
    /// Serve Prometheus metrics at `/metrics` (default: when `litellm_settings.callbacks`
    /// names `prometheus`).
    pub metrics: Option<bool>,
    /// The SQLite database file (keys, spend logs).
    pub database_path: Option<String>,
    /// How long start-up waits for PostgreSQL, seconds (default 30).
    pub database_wait_seconds: Option<u64>,
    /// How long a budget lease lives past its last renewal on PostgreSQL, seconds
    /// (default 10).
    pub budget_lease_seconds: Option<u64>,
    /// PostgreSQL: how often every key is read again, as a backstop to the key change
    /// notifications, seconds (default 10).
    pub key_resync_seconds: Option<u64>,
    /// Budget admission rule: `reserve` (default) or `strict`.
    pub budget_admission: Option<String>,
    /// Seconds a client may take to send a request head, from its first byte.
    pub client_header_timeout_seconds: Option<f64>,
    /// Seconds an idle client connection is kept open.
    pub client_idle_timeout_seconds: Option<f64>,
    /// Seconds a client may take to send a whole request body.
    pub client_body_timeout_seconds: Option<f64>,
    /// Client connections open at once (default: from the file descriptor limit).
    pub max_client_connections: Option<usize>,
    /// Output tokens reserved for a request without `max_tokens` (reserve admission).
    pub default_reserved_output_tokens: Option<u64>,
}

/// `llmgate.plugin_limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginLimits {
    /// Linear memory cap per plugin instance, MiB.
    pub memory_mib: Option<u64>,
    /// CPU deadline per plugin call, ms.
    pub call_timeout_ms: Option<u64>,
    /// Most plugin instances alive at once (concurrent attempts).
    pub max_instances: Option<u32>,
}

/// `llmgate.routing`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Policy used when a group names none (default `ordered`).
    pub default_policy: Option<String>,
    /// Config passed to the default policy.
    pub default_policy_config: Option<serde_json::Value>,
    /// Per model group: `{policy, config}`.
    #[serde(default)]
    pub groups: BTreeMap<String, RawGroupRouting>,
    /// Kilo-style auto models: `{models, strong, fast, default, modes, features}`, or false.
    pub auto: Option<serde_json::Value>,
}

/// `llmgate.routing.groups.<name>`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupRouting {
    /// Policy plugin name.
    pub policy: Option<String>,
    /// Its config.
    pub config: Option<serde_json::Value>,
}
