//! What a request costs: token usage times the deployment's prices (built-in table,
//! overridden per deployment in `litellm_params` or `model_info`), and the worst case
//! reserved before a request goes out.

use serde_json::Value;

use crate::plugins::Usage;

/// Output tokens assumed for the reservation when a request sets no `max_tokens` and the
/// model's output cap is unknown.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

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

    /// The most a request can cost: every input token at the dearest input price and the
    /// whole output allowance.
    pub fn worst_case(&self, input_tokens: u64, max_output: u64) -> f64 {
        let out = if max_output > 0 {
            max_output
        } else if self.max_output_tokens > 0 {
            self.max_output_tokens
        } else {
            DEFAULT_MAX_OUTPUT_TOKENS
        };
        input_tokens as f64 * self.input.max(self.cache_write)
            + out as f64 * self.output.max(self.reasoning)
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
    fn worst_case_uses_the_output_allowance() {
        let p = Prices::from_info(&serde_json::json!({
            "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "max_output_tokens": 1000
        }));
        assert!((p.worst_case(100, 0) - (100e-6 + 2000e-6)).abs() < 1e-12);
        assert!((p.worst_case(100, 10) - (100e-6 + 20e-6)).abs() < 1e-12);
        let unknown = Prices::from_info(&serde_json::json!({"output_cost_per_token": 1.0}));
        assert_eq!(unknown.worst_case(0, 0), DEFAULT_MAX_OUTPUT_TOKENS as f64);
    }
}
