//! The SQL for each table and the conversions between its rows and the store types, shared
//! by both backends. Column names are the field names; lists and JSON values are stored as
//! JSON text, unsigned counters as signed 64-bit integers (clamped), booleans as 0/1.
//!
//! Statements are written once, with SQLite's numbered placeholders (`?1`); the PostgreSQL
//! backend rewrites them to `$1` ([`numbered_dollar`]). Arguments are [`Arg`]s, which both
//! drivers bind; rows are read through [`Cols`], which both drivers' rows implement.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

use super::types::{KeyRecord, ModelWindow, Overwrite, SpendLog, SpendQuery};

/// One statement argument, bound the same way by both drivers; text is borrowed from the
/// row being written where it can be.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg<'a> {
    /// SQL `NULL`.
    Null,
    /// An integer (`BIGINT`, or `INTEGER` for flags).
    Int(i64),
    /// A float (`DOUBLE PRECISION`).
    Real(f64),
    /// Text (JSON included).
    Text(Cow<'a, str>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Cow::Owned(v))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// Reading a result row's columns by name; implemented for both drivers' rows.
pub(super) trait Cols {
    /// The driver's error.
    type Error;
    /// A text column (`NULL` as `None`).
    fn opt_text(&self, col: &str) -> Result<Option<String>, Self::Error>;
    /// An integer column of any width (`NULL` as `None`).
    fn opt_int(&self, col: &str) -> Result<Option<i64>, Self::Error>;
    /// A float column (`NULL` as `None`).
    fn opt_real(&self, col: &str) -> Result<Option<f64>, Self::Error>;
    /// The error for a column whose value cannot be read (bad JSON, unexpected `NULL`).
    fn bad(col: &str, e: Box<dyn std::error::Error + Send + Sync>) -> Self::Error;

    /// A `NOT NULL` text column.
    fn text(&self, col: &str) -> Result<String, Self::Error> {
        self.opt_text(col)?
            .ok_or_else(|| Self::bad(col, "unexpected NULL".into()))
    }
    /// A `NOT NULL` integer column.
    fn int(&self, col: &str) -> Result<i64, Self::Error> {
        self.opt_int(col)?
            .ok_or_else(|| Self::bad(col, "unexpected NULL".into()))
    }
    /// A `NOT NULL` float column.
    fn real(&self, col: &str) -> Result<f64, Self::Error> {
        self.opt_real(col)?
            .ok_or_else(|| Self::bad(col, "unexpected NULL".into()))
    }
    /// A JSON text column (`NULL` as `None`).
    fn opt_json<T: DeserializeOwned>(&self, col: &str) -> Result<Option<T>, Self::Error> {
        self.opt_text(col)?
            .map(|t| serde_json::from_str(&t).map_err(|e| Self::bad(col, Box::new(e))))
            .transpose()
    }
    /// A `NOT NULL` JSON text column.
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, Self::Error> {
        self.opt_json(col)?
            .ok_or_else(|| Self::bad(col, "unexpected NULL".into()))
    }
}

/// `sql` with SQLite's `?N` placeholders written as PostgreSQL's `$N` (the statements here
/// use `?` for nothing else).
pub(super) fn numbered_dollar(sql: &str) -> String {
    sql.replace('?', "$")
}

/// JSON text for a column.
pub(super) fn json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(value)
}

/// Integers are signed: counters beyond `i64::MAX` are stored as `i64::MAX`.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A counter read back; a negative value (written by hand) reads as 0.
pub(super) fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const KEY_COLUMNS: &str = "token, key_name, key_alias, spend, max_budget, budget_duration, \
    budget_reset_at, expires, models, metadata, tpm_limit, rpm_limit, max_parallel_requests, \
    model_max_budget, model_spend, blocked, user_id, team_id, created_at, updated_at, soft_budget";

/// All keys, oldest first.
pub(super) fn load_keys_sql() -> String {
    format!("SELECT {KEY_COLUMNS} FROM llmgate_verification_tokens ORDER BY created_at, token")
}

/// The key with token `?1` (no row once it is deleted); columns as [`load_keys_sql`].
pub(super) fn load_key_sql() -> String {
    format!("SELECT {KEY_COLUMNS} FROM llmgate_verification_tokens WHERE token = ?1")
}

