//! Validation of a parsed config into a [`Config`]: every problem is collected (each naming
//! the file and the key) before failing; the deployments are in [`super::deployment`].
//!
//! [`validate`] reads the sections in a fixed order (the order their problems are reported
//! in); each section is a function below that reads one part of the raw config and returns
//! its typed piece.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::env::Environment;
use super::raw::{RawConfig, RawDeployment, RawLlmgate, RawPluginLimits, RawRouting};
use super::validator::{Validator, scalar_string};
use super::*;

/// Validate a parsed config. `environment` is the environment it reads (tests pass their
/// own); every deployment keeps it for the keys its provider names.
pub fn validate(
    raw: RawConfig,
    source: String,
    overrides: &Overrides,
    environment: &Environment,
) -> Result<Config, ConfigError> {
    let mut v = Validator::new(source.clone(), environment, &raw.environment_variables);
    unknown_keys(&mut v, &raw);
    let default_timeout = request_timeout(&mut v, &raw.litellm_settings);
    let (quick, catch_all) = quick_start(overrides);
    let deployments = deployments(&mut v, &raw.model_list, &quick, default_timeout);
    let (groups, wildcards) = model_groups(&deployments);
    let ll = &raw.llmgate;
    let (plugins_dir, plugin_cache_dir) = plugin_dirs(&v, overrides, ll);
    let plugin_limits = plugin_limits(&mut v, &ll.plugin_limits);
    let routing = routing::parse(&mut v, &raw, &groups);
    let known = |g: &str| {
        groups.contains_key(g) || wildcards.iter().any(|(p, _)| p == g) || routing.is_auto(g)
    };
    let (default_policy, group_policies) = policies(&mut v, &ll.routing, &routing, &known);
    let master_key = master_key(&mut v, &raw.general_settings);
    refuse_unsupported_auth(&mut v, &raw.general_settings);
    let database_path = database_path(
        &mut v,
        &raw.general_settings,
        ll.database_path.as_deref(),
        overrides.config_dir.as_deref(),
    );
    let postgres = super::postgres::parse(
        &mut v,
        &raw.general_settings,
        ll.database_path.as_deref(),
        (ll.database_wait_seconds, ll.budget_lease_seconds),
        ll.key_resync_seconds,
    );
    let (budget_admission, default_reserved_output_tokens) = admission(&mut v, ll);
    let waits = waits(&mut v, ll);
    let (spend_logs, store_prompts) = spend_log_flags(&mut v, &raw.general_settings);
    let related = related_deployments(&groups, &wildcards, &routing);
    let client = client_limits(&mut v, ll);
    let callbacks = callbacks(&mut v, &raw.litellm_settings);
    let metrics = ll
        .metrics
        .unwrap_or_else(|| callbacks.iter().any(|c| c == "prometheus"));
    let metrics_auth = flag(
        &mut v,
        "litellm_settings",
        &raw.litellm_settings,
        "require_auth_for_metrics_endpoint",
    );
    let health_checks = super::health::parse(&mut v, &raw.general_settings);
    let alerting = super::alerting::parse(&mut v, &raw.general_settings);
    let redis = super::redis::parse(&mut v, &raw.router_settings);
    let warnings = v.finish()?;
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
        postgres,
        budget_admission,
        default_reserved_output_tokens,
        spend_logs,
        store_prompts,
        shutdown_grace: waits.shutdown_grace,
        stream_idle_timeout: waits.stream_idle_timeout,
        max_stream_duration: waits.max_stream_duration,
        hot_reload: ll.hot_reload.unwrap_or(true),
        watch_config: ll.watch_config.unwrap_or(true),
        access_log: ll.access_log.unwrap_or(true),
        callbacks,
        metrics,
        metrics_auth,
        client,
        health_checks,
        alerting,
        redis,
        warnings,
    })
}

