//! Configuration: the LiteLLM-compatible `config.yaml` ([`raw`]) validated into a [`Config`].
//!
//! Validation reports every problem at once, each naming the file, the key and what is
//! wrong. Keys that LiteLLM knows but llmgate does not act on produce warnings, so a
//! LiteLLM user's config starts unchanged.

pub mod raw;
pub mod routing;
pub mod secrets;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use raw::{RawConfig, RawDeployment};

/// Default request timeout, seconds (LiteLLM's `request_timeout`).
pub const DEFAULT_TIMEOUT_SECS: f64 = 600.0;

/// A secret (API key). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that applies it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One deployment (`model_list` entry), validated.
#[derive(Debug)]
pub struct Deployment {
    /// `model_info.id`, or `<model_name>-<index>`.
    pub id: String,
    /// The group (`model_name`) it serves.
    pub model_name: String,
    /// Provider prefix (`openai`, `anthropic`, ...).
    pub provider: String,
    /// Upstream model without the prefix; may contain `*` for wildcard groups.
    pub model: String,
    /// `api_base` as anyone may see it (and plugins get it): without userinfo and without
    /// credential-like query parameters, which are in [`Self::api_base_credentials`].
    pub api_base: Option<String>,
    /// The credentials `api_base` carried (`user:pass@`, `?key=...`): applied by the host to
    /// the upstream URL only.
    pub api_base_credentials: secrets::ApiBase,
    /// `api_version`.
    pub api_version: Option<String>,
    /// `api_key` from the config (literal or `os.environ/VAR`).
    pub api_key: Option<Secret>,
    /// `aws_access_key_id`.
    pub aws_access_key_id: Option<Secret>,
    /// `aws_secret_access_key`.
    pub aws_secret_access_key: Option<Secret>,
    /// `aws_session_token`.
    pub aws_session_token: Option<Secret>,
    /// Non-secret `litellm_params`, JSON object text, handed to the provider plugin
    /// ([`secrets::plugin_params`]: no credential-like param, no `extra_headers`).
    pub params_json: String,
    /// `extra_headers`: applied by the host to every upstream request (after the plugin's
    /// own headers), never shown to plugins or in `/model/info`.
    pub extra_headers: Vec<(String, Secret)>,
    /// The `litellm_params` `/model/info` shows: host params left out, secrets masked
    /// ([`secrets::masked_params`]).
    pub public_params: serde_json::Value,
    /// Masks every secret of this deployment in text leaving the host.
    pub scrubber: secrets::Scrubber,
    /// Per-attempt timeout (`timeout`).
    pub timeout: Duration,
    /// Time allowed to the first streamed byte (`stream_timeout`, else `timeout`).
    pub stream_timeout: Duration,
    /// `weight` (default 1).
    pub weight: u32,
    /// `rpm`, 0 when unset.
    pub rpm: u32,
    /// `tpm`, 0 when unset.
    pub tpm: u32,
    /// `order`, 0 when unset.
    pub order: u32,
    /// `model_info` as JSON.
    pub model_info: serde_json::Value,
    /// Everything known about the model: the built-in table, overridden by price params
    /// and `model_info` (LiteLLM field names).
    pub info: serde_json::Value,
    /// The prices in `info`, read once at load (costing, reservations, policy candidates).
    pub prices: crate::ledger::cost::Prices,
    /// The origin (`scheme://host[:port]`) of `api_base`, read once at load: where this
    /// deployment's requests may go.
    pub api_base_origin: Option<String>,
}

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Linear memory cap per instance, bytes.
    pub memory_bytes: usize,
    /// CPU deadline per call.
    pub call_timeout: Duration,
    /// Plugin instances alive at once.
    pub max_instances: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_millis(500),
            max_instances: 1000,
        }
    }
}

