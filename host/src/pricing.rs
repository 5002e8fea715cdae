//! What a request costs: token usage times the deployment's prices (built-in table,
//! overridden per deployment in `litellm_params` or `model_info`), and what is reserved
//! before a request goes out.
//!
//! **The reservation rule.** A request reserves its input upper bound
//! ([`input_tokens_upper_bound`]) at the dearest input price, plus an output allowance at
//! the output price ([`Prices::output_reservation`]):
//! - the request's `max_tokens` (or `max_completion_tokens`) when it sets one: then the
//!   reservation is the request's worst case;
//! - without one, under `budget_admission: reserve`, the model's output cap but at most
//!   `llmgate.default_reserved_output_tokens` ([`DEFAULT_RESERVED_OUTPUT_TOKENS`], 4096):
//!   a typical answer is far shorter than a 16k-token cap, and reserving the whole cap
//!   would let a small budget admit one request at a time;
//! - without one, under `budget_admission: strict`, the model's whole output cap
//!   ([`DEFAULT_MAX_OUTPUT_TOKENS`] when unknown): strict promises never to pass the
//!   budget, so it reserves the true worst case.
//!
//! The same token count (input bound + output allowance) is what a request holds of its
//! key's `tpm_limit` until it settles.

use serde_json::Value;

use crate::wit::types::Usage;

/// The output cap assumed when a model's is unknown.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// Output tokens reserved for a request without `max_tokens` under `reserve` admission,
/// unless `llmgate.default_reserved_output_tokens` says otherwise (capped at the model's
/// output cap).
pub const DEFAULT_RESERVED_OUTPUT_TOKENS: u64 = 4096;

/// USD per token of one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prices {
    /// Uncached input.
    pub input: f64,
    /// Output (and reasoning, unless priced apart).
    pub output: f64,
    /// Cached input read.
    pub cache_read: f64,
    /// Input written to the cache.
    pub cache_write: f64,
    /// Reasoning tokens.
    pub reasoning: f64,
    /// The model's output cap, tokens (0: unknown).
    pub max_output_tokens: u64,
}

impl Prices {
    /// The prices in a model-info object (LiteLLM's field names).
    pub fn from_info(info: &Value) -> Self {
        let f = |k: &str| info.get(k).and_then(Value::as_f64).filter(|v| *v >= 0.0);
        let input = f("input_cost_per_token").unwrap_or(0.0);
        let output = f("output_cost_per_token").unwrap_or(0.0);
        Self {
            input,
            output,
            cache_read: f("cache_read_input_token_cost")
                .filter(|v| *v > 0.0)
                .unwrap_or(input),
            cache_write: f("cache_creation_input_token_cost")
                .filter(|v| *v > 0.0)
                .unwrap_or(input),
            reasoning: f("output_cost_per_reasoning_token")
                .filter(|v| *v > 0.0)
                .unwrap_or(output),
            max_output_tokens: info
                .get("max_output_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        }
    }

    /// The cost of `u`, USD.
    pub fn cost(&self, u: &Usage) -> f64 {
        let reasoning = u.reasoning.min(u.output);
        let plain_out = u.output - reasoning;
        u.input as f64 * self.input
            + u.cache_read as f64 * self.cache_read
            + u.cache_write as f64 * self.cache_write
            + plain_out as f64 * self.output
            + reasoning as f64 * self.reasoning
    }

    /// The model's output cap, or [`DEFAULT_MAX_OUTPUT_TOKENS`] when it is unknown.
    pub fn output_cap(&self) -> u64 {
        if self.max_output_tokens > 0 {
            self.max_output_tokens
        } else {
            DEFAULT_MAX_OUTPUT_TOKENS
        }
    }

    /// The output tokens reserved for a request (the rule in the module docs):
    /// `max_output` when the request sets it (non-zero), else the output cap, at most
    /// `unset_default` (`u64::MAX` for the whole cap).
    pub fn output_reservation(&self, max_output: u64, unset_default: u64) -> u64 {
        if max_output > 0 {
            max_output
        } else {
            self.output_cap().min(unset_default)
        }
    }

    /// USD reserved for `input_tokens` of input and `output_tokens` of output: every input
    /// token at the dearest input price, every output token at the dearest output price.
    pub fn reservation(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        input_tokens as f64 * self.input.max(self.cache_write)
            + output_tokens as f64 * self.output.max(self.reasoning)
    }
}

/// Input tokens a body of `bytes` can hold at most, for the reservation: a token is at
/// least about three bytes of JSON text.
pub fn input_tokens_upper_bound(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64, reasoning: u64) -> Usage {
        Usage {
            input,
            output,
            cache_read,
            cache_write,
            reasoning,
        }
    }

    #[test]
    fn costs_every_token_kind_at_its_price() {
        let p = Prices::from_info(&serde_json::json!({
            "input_cost_per_token": 3e-6,
            "output_cost_per_token": 15e-6,
            "cache_read_input_token_cost": 0.3e-6,
            "cache_creation_input_token_cost": 3.75e-6,
        }));
        let c = p.cost(&usage(1000, 500, 2000, 100, 200));
        let want = 1000.0 * 3e-6 + 2000.0 * 0.3e-6 + 100.0 * 3.75e-6 + 500.0 * 15e-6;
        assert!((c - want).abs() < 1e-12, "{c} vs {want}");
        // Unknown cache prices fall back to the input price.
        let q = Prices::from_info(
            &serde_json::json!({"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}),
        );
        assert!((q.cost(&usage(0, 0, 10, 10, 0)) - 20e-6).abs() < 1e-15);
    }

    #[test]
    fn reservation_uses_the_output_allowance() {
        let p = Prices::from_info(&serde_json::json!({
            "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "max_output_tokens": 16384
        }));
        // max_tokens set: exactly that.
        assert_eq!(p.output_reservation(10, 4096), 10);
        assert_eq!(p.output_reservation(20000, 4096), 20000);
        // Unset: the bounded default, or the whole cap (strict).
        assert_eq!(p.output_reservation(0, 4096), 4096);
        assert_eq!(p.output_reservation(0, u64::MAX), 16384);
        let small = Prices::from_info(&serde_json::json!({"max_output_tokens": 1000}));
        assert_eq!(small.output_reservation(0, 4096), 1000);
        let unknown = Prices::from_info(&serde_json::json!({"output_cost_per_token": 1.0}));
        assert_eq!(
            unknown.output_reservation(0, u64::MAX),
            DEFAULT_MAX_OUTPUT_TOKENS
        );
        assert!((p.reservation(100, 10) - (100e-6 + 20e-6)).abs() < 1e-12);
    }
}
