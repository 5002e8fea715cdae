//! Routing settings: LiteLLM's `router_settings` (fallbacks, retries, cooldowns, strategy,
//! aliases) and llmgate's `llmgate.routing.auto` (Kilo-style `auto` models).
//!
//! The host uses them for what it owns (which candidates a policy sees, cooldowns, waiting
//! out `Retry-After`), and hands them to the routing policy as part of its config JSON, so
//! the plan itself is the policy's decision.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;

use super::Validator;
use super::raw::RawConfig;

/// Routing settings, validated.
#[derive(Debug, Clone)]
pub struct Routing {
    /// `fallbacks`: group to fallback groups, tried after retryable failures.
    pub fallbacks: HashMap<String, Vec<String>>,
    /// `context_window_fallbacks`: tried after a context-length error.
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
    /// `content_policy_fallbacks`: tried after a content-filter error.
    pub content_policy_fallbacks: HashMap<String, Vec<String>>,
    /// `default_fallbacks`: for groups without their own `fallbacks`.
    pub default_fallbacks: Vec<String>,
    /// `num_retries`: extra attempts within the group.
    pub num_retries: u32,
    /// `allowed_fails`: failures per minute a deployment may have before it cools down.
    pub allowed_fails: u32,
    /// `cooldown_time`: how long a deployment stays out of rotation.
    pub cooldown_time: Duration,
    /// `retry_after`: least time to wait before retrying the same deployment.
    pub retry_after: Duration,
    /// Longest `Retry-After` the gateway waits out before a retry of the same deployment;
    /// longer ones skip to the next attempt.
    pub max_retry_wait: Duration,
    /// `routing_strategy`.
    pub strategy: String,
    /// `model_group_alias`: a name clients use for an existing group.
    pub aliases: HashMap<String, String>,
    /// Virtual `auto` models.
    pub auto: Option<Auto>,
}

/// Kilo-style auto routing: a virtual model that picks a real group from the task.
#[derive(Debug, Clone)]
pub struct Auto {
    /// Names clients ask for (`kilo/auto` and any configured).
    pub names: Vec<String>,
    /// Every group the auto model may route to.
    pub groups: Vec<String>,
    /// The config handed to the policy (`strong`, `fast`, `default`, `modes`, `features`).
    pub config: Json,
}

/// LiteLLM's routing strategies (and our names for them).
const STRATEGIES: &[&str] = &[
    "simple-shuffle",
    "least-busy",
    "latency-based-routing",
    "usage-based-routing",
    "usage-based-routing-v2",
    "cost-based-routing",
    "ordered",
];

impl Routing {
    /// Every group a request for `group` may end up on besides `group` itself: its
    /// fallbacks of every kind (or the default fallbacks), and for an auto model every group
    /// it routes to, with their fallbacks.
    pub fn related_groups(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let push = |g: &str, out: &mut Vec<String>| {
            if g != group && !out.iter().any(|o| o == g) {
                out.push(g.to_string());
            }
        };
        let direct = |g: &str, out: &mut Vec<String>| {
            match self.fallbacks.get(g) {
                Some(f) => f.iter().for_each(|x| push(x, out)),
                None => self.default_fallbacks.iter().for_each(|x| push(x, out)),
            }
            for m in [
                &self.context_window_fallbacks,
                &self.content_policy_fallbacks,
            ] {
                if let Some(f) = m.get(g) {
                    f.iter().for_each(|x| push(x, out));
                }
            }
        };
        if let Some(auto) = self
            .auto
            .as_ref()
            .filter(|a| a.names.iter().any(|n| n == group))
        {
            for g in &auto.groups {
                push(g, &mut out);
                direct(g, &mut out);
            }
        } else {
            direct(group, &mut out);
        }
        out
    }

    /// Whether `name` is an auto model.
    pub fn is_auto(&self, name: &str) -> bool {
        self.auto
            .as_ref()
            .is_some_and(|a| a.names.iter().any(|n| n == name))
    }