/// Which policy routes a group, with its config.
#[derive(Debug, Clone)]
pub struct PolicyChoice {
    /// Policy plugin name.
    pub policy: String,
    /// Config JSON passed on every call.
    pub config_json: Arc<str>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from (a file path, or `command line`).
    pub source: String,
    /// Deployments in config order.
    pub deployments: Vec<Arc<Deployment>>,
    /// Exact model groups: name to deployment indices, in config order.
    pub groups: BTreeMap<String, Vec<usize>>,
    /// Wildcard groups (`openai/*`): pattern to deployment indices, most specific first.
    pub wildcards: Vec<(String, Vec<usize>)>,
    /// Group that serves any model name no other group matches (`--model`).
    pub catch_all: Option<String>,
    /// Plugins folder.
    pub plugins_dir: PathBuf,
    /// Compiled-plugin cache folder (`None`: no disk cache).
    pub plugin_cache_dir: Option<PathBuf>,
    /// Sandbox limits.
    pub plugin_limits: PluginLimits,
    /// Routing policy for groups without their own.
    pub default_policy: PolicyChoice,
    /// Per-group routing policy.
    pub group_policies: HashMap<String, PolicyChoice>,
    /// Fallbacks, retries, cooldowns, aliases and auto models.
    pub routing: routing::Routing,
    /// Per group (and auto model): deployments of its related groups.
    pub related: HashMap<String, Vec<usize>>,
    /// Largest request body, bytes.
    pub max_request_body_bytes: usize,
    /// Largest non-streamed upstream body, bytes.
    pub max_response_body_bytes: usize,
    /// `general_settings.master_key`.
    pub master_key: Option<Secret>,
    /// The SQLite database file.
    pub database_path: PathBuf,
    /// Budget admission rule.
    pub budget_admission: crate::ledger::Admission,
    /// Output tokens a request without `max_tokens` reserves under `reserve` admission
    /// (capped at the model's output cap; see [`crate::ledger::cost`]).
    pub default_reserved_output_tokens: u64,
    /// Write spend log rows (`general_settings.disable_spend_logs: true` turns them off).
    pub spend_logs: bool,
    /// Keep request and response bodies in spend logs
    /// (`general_settings.store_prompts_in_spend_logs: true`).
    pub store_prompts: bool,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Longest a started stream may go without an upstream event (SSE comments do not count).
    pub stream_idle_timeout: Duration,
    /// Longest a stream may run (`None`: no limit).
    pub max_stream_duration: Option<Duration>,
    /// Watch the plugins folder and reload changed plugins.
    pub hot_reload: bool,
    /// Timeouts and the cap on client connections.
    pub client: ClientLimits,
    /// Things that were ignored or look wrong but do not stop the start.
    pub warnings: Vec<String>,
}

/// How long a client may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// From the first byte of a request head to its end (`client_header_timeout_seconds`,
    /// default 30 s).
    pub header_read_timeout: Duration,
    /// From connect, or the end of a response, to the next request's first byte
    /// (`client_idle_timeout_seconds`, default 75 s).
    pub idle_timeout: Duration,
    /// To read a whole request body (`client_body_timeout_seconds`, default 120 s).
    pub body_read_timeout: Duration,
    /// Connections open at once (`max_client_connections`); `None`: derived from the
    /// process's file descriptor limit at start.
    pub max_connections: Option<usize>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(120),
            max_connections: None,
        }
    }
}

/// The command-line overrides and quick-start models (`--model`, `--alias`, ...).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--model`: quick-start deployments, like `litellm --model`.
    pub models: Vec<String>,
    /// `--alias`: the name clients use for the first `--model`.
    pub alias: Option<String>,
    /// `--api_base` for the `--model` deployments.
    pub api_base: Option<String>,
    /// `--plugins-dir`.
    pub plugins_dir: Option<PathBuf>,
}

/// Every problem found while validating, one per line.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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

/// Load and validate `path`, then apply `overrides`.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", p.display())]))?;
            from_text(&text, &p.display().to_string(), overrides, &env)
        }
        None => validate(
            RawConfig::default(),
            "command line".to_string(),
            overrides,
            &env,
        ),
    }
}

/// Parse and validate a config text (`source` names it in messages), then apply
/// `overrides`. `env` looks environment variables up.
pub fn from_text(
    text: &str,
    source: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError(vec![format!("{source}: {e}")]))?
    };
    validate(raw, source.to_string(), overrides, env)
}

