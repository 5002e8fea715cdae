//! What the store keeps: virtual keys and spend log rows. Plain data; the ledger
//! ([`crate::ledger`]) owns the live state and decides what is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A key's spend per model group in its budget windows, stored (and shown in the key
/// admin API) as `{"gpt-4o": {"reset_at": 1700000000, "spend": 0.1}}`.
pub type ModelSpend = BTreeMap<String, ModelWindow>;

/// One model group's budget window of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelWindow {
    /// When the window resets (unix seconds); `None` for a budget without `time_period`.
    #[serde(default)]
    pub reset_at: Option<i64>,
    /// USD spent in the window.
    #[serde(default)]
    pub spend: f64,
}

/// A virtual key as stored. The key itself is never stored: `token` is its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// SHA-256 of the key, lower-case hex. Primary key.
    pub token: String,
    /// Display form of the key, `sk-...abcd` (last 4 characters).
    pub key_name: String,
    /// Human name (`key_alias`), unique when set.
    pub key_alias: Option<String>,
    /// USD spent in the current budget window.
    pub spend: f64,
    /// USD cap per budget window (`None`: no cap).
    pub max_budget: Option<f64>,
    /// Budget window (`30s`, `1h`, `1d`, `7d`, `monthly`, `30d`, ...).
    pub budget_duration: Option<String>,
    /// When the budget window next resets (unix seconds).
    pub budget_reset_at: Option<i64>,
    /// When the key stops working (unix seconds).
    pub expires: Option<i64>,
    /// Model groups this key may use (empty: all).
    pub models: Vec<String>,
    /// Free-form JSON object.
    pub metadata: serde_json::Value,
    /// Tokens per minute.
    pub tpm_limit: Option<u64>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel_requests: Option<u64>,
    /// Per-model budgets: `{"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}}`.
    pub model_max_budget: serde_json::Value,
    /// Per-model spend in their windows: `{"gpt-4o": {"spend": 0.1, "reset_at": 1700000000}}`.
    pub model_spend: ModelSpend,
    /// A blocked key is refused.
    pub blocked: bool,
    /// Owner user id.
    pub user_id: Option<String>,
    /// Owner team id.
    pub team_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One request's spend log row (LiteLLM's `/spend/logs` fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendLog {
    /// The call id (`x-litellm-call-id`). Primary key.
    pub request_id: String,
    /// `acompletion`, `anthropic_messages`, `aembedding`, `aimage_generation`, ...
    pub call_type: String,
    /// SHA-256 of the key used (empty when keys are off).
    pub api_key: String,
    /// USD.
    pub spend: f64,
    /// Prompt + completion tokens.
    pub total_tokens: u64,
    /// Input tokens (including cached).
    pub prompt_tokens: u64,
    /// Output tokens (including reasoning).
    pub completion_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Reasoning tokens (part of completion tokens).
    pub reasoning_tokens: u64,
    /// Request start (unix milliseconds).
    pub start_time_ms: i64,
    /// Request end (unix milliseconds).
    pub end_time_ms: i64,
    /// First byte of a stream (unix milliseconds).
    pub completion_start_time_ms: Option<i64>,
    /// The model sent upstream (`gpt-4o`).
    pub model: String,
    /// The model group the client asked for.
    pub model_group: String,
    /// Deployment id that served (or last failed).
    pub model_id: String,
    /// Provider prefix (`openai`, `anthropic`, ...).
    pub custom_llm_provider: String,
    /// The deployment's `api_base`.
    pub api_base: String,
    /// `success` or `failure`.
    pub status: String,
    /// The request's `user` field.
    pub user: String,
    /// JSON object: key alias, error details, attempts, tags, ...
    pub metadata: serde_json::Value,
    /// Request tags.
    pub request_tags: Vec<String>,
    /// The request body (only with full request logging on).
    pub messages: Option<serde_json::Value>,
    /// The response body (only with full request logging on).
    pub response: Option<serde_json::Value>,
    /// Client IP address.
    pub requester_ip_address: Option<String>,
}

/// Filters for reading spend logs; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct SpendQuery {
    /// Key hash.
    pub api_key: Option<String>,
    /// One request.
    pub request_id: Option<String>,
    /// The request's `user`.
    pub user: Option<String>,
    /// `start_time_ms >= start_ms`.
    pub start_ms: Option<i64>,
    /// `start_time_ms < end_ms`.
    pub end_ms: Option<i64>,
    /// Most rows, newest first (0: no limit).
    pub limit: usize,
}

/// A write the hot path hands to the store without waiting.
#[derive(Debug, Clone)]
pub enum SpendEvent {
    /// Append a spend log row.
    Log(Box<SpendLog>),
    /// Set a key's running spend (absolute values from the in-memory ledger).
    KeySpend {
        /// Key hash.
        token: String,
        /// USD in the current window.
        spend: f64,
        /// Next window reset.
        budget_reset_at: Option<i64>,
        /// Per-model spend (see [`KeyRecord::model_spend`]).
        model_spend: ModelSpend,
    },
}
