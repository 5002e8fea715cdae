//! A routing policy that misbehaves on purpose, to prove the sandbox contains policies too.
//! Its name is `hostile-policy`; the policy config's `do` picks the misbehaviour:
//!
//! - `loop`: spins forever.
//! - `oom`: allocates without bound.
//! - `panic`: panics.
//! - `ghost`: plans an attempt on a deployment that does not exist.
//! - `many`: plans 100,000 attempts.
//! - `huge`: answers with a 16 MiB candidate id.
//! - `reject`: rejects the request with a 418 of its own.
//! - anything else: every candidate of the group, in order.

use llmgate_sdk::policy::exports::llmgate::plugin::policy::{
    Attempt, Candidate, Guest, RouteRequest,
};
use llmgate_sdk::{ErrorClass, GatewayError};

/// The policy.
pub struct HostilePolicy;

fn action(config_json: &str) -> String {
    // A tiny scan, to need no JSON crate: `"do":"<word>"`.
    config_json
        .split("\"do\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .unwrap_or("")
        .to_string()
}

impl Guest for HostilePolicy {
    fn describe() -> (String, String) {
        ("hostile-policy".into(), "6.6.6".into())
    }

    fn route(
        config_json: String,
        req: RouteRequest,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Attempt>, GatewayError> {
        let all = || {
            candidates
                .iter()
                .filter(|c| c.model_group == req.model_group)
                .map(|c| Attempt {
                    candidate_id: c.id.clone(),
                    when: vec![ErrorClass::Upstream],
                })
                .collect::<Vec<_>>()
        };
        match action(&config_json).as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile policy panics on purpose"),
            "ghost" => Ok(vec![Attempt {
                candidate_id: "no-such-deployment".into(),
                when: vec![],
            }]),
            "many" => Ok((0..100_000)
                .map(|_| Attempt {
                    candidate_id: candidates.first().map(|c| c.id.clone()).unwrap_or_default(),
                    when: vec![ErrorClass::Upstream],
                })
                .collect()),
            "huge" => Ok(vec![Attempt {
                candidate_id: "x".repeat(16 << 20),
                when: vec![],
            }]),
            "reject" => Err(GatewayError::new(
                ErrorClass::BadRequest,
                418,
                "the hostile policy refuses this request",
            )),
            _ => Ok(all()),
        }
    }
}

#[cfg(target_arch = "wasm32")]
llmgate_sdk::export_policy!(HostilePolicy);