    /// The settings as the policy sees them (merged under the policy's own config).
    pub fn policy_view(&self) -> Json {
        let map = |m: &HashMap<String, Vec<String>>| -> Json {
            m.iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut v = json!({
            "strategy": self.strategy,
            "num_retries": self.num_retries,
            "fallbacks": map(&self.fallbacks),
            "context_window_fallbacks": map(&self.context_window_fallbacks),
            "content_policy_fallbacks": map(&self.content_policy_fallbacks),
            "default_fallbacks": self.default_fallbacks,
        });
        if let Some(a) = &self.auto {
            v["auto"] = a.config.clone();
            v["auto"]["models"] = json!(a.names);
        }
        v
    }
}

/// Read `[{"gpt-4o": ["claude"]}, ...]` (LiteLLM's list of one-key maps) or a plain map.
fn fallback_map(
    v: &mut Validator,
    at: &str,
    raw: Option<&Value>,
    known: &dyn Fn(&str) -> bool,
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for (group, targets) in fallback_entries(v, at, raw) {
        let list = group_list(v, &format!("{at}.{group}"), targets, known);
        if group != "*" && !known(&group) {
            v.problem(
                &format!("{at}.{group}"),
                "names a model group that model_list does not define",
            );
        }
        out.insert(group, list);
    }
    out
}

/// The `(group, fallbacks)` pairs of a fallback setting, in the order written.
fn fallback_entries<'a>(
    v: &mut Validator,
    at: &str,
    raw: Option<&'a Value>,
) -> Vec<(String, &'a Value)> {
    let mut entries = Vec::new();
    match raw {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Mapping(m) = item else {
                    v.problem(
                        &format!("{at}[{i}]"),
                        "must be a mapping like {\"gpt-4o\": [\"claude-sonnet\"]}",
                    );
                    continue;
                };
                for (k, val) in m {
                    match k.as_str() {
                        Some(k) => entries.push((k.to_string(), val)),
                        None => v.problem(&format!("{at}[{i}]"), "keys must be model group names"),
                    }
                }
            }
        }
        Some(Value::Mapping(m)) => entries.extend(
            m.iter()
                .filter_map(|(k, val)| Some((k.as_str()?.to_string(), val))),
        ),
        Some(_) => v.problem(
            at,
            "must be a list like [{\"gpt-4o\": [\"claude-sonnet\"]}]",
        ),
    }
    entries
}

