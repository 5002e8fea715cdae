//! Configuration: the LiteLLM-compatible `config.yaml` ([`raw`]) validated into a [`Config`].
//!
//! Validation reports every problem at once, each naming the file, the key and what is
//! wrong. Keys that LiteLLM knows but llmgate does not act on produce warnings, so a
//! LiteLLM user's config starts unchanged.

pub mod alerting;
mod deployment;
pub mod env;
pub mod health;
mod load;
pub mod postgres;
pub mod raw;
mod redis;
mod reload;
mod resolve;
pub mod routing;
pub mod secrets;
mod validate;
mod validator;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use env::Environment;
pub use load::{from_text, load, wants_json_logs};
pub use reload::keep_restart_settings;
pub use resolve::Resolved;
pub use validate::validate;
use validator::Validator;

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
    /// The environment as read at load: the provider keys its prefix names
    /// (`api_key_env`) and the AWS credentials and region when the params leave them out.
    pub env: Arc<Environment>,
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
    pub prices: crate::pricing::Prices,
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

/// How the budget check treats a request's worst-case cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Admit while `spend + reserved < max_budget`; a request without `max_tokens`
    /// reserves the bounded default output.
    #[default]
    Reserve,
    /// Admit only if `spend + reserved + this request's reservation <= max_budget`; a
    /// request without `max_tokens` reserves the model's whole output cap.
    Strict,
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
    /// The SQLite database file (see [`crate::store::default_path`] for the default).
    pub database_path: PathBuf,
    /// The PostgreSQL store, when chosen (`database_url`, `DATABASE_URL`); then
    /// `database_path` is not used.
    pub postgres: Option<postgres::Postgres>,
    /// Budget admission rule.
    pub budget_admission: Admission,
    /// Output tokens a request without `max_tokens` reserves under `reserve` admission
    /// (capped at the model's output cap; see [`crate::pricing`]).
    pub default_reserved_output_tokens: u64,
    /// Write spend log rows (`general_settings.disable_spend_logs: true` turns them off).
    pub spend_logs: bool,
    /// Keep request and response bodies in spend logs
    /// (`general_settings.store_prompts_in_spend_logs: true`).
    pub store_prompts: bool,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Write the access log line of every request (`llmgate.access_log`, default true).
    pub access_log: bool,
    /// The logging callbacks LiteLLM's settings name (`litellm_settings.callbacks`,
    /// `success_callback`, `failure_callback`), each once, in order.
    pub callbacks: Vec<String>,
    /// Serve Prometheus metrics at `/metrics` (`llmgate.metrics`, or `prometheus` among the
    /// callbacks).
    pub metrics: bool,
    /// `/metrics` asks for the master key
    /// (`litellm_settings.require_auth_for_metrics_endpoint`).
    pub metrics_auth: bool,
    /// Longest a started stream may go without an upstream event (SSE comments do not count).
    pub stream_idle_timeout: Duration,
    /// Longest a stream may run (`None`: no limit).
    pub max_stream_duration: Option<Duration>,
    /// Watch the plugins folder and reload changed plugins.
    pub hot_reload: bool,
    /// Watch the config file and reload it when it changes (`llmgate.watch_config`).
    pub watch_config: bool,
    /// Timeouts and the cap on client connections.
    pub client: ClientLimits,
    /// Active health checks of the deployments (`GET /health`, background rounds).
    pub health_checks: health::HealthChecks,
    /// Slack and webhook alerts (`general_settings.alerting`).
    pub alerting: alerting::Alerting,
    /// The Redis several instances share cooldowns and rpm/tpm windows through
    /// (`router_settings.redis_*`, or `REDIS_URL`/`REDIS_HOST`); `None`: state is local.
    pub redis: Option<crate::shared::Target>,
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
    /// The folder of the `--config` file, where the database file is unless the config or
    /// `LLMGATE_DB` names one (`None`: the working directory). [`load`] sets it from the
    /// file it reads when left `None`.
    pub config_dir: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;

    use raw::RawConfig;

    fn parse(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(yaml).unwrap();
        validate(
            raw,
            "config.yaml".into(),
            &Overrides::default(),
            &env.iter().copied().collect(),
        )
    }

    /// What `yaml` (read with an empty environment) is refused for.
    fn refused(yaml: &str) -> ConfigError {
        parse(yaml, &[]).unwrap_err()
    }

    /// [`refused`]'s problems, each without the file name in front.
    fn problems(yaml: &str) -> Vec<String> {
        let strip = |p: &String| p.strip_prefix("config.yaml: ").unwrap_or(p).to_string();
        refused(yaml).0.iter().map(strip).collect()
    }

    #[test]
    fn deployments_keep_the_environment_read_at_load() {
        // The provider key a plugin's prefix names is looked up in this snapshot on every
        // attempt, never in the live process environment.
        let c = parse(
            "model_list:\n  - model_name: gpt-4o\n    litellm_params: {model: openai/gpt-4o}\n",
            &[("OPENAI_API_KEY", "sk-at-load"), ("AWS_REGION", "")],
        )
        .unwrap();
        let env = &c.deployments[0].env;
        assert_eq!(
            env.non_empty("OPENAI_API_KEY").as_deref(),
            Some("sk-at-load")
        );
        assert_eq!(env.get("AWS_REGION"), Some(""));
        assert_eq!(
            env.get("HOME"),
            None,
            "the test's environment, not the process's"
        );
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
        let err = refused(
            "model_list:\n  - litellm_params: {model: openai/x}\n  - model_name: a\n    litellm_params: {model: mystery-model}\n  - model_name: b\n    litellm_params: {model: openai/b, api_base: ftp://x, timeout: -1}\n",
        );
        let text = err.to_string();
        assert_eq!(err.0.len(), 4, "{text}");
        assert!(text.contains("config.yaml: model_list[0].model_name: missing"));
        assert!(text.contains("model_list[1].litellm_params.model: cannot tell the provider"));
        assert!(text.contains("model_list[2].litellm_params.api_base"));
        assert!(text.contains("model_list[2].litellm_params.timeout"));
    }

    /// The config fuzzer's crash: a timeout of 1e60 seconds made `Duration::from_secs_f64`
    /// panic, and a stream limit past the clock's range would panic on the first stream.
    /// Every wait a config names is refused past a year, with the key.
    #[test]
    fn refuses_waits_past_a_year_instead_of_panicking() {
        let err = refused(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, timeout: 1233333333333333333333333333333333333333333333333333333333330, stream_timeout: 31536001}\nlitellm_settings: {request_timeout: .inf}\nrouter_settings: {cooldown_time: 1e300}\nllmgate: {client_idle_timeout_seconds: 1e20, max_stream_duration_seconds: 18446744073709551615, shutdown_grace_seconds: 31536001, stream_idle_timeout_seconds: 99999999999}\n",
        );
        let text = err.to_string();
        for key in [
            "model_list[0].litellm_params.timeout",
            "model_list[0].litellm_params.stream_timeout",
            "litellm_settings.request_timeout",
            "router_settings.cooldown_time",
            "llmgate.client_idle_timeout_seconds",
            "llmgate.max_stream_duration_seconds",
            "llmgate.shutdown_grace_seconds",
            "llmgate.stream_idle_timeout_seconds",
        ] {
            assert!(text.contains(key), "{key} not refused: {text}");
        }
        let c = parse(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, timeout: 31536000}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.deployments[0].timeout,
            std::time::Duration::from_secs(31_536_000)
        );
    }

    /// Something wrong in every section (see [`reports_problems_section_by_section_in_order`]).
    const SECTIONS_YAML: &str = r#"