/// Validate a parsed config. `env` looks environment variables up (tests pass their own).
pub fn validate(
    raw: RawConfig,
    source: String,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut v = Validator {
        source: source.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let config_env: BTreeMap<String, String> = raw
        .environment_variables
        .iter()
        .filter_map(|(k, val)| scalar_string(val).map(|s| (k.clone(), s)))
        .collect();
    let lookup = |k: &str| config_env.get(k).cloned().or_else(|| env(k));

    for key in raw.other.keys() {
        v.warn(key, "unknown top-level key, ignored");
    }
    for key in raw.litellm_settings.keys() {
        if !matches!(
            key.as_str(),
            "request_timeout"
                | "drop_params"
                | "set_verbose"
                | "json_logs"
                | "num_retries"
                | "fallbacks"
                | "context_window_fallbacks"
                | "content_policy_fallbacks"
                | "default_fallbacks"
                | "allowed_fails"
                | "cooldown_time"
        ) {
            v.warn(
                &format!("litellm_settings.{key}"),
                "not supported yet, ignored",
            );
        }
    }
    let default_timeout = raw
        .litellm_settings
        .get("request_timeout")
        .and_then(|t| v.seconds("litellm_settings.request_timeout", t))
        .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS));

    let mut entries: Vec<(String, RawDeployment)> = raw
        .model_list
        .into_iter()
        .enumerate()
        .map(|(i, d)| (format!("model_list[{i}]"), d))
        .collect();
    let mut catch_all = None;
    for (i, m) in overrides.models.iter().enumerate() {
        let name = match (&overrides.alias, i) {
            (Some(alias), 0) => alias.clone(),
            _ => m.clone(),
        };
        if i == 0 {
            catch_all = Some(name.clone());
        }
        let mut params = BTreeMap::new();
        params.insert("model".to_string(), Value::String(m.clone()));
        if let Some(base) = &overrides.api_base {
            params.insert("api_base".to_string(), Value::String(base.clone()));
        }
        entries.push((
            format!("--model {m}"),
            RawDeployment {
                model_name: Some(Value::String(name)),
                litellm_params: Some(params),
                model_info: None,
                other: BTreeMap::new(),
            },
        ));
    }

    let mut deployments = Vec::new();
    for (at, d) in entries {
        if let Some(dep) = v.deployment(&at, d, deployments.len(), default_timeout, &lookup) {
            deployments.push(Arc::new(dep));
        }
    }
    let mut seen = HashMap::new();
    for d in &deployments {
        if let Some(prev) = seen.insert(d.id.clone(), d.model_name.clone()) {
            v.problem(
                "model_list",
                &format!(
                    "deployment id `{}` is used twice (groups {prev} and {})",
                    d.id, d.model_name
                ),
            );
        }
    }
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut wildcards: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in deployments.iter().enumerate() {
        if d.model_name.contains('*') {
            wildcards.entry(d.model_name.clone()).or_default().push(i);
        } else {
            groups.entry(d.model_name.clone()).or_default().push(i);
        }
    }
    let mut wildcards: Vec<(String, Vec<usize>)> = wildcards.into_iter().collect();
    // Most specific (longest literal part) first.
    wildcards.sort_by_key(|(p, _)| std::cmp::Reverse(p.replace('*', "").len()));

    let ll = raw.llmgate;
    let plugins_dir = overrides
        .plugins_dir
        .clone()
        .or_else(|| ll.plugins_dir.map(PathBuf::from))
        .or_else(|| env("LLMGATE_PLUGINS_DIR").map(PathBuf::from))
        .unwrap_or_else(default_plugins_dir);
    let plugin_cache_dir = ll
        .plugin_cache_dir
        .map(PathBuf::from)
        .or_else(|| env("LLMGATE_PLUGIN_CACHE_DIR").map(PathBuf::from))
        .or_else(|| {
            env("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("llmgate").join("wasmtime"))
        });
    let mut plugin_limits = PluginLimits::default();
    if let Some(m) = ll.plugin_limits.memory_mib {
        if (1..=4096).contains(&m) {
            plugin_limits.memory_bytes = (m as usize) << 20;
        } else {
            v.problem(
                "llmgate.plugin_limits.memory_mib",
                "must be between 1 and 4096",
            );
        }
    }
    if let Some(ms) = ll.plugin_limits.call_timeout_ms {
        if (1..=60_000).contains(&ms) {
            plugin_limits.call_timeout = Duration::from_millis(ms);
        } else {
            v.problem(
                "llmgate.plugin_limits.call_timeout_ms",
                "must be between 1 and 60000",
            );
        }
    }
    if let Some(n) = ll.plugin_limits.max_instances {
        if (1..=100_000).contains(&n) {
            plugin_limits.max_instances = n;
        } else {
            v.problem(
                "llmgate.plugin_limits.max_instances",
                "must be between 1 and 100000",
            );
        }
    }
    let group_names: Vec<String> = groups.keys().cloned().collect();
    let routing = routing::parse(
        &mut v,
        &raw.router_settings,
        &raw.litellm_settings,
        ll.routing.auto.clone(),
        &group_names,
    );
    let routing_view = routing.policy_view();
    // The policy's config: the routing settings, under the policy's own config.
    let merged = |own: serde_json::Value| -> serde_json::Value {
        let mut base = routing_view.clone();
        if let (Some(b), serde_json::Value::Object(o)) = (base.as_object_mut(), own) {
            for (k, val) in o {
                b.insert(k, val);
            }
        }
        base
    };
    let default_config = v.policy_config(
        "llmgate.routing.default_policy_config",
        ll.routing.default_policy_config,
    );
    let default_policy = PolicyChoice {
        policy: ll.routing.default_policy.unwrap_or_else(|| "router".into()),
        config_json: Arc::from(
            merged(serde_json::from_str(&default_config).unwrap_or_default()).to_string(),
        ),
    };
    let mut group_policies = HashMap::new();
    for (group, g) in ll.routing.groups {
        let at = format!("llmgate.routing.groups.{group}");
        if !groups.contains_key(&group)
            && !wildcards.iter().any(|(p, _)| *p == group)
            && !routing.is_auto(&group)
        {
            v.problem(&at, "names a model group that model_list does not define");
        }
        let own = v.policy_config(&format!("{at}.config"), g.config);
        let choice = PolicyChoice {
            policy: g.policy.unwrap_or_else(|| default_policy.policy.clone()),
            config_json: Arc::from(
                merged(serde_json::from_str(&own).unwrap_or_default()).to_string(),
            ),
        };
        group_policies.insert(group, choice);
    }
    let master_key = match raw.general_settings.get("master_key") {
        // A master key the config names but that cannot be had must not start the gateway
        // with authentication off.
        Some(k) => master_key(&mut v, k, &lookup),
        None => lookup("LLMGATE_MASTER_KEY")
            .or_else(|| lookup("LITELLM_MASTER_KEY"))
            .filter(|k| !k.is_empty())
            .map(Secret),
    };
    refuse_unsupported_auth(&mut v, &raw.general_settings);

    let database_path = match raw.general_settings.get("database_url") {
        Some(u) => match scalar_string(u) {
            Some(u) => {
                let u = match u.strip_prefix("os.environ/") {
                    Some(var) => lookup(var).unwrap_or_default(),
                    None => u,
                };
                if let Some(p) = u
                    .strip_prefix("sqlite:///")
                    .map(|p| format!("/{p}"))
                    .or_else(|| u.strip_prefix("sqlite://").map(str::to_string))
                    .or_else(|| u.strip_prefix("sqlite:").map(str::to_string))
                    .or_else(|| u.strip_prefix("file:").map(str::to_string))
                {
                    Some(PathBuf::from(p))
                } else {
                    v.problem(
                        "general_settings.database_url",
                        "only SQLite is supported so far (`sqlite:///path/to/llmgate.db`); PostgreSQL is planned",
                    );
                    None
                }
            }
            None => {
                v.problem("general_settings.database_url", "must be a string");
                None
            }
        },
        None => None,
    }
    .or_else(|| ll.database_path.as_ref().map(PathBuf::from))
    .unwrap_or_else(crate::store::default_path);
    let budget_admission = match ll.budget_admission.as_deref() {
        None | Some("reserve") => crate::ledger::Admission::Reserve,
        Some("strict") => crate::ledger::Admission::Strict,
        Some(other) => {
            v.problem(
                "llmgate.budget_admission",
                &format!("`{other}` is not a rule: use `reserve` or `strict`"),
            );
            crate::ledger::Admission::Reserve
        }
    };
    let default_reserved_output_tokens = match ll.default_reserved_output_tokens {
        None => crate::ledger::cost::DEFAULT_RESERVED_OUTPUT_TOKENS,
        Some(n) if (1..=10_000_000).contains(&n) => n,
        Some(_) => {
            v.problem(
                "llmgate.default_reserved_output_tokens",
                "must be between 1 and 10000000",
            );
            crate::ledger::cost::DEFAULT_RESERVED_OUTPUT_TOKENS
        }
    };
    if ll.stream_idle_timeout_seconds == Some(0) {
        v.problem(
            "llmgate.stream_idle_timeout_seconds",
            "must be at least 1 (seconds without an upstream event before a stream fails)",
        );
    }
    let flag = |v: &mut Validator, k: &str| -> bool {
        match raw.general_settings.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                v.problem(&format!("general_settings.{k}"), "must be true or false");
                false
            }
        }
    };
    let spend_logs = !flag(&mut v, "disable_spend_logs");
    let store_prompts = flag(&mut v, "store_prompts_in_spend_logs");

    let related: HashMap<String, Vec<usize>> = {
        let mut names: Vec<String> = groups.keys().cloned().collect();
        names.extend(wildcards.iter().map(|(p, _)| p.clone()));
        if let Some(a) = &routing.auto {
            names.extend(a.names.iter().cloned());
        }
        names
            .into_iter()
            .map(|g| {
                let idx: Vec<usize> = routing
                    .related_groups(&g)
                    .iter()
                    .filter_map(|r| groups.get(r))
                    .flatten()
                    .copied()
                    .collect();
                (g, idx)
            })
            .filter(|(_, idx)| !idx.is_empty())
            .collect()
    };
    let client = {
        let d = ClientLimits::default();
        let mut secs = |at: &str, n: Option<f64>, default: Duration| match n {
            None => default,
            Some(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
            Some(_) => {
                v.problem(at, "must be a positive number of seconds");
                default
            }
        };
        ClientLimits {
            header_read_timeout: secs(
                "llmgate.client_header_timeout_seconds",
                ll.client_header_timeout_seconds,
                d.header_read_timeout,
            ),
            idle_timeout: secs(
                "llmgate.client_idle_timeout_seconds",
                ll.client_idle_timeout_seconds,
                d.idle_timeout,
            ),
            body_read_timeout: secs(
                "llmgate.client_body_timeout_seconds",
                ll.client_body_timeout_seconds,
                d.body_read_timeout,
            ),
            max_connections: match ll.max_client_connections {
                Some(0) => {
                    v.problem("llmgate.max_client_connections", "must be at least 1");
                    None
                }
                n => n,
            },
        }
    };
    let Validator {
        problems, warnings, ..
    } = v;
    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    Ok(Config {
        source,
        deployments,
        groups,
        wildcards,
        catch_all,
        plugins_dir,
        plugin_cache_dir,
        plugin_limits,
        default_policy,
        group_policies,
        related,
        routing,
        max_request_body_bytes: ll.max_request_body_bytes.unwrap_or(32 << 20),
        max_response_body_bytes: ll.max_response_body_bytes.unwrap_or(64 << 20),
        master_key,
        database_path,
        budget_admission,
        default_reserved_output_tokens,
        spend_logs,
        store_prompts,
        shutdown_grace: Duration::from_secs(ll.shutdown_grace_seconds.unwrap_or(30)),
        stream_idle_timeout: Duration::from_secs(ll.stream_idle_timeout_seconds.unwrap_or(600)),
        max_stream_duration: Some(ll.max_stream_duration_seconds.unwrap_or(3600))
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        hot_reload: ll.hot_reload.unwrap_or(true),
        client,
        warnings,
    })
}

