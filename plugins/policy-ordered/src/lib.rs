//! llmgate routing policy `ordered`: the deployments of the requested model group in
//! `order` (then config order), healthy ones first; the next deployment is tried after a
//! retryable failure.
//!
//! Config (all optional): `{"retry_on": ["rate-limited", "overloaded", ...]}`.

use llmgate_sdk::ErrorClass;
use llmgate_sdk::GatewayError;
use llmgate_sdk::policy::exports::llmgate::plugin::policy::{
    Attempt, Candidate, Guest, RouteRequest,
};

/// The policy.
pub struct Ordered;

/// Failures after which the next deployment is worth trying.
const DEFAULT_RETRY_ON: &[ErrorClass] = &[
    ErrorClass::Auth,
    ErrorClass::Permission,
    ErrorClass::NotFound,
    ErrorClass::RateLimited,
    ErrorClass::Overloaded,
    ErrorClass::Upstream,
    ErrorClass::Timeout,
];

fn parse_class(s: &str) -> Option<ErrorClass> {
    Some(match s {
        "bad-request" => ErrorClass::BadRequest,
        "auth" => ErrorClass::Auth,
        "permission" => ErrorClass::Permission,
        "not-found" => ErrorClass::NotFound,
        "rate-limited" => ErrorClass::RateLimited,
        "overloaded" => ErrorClass::Overloaded,
        "context-length" => ErrorClass::ContextLength,
        "content-filter" => ErrorClass::ContentFilter,
        "upstream" => ErrorClass::Upstream,
        "timeout" => ErrorClass::Timeout,
        _ => return None,
    })
}

impl Guest for Ordered {
    fn describe() -> (String, String) {
        ("ordered".into(), env!("CARGO_PKG_VERSION").into())
    }

    fn route(
        config_json: String,
        req: RouteRequest,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, GatewayError> {
        let config: serde_json::Value = serde_json::from_str(&config_json).unwrap_or_default();
        let retry_on: Vec<ErrorClass> = match config.get("retry_on").and_then(|v| v.as_array()) {
            Some(list) => list
                .iter()
                .filter_map(|v| v.as_str().and_then(parse_class))
                .collect(),
            None => DEFAULT_RETRY_ON.to_vec(),
        };
        let mut group: Vec<(usize, &Candidate)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.model_group == req.model_group)
            .collect();
        if group.is_empty() {
            return Err(GatewayError::new(
                ErrorClass::NotFound,
                404,
                format!("no deployment serves model group {}", req.model_group),
            ));
        }
        // Healthy first, then `order` (0 = unset = last among ordered), then config order.
        group.sort_by_key(|(i, c)| {
            (
                !c.healthy,
                if c.order == 0 { u32::MAX } else { c.order },
                *i,
            )
        });
        Ok(group
            .into_iter()
            .map(|(_, c)| Attempt {
                candidate_id: c.id.clone(),
                when: retry_on.clone(),
            })
            .collect())
    }
}

#[cfg(target_arch = "wasm32")]
llmgate_sdk::export_policy!(Ordered);
