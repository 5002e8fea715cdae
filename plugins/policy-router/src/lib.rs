//! llmgate routing policy `router`: LiteLLM's router in a WASM policy.
//!
//! - **Load balancing** within the model group (`strategy`): `simple-shuffle` (random,
//!   weighted by `weight`, else `rpm`, else `tpm`), `least-busy` (fewest in flight),
//!   `latency-based-routing` (lowest recent latency; time to first token for streams),
//!   `usage-based-routing` (fewest in flight per unit of `rpm`), `cost-based-routing`
//!   (cheapest), `ordered` (config order). Deployments with an `order` come first, lowest
//!   first; deployments cooling down come last.
//! - **Retries and fallbacks**: every deployment of the group once, and more attempts up to
//!   `1 + num_retries`; then `context_window_fallbacks` (after a context-length error),
//!   `content_policy_fallbacks` (after a content-filter error) and `fallbacks` (after any
//!   retryable error; `default_fallbacks` for groups without their own).
//! - **Kilo auto-routing** (`auto`): a virtual model such as `kilo/auto` routes to the
//!   `strong` or `fast` group by the task. `X-KILOCODE-FEATURE` is looked up in `features`
//!   first (default `openclaw: strong`), then `x-kilocode-mode` in `modes` (defaults: plan,
//!   debug, orchestrator, architect, ask and general → strong; build, code and explore →
//!   fast); anything else → `default` (default `strong`). The other of the two is the
//!   fallback.
//!
//! The host passes the config: LiteLLM's `router_settings` merged with the policy's own.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use llmgate_sdk::ErrorClass;
use llmgate_sdk::GatewayError;
use llmgate_sdk::policy::exports::llmgate::plugin::policy::{
    Attempt, Candidate, Guest, RouteRequest,
};
use serde::Deserialize;

/// The policy.
pub struct Router;

/// Failures after which the same deployment is worth retrying.
const RETRY_SAME: &[ErrorClass] = &[
    ErrorClass::RateLimited,
    ErrorClass::Overloaded,
    ErrorClass::Upstream,
    ErrorClass::Timeout,
];

/// Failures after which another deployment is worth trying.
const MOVE_ON: &[ErrorClass] = &[
    ErrorClass::RateLimited,
    ErrorClass::Overloaded,
    ErrorClass::Upstream,
    ErrorClass::Timeout,
    ErrorClass::Auth,
    ErrorClass::Permission,
    ErrorClass::NotFound,
];

/// Task modes for the strong model.
const STRONG_MODES: &[&str] = &[
    "plan",
    "debug",
    "orchestrator",
    "architect",
    "ask",
    "general",
];
/// Task modes for the fast model.
const FAST_MODES: &[&str] = &["build", "code", "explore"];

/// The policy's config.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Load-balancing strategy.
    pub strategy: Option<String>,
    /// Extra attempts within the group.
    pub num_retries: u32,
    /// Group to fallback groups.
    pub fallbacks: HashMap<String, Vec<String>>,
    /// After a context-length error.
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
    /// After a content-filter error.
    pub content_policy_fallbacks: HashMap<String, Vec<String>>,
    /// Fallbacks of groups without their own.
    pub default_fallbacks: Vec<String>,
    /// Auto models.
    pub auto: Option<Auto>,
}

/// Kilo-style auto routing.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Auto {
    /// Virtual model names.
    pub models: Vec<String>,
    /// The strong model group.
    pub strong: String,
    /// The fast model group.
    pub fast: String,
    /// Target without a known mode or feature: `strong`, `fast` or a group.
    pub default: Option<String>,
    /// `x-kilocode-mode` value to target.
    pub modes: HashMap<String, String>,
    /// `x-kilocode-feature` value to target.
    pub features: HashMap<String, String>,
}

impl Auto {
    fn target(&self, name: &str) -> String {
        match name {
            "strong" => self.strong.clone(),
            "fast" => self.fast.clone(),
            g => g.to_string(),
        }
    }

    /// The group for a request, from its headers.
    pub fn pick(&self, headers: &[(String, String)]) -> String {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_ascii_lowercase())
        };
        if let Some(f) = header("x-kilocode-feature") {
            if let Some(t) = self.features.get(&f) {
                return self.target(t);
            }
            if f == "openclaw" {
                return self.strong.clone();
            }
        }
        if let Some(m) = header("x-kilocode-mode") {
            if let Some(t) = self.modes.get(&m) {
                return self.target(t);
            }
            if STRONG_MODES.contains(&m.as_str()) {
                return self.strong.clone();
            }
            if FAST_MODES.contains(&m.as_str()) {
                return self.fast.clone();
            }
        }
        self.target(self.default.as_deref().unwrap_or("strong"))
    }
}

/// A random number from the host's WASI random source.
fn random() -> u64 {
    RandomState::new().hash_one(0u8)
}