/// `litellm_settings` keys llmgate reads (directly, or as router settings).
const LITELLM_SETTINGS: &[&str] = &[
    "request_timeout",
    "drop_params",
    "set_verbose",
    "json_logs",
    "num_retries",
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "allowed_fails",
    "cooldown_time",
    "callbacks",
    "success_callback",
    "failure_callback",
    "require_auth_for_metrics_endpoint",
];

/// The logging callbacks llmgate serves itself (others are warned about).
const KNOWN_CALLBACKS: &[&str] = &["prometheus", "otel"];

/// `litellm_settings.callbacks`, `success_callback` and `failure_callback`: a list of names
/// (or one name), each kept once. A callback llmgate does not serve is warned about.
fn callbacks(v: &mut Validator, litellm: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in ["callbacks", "success_callback", "failure_callback"] {
        let names = match litellm.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Sequence(items)) => items.iter().map(scalar_string).collect(),
            Some(one) => vec![scalar_string(one)],
        };
        for name in names {
            let Some(name) = name else {
                v.problem(
                    &format!("litellm_settings.{key}"),
                    "must be a list of callback names",
                );
                continue;
            };
            if !KNOWN_CALLBACKS.contains(&name.as_str()) {
                v.warn(
                    &format!("litellm_settings.{key}"),
                    &format!("callback `{name}` is not served by llmgate, ignored"),
                );
            } else if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// A true/false key of a LiteLLM settings `section` (absent: false).
fn flag(v: &mut Validator, section: &str, settings: &BTreeMap<String, Value>, key: &str) -> bool {
    match settings.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            v.problem(&format!("{section}.{key}"), "must be true or false");
            false
        }
    }
}

/// Unknown top-level keys and `litellm_settings` llmgate does not act on: warnings.
fn unknown_keys(v: &mut Validator, raw: &RawConfig) {
    for key in raw.other.keys() {
        v.warn(key, "unknown top-level key, ignored");
    }
    for key in raw.litellm_settings.keys() {
        if !LITELLM_SETTINGS.contains(&key.as_str()) {
            v.warn(
                &format!("litellm_settings.{key}"),
                "not supported yet, ignored",
            );
        }
    }
}

/// `litellm_settings.request_timeout`: every deployment's default `timeout`.
fn request_timeout(v: &mut Validator, litellm: &BTreeMap<String, Value>) -> Duration {
    litellm
        .get("request_timeout")
        .and_then(|t| v.seconds("litellm_settings.request_timeout", t))
        .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS))
}

/// The `--model` deployments (named `--model <model>` in problems), the first under
/// `--alias` when given, and the group that serves any other model name (the first).
fn quick_start(overrides: &Overrides) -> (Vec<(String, RawDeployment)>, Option<String>) {
    let name = |i: usize, m: &String| match (&overrides.alias, i) {
        (Some(alias), 0) => alias.clone(),
        _ => m.clone(),
    };
    let api_base = overrides.api_base.as_deref();
    let entries = (overrides.models.iter().enumerate())
        .map(|(i, m)| {
            let d = RawDeployment::quick_start(&name(i, m), m, api_base);
            (format!("--model {m}"), d)
        })
        .collect();
    (entries, overrides.models.first().map(|m| name(0, m)))
}