surprise: 1
litellm_settings: {request_timeout: -1, telemetry: true}
model_list:
  - litellm_params: {model: openai/x}
  - model_name: a
    flavour: 1
    litellm_params:
      model: openai/a
      custom_llm_provider: [p]
      api_base: ftp://x
      api_version: [1]
      api_key: {k: 1}
      aws_session_token: [t]
      timeout: 0
      stream_timeout: -3
      weight: -1
      rpm: x
      tpm: y
      order: z
      region: os.environ/NOT_SET_ANYWHERE
      extra_headers: {"bad header": v, good: [1]}
  - model_name: b
    litellm_params: {model: openai/b}
    model_info: {id: same}
  - model_name: c
    litellm_params: {model: openai/c}
    model_info: {id: same}
  - model_name: d
    litellm_params: {model: mystery-model}
  - model_name: e
    litellm_params: {model: openai/*, extra_headers: 3}
router_settings: {routing_strategy: bogus, num_retries: -1, cache: true}
general_settings:
  master_key: ""
  custom_auth: my.module
  database_url: mysql://x
  disable_spend_logs: maybe
  store_prompts_in_spend_logs: 3
llmgate:
  plugin_limits: {memory_mib: 0, call_timeout_ms: 0, max_instances: 0}
  routing:
    default_policy_config: 5
    groups: {nope: {config: 3}}
  budget_admission: lax
  default_reserved_output_tokens: 0
  stream_idle_timeout_seconds: 0
  max_stream_duration_seconds: 99999999999
  shutdown_grace_seconds: 31536001
  client_header_timeout_seconds: 0
  client_idle_timeout_seconds: -1
  client_body_timeout_seconds: 1e20
  max_client_connections: 0
"#;

    /// A config with something wrong in every section: every problem is reported, in the
    /// order the sections are read (deployments, plugin limits, routing, policies, general
    /// settings, admission, waits, spend logs, client limits), and so is every warning.
    #[test]
    fn reports_problems_section_by_section_in_order() {
        let got = problems(SECTIONS_YAML);
        let year = "must be a positive number of seconds, at most 31536000";
        let m1 = "model_list[1].litellm_params";
        let expected = [
            format!("litellm_settings.request_timeout: {year}"),
            "model_list[0].model_name: missing (the name clients ask for)".into(),
            format!("{m1}.custom_llm_provider: must be a string"),
            format!("{m1}.api_base: must start with http:// or https://"),
            format!("{m1}.api_version: must be a string"),
            format!("{m1}.api_key: must be a string"),
            format!("{m1}.aws_session_token: must be a string"),
            format!("{m1}.timeout: {year}"),
            format!("{m1}.stream_timeout: {year}"),
            format!("{m1}.weight: must be a non-negative integer"),
            format!("{m1}.rpm: must be a non-negative integer"),
            format!("{m1}.tpm: must be a non-negative integer"),
            format!("{m1}.order: must be a non-negative integer"),
            format!("{m1}.extra_headers: `bad header` is not a valid header name"),
            format!("{m1}.extra_headers.good: must be a string"),
            "model_list[4].litellm_params.model: cannot tell the provider of `mystery-model`; write it as provider/model (e.g. openai/mystery-model)".into(),
            "model_list[5].litellm_params.model: a wildcard model needs a wildcard model_name (e.g. `openai/*`)".into(),
            "model_list[5].litellm_params.extra_headers: must be a mapping of header names to values".into(),
            "model_list: deployment id `same` is used twice (groups b and c)".into(),
            "llmgate.plugin_limits.memory_mib: must be between 1 and 4096".into(),
            "llmgate.plugin_limits.call_timeout_ms: must be between 1 and 60000".into(),
            "llmgate.plugin_limits.max_instances: must be between 1 and 100000".into(),
            "router_settings.num_retries: must be a non-negative integer".into(),
            "router_settings.routing_strategy: `bogus` is not a strategy; use one of simple-shuffle, least-busy, latency-based-routing, usage-based-routing, usage-based-routing-v2, cost-based-routing, ordered".into(),
            "llmgate.routing.default_policy_config: must be a mapping".into(),
            "llmgate.routing.groups.nope: names a model group that model_list does not define".into(),
            "llmgate.routing.groups.nope.config: must be a mapping".into(),
            "general_settings.master_key: is empty: refusing to start with authentication off (remove it to run without a master key)".into(),
            "general_settings.custom_auth: a custom authentication function is not supported by llmgate yet; refusing to start rather than serve with weaker authentication than the config asks for (remove the setting to use master and virtual keys)".into(),
            "general_settings.database_url: must be a postgresql:// or sqlite:/// URL (`postgresql://user:password@host:5432/llmgate`, `sqlite:///path/to/llmgate.db`)".into(),
            "llmgate.budget_admission: `lax` is not a rule: use `reserve` or `strict`".into(),
            "llmgate.default_reserved_output_tokens: must be between 1 and 10000000".into(),
            "llmgate.stream_idle_timeout_seconds: must be at least 1 (seconds without an upstream event before a stream fails)".into(),
            "llmgate.max_stream_duration_seconds: must be at most 31536000 seconds (a year)".into(),
            "llmgate.shutdown_grace_seconds: must be at most 31536000 seconds (a year)".into(),
            "general_settings.disable_spend_logs: must be true or false".into(),
            "general_settings.store_prompts_in_spend_logs: must be true or false".into(),
            format!("llmgate.client_header_timeout_seconds: {year}"),
            format!("llmgate.client_idle_timeout_seconds: {year}"),
            format!("llmgate.client_body_timeout_seconds: {year}"),
            "llmgate.max_client_connections: must be at least 1".into(),
        ];
        assert_eq!(got, expected);
    }

    /// The routing settings' problems, in the order they are read: fallbacks of each kind,
    /// the default fallbacks, aliases, then the auto model's names and targets.
    #[test]
    fn reports_routing_problems_in_order() {
        let got = problems(
            r#"
model_list:
  - {model_name: a, litellm_params: {model: openai/a}}
  - {model_name: b, litellm_params: {model: openai/b}}
router_settings:
  fallbacks: [{a: [zz]}, 5]
  context_window_fallbacks: {nope: [a]}
  content_policy_fallbacks: 3
  default_fallbacks: 7
  retry_after: -2
  model_group_alias: {x: nope, 3: a}
llmgate:
  routing:
    auto: {strong: a, fast: b, models: [x, 3, a], default: c, modes: {m: zz}, features: 3}
"#,
        );
        assert_eq!(
            got,
            [
                "router_settings.fallbacks[1]: must be a mapping like {\"gpt-4o\": [\"claude-sonnet\"]}",
                "router_settings.fallbacks.a: fallback `zz` is not a model group in model_list",
                "router_settings.context_window_fallbacks.nope: names a model group that model_list does not define",
                "router_settings.content_policy_fallbacks: must be a list like [{\"gpt-4o\": [\"claude-sonnet\"]}]",
                "router_settings.default_fallbacks: must be a list of model group names",
                "router_settings.retry_after: must be a positive number of seconds, at most 31536000",
                "router_settings.model_group_alias.x: `nope` is not a model group in model_list",
                "router_settings.model_group_alias: must map names to model group names",
                "llmgate.routing.auto.models: must be a list of names",
                "llmgate.routing.auto.models: `a` is also a model group in model_list",
                "llmgate.routing.auto.default: `c` is neither strong, fast nor a model group",
                "llmgate.routing.auto.modes.m: `zz` is neither strong, fast nor a model group",
                "llmgate.routing.auto.features: must be a mapping of name to strong, fast or a model group",
            ]
        );
    }

    /// Warnings are kept in the order the sections are read too, and a config with only
    /// warnings starts.
    #[test]
    fn warns_section_by_section_in_order() {
        let c = parse(
            "surprise: 1\nlitellm_settings: {telemetry: true}\nmodel_list:\n  - model_name: a\n    flavour: 1\n    litellm_params: {model: openai/a, api_key: os.environ/NO_KEY, region: os.environ/NO_REGION}\nrouter_settings: {cache: true}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.warnings,
            [
                "config.yaml: surprise: unknown top-level key, ignored",
                "config.yaml: litellm_settings.telemetry: not supported yet, ignored",
                "config.yaml: model_list[0].flavour: unknown key, ignored",
                "config.yaml: model_list[0].litellm_params.api_key: environment variable NO_KEY is not set",
                "config.yaml: model_list[0].litellm_params.region: environment variable NO_REGION is not set",
                "config.yaml: router_settings.cache: not supported yet, ignored",
            ]
        );
    }

    /// `--model` entries follow `model_list`: the first is named by `--alias` and serves any
    /// other name, `--api_base` applies to all, and their problems name the flag.
    #[test]
    fn quick_start_models_follow_the_model_list() {
        let overrides = |api_base: &str| Overrides {
            models: vec!["openai/gpt-4o".into(), "claude-sonnet-4".into()],
            alias: Some("fast".into()),
            api_base: Some(api_base.into()),
            plugins_dir: None,
            config_dir: None,
        };
        let raw: RawConfig = serde_yaml_ng::from_str(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n",
        )
        .unwrap();
        let env = Environment::default();
        let c = validate(raw, "c.yaml".into(), &overrides("http://up"), &env).unwrap();
        let names: Vec<(&str, &str, Option<&str>)> = c
            .deployments
            .iter()
            .map(|d| (d.id.as_str(), d.provider.as_str(), d.api_base.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("a-0", "openai", None),
                ("fast-1", "openai", Some("http://up")),
                ("claude-sonnet-4-2", "anthropic", Some("http://up")),
            ]
        );
        assert_eq!(c.catch_all.as_deref(), Some("fast"));
        assert_eq!(c.resolve("anything").unwrap().group, "fast");
        let err = validate(
            RawConfig::default(),
            "command line".into(),
            &overrides("ftp://up"),
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "command line: --model openai/gpt-4o.litellm_params.api_base: must start with http:// or https://",
                "command line: --model claude-sonnet-4.litellm_params.api_base: must start with http:// or https://",
            ]
        );
    }

    /// The `llmgate:` waits in whole seconds follow the one-year rule of every other wait:
    /// a year is the longest accepted, and 0 keeps its meaning where it has one.
    #[test]
    fn whole_second_waits_stop_at_a_year() {
        let c = parse(
            "llmgate: {shutdown_grace_seconds: 31536000, stream_idle_timeout_seconds: 31536000, max_stream_duration_seconds: 0}\n",
            &[],
        )
        .unwrap();
        let year = std::time::Duration::from_secs(31_536_000);
        assert_eq!(c.shutdown_grace, year);
        assert_eq!(c.stream_idle_timeout, year);
        assert_eq!(c.max_stream_duration, None, "0: no limit");
        let c = parse(
            "llmgate: {shutdown_grace_seconds: 0, max_stream_duration_seconds: 31536000}\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.shutdown_grace, std::time::Duration::ZERO);
        assert_eq!(c.max_stream_duration, Some(year));
        let c = parse("", &[]).unwrap();
        let secs = |d: std::time::Duration| d.as_secs();
        assert_eq!(
            (
                secs(c.shutdown_grace),
                secs(c.stream_idle_timeout),
                c.max_stream_duration.map(secs)
            ),
            (30, 600, Some(3600)),
            "the defaults"
        );
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
