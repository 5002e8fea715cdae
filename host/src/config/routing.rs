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
    let Some(raw) = raw else {
        return out;
    };
    let entries: Vec<(String, &Value)> = match raw {
        Value::Sequence(items) => {
            let mut e = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Mapping(m) => {
                        for (k, val) in m {
                            match k.as_str() {
                                Some(k) => e.push((k.to_string(), val)),
                                None => v.problem(
                                    &format!("{at}[{i}]"),
                                    "keys must be model group names",
                                ),
                            }
                        }
                    }
                    _ => v.problem(
                        &format!("{at}[{i}]"),
                        "must be a mapping like {\"gpt-4o\": [\"claude-sonnet\"]}",
                    ),
                }
            }
            e
        }
        Value::Mapping(m) => m
            .iter()
            .filter_map(|(k, val)| Some((k.as_str()?.to_string(), val)))
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            v.problem(
                at,
                "must be a list like [{\"gpt-4o\": [\"claude-sonnet\"]}]",
            );
            return out;
        }
    };
    for (group, targets) in entries {
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

/// Validate the routing settings. `known` tells whether a model group exists.
pub(super) fn parse(
    v: &mut Validator,
    router: &BTreeMap<String, Value>,
    litellm: &BTreeMap<String, Value>,
    auto: Option<serde_json::Value>,
    groups: &[String],
) -> Routing {
    let known = |g: &str| groups.iter().any(|x| x == g);
    let rs = |k: &str| router.get(k).or_else(|| litellm.get(k));
    for key in router.keys() {
        if !matches!(
            key.as_str(),
            "fallbacks"
                | "context_window_fallbacks"
                | "content_policy_fallbacks"
                | "default_fallbacks"
                | "num_retries"
                | "allowed_fails"
                | "cooldown_time"
                | "retry_after"
                | "routing_strategy"
                | "model_group_alias"
                | "timeout"
                | "enable_pre_call_checks"
                | "redis_host"
                | "redis_port"
                | "redis_password"
        ) {
            v.warn(
                &format!("router_settings.{key}"),
                "not supported yet, ignored",
            );
        }
    }
    let fallbacks = fallback_map(v, "router_settings.fallbacks", rs("fallbacks"), &known);
    let context_window_fallbacks = fallback_map(
        v,
        "router_settings.context_window_fallbacks",
        rs("context_window_fallbacks"),
        &known,
    );
    let content_policy_fallbacks = fallback_map(
        v,
        "router_settings.content_policy_fallbacks",
        rs("content_policy_fallbacks"),
        &known,
    );
    let mut default_fallbacks = rs("default_fallbacks")
        .map(|d| group_list(v, "router_settings.default_fallbacks", d, &known))
        .unwrap_or_default();
    let mut fallbacks = fallbacks;
    if let Some(star) = fallbacks.remove("*")
        && default_fallbacks.is_empty()
    {
        // LiteLLM's `{"*": [...]}` is the default fallback list.
        default_fallbacks = star;
    }
    finish(
        v,
        router,
        rs,
        fallbacks,
        context_window_fallbacks,
        content_policy_fallbacks,
        default_fallbacks,
        auto,
        groups,
    )
}

#[expect(clippy::too_many_arguments, reason = "the parts parse() already read")]
fn finish<'a>(
    v: &mut Validator,
    router: &BTreeMap<String, Value>,
    rs: impl Fn(&str) -> Option<&'a Value>,
    fallbacks: HashMap<String, Vec<String>>,
    context_window_fallbacks: HashMap<String, Vec<String>>,
    content_policy_fallbacks: HashMap<String, Vec<String>>,
    default_fallbacks: Vec<String>,
    auto: Option<serde_json::Value>,
    groups: &[String],
) -> Routing {
    let known = |g: &str| groups.iter().any(|x| x == g);
    let num_retries = v
        .uint("router_settings.num_retries", rs("num_retries"))
        .unwrap_or(0);
    let allowed_fails = v
        .uint("router_settings.allowed_fails", rs("allowed_fails"))
        .unwrap_or(3);
    let cooldown_time = rs("cooldown_time")
        .and_then(|t| v.seconds("router_settings.cooldown_time", t))
        .unwrap_or(Duration::from_secs(5));
    let retry_after = match rs("retry_after") {
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Duration::ZERO,
        Some(t) => v
            .seconds("router_settings.retry_after", t)
            .unwrap_or(Duration::ZERO),
        None => Duration::ZERO,
    };
    let strategy = match router.get("routing_strategy").and_then(Value::as_str) {
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
    };
    let mut aliases = HashMap::new();
    if let Some(m) = router.get("model_group_alias") {
        match m {
            Value::Mapping(m) => {
                for (k, target) in m {
                    let (Some(k), Some(t)) = (
                        k.as_str(),
                        target.as_str().or_else(|| {
                            // LiteLLM also accepts {"model": "gpt-4o", "hidden": true}.
                            target.get("model").and_then(Value::as_str)
                        }),
                    ) else {
                        v.problem(
                            "router_settings.model_group_alias",
                            "must map names to model group names",
                        );
                        continue;
                    };
                    if known(t) {
                        aliases.insert(k.to_string(), t.to_string());
                    } else {
                        v.problem(
                            &format!("router_settings.model_group_alias.{k}"),
                            &format!("`{t}` is not a model group in model_list"),
                        );
                    }
                }
            }
            _ => v.problem("router_settings.model_group_alias", "must be a mapping"),
        }
    }
    let auto = auto_router(v, auto, groups);
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
        auto,
    }
}