/// A key from a row of [`load_keys_sql`].
pub(super) fn key_from_row<R: Cols>(row: &R) -> Result<KeyRecord, R::Error> {
    Ok(KeyRecord {
        token: row.text("token")?,
        key_name: row.text("key_name")?,
        key_alias: row.opt_text("key_alias")?,
        spend: row.real("spend")?,
        max_budget: row.opt_real("max_budget")?,
        soft_budget: row.opt_real("soft_budget")?,
        budget_duration: row.opt_text("budget_duration")?,
        budget_reset_at: row.opt_int("budget_reset_at")?,
        expires: row.opt_int("expires")?,
        models: row.json("models")?,
        metadata: row.json("metadata")?,
        tpm_limit: row.opt_int("tpm_limit")?.map(uint),
        rpm_limit: row.opt_int("rpm_limit")?.map(uint),
        max_parallel_requests: row.opt_int("max_parallel_requests")?.map(uint),
        model_max_budget: row.json("model_max_budget")?,
        model_spend: row.json("model_spend")?,
        blocked: row.int("blocked")? != 0,
        user_id: row.opt_text("user_id")?,
        team_id: row.opt_text("team_id")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// The token that already uses alias `?1`, other than token `?2` itself.
pub(super) const ALIAS_OWNER: &str =
    "SELECT token FROM llmgate_verification_tokens WHERE key_alias = ?1 AND token <> ?2 LIMIT 1";

/// Deletes key `?1`.
pub(super) const DELETE_KEY: &str = "DELETE FROM llmgate_verification_tokens WHERE token = ?1";

/// Deletes the budget leases of key `?1` (deleted: what they held goes with it).
pub(super) const DELETE_KEY_LEASES: &str = "DELETE FROM llmgate_key_leases WHERE token = ?1";

/// Renames key `?1` to `?2` (regeneration), keeping its spend and what its leases hold.
pub(super) const RENAME_KEY: &str =
    "UPDATE llmgate_verification_tokens SET token = ?2 WHERE token = ?1";

/// Points the leases of key `?1` at its new token `?2`.
pub(super) const RENAME_KEY_LEASES: &str =
    "UPDATE llmgate_key_leases SET token = ?2 WHERE token = ?1";

/// Inserts the key, or replaces the settings of the existing row. Its running spend
/// (`spend`, `model_spend`: the instances' charges add to them) is replaced only when `?22`
/// (an admin set the spend) or `?23` (the model budgets changed) is 1. Arguments
/// [`key_args`].
pub(super) const UPSERT_KEY: &str = "INSERT INTO llmgate_verification_tokens (
         token, key_name, key_alias, spend, max_budget, budget_duration, budget_reset_at,
         expires, models, metadata, tpm_limit, rpm_limit, max_parallel_requests,
         model_max_budget, model_spend, blocked, user_id, team_id, created_at, updated_at,
         soft_budget
     ) VALUES (
         ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
         ?19, ?20, ?21
     )
     ON CONFLICT (token) DO UPDATE SET
         key_name = excluded.key_name,
         key_alias = excluded.key_alias,
         spend = CASE WHEN ?22 = 1 THEN excluded.spend
                      ELSE llmgate_verification_tokens.spend END,
         max_budget = excluded.max_budget,
         budget_duration = excluded.budget_duration,
         budget_reset_at = excluded.budget_reset_at,
         expires = excluded.expires,
         models = excluded.models,
         metadata = excluded.metadata,
         tpm_limit = excluded.tpm_limit,
         rpm_limit = excluded.rpm_limit,
         max_parallel_requests = excluded.max_parallel_requests,
         model_max_budget = excluded.model_max_budget,
         model_spend = CASE WHEN ?23 = 1 THEN excluded.model_spend
                            ELSE llmgate_verification_tokens.model_spend END,
         blocked = excluded.blocked,
         user_id = excluded.user_id,
         team_id = excluded.team_id,
         created_at = excluded.created_at,
         updated_at = excluded.updated_at,
         soft_budget = excluded.soft_budget";

/// The arguments of [`UPSERT_KEY`], in its column order; `spend`: which running spend of an
/// existing row to replace too.
pub(super) fn key_args(k: &KeyRecord, spend: Overwrite) -> serde_json::Result<Vec<Arg<'_>>> {
    Ok(vec![
        k.token.as_str().into(),
        k.key_name.as_str().into(),
        k.key_alias.as_deref().into(),
        k.spend.into(),
        k.max_budget.into(),
        k.budget_duration.as_deref().into(),
        k.budget_reset_at.into(),
        k.expires.into(),
        json(&k.models)?.into(),
        json(&k.metadata)?.into(),
        k.tpm_limit.map(int).into(),
        k.rpm_limit.map(int).into(),
        k.max_parallel_requests.map(int).into(),
        json(&k.model_max_budget)?.into(),
        json(&k.model_spend)?.into(),
        i64::from(k.blocked).into(),
        k.user_id.as_deref().into(),
        k.team_id.as_deref().into(),
        k.created_at.into(),
        k.updated_at.into(),
        k.soft_budget.into(),
        i64::from(spend.spend).into(),
        i64::from(spend.model_spend).into(),
    ])
}

/// Adds `?2` USD to key `?1`'s spend and takes `?3` off its `leased` (clamped at 0).
pub(super) const CHARGE_KEY: &str = "UPDATE llmgate_verification_tokens
     SET spend = spend + ?2,
         leased = CASE WHEN leased > ?3 THEN leased - ?3 ELSE 0 END
     WHERE token = ?1";

/// Takes `?2` USD off lease `?1`.
pub(super) const CHARGE_LEASE: &str = "UPDATE llmgate_key_leases SET usd = usd - ?2 WHERE id = ?1";

/// Starts key `?1`'s budget window over if it still ends at `?2`: spend 0, next end `?3`.
pub(super) const RESET_KEY: &str = "UPDATE llmgate_verification_tokens
     SET spend = 0, budget_reset_at = ?3
     WHERE token = ?1 AND budget_reset_at = ?2";

/// Key `?1`'s per-model spend (JSON).
pub(super) const KEY_MODEL_SPEND: &str =
    "SELECT model_spend FROM llmgate_verification_tokens WHERE token = ?1";

/// Sets key `?1`'s per-model spend to `?2` (JSON).
pub(super) const SET_KEY_MODEL_SPEND: &str =
    "UPDATE llmgate_verification_tokens SET model_spend = ?2 WHERE token = ?1";

/// `stored` (a key's `model_spend` JSON) with `cost` added to `charge`'s group; a window
/// that has ended starts over first. The JSON to store.
pub(super) fn add_model_spend(
    stored: &str,
    charge: &super::types::ModelCharge,
    cost: f64,
) -> serde_json::Result<String> {
    let mut spend: super::types::ModelSpend = serde_json::from_str(stored).unwrap_or_default();
    let w = spend.entry(charge.group.clone()).or_insert(ModelWindow {
        reset_at: charge.reset_at,
        spend: 0.0,
    });
    if w.reset_at.is_some_and(|t| charge.now >= t) {
        *w = ModelWindow {
            reset_at: charge.reset_at,
            spend: 0.0,
        };
    }
    w.spend += cost;
    json(&spend)
}

const LOG_COLUMNS: &str = "request_id, call_type, api_key, spend, total_tokens, prompt_tokens, \
    completion_tokens, cache_read_input_tokens, cache_creation_input_tokens, reasoning_tokens, \
    start_time_ms, end_time_ms, completion_start_time_ms, model, model_group, model_id, \
    custom_llm_provider, api_base, status, \"user\", metadata, request_tags, messages, response, \
    requester_ip_address";

/// Inserts a spend log row, replacing the row with the same `request_id` if there is one;
/// arguments [`log_args`].
pub(super) const UPSERT_LOG: &str = "INSERT INTO llmgate_spend_logs (
         request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
         completion_tokens, cache_read_input_tokens, cache_creation_input_tokens,
         reasoning_tokens, start_time_ms, end_time_ms, completion_start_time_ms, model,
         model_group, model_id, custom_llm_provider, api_base, status, \"user\", metadata,
         request_tags, messages, response, requester_ip_address
     ) VALUES (
         ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
         ?19, ?20, ?21, ?22, ?23, ?24, ?25
     )
     ON CONFLICT (request_id) DO UPDATE SET
         call_type = excluded.call_type,
         api_key = excluded.api_key,
         spend = excluded.spend,
         total_tokens = excluded.total_tokens,
         prompt_tokens = excluded.prompt_tokens,
         completion_tokens = excluded.completion_tokens,
         cache_read_input_tokens = excluded.cache_read_input_tokens,
         cache_creation_input_tokens = excluded.cache_creation_input_tokens,
         reasoning_tokens = excluded.reasoning_tokens,
         start_time_ms = excluded.start_time_ms,
         end_time_ms = excluded.end_time_ms,
         completion_start_time_ms = excluded.completion_start_time_ms,
         model = excluded.model,
         model_group = excluded.model_group,
         model_id = excluded.model_id,
         custom_llm_provider = excluded.custom_llm_provider,
         api_base = excluded.api_base,
         status = excluded.status,
         \"user\" = excluded.\"user\",
         metadata = excluded.metadata,
         request_tags = excluded.request_tags,
         messages = excluded.messages,
         response = excluded.response,
         requester_ip_address = excluded.requester_ip_address";