/// `general_settings.master_key`: a literal or `os.environ/VAR`. Unset, empty or not a
/// string is a problem that stops the start, naming the variable.
fn master_key(
    v: &mut Validator,
    k: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Secret> {
    const AT: &str = "general_settings.master_key";
    let Some(s) = scalar_string(k) else {
        v.problem(AT, "must be a string (the key itself, or os.environ/VAR)");
        return None;
    };
    let key = match s.strip_prefix("os.environ/") {
        Some(var) => match env(var) {
            Some(val) if !val.is_empty() => val,
            Some(_) => {
                v.problem(AT, &format!("environment variable {var} is empty: refusing to start with authentication off"));
                return None;
            }
            None => {
                v.problem(AT, &format!("environment variable {var} is not set: refusing to start with authentication off"));
                return None;
            }
        },
        None if s.is_empty() => {
            v.problem(AT, "is empty: refusing to start with authentication off (remove it to run without a master key)");
            return None;
        }
        None => s,
    };
    Some(Secret(key))
}

/// `general_settings` keys that change who may call the gateway and that llmgate does not
/// implement yet. Ignoring one could run the gateway with weaker authentication than the
/// config asks for, so each stops the start.
const UNSUPPORTED_AUTH_SETTINGS: &[(&str, &str)] = &[
    ("custom_auth", "a custom authentication function"),
    (
        "custom_auth_settings",
        "settings of a custom authentication function",
    ),
    ("enable_jwt_auth", "JWT authentication"),
    ("litellm_jwtauth", "JWT authentication"),
    ("enable_oauth2_auth", "OAuth2 authentication"),
    ("enable_oauth2_proxy_auth", "OAuth2 proxy authentication"),
    ("custom_sso", "a custom SSO handler"),
    ("allowed_ips", "an IP allow-list"),
    ("allowed_routes", "a route allow-list"),
    ("admin_only_routes", "routes restricted to admins"),
    (
        "enforce_user_param",
        "requiring the `user` field on every request",
    ),
];

fn refuse_unsupported_auth(v: &mut Validator, general: &BTreeMap<String, Value>) {
    for (key, what) in UNSUPPORTED_AUTH_SETTINGS {
        let set = match general.get(*key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty() && !s.eq_ignore_ascii_case("false"),
            Some(Value::Sequence(items)) => !items.is_empty(),
            Some(_) => true,
        };
        if set {
            v.problem(
                &format!("general_settings.{key}"),
                &format!("{what} is not supported by llmgate yet; refusing to start rather than serve with weaker authentication than the config asks for (remove the setting to use master and virtual keys)"),
            );
        }
    }
}

/// `plugins/dist` next to the executable's workspace when run from a checkout, else `./plugins`.
fn default_plugins_dir() -> PathBuf {
    let dist = PathBuf::from("plugins/dist");
    if dist.is_dir() {
        dist
    } else {
        PathBuf::from("plugins")
    }
}

/// A matched model group and, for wildcards, the part `*` stood for.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    /// The group's name (the pattern for wildcards).
    pub group: &'a str,
    /// Deployment indices.
    pub deployments: &'a [usize],
    /// What `*` matched, for wildcard groups.
    pub capture: Option<String>,
}

