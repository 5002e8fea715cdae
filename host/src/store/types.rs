//! What the store keeps: virtual keys and spend log rows. Plain data; the ledger
//! ([`crate::ledger`]) owns the live state and decides what is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// A key's budgets per model group (`model_max_budget`), in the shapes LiteLLM's
/// `/key/generate` takes: `{"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}}` (or
/// LiteLLM's other names for the two fields, `max_budget` and `budget_duration`; the limit
/// may be a numeric string) or `{"gpt-4o": 1.0}`.
///
/// Each entry keeps the JSON the caller gave: it is stored and shown exactly so (LiteLLM
/// clients compare what they read back with what they sent), and the [`ModelBudget`] read
/// from it is what the ledger enforces. [`ModelBudgets::parse`] refuses an entry it cannot
/// read; a stored row is read leniently, as it always was (see [`Deserialize`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelBudgets(BTreeMap<String, BudgetEntry>);

/// One `model_max_budget` entry: as given, and as read.
#[derive(Debug, Clone, PartialEq)]
struct BudgetEntry {
    given: Value,
    /// `None` only for a stored entry without a readable limit (written by hand): shown,
    /// not enforced.
    budget: Option<ModelBudget>,
}

/// One model group's budget of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelBudget {
    /// USD cap per window.
    pub max_budget: f64,
    /// The window as given (`1d`, `30d`, `monthly`, ...); `None`: the budget never resets.
    pub window: Option<String>,
}

/// An entry with a limit read from it, and the first thing wrong with it, if anything.
struct Reading {
    budget: Option<ModelBudget>,
    problem: Option<String>,
}

impl ModelBudget {
    /// What one entry says. A stored entry is read with the same rules, so a budget set
    /// through the API is enforced the same way after a restart.
    fn read(entry: &Value) -> Reading {
        const SHAPE: &str =
            "needs a budget: a number or {\"budget_limit\": 1.0, \"time_period\": \"1d\"}";
        let mut problem = None;
        let (limit, window) = match entry {
            Value::Number(_) => (Some(entry), None),
            Value::Object(m) => {
                let mut either = |a: &str, b: &str| {
                    let get = |k: &str| m.get(k).filter(|v| !v.is_null());
                    if get(a).is_some() && get(b).is_some() {
                        problem.get_or_insert(format!(
                            "gives both `{a}` and `{b}` (two names of one field); give one"
                        ));
                    }
                    get(a).or_else(|| get(b))
                };
                (
                    either("budget_limit", "max_budget"),
                    either("time_period", "budget_duration"),
                )
            }
            _ => (None, None),
        };
        let max_budget = limit
            .and_then(|l| l.as_f64().or_else(|| l.as_str()?.parse().ok()))
            .filter(|l: &f64| l.is_finite() && *l >= 0.0);
        let window = match window {
            None => None,
            Some(Value::String(w)) => Some(w.clone()),
            Some(_) => {
                problem.get_or_insert(
                    "has a `time_period` that is not a string such as \"1d\"".to_string(),
                );
                None
            }
        };
        if max_budget.is_none() {
            problem = Some(SHAPE.to_string());
        }
        Reading {
            budget: max_budget.map(|max_budget| Self { max_budget, window }),
            problem,
        }
    }
}

impl ModelBudgets {
    /// A request's `model_max_budget`: an object of entries (`null` clears it). The error
    /// names the entry and what is wrong with it.
    pub fn parse(given: &Value) -> Result<Self, String> {
        let m = match given {
            Value::Null => return Ok(Self::default()),
            Value::Object(m) => m,
            _ => return Err("must be a JSON object".into()),
        };
        let mut budgets = BTreeMap::new();
        for (model, entry) in m {
            let reading = ModelBudget::read(entry);
            if let Some(p) = reading.problem {
                return Err(format!("entry `{model}` {p}"));
            }
            let e = BudgetEntry {
                given: entry.clone(),
                budget: reading.budget,
            };
            budgets.insert(model.clone(), e);
        }
        Ok(Self(budgets))
    }

    /// The budget of `model`, if the key has one.
    pub fn get(&self, model: &str) -> Option<&ModelBudget> {
        self.0.get(model)?.budget.as_ref()
    }

    /// Every model with a budget, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelBudget)> {
        self.0
            .iter()
            .filter_map(|(m, e)| Some((m.as_str(), e.budget.as_ref()?)))
    }
}

/// As given: `{"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}}`.
impl Serialize for ModelBudgets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(m, e)| (m, &e.given)))
    }
}

/// A stored `model_max_budget` column, read as it always was: any JSON loads; an entry
/// without a readable limit is kept (and shown) but not enforced, a `time_period` that is
/// not a string is ignored, and anything but an object reads as no budgets.
impl<'de> Deserialize<'de> for ModelBudgets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(m) = Value::deserialize(d)? else {
            return Ok(Self::default());
        };
        let budgets = m.into_iter().map(|(model, given)| {
            let budget = ModelBudget::read(&given).budget;
            (model, BudgetEntry { given, budget })
        });
        Ok(Self(budgets.collect()))
    }
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
    /// USD spend past which the key raises a soft-budget alert (LiteLLM's `soft_budget`;
    /// not a limit).
    #[serde(default)]
    pub soft_budget: Option<f64>,
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
    pub model_max_budget: ModelBudgets,
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