/// The arguments of [`UPSERT_LOG`], in its column order.
pub(super) fn log_args(l: &SpendLog) -> serde_json::Result<Vec<Arg<'_>>> {
    Ok(vec![
        l.request_id.as_str().into(),
        l.call_type.as_str().into(),
        l.api_key.as_str().into(),
        l.spend.into(),
        int(l.total_tokens).into(),
        int(l.prompt_tokens).into(),
        int(l.completion_tokens).into(),
        int(l.cache_read_input_tokens).into(),
        int(l.cache_creation_input_tokens).into(),
        int(l.reasoning_tokens).into(),
        l.start_time_ms.into(),
        l.end_time_ms.into(),
        l.completion_start_time_ms.into(),
        l.model.as_str().into(),
        l.model_group.as_str().into(),
        l.model_id.as_str().into(),
        l.custom_llm_provider.as_str().into(),
        l.api_base.as_str().into(),
        l.status.as_str().into(),
        l.user.as_str().into(),
        json(&l.metadata)?.into(),
        json(&l.request_tags)?.into(),
        l.messages.as_ref().map(json).transpose()?.into(),
        l.response.as_ref().map(json).transpose()?.into(),
        l.requester_ip_address.as_deref().into(),
    ])
}

/// A spend log row from a row of [`query_logs_sql`].
pub(super) fn log_from_row<R: Cols>(row: &R) -> Result<SpendLog, R::Error> {
    Ok(SpendLog {
        request_id: row.text("request_id")?,
        call_type: row.text("call_type")?,
        api_key: row.text("api_key")?,
        spend: row.real("spend")?,
        total_tokens: uint(row.int("total_tokens")?),
        prompt_tokens: uint(row.int("prompt_tokens")?),
        completion_tokens: uint(row.int("completion_tokens")?),
        cache_read_input_tokens: uint(row.int("cache_read_input_tokens")?),
        cache_creation_input_tokens: uint(row.int("cache_creation_input_tokens")?),
        reasoning_tokens: uint(row.int("reasoning_tokens")?),
        start_time_ms: row.int("start_time_ms")?,
        end_time_ms: row.int("end_time_ms")?,
        completion_start_time_ms: row.opt_int("completion_start_time_ms")?,
        model: row.text("model")?,
        model_group: row.text("model_group")?,
        model_id: row.text("model_id")?,
        custom_llm_provider: row.text("custom_llm_provider")?,
        api_base: row.text("api_base")?,
        status: row.text("status")?,
        user: row.text("user")?,
        metadata: row.json("metadata")?,
        request_tags: row.json("request_tags")?,
        messages: row.opt_json("messages")?,
        response: row.opt_json("response")?,
        requester_ip_address: row.opt_text("requester_ip_address")?,
    })
}