/// The deployments of `group`, in the order to try them.
pub fn order<'a>(
    strategy: &str,
    group: &str,
    stream: bool,
    candidates: &'a [Candidate],
    mut rand: impl FnMut() -> u64,
) -> Vec<&'a Candidate> {
    let mut list: Vec<(usize, &Candidate)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.model_group == group)
        .collect();
    match strategy {
        "least-busy" => list.sort_by_key(|(i, c)| (c.in_flight, *i)),
        "latency-based-routing" => list.sort_by_key(|(i, c)| {
            let l = if stream && c.ttft_ms_p50 > 0 {
                c.ttft_ms_p50
            } else {
                c.latency_ms_p50
            };
            // Unknown latency first: try it to learn it.
            (l, *i)
        }),
        "usage-based-routing" | "usage-based-routing-v2" => list.sort_by(|(i, a), (j, b)| {
            let load = |c: &Candidate| {
                let cap = if c.rpm > 0 { c.rpm } else { c.tpm.max(1) };
                c.in_flight as f64 / f64::from(cap)
            };
            load(a).total_cmp(&load(b)).then(i.cmp(j))
        }),
        "cost-based-routing" => list.sort_by(|(i, a), (j, b)| {
            (a.price_in + a.price_out)
                .total_cmp(&(b.price_in + b.price_out))
                .then(i.cmp(j))
        }),
        "ordered" => {}
        _ => {
            // simple-shuffle: weighted random order (weight, else rpm, else tpm, else equal).
            let weight = |c: &Candidate| -> u64 {
                if list.iter().any(|(_, c)| c.weight != 1) {
                    u64::from(c.weight)
                } else if list.iter().any(|(_, c)| c.rpm > 0) {
                    u64::from(c.rpm)
                } else if list.iter().any(|(_, c)| c.tpm > 0) {
                    u64::from(c.tpm)
                } else {
                    1
                }
            };
            let mut pool: Vec<(usize, &Candidate, u64)> =
                list.iter().map(|(i, c)| (*i, *c, weight(c))).collect();
            let mut out = Vec::with_capacity(pool.len());
            while !pool.is_empty() {
                let total: u64 = pool.iter().map(|p| p.2).sum();
                let pick = if total == 0 {
                    0
                } else {
                    let mut r = rand() % total;
                    pool.iter()
                        .position(|p| {
                            if r < p.2 {
                                true
                            } else {
                                r -= p.2;
                                false
                            }
                        })
                        .unwrap_or(0)
                };
                let p = pool.remove(pick);
                out.push((p.0, p.1));
            }
            list = out;
        }
    }
    // `order` first (lowest first; 0 = unset, after the ordered ones), healthy before
    // cooling down; the strategy's order within each (stable sort).
    list.sort_by_key(|(_, c)| (!c.healthy, if c.order == 0 { u32::MAX } else { c.order }));
    list.into_iter().map(|(_, c)| c).collect()
}

/// The whole plan for a request.
pub fn plan(
    config: &Config,
    req: &RouteRequest,
    candidates: &[Candidate],
    mut rand: impl FnMut() -> u64,
) -> Result<Vec<Attempt>, GatewayError> {
    let strategy = config.strategy.as_deref().unwrap_or("simple-shuffle");
    let auto = config
        .auto
        .as_ref()
        .filter(|a| a.models.contains(&req.model_group));
    let primary = match auto {
        Some(a) => a.pick(&req.headers),
        None => req.model_group.clone(),
    };
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut seen_groups: Vec<String> = vec![primary.clone()];
    let first = order(strategy, &primary, req.stream, candidates, &mut rand);
    if first.is_empty() {
        return Err(GatewayError::new(
            ErrorClass::NotFound,
            404,
            format!("no deployment serves model group {primary}"),
        ));
    }
    // Each deployment once, then more up to 1 + num_retries attempts.
    let total = first.len().max(1 + config.num_retries as usize);
    for k in 0..total {
        let c = first[k % first.len()];
        let same = k > 0 && first.len() == 1;
        attempts.push(Attempt {
            candidate_id: c.id.clone(),
            when: if same { RETRY_SAME } else { MOVE_ON }.to_vec(),
        });
    }
    let mut add_group = |group: &str, when_first: &[ErrorClass], attempts: &mut Vec<Attempt>| {
        if seen_groups.iter().any(|g| g == group) {
            return;
        }
        seen_groups.push(group.to_string());
        for (k, c) in order(strategy, group, req.stream, candidates, &mut rand)
            .into_iter()
            .enumerate()
        {
            let mut when = when_first.to_vec();
            if k > 0 {
                when.extend_from_slice(MOVE_ON);
            }
            attempts.push(Attempt {
                candidate_id: c.id.clone(),
                when,
            });
        }
    };
    for g in config
        .context_window_fallbacks
        .get(&primary)
        .into_iter()
        .flatten()
    {
        add_group(g, &[ErrorClass::ContextLength], &mut attempts);
    }
    for g in config
        .content_policy_fallbacks
        .get(&primary)
        .into_iter()
        .flatten()
    {
        add_group(g, &[ErrorClass::ContentFilter], &mut attempts);
    }
    let general = config
        .fallbacks
        .get(&primary)
        .unwrap_or(&config.default_fallbacks);
    for g in general {
        add_group(g, MOVE_ON, &mut attempts);
    }
    if let Some(a) = auto {
        let other = if primary == a.strong {
            &a.fast
        } else {
            &a.strong
        };
        add_group(other, MOVE_ON, &mut attempts);
    }
    Ok(attempts)
}

impl Guest for Router {
    fn describe() -> (String, String) {
        ("router".into(), env!("CARGO_PKG_VERSION").into())
    }

    fn route(
        config_json: String,
        req: RouteRequest,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, GatewayError> {
        let config: Config = serde_json::from_str(&config_json).map_err(|e| {
            GatewayError::new(
                ErrorClass::BadRequest,
                500,
                format!("router policy: invalid config: {e}"),
            )
        })?;
        plan(&config, &req, &candidates, random)
    }
}

#[cfg(target_arch = "wasm32")]
llmgate_sdk::export_policy!(Router);

#[cfg(test)]
mod tests;