/// `model_list`, then the quick-start entries: the deployments that validate, with no id
/// used twice.
fn deployments(
    v: &mut Validator,
    model_list: &[RawDeployment],
    quick: &[(String, RawDeployment)],
    default_timeout: Duration,
) -> Vec<Arc<Deployment>> {
    let entries = (model_list.iter().enumerate())
        .map(|(i, d)| (format!("model_list[{i}]"), d))
        .chain(quick.iter().map(|(at, d)| (at.clone(), d)));
    let mut deployments = Vec::new();
    for (at, d) in entries {
        if let Some(dep) = v.deployment(&at, d, deployments.len(), default_timeout) {
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
    deployments
}

/// Exact groups (name to deployment indices) and wildcard groups, the most specific
/// (longest literal part) first.
type Groups = (BTreeMap<String, Vec<usize>>, Vec<(String, Vec<usize>)>);

fn model_groups(deployments: &[Arc<Deployment>]) -> Groups {
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
    wildcards.sort_by_key(|(p, _)| std::cmp::Reverse(p.replace('*', "").len()));
    (groups, wildcards)
}

/// The plugins folder (`--plugins-dir`, `llmgate.plugins_dir`, `LLMGATE_PLUGINS_DIR`, else
/// [`default_plugins_dir`]) and the compiled-plugin cache (`llmgate.plugin_cache_dir`,
/// `LLMGATE_PLUGIN_CACHE_DIR`, else `llmgate/wasmtime` in the user's cache folder).
fn plugin_dirs(
    v: &Validator,
    overrides: &Overrides,
    ll: &RawLlmgate,
) -> (PathBuf, Option<PathBuf>) {
    let env = |k: &str| v.environment.get(k).map(PathBuf::from);
    let plugins_dir = overrides
        .plugins_dir
        .clone()
        .or_else(|| ll.plugins_dir.as_ref().map(PathBuf::from))
        .or_else(|| env("LLMGATE_PLUGINS_DIR"))
        .unwrap_or_else(default_plugins_dir);
    let plugin_cache_dir = ll
        .plugin_cache_dir
        .as_ref()
        .map(PathBuf::from)
        .or_else(|| env("LLMGATE_PLUGIN_CACHE_DIR"))
        .or_else(|| {
            env("XDG_CACHE_HOME")
                .or_else(|| env("HOME").map(|h| h.join(".cache")))
                .map(|c| c.join("llmgate").join("wasmtime"))
        });
    (plugins_dir, plugin_cache_dir)
}

/// `llmgate.plugin_limits`, each within its range.
fn plugin_limits(v: &mut Validator, raw: &RawPluginLimits) -> PluginLimits {
    let mut limits = PluginLimits::default();
    if let Some(m) = v.in_range("llmgate.plugin_limits.memory_mib", raw.memory_mib, 1..=4096) {
        limits.memory_bytes = (m as usize) << 20;
    }
    if let Some(ms) = v.in_range(
        "llmgate.plugin_limits.call_timeout_ms",
        raw.call_timeout_ms,
        1..=60_000,
    ) {
        limits.call_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = v.in_range(
        "llmgate.plugin_limits.max_instances",
        raw.max_instances.map(u64::from),
        1..=100_000,
    ) {
        limits.max_instances = n as u32;
    }
    limits
}

/// `llmgate.routing`: the default policy and each group's, every config JSON the routing
/// settings with the policy's own config over them. `known` tells whether a group (exact,
/// wildcard or auto) exists.
fn policies(
    v: &mut Validator,
    raw: &RawRouting,
    routing: &routing::Routing,
    known: &dyn Fn(&str) -> bool,
) -> (PolicyChoice, HashMap<String, PolicyChoice>) {
    let view = routing.policy_view();
    let choice = |policy: String, own: &str| {
        let mut config = view.clone();
        if let (Some(b), Ok(serde_json::Value::Object(o))) =
            (config.as_object_mut(), serde_json::from_str(own))
        {
            b.extend(o);
        }
        PolicyChoice {
            policy,
            config_json: Arc::from(config.to_string()),
        }
    };
    let own = v.policy_config(
        "llmgate.routing.default_policy_config",
        raw.default_policy_config.clone(),
    );
    let policy = raw
        .default_policy
        .clone()
        .unwrap_or_else(|| "router".into());
    let default = choice(policy, &own);
    let mut groups = HashMap::new();
    for (group, g) in &raw.groups {
        let at = format!("llmgate.routing.groups.{group}");
        if !known(group) {
            v.problem(&at, "names a model group that model_list does not define");
        }
        let own = v.policy_config(&format!("{at}.config"), g.config.clone());
        let policy = g.policy.clone().unwrap_or_else(|| default.policy.clone());
        groups.insert(group.clone(), choice(policy, &own));
    }
    (default, groups)
}

/// `general_settings.database_url` (SQLite; a PostgreSQL URL is `super::postgres`'s), else
/// `llmgate.database_path`, else the default file (`$LLMGATE_DB`, else `llmgate.db` in
/// `config_dir` or the working directory).
fn database_path(
    v: &mut Validator,
    general: &BTreeMap<String, Value>,
    database_path: Option<&str>,
    config_dir: Option<&std::path::Path>,
) -> PathBuf {
    const AT: &str = "general_settings.database_url";
    let from_url = general.get("database_url").and_then(|u| {
        let Some(u) = scalar_string(u) else {
            v.problem(AT, "must be a string");
            return None;
        };
        let u = match u.strip_prefix("os.environ/") {
            Some(var) => v.lookup(var).unwrap_or_default(),
            None => u,
        };
        let path = u
            .strip_prefix("sqlite:///")
            .map(|p| format!("/{p}"))
            .or_else(|| u.strip_prefix("sqlite://").map(str::to_string))
            .or_else(|| u.strip_prefix("sqlite:").map(str::to_string))
            .or_else(|| u.strip_prefix("file:").map(str::to_string));
        if path.is_none() && !crate::store::PgUrl::is_postgres(&u) {
            v.problem(
                AT,
                "must be a postgresql:// or sqlite:/// URL (`postgresql://user:password@host:5432/llmgate`, `sqlite:///path/to/llmgate.db`)",
            );
        }
        path.map(PathBuf::from)
    });
    from_url
        .or_else(|| database_path.map(PathBuf::from))
        .unwrap_or_else(|| crate::store::default_path(config_dir))
}

/// `llmgate.budget_admission` and `llmgate.default_reserved_output_tokens`.
fn admission(v: &mut Validator, ll: &RawLlmgate) -> (Admission, u64) {
    let rule = match ll.budget_admission.as_deref() {
        None | Some("reserve") => Admission::Reserve,
        Some("strict") => Admission::Strict,
        Some(other) => {
            v.problem(
                "llmgate.budget_admission",
                &format!("`{other}` is not a rule: use `reserve` or `strict`"),
            );
            Admission::Reserve
        }
    };
    let reserved = v
        .in_range(
            "llmgate.default_reserved_output_tokens",
            ll.default_reserved_output_tokens,
            1..=10_000_000,
        )
        .unwrap_or(crate::pricing::DEFAULT_RESERVED_OUTPUT_TOKENS);
    (rule, reserved)
}

/// The `llmgate:` waits in whole seconds, each at most a year.
struct Waits {
    /// `shutdown_grace_seconds` (default 30).
    shutdown_grace: Duration,
    /// `stream_idle_timeout_seconds` (default 600, at least 1).
    stream_idle_timeout: Duration,
    /// `max_stream_duration_seconds` (default 3600; 0: no limit).
    max_stream_duration: Option<Duration>,
}

fn waits(v: &mut Validator, ll: &RawLlmgate) -> Waits {
    const IDLE: &str = "llmgate.stream_idle_timeout_seconds";
    let idle = ll.stream_idle_timeout_seconds.unwrap_or(600);
    if idle == 0 {
        v.problem(
            IDLE,
            "must be at least 1 (seconds without an upstream event before a stream fails)",
        );
    }
    let stream_idle_timeout = v.whole_seconds(IDLE, idle).unwrap_or_default();
    let max_stream_duration = v
        .whole_seconds(
            "llmgate.max_stream_duration_seconds",
            ll.max_stream_duration_seconds.unwrap_or(3600),
        )
        .filter(|d| !d.is_zero());
    let shutdown_grace = v
        .whole_seconds(
            "llmgate.shutdown_grace_seconds",
            ll.shutdown_grace_seconds.unwrap_or(30),
        )
        .unwrap_or_default();
    Waits {
        shutdown_grace,
        stream_idle_timeout,
        max_stream_duration,
    }
}

/// `general_settings.disable_spend_logs` and `store_prompts_in_spend_logs`: whether spend
/// logs are written, and whether they keep the bodies.
fn spend_log_flags(v: &mut Validator, general: &BTreeMap<String, Value>) -> (bool, bool) {
    let spend_logs = !flag(v, "general_settings", general, "disable_spend_logs");
    let store_prompts = flag(
        v,
        "general_settings",
        general,
        "store_prompts_in_spend_logs",
    );
    (spend_logs, store_prompts)
}

/// Per group, wildcard and auto model: the deployments of the groups it is related to
/// ([`routing::Routing::related_groups`]), when there are any.
fn related_deployments(
    groups: &BTreeMap<String, Vec<usize>>,
    wildcards: &[(String, Vec<usize>)],
    routing: &routing::Routing,
) -> HashMap<String, Vec<usize>> {
    let auto = routing.auto.iter().flat_map(|a| a.names.iter());
    groups
        .keys()
        .chain(wildcards.iter().map(|(p, _)| p))
        .chain(auto)
        .map(|g| {
            let idx: Vec<usize> = routing
                .related_groups(g)
                .iter()
                .filter_map(|r| groups.get(r))
                .flatten()
                .copied()
                .collect();
            (g.clone(), idx)
        })
        .filter(|(_, idx)| !idx.is_empty())
        .collect()
}

/// `llmgate.client_*_timeout_seconds` and `llmgate.max_client_connections`.
fn client_limits(v: &mut Validator, ll: &RawLlmgate) -> ClientLimits {
    let d = ClientLimits::default();
    let mut wait = |at: &str, secs: Option<f64>, default: Duration| match secs {
        None => default,
        Some(s) => v.wait(at, Some(s)).unwrap_or(default),
    };
    let header_read_timeout = wait(
        "llmgate.client_header_timeout_seconds",
        ll.client_header_timeout_seconds,
        d.header_read_timeout,
    );
    let idle_timeout = wait(
        "llmgate.client_idle_timeout_seconds",
        ll.client_idle_timeout_seconds,
        d.idle_timeout,
    );
    let body_read_timeout = wait(
        "llmgate.client_body_timeout_seconds",
        ll.client_body_timeout_seconds,
        d.body_read_timeout,
    );
    let max_connections = match ll.max_client_connections {
        Some(0) => {
            v.problem("llmgate.max_client_connections", "must be at least 1");
            None
        }
        n => n,
    };
    ClientLimits {
        header_read_timeout,
        idle_timeout,
        body_read_timeout,
        max_connections,
    }
}

/// `general_settings.master_key`: a literal or `os.environ/VAR`. Unset, empty or not a
/// string is a problem that stops the start, naming the variable.
/// Without it, `LLMGATE_MASTER_KEY` or `LITELLM_MASTER_KEY` (when not empty).
fn master_key(v: &mut Validator, general: &BTreeMap<String, Value>) -> Option<Secret> {
    const AT: &str = "general_settings.master_key";
    let Some(k) = general.get("master_key") else {
        return v
            .lookup("LLMGATE_MASTER_KEY")
            .or_else(|| v.lookup("LITELLM_MASTER_KEY"))
            .filter(|k| !k.is_empty())
            .map(Secret);
    };
    // A master key the config names but that cannot be had must not start the gateway
    // with authentication off.
    let Some(s) = scalar_string(k) else {
        v.problem(AT, "must be a string (the key itself, or os.environ/VAR)");
        return None;
    };
    let key = match s.strip_prefix("os.environ/") {
        Some(var) => match v.lookup(var) {
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