impl KeyRecord {
    /// A key with no settings and no spend, made at `now` (unix seconds).
    pub fn new(token: String, key_name: String, now: i64) -> Self {
        Self {
            token,
            key_name,
            key_alias: None,
            spend: 0.0,
            max_budget: None,
            soft_budget: None,
            budget_duration: None,
            budget_reset_at: None,
            expires: None,
            models: Vec::new(),
            metadata: Value::Object(serde_json::Map::new()),
            tpm_limit: None,
            rpm_limit: None,
            max_parallel_requests: None,
            model_max_budget: ModelBudgets::default(),
            model_spend: ModelSpend::new(),
            blocked: false,
            user_id: None,
            team_id: None,
            created_at: now,
            updated_at: now,
        }
    }
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
    /// The model group.
    pub model: Option<String>,
    /// The row's status (`success`, `failure`).
    pub status: Option<String>,
    /// Most rows, newest first (0: no limit).
    pub limit: usize,
    /// Rows skipped first (pagination).
    pub offset: usize,
}

/// A write the hot path hands to the store without waiting.
#[derive(Debug, Clone)]
pub enum SpendEvent {
    /// Append a spend log row (shared with the request's [`Record`] sinks, so handing it
    /// to a background exporter copies nothing).
    ///
    /// [`Record`]: crate::observe::Record
    Log(Arc<SpendLog>),
    /// Add one request's cost to a key's running spend. The store adds (several instances
    /// may charge one key), in the transaction of the batch's spend log rows.
    KeyCharge(Charge),
    /// Start a key's budget window over (`budget_duration`): spend 0, the next reset `to`,
    /// only if the stored window still ends at `from` (so, with several instances, the first
    /// to roll the window resets it and the others' resets do nothing).
    KeyReset {
        /// Key hash.
        token: String,
        /// The window's end the instance saw.
        from: i64,
        /// The next window's end.
        to: Option<i64>,
    },
}

/// Which running spend of an existing key a key write replaces (by default neither: every
/// instance's charges add to them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overwrite {
    /// `spend` (an admin set it).
    pub spend: bool,
    /// `model_spend` (the model budgets changed, their windows start over).
    pub model_spend: bool,
}

impl Overwrite {
    /// Both (a copy of a key from another database).
    pub const ALL: Overwrite = Overwrite {
        spend: true,
        model_spend: true,
    };
}

/// One request's charge to a key ([`SpendEvent::KeyCharge`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// Key hash.
    pub token: String,
    /// USD.
    pub cost: f64,
    /// The part of `cost` that this instance's budget lease paid (`store/lease.rs`): taken
    /// off the lease and the key's `leased` when the lease still exists.
    pub lease: Option<Taken>,
    /// The key's budget for the request's model group, when it has one.
    pub model: Option<ModelCharge>,
}

/// What a charge took from a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The lease's id.
    pub id: String,
    /// USD.
    pub usd: f64,
}

/// The model group a charge counts against (`model_max_budget`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCharge {
    /// The model group.
    pub group: String,
    /// When the group's window ends, for a window that has ended or not started (unix
    /// seconds; `None` without `time_period`).
    pub reset_at: Option<i64>,
    /// Now (unix seconds): a stored window that ended before starts over.
    pub now: i64,
}

/// What [`SpendAggregate`] groups spend log rows by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendGroup {
    /// The UTC day of `start_time_ms`, `YYYY-MM-DD`.
    Day,
    /// The key's hash.
    ApiKey,
    /// The model group.
    Model,
    /// The provider (`custom_llm_provider`).
    Provider,
    /// The end user (`user`).
    User,
    /// The key's `team_id`, `Unassigned Team` for a key without one (or a deleted key).
    Team,
    /// Each request tag (a row with two tags counts in both; a row without tags in none).
    Tag,
}

/// A sum over spend log rows: the range, filters and groups.
#[derive(Debug, Clone, Default)]
pub struct SpendAggregate {
    /// Groups, in order; empty: one total.
    pub group_by: Vec<SpendGroup>,
    /// Rows with `start_time_ms >= start_ms`.
    pub start_ms: Option<i64>,
    /// Rows with `start_time_ms < end_ms`.
    pub end_ms: Option<i64>,
    /// Only this key's rows (its hash).
    pub api_key: Option<String>,
    /// Only this model group's rows.
    pub model: Option<String>,
    /// Highest spend first (else ordered by the groups).
    pub by_spend: bool,
    /// At most this many groups; 0: all.
    pub limit: usize,
}

/// One group's sums.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendTotals {
    /// The group values, in [`SpendAggregate::group_by`]'s order.
    pub groups: Vec<String>,
    /// USD.
    pub spend: f64,
    /// Rows.
    pub requests: u64,
    /// Rows with status `success`.
    pub successful_requests: u64,
    /// The other rows.
    pub failed_requests: u64,
    /// Summed token counts.
    pub prompt_tokens: u64,
    /// Summed completion tokens.
    pub completion_tokens: u64,
    /// Summed total tokens.
    pub total_tokens: u64,
    /// Summed cache-read input tokens.
    pub cache_read_input_tokens: u64,
    /// Summed cache-creation input tokens.
    pub cache_creation_input_tokens: u64,
    /// The key's alias, when grouped by key and the key still exists.
    pub key_alias: Option<String>,
    /// The key's display name (`sk-...abcd`), likewise.
    pub key_name: Option<String>,
}
