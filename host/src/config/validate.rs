//! Validation of a parsed config into a [`Config`]: every problem is collected (each naming
//! the file and the key) before failing; the deployments are in [`super::deployment`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::env::Environment;
use super::raw::{RawConfig, RawDeployment};
use super::validator::{MAX_SECONDS, Validator, bounded_seconds, scalar_string};
use super::*;

/// Validate a parsed config. `environment` is the environment it reads (tests pass their
/// own); every deployment keeps it for the keys its provider names.
pub fn validate(
    raw: RawConfig,
    source: String,
    overrides: &Overrides,
    environment: &Environment,
) -> Result<Config, ConfigError> {
    let environment = Arc::new(environment.clone());
    let env = |k: &str| environment.get(k).map(str::to_string);
    let mut v = Validator {
        source: source.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
        environment: environment.clone(),
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
    let default_reserved_output_tokens = match ll.default_reserved_output_tokens {
        None => crate::pricing::DEFAULT_RESERVED_OUTPUT_TOKENS,
        Some(n) if (1..=10_000_000).contains(&n) => n,
        Some(_) => {
            v.problem(
                "llmgate.default_reserved_output_tokens",
                "must be between 1 and 10000000",
            );
            crate::pricing::DEFAULT_RESERVED_OUTPUT_TOKENS
        }
    };
    if ll.stream_idle_timeout_seconds == Some(0) {
        v.problem(
            "llmgate.stream_idle_timeout_seconds",
            "must be at least 1 (seconds without an upstream event before a stream fails)",
        );
    }
    for (at, n) in [
        (
            "llmgate.stream_idle_timeout_seconds",
            ll.stream_idle_timeout_seconds,
        ),
        (
            "llmgate.max_stream_duration_seconds",
            ll.max_stream_duration_seconds,
        ),
        ("llmgate.shutdown_grace_seconds", ll.shutdown_grace_seconds),
    ] {
        if n.is_some_and(|n| n > MAX_SECONDS) {
            v.problem(
                at,
                &format!("must be at most {MAX_SECONDS} seconds (a year)"),
            );
        }
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
            Some(s) => bounded_seconds(s).unwrap_or_else(|| {
                v.problem(
                    at,
                    &format!("must be a positive number of seconds, at most {MAX_SECONDS}"),
                );
                default
            }),
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