/// The `WHERE` clause (empty or with a leading space) and arguments of `q`'s filters.
fn log_conditions(q: &SpendQuery) -> (String, Vec<Arg<'_>>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let texts = [
        ("api_key", &q.api_key),
        ("request_id", &q.request_id),
        ("\"user\"", &q.user),
        ("model_group", &q.model),
        ("status", &q.status),
    ];
    for (column, value) in texts {
        if let Some(v) = value {
            args.push(Arg::from(v.as_str()));
            conditions.push(format!("{column} = ?{}", args.len()));
        }
    }
    if let Some(start) = q.start_ms {
        args.push(Arg::Int(start));
        conditions.push(format!("start_time_ms >= ?{}", args.len()));
    }
    if let Some(end) = q.end_ms {
        args.push(Arg::Int(end));
        conditions.push(format!("start_time_ms < ?{}", args.len()));
    }
    match conditions.is_empty() {
        true => (String::new(), args),
        false => (format!(" WHERE {}", conditions.join(" AND ")), args),
    }
}

/// The statement and arguments for the spend log rows matching `q`, newest first
/// (`start_time_ms`, then `request_id`, descending).
pub(super) fn query_logs_sql(q: &SpendQuery) -> (String, Vec<Arg<'_>>) {
    let (clause, mut args) = log_conditions(q);
    let mut sql = format!("SELECT {LOG_COLUMNS} FROM llmgate_spend_logs{clause}");
    sql.push_str(" ORDER BY start_time_ms DESC, request_id DESC");
    if q.limit > 0 || q.offset > 0 {
        let limit = if q.limit > 0 { q.limit } else { usize::MAX };
        args.push(Arg::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        args.push(Arg::Int(i64::try_from(q.offset).unwrap_or(i64::MAX)));
        sql.push_str(&format!(
            " LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
    }
    (sql, args)
}

/// The statement and arguments counting the spend log rows matching `q` (its limit and
/// offset aside); one column, `n`.
pub(super) fn count_logs_sql(q: &SpendQuery) -> (String, Vec<Arg<'_>>) {
    let (clause, args) = log_conditions(q);
    (
        format!("SELECT COUNT(*) AS n FROM llmgate_spend_logs{clause}"),
        args,
    )
}