impl Config {
    /// Find the group serving `model`: an exact group, then wildcards, then the catch-all.
    pub fn resolve(&self, model: &str) -> Option<Resolved<'_>> {
        if let Some((name, idx)) = self.groups.get_key_value(model) {
            return Some(Resolved {
                group: name,
                deployments: idx,
                capture: None,
            });
        }
        // `router_settings.model_group_alias`.
        if let Some((name, idx)) = self
            .routing
            .aliases
            .get(model)
            .and_then(|target| self.groups.get_key_value(target))
        {
            return Some(Resolved {
                group: name,
                deployments: idx,
                capture: None,
            });
        }
        // Auto models: no deployments of their own; the policy picks among related groups.
        if let Some(name) = self
            .routing
            .auto
            .as_ref()
            .and_then(|a| a.names.iter().find(|n| *n == model))
        {
            return Some(Resolved {
                group: name,
                deployments: &[],
                capture: None,
            });
        }
        for (pattern, idx) in &self.wildcards {
            if let Some(capture) = wildcard_match(pattern, model) {
                return Some(Resolved {
                    group: pattern,
                    deployments: idx,
                    capture: Some(capture),
                });
            }
        }
        let name = self.catch_all.as_deref()?;
        let (name, idx) = self.groups.get_key_value(name)?;
        Some(Resolved {
            group: name,
            deployments: idx,
            capture: None,
        })
    }

    /// Deployments (indices) of the groups a request for `group` may fall back or be
    /// routed to, besides its own.
    pub fn related_deployments(&self, group: &str) -> &[usize] {
        self.related.get(group).map_or(&[], Vec::as_slice)
    }

    /// The routing policy for a group.
    pub fn policy_for(&self, group: &str) -> &PolicyChoice {
        self.group_policies
            .get(group)
            .unwrap_or(&self.default_policy)
    }
}