fn group_list(
    v: &mut Validator,
    at: &str,
    raw: &Value,
    known: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let items: Vec<&Value> = match raw {
        Value::Sequence(s) => s.iter().collect(),
        Value::String(_) => vec![raw],
        _ => {
            v.problem(at, "must be a list of model group names");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for it in items {
        match it.as_str() {
            Some(g) if known(g) => out.push(g.to_string()),
            Some(g) => v.problem(
                at,
                &format!("fallback `{g}` is not a model group in model_list"),
            ),
            None => v.problem(at, "must be a list of model group names"),
        }
    }
    out
}

/// `router_settings` keys llmgate reads (or accepts without acting on them).
const ROUTER_SETTINGS: &[&str] = &[
    "fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "default_fallbacks",
    "num_retries",
    "allowed_fails",
    "cooldown_time",
    "retry_after",
    "routing_strategy",
    "model_group_alias",
    "timeout",
    "enable_pre_call_checks",
    "redis_host",
    "redis_port",
    "redis_password",
    "redis_url",
];

/// Validate the routing settings: `router_settings` (a key missing there is read from
/// `litellm_settings`) and `llmgate.routing.auto`, over the exact model `groups`.
pub(super) fn parse(
    v: &mut Validator,
    raw: &RawConfig,
    groups: &BTreeMap<String, Vec<usize>>,
) -> Routing {
    let (router, litellm) = (&raw.router_settings, &raw.litellm_settings);
    let known = |g: &str| groups.contains_key(g);
    let rs = |k: &str| router.get(k).or_else(|| litellm.get(k));
    for key in router.keys() {
        if !ROUTER_SETTINGS.contains(&key.as_str()) {
            v.warn(
                &format!("router_settings.{key}"),
                "not supported yet, ignored",
            );
        }
    }
    let fallback = |v: &mut Validator, k: &str| {
        fallback_map(v, &format!("router_settings.{k}"), rs(k), &known)
    };
    let mut fallbacks = fallback(v, "fallbacks");
    let context_window_fallbacks = fallback(v, "context_window_fallbacks");
    let content_policy_fallbacks = fallback(v, "content_policy_fallbacks");
    let mut default_fallbacks = rs("default_fallbacks")
        .map(|d| group_list(v, "router_settings.default_fallbacks", d, &known))
        .unwrap_or_default();
    if let Some(star) = fallbacks.remove("*")
        && default_fallbacks.is_empty()
    {
        // LiteLLM's `{"*": [...]}` is the default fallback list.
        default_fallbacks = star;
    }
    let num_retries = v
        .uint("router_settings.num_retries", rs("num_retries"))
        .unwrap_or(0);
    let allowed_fails = v
        .uint("router_settings.allowed_fails", rs("allowed_fails"))
        .unwrap_or(3);
    let cooldown_time = rs("cooldown_time")
        .and_then(|t| v.seconds("router_settings.cooldown_time", t))
        .unwrap_or(Duration::from_secs(5));
    let retry_after = retry_after(v, rs("retry_after"));
    let strategy = strategy(v, router.get("routing_strategy"));
    let aliases = aliases(v, router.get("model_group_alias"), &known);
    let names: Vec<String> = groups.keys().cloned().collect();
    Routing {
        fallbacks,
        context_window_fallbacks,
        content_policy_fallbacks,
        default_fallbacks,
        num_retries,
        allowed_fails,
        cooldown_time,
        retry_after,
        max_retry_wait: Duration::from_secs(10),
        strategy,
        aliases,
        auto: auto_router(v, raw.llmgate.routing.auto.clone(), &names),
    }
}

/// `retry_after`: 0 (the default) or a wait.
fn retry_after(v: &mut Validator, raw: Option<&Value>) -> Duration {
    match raw {
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Duration::ZERO,
        Some(t) => v
            .seconds("router_settings.retry_after", t)
            .unwrap_or(Duration::ZERO),
        None => Duration::ZERO,
    }
}

/// `routing_strategy`: one of [`STRATEGIES`] (default `simple-shuffle`).
fn strategy(v: &mut Validator, raw: Option<&Value>) -> String {
    match raw.and_then(Value::as_str) {
        None => "simple-shuffle".to_string(),
        Some(s) if STRATEGIES.contains(&s) => s.to_string(),
        Some(s) => {
            v.problem(
                "router_settings.routing_strategy",
                &format!(
                    "`{s}` is not a strategy; use one of {}",
                    STRATEGIES.join(", ")
                ),
            );
            "simple-shuffle".to_string()
        }
    }
}

/// `model_group_alias`: names clients use for existing groups.
fn aliases(
    v: &mut Validator,
    raw: Option<&Value>,
    known: &dyn Fn(&str) -> bool,
) -> HashMap<String, String> {
    const AT: &str = "router_settings.model_group_alias";
    let mut aliases = HashMap::new();
    let Some(raw) = raw else {
        return aliases;
    };
    let Value::Mapping(m) = raw else {
        v.problem(AT, "must be a mapping");
        return aliases;
    };
    for (k, target) in m {
        let (Some(k), Some(t)) = (
            k.as_str(),
            target.as_str().or_else(|| {
                // LiteLLM also accepts {"model": "gpt-4o", "hidden": true}.
                target.get("model").and_then(Value::as_str)
            }),
        ) else {
            v.problem(AT, "must map names to model group names");
            continue;
        };
        if known(t) {
            aliases.insert(k.to_string(), t.to_string());
        } else {
            v.problem(
                &format!("{AT}.{k}"),
                &format!("`{t}` is not a model group in model_list"),
            );
        }
    }
    aliases
}

const AUTO_AT: &str = "llmgate.routing.auto";

/// `llmgate.routing.auto`. Without it, `kilo/auto` is served when the config has a Claude
/// Opus group (strong) and a Claude Sonnet group (fast).
fn auto_router(v: &mut Validator, raw: Option<Json>, groups: &[String]) -> Option<Auto> {
    let raw = match raw {
        Some(Json::Bool(false)) => return None,
        None | Some(Json::Null) | Some(Json::Bool(true)) => json!({}),
        Some(o @ Json::Object(_)) => o,
        Some(_) => {
            v.problem(
                AUTO_AT,
                "must be a mapping (or false to turn auto routing off)",
            );
            return None;
        }
    };
    let explicit = raw.as_object().is_some_and(|o| !o.is_empty());
    let find = |needle: &str| {
        groups
            .iter()
            .find(|g| g.to_ascii_lowercase().contains(needle))
            .cloned()
    };
    let strong = auto_group(v, &raw, "strong", find("opus"), groups);
    let fast = auto_group(v, &raw, "fast", find("sonnet"), groups);
    let (Some(strong), Some(fast)) = (strong, fast) else {
        if explicit {
            v.problem(
                AUTO_AT,
                "needs `strong` and `fast` model groups (defaults: a group whose name contains `opus`, and one with `sonnet`)",
            );
        }
        return None;
    };
    let names = auto_names(v, &raw, groups);
    let targets = auto_targets(v, &raw, [strong.clone(), fast.clone()], groups);
    let mut config = raw;
    config["strong"] = json!(strong);
    config["fast"] = json!(fast);
    if config.get("default").is_none() {
        config["default"] = json!("strong");
    }
    Some(Auto {
        names,
        groups: targets,
        config,
    })
}

/// `auto.strong` or `auto.fast`: a model group (`default` when unset).
fn auto_group(
    v: &mut Validator,
    raw: &Json,
    k: &str,
    default: Option<String>,
    groups: &[String],
) -> Option<String> {
    match raw.get(k) {
        Some(Json::String(g)) if groups.contains(g) => Some(g.clone()),
        Some(Json::String(g)) => {
            v.problem(
                &format!("{AUTO_AT}.{k}"),
                &format!("`{g}` is not a model group in model_list"),
            );
            None
        }
        Some(_) => {
            v.problem(&format!("{AUTO_AT}.{k}"), "must be a model group name");
            None
        }
        None => default,
    }
}

/// The names the auto model answers to: `kilo/auto` and `auto.models` (or `auto.model`),
/// none of them a model group.
fn auto_names(v: &mut Validator, raw: &Json, groups: &[String]) -> Vec<String> {
    let at = format!("{AUTO_AT}.models");
    let mut names = vec!["kilo/auto".to_string()];
    match raw.get("models").or_else(|| raw.get("model")) {
        None => {}
        Some(Json::String(n)) => names.push(n.clone()),
        Some(Json::Array(a)) => {
            for n in a {
                match n.as_str() {
                    Some(n) => names.push(n.to_string()),
                    None => v.problem(&at, "must be a list of names"),
                }
            }
        }
        Some(_) => v.problem(&at, "must be a name or a list of names"),
    }
    names.dedup();
    for n in &names {
        if groups.contains(n) {
            v.problem(&at, &format!("`{n}` is also a model group in model_list"));
        }
    }
    names
}

/// Every group the auto model may route to: `strong` and `fast`, then the groups
/// `default`, `modes` and `features` name (each is strong, fast or a model group).
fn auto_targets(
    v: &mut Validator,
    raw: &Json,
    strong_and_fast: [String; 2],
    groups: &[String],
) -> Vec<String> {
    let mut targets = Vec::from(strong_and_fast);
    let mut check_target = |v: &mut Validator, at: &str, t: &Json| match t.as_str() {
        Some("strong") | Some("fast") => {}
        Some(g) if groups.iter().any(|x| x == g) => {
            if !targets.iter().any(|x| x == g) {
                targets.push(g.to_string());
            }
        }
        Some(g) => v.problem(
            at,
            &format!("`{g}` is neither strong, fast nor a model group"),
        ),
        None => v.problem(at, "must be strong, fast or a model group name"),
    };
    if let Some(d) = raw.get("default") {
        check_target(v, &format!("{AUTO_AT}.default"), d);
    }
    for k in ["modes", "features"] {
        match raw.get(k) {
            None => {}
            Some(Json::Object(m)) => {
                for (name, t) in m {
                    check_target(v, &format!("{AUTO_AT}.{k}.{name}"), t);
                }
            }
            Some(_) => v.problem(
                &format!("{AUTO_AT}.{k}"),
                "must be a mapping of name to strong, fast or a model group",
            ),
        }
    }
    targets
}