/// `llmgate.routing.auto`. Without it, `kilo/auto` is served when the config has a Claude
/// Opus group (strong) and a Claude Sonnet group (fast).
fn auto_router(v: &mut Validator, raw: Option<Json>, groups: &[String]) -> Option<Auto> {
    let at = "llmgate.routing.auto";
    let find = |needle: &str| {
        groups
            .iter()
            .find(|g| g.to_ascii_lowercase().contains(needle))
            .cloned()
    };
    let raw = match raw {
        Some(Json::Bool(false)) => return None,
        None | Some(Json::Null) | Some(Json::Bool(true)) => json!({}),
        Some(o @ Json::Object(_)) => o,
        Some(_) => {
            v.problem(at, "must be a mapping (or false to turn auto routing off)");
            return None;
        }
    };
    let explicit = raw.as_object().is_some_and(|o| !o.is_empty());
    let group_of = |v: &mut Validator, k: &str, default: Option<String>| -> Option<String> {
        match raw.get(k) {
            Some(Json::String(g)) if groups.contains(g) => Some(g.clone()),
            Some(Json::String(g)) => {
                v.problem(
                    &format!("{at}.{k}"),
                    &format!("`{g}` is not a model group in model_list"),
                );
                None
            }
            Some(_) => {
                v.problem(&format!("{at}.{k}"), "must be a model group name");
                None
            }
            None => default,
        }
    };
    let strong = group_of(v, "strong", find("opus"));
    let fast = group_of(v, "fast", find("sonnet"));
    let (Some(strong), Some(fast)) = (strong, fast) else {
        if explicit {
            v.problem(
                at,
                "needs `strong` and `fast` model groups (defaults: a group whose name contains `opus`, and one with `sonnet`)",
            );
        }
        return None;
    };
    let mut names = vec!["kilo/auto".to_string()];
    match raw.get("models").or_else(|| raw.get("model")) {
        None => {}
        Some(Json::String(n)) => names.push(n.clone()),
        Some(Json::Array(a)) => {
            for n in a {
                match n.as_str() {
                    Some(n) => names.push(n.to_string()),
                    None => v.problem(&format!("{at}.models"), "must be a list of names"),
                }
            }
        }
        Some(_) => v.problem(&format!("{at}.models"), "must be a name or a list of names"),
    }
    names.dedup();
    for n in &names {
        if groups.contains(n) {
            v.problem(
                &format!("{at}.models"),
                &format!("`{n}` is also a model group in model_list"),
            );
        }
    }
    let mut targets = vec![strong.clone(), fast.clone()];
    let mut check_target = |v: &mut Validator, where_: &str, t: &Json| match t.as_str() {
        Some("strong") | Some("fast") => {}
        Some(g) if groups.iter().any(|x| x == g) => {
            if !targets.iter().any(|x| x == g) {
                targets.push(g.to_string());
            }
        }
        Some(g) => v.problem(
            where_,
            &format!("`{g}` is neither strong, fast nor a model group"),
        ),
        None => v.problem(where_, "must be strong, fast or a model group name"),
    };
    if let Some(d) = raw.get("default") {
        check_target(v, &format!("{at}.default"), d);
    }
    for k in ["modes", "features"] {
        match raw.get(k) {
            None => {}
            Some(Json::Object(m)) => {
                for (name, t) in m {
                    check_target(v, &format!("{at}.{k}.{name}"), t);
                }
            }
            Some(_) => v.problem(
                &format!("{at}.{k}"),
                "must be a mapping of name to strong, fast or a model group",
            ),
        }
    }
    let mut config = raw.clone();
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