/// Match `model` against a pattern with one `*`; returns what `*` stood for.
fn wildcard_match(pattern: &str, model: &str) -> Option<String> {
    let (pre, post) = pattern.split_once('*')?;
    if model.len() >= pre.len() + post.len() && model.starts_with(pre) && model.ends_with(post) {
        Some(model[pre.len()..model.len() - post.len()].to_string())
    } else {
        None
    }
}

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

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

struct Validator {
    source: String,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Validator {
    fn problem(&mut self, at: &str, what: &str) {
        self.problems.push(format!("{}: {at}: {what}", self.source));
    }

    fn warn(&mut self, at: &str, what: &str) {
        self.warnings.push(format!("{}: {at}: {what}", self.source));
    }

    /// A string value, resolving `os.environ/VAR`. Missing variables give `None` and a warning.
    fn string(
        &mut self,
        at: &str,
        v: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let Some(s) = scalar_string(v) else {
            self.problem(at, "must be a string");
            return None;
        };
        match s.strip_prefix("os.environ/") {
            Some(var) => {
                let val = env(var);
                if val.is_none() {
                    self.warn(at, &format!("environment variable {var} is not set"));
                }
                val
            }
            None => Some(s),
        }
    }

    fn secret(
        &mut self,
        at: &str,
        v: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Secret> {
        self.string(at, v, env)
            .filter(|s| !s.is_empty())
            .map(Secret)
    }

    fn seconds(&mut self, at: &str, v: &Value) -> Option<Duration> {
        let secs = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match secs {
            Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
            _ => {
                self.problem(at, "must be a positive number of seconds");
                None
            }
        }
    }

    fn uint(&mut self, at: &str, v: Option<&Value>) -> Option<u32> {
        let v = v?;
        match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if n <= u64::from(u32::MAX) => Some(n as u32),
            _ => {
                self.problem(at, "must be a non-negative integer");
                None
            }
        }
    }

    fn policy_config(&mut self, at: &str, v: Option<serde_json::Value>) -> Arc<str> {
        match v {
            None | Some(serde_json::Value::Null) => Arc::from("{}"),
            Some(obj @ serde_json::Value::Object(_)) => Arc::from(obj.to_string()),
            Some(_) => {
                self.problem(at, "must be a mapping");
                Arc::from("{}")
            }
        }
    }

    fn deployment(
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
            prices: crate::ledger::cost::Prices::from_info(&info),
            api_base_origin: api_base.as_deref().and_then(crate::gateway::origin_of),
            api_base: api_base.is_some().then(|| base_parts.public.clone()),
            api_base_credentials: base_parts,
            info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        validate(
            raw,
            "config.yaml".into(),
            &Overrides::default(),
            &move |k| env.get(k).cloned(),
        )
    }

    #[test]
    fn reads_litellm_seed_config() {
        let c = parse(
            "model_list:\n  - model_name: claude-opus-4-6\n    litellm_params:\n      model: claude-opus-4-6\n      api_key: os.environ/ANTHROPIC_API_KEY\n  - model_name: gpt-4o\n    litellm_params:\n      model: gpt-4o\n      api_key: os.environ/OPENAI_API_KEY\n",
            &[("OPENAI_API_KEY", "sk-x")],
        )
        .unwrap();
        assert_eq!(c.deployments[0].provider, "anthropic");
        assert_eq!(c.deployments[1].provider, "openai");
        assert_eq!(c.deployments[1].api_key.as_ref().unwrap().expose(), "sk-x");
        assert!(c.deployments[0].api_key.is_none());
        assert!(c.warnings.iter().any(|w| w.contains("ANTHROPIC_API_KEY")));
    }

    #[test]
    fn reports_every_problem_with_file_and_key() {
        let err = parse(
            "model_list:\n  - litellm_params: {model: openai/x}\n  - model_name: a\n    litellm_params: {model: mystery-model}\n  - model_name: b\n    litellm_params: {model: openai/b, api_base: ftp://x, timeout: -1}\n",
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        assert!(text.contains("config.yaml: model_list[0].model_name: missing"));
        assert!(text.contains("model_list[1].litellm_params.model: cannot tell the provider"));
        assert!(text.contains("model_list[2].litellm_params.api_base"));
        assert!(text.contains("model_list[2].litellm_params.timeout"));
    }

    #[test]
    fn resolves_groups_wildcards_and_secrets_stay_out_of_params() {
        let c = parse(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o, api_key: sk-secret, temperature: 0.2}\n  - model_name: openai/*\n    litellm_params: {model: openai/*}\n",
            &[],
        )
        .unwrap();
        assert!(!c.deployments[0].params_json.contains("sk-secret"));
        assert!(c.deployments[0].params_json.contains("temperature"));
        assert_eq!(c.resolve("gpt-4o").unwrap().group, "gpt-4o");
        let r = c.resolve("openai/gpt-4.1-mini").unwrap();
        assert_eq!(r.capture.as_deref(), Some("gpt-4.1-mini"));
        assert!(c.resolve("claude").is_none());
    }
}
