//! The SQL for each table and the conversions between its rows and the store types.
//! Column names are the field names; lists and JSON values are stored as JSON text,
//! unsigned counters as signed 64-bit integers (clamped), booleans as 0/1.

use std::collections::HashMap;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, named_params, params, params_from_iter};
use serde::de::DeserializeOwned;

use super::types::{KeyRecord, SpendLog, SpendQuery};

/// A JSON column, read from its text.
struct Json<T>(T);

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        serde_json::from_str(text)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// JSON text for a column.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// SQLite integers are signed: counters beyond `i64::MAX` are stored as `i64::MAX`.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A counter read back; a negative value (written by hand) reads as 0.
fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const KEY_COLUMNS: &str = "token, key_name, key_alias, spend, max_budget, budget_duration, \
    budget_reset_at, expires, models, metadata, tpm_limit, rpm_limit, max_parallel_requests, \
    model_max_budget, model_spend, blocked, user_id, team_id, created_at, updated_at, soft_budget";

/// All keys, oldest first.
pub(super) fn load_keys(conn: &Connection) -> rusqlite::Result<Vec<KeyRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {KEY_COLUMNS} FROM llmgate_verification_tokens ORDER BY created_at, token"
    ))?;
    let rows = stmt.query_map([], key_from_row)?;
    rows.collect()
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        token: row.get("token")?,
        key_name: row.get("key_name")?,
        key_alias: row.get("key_alias")?,
        spend: row.get("spend")?,
        max_budget: row.get("max_budget")?,
        soft_budget: row.get("soft_budget")?,
        budget_duration: row.get("budget_duration")?,
        budget_reset_at: row.get("budget_reset_at")?,
        expires: row.get("expires")?,
        models: row.get::<_, Json<_>>("models")?.0,
        metadata: row.get::<_, Json<_>>("metadata")?.0,
        tpm_limit: row.get::<_, Option<i64>>("tpm_limit")?.map(uint),
        rpm_limit: row.get::<_, Option<i64>>("rpm_limit")?.map(uint),
        max_parallel_requests: row
            .get::<_, Option<i64>>("max_parallel_requests")?
            .map(uint),
        model_max_budget: row.get::<_, Json<_>>("model_max_budget")?.0,
        model_spend: row.get::<_, Json<_>>("model_spend")?.0,
        blocked: row.get::<_, i64>("blocked")? != 0,
        user_id: row.get("user_id")?,
        team_id: row.get("team_id")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// The token that already uses `alias`, other than `token` itself.
pub(super) fn alias_owner(
    conn: &Connection,
    alias: &str,
    token: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT token FROM llmgate_verification_tokens WHERE key_alias = ?1 AND token <> ?2 LIMIT 1",
    )?
    .query_row(params![alias, token], |row| row.get(0))
    .optional()
}

/// Inserts the key or replaces every column of the existing row.
pub(super) fn upsert_key(conn: &Connection, k: &KeyRecord) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO llmgate_verification_tokens (
             token, key_name, key_alias, spend, max_budget, budget_duration, budget_reset_at,
             expires, models, metadata, tpm_limit, rpm_limit, max_parallel_requests,
             model_max_budget, model_spend, blocked, user_id, team_id, created_at, updated_at,
             soft_budget
         ) VALUES (
             :token, :key_name, :key_alias, :spend, :max_budget, :budget_duration, :budget_reset_at,
             :expires, :models, :metadata, :tpm_limit, :rpm_limit, :max_parallel_requests,
             :model_max_budget, :model_spend, :blocked, :user_id, :team_id, :created_at, :updated_at,
             :soft_budget
         )
         ON CONFLICT (token) DO UPDATE SET
             key_name = excluded.key_name,
             key_alias = excluded.key_alias,
             spend = excluded.spend,
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
             model_spend = excluded.model_spend,
             blocked = excluded.blocked,
             user_id = excluded.user_id,
             team_id = excluded.team_id,
             created_at = excluded.created_at,
             updated_at = excluded.updated_at,
             soft_budget = excluded.soft_budget",
    )?;
    stmt.execute(named_params! {
        ":token": k.token,
        ":key_name": k.key_name,
        ":key_alias": k.key_alias,
        ":spend": k.spend,
        ":max_budget": k.max_budget,
        ":soft_budget": k.soft_budget,
        ":budget_duration": k.budget_duration,
        ":budget_reset_at": k.budget_reset_at,
        ":expires": k.expires,
        ":models": json(&k.models)?,
        ":metadata": json(&k.metadata)?,
        ":tpm_limit": k.tpm_limit.map(int),
        ":rpm_limit": k.rpm_limit.map(int),
        ":max_parallel_requests": k.max_parallel_requests.map(int),
        ":model_max_budget": json(&k.model_max_budget)?,
        ":model_spend": json(&k.model_spend)?,
        ":blocked": i64::from(k.blocked),
        ":user_id": k.user_id,
        ":team_id": k.team_id,
        ":created_at": k.created_at,
        ":updated_at": k.updated_at,
    })?;
    Ok(())
}

/// Deletes one key; whether it existed.
pub(super) fn delete_key(conn: &Connection, token: &str) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM llmgate_verification_tokens WHERE token = ?1")?
        .execute([token])?;
    Ok(n > 0)
}

/// The running-spend columns of one key, as the ledger last reported them.
#[derive(Debug, Clone)]
pub(super) struct KeySpend {
    pub spend: f64,
    pub budget_reset_at: Option<i64>,
    pub model_spend: super::types::ModelSpend,
}

/// Writes the spend columns of each key that still exists (and only those columns).
pub(super) fn update_key_spend(
    conn: &Connection,
    spends: &HashMap<String, KeySpend>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE llmgate_verification_tokens
         SET spend = ?2, budget_reset_at = ?3, model_spend = ?4
         WHERE token = ?1",
    )?;
    for (token, s) in spends {
        stmt.execute(params![
            token,
            s.spend,
            s.budget_reset_at,
            json(&s.model_spend)?
        ])?;
    }
    Ok(())
}

const LOG_COLUMNS: &str = "request_id, call_type, api_key, spend, total_tokens, prompt_tokens, \
    completion_tokens, cache_read_input_tokens, cache_creation_input_tokens, reasoning_tokens, \
    start_time_ms, end_time_ms, completion_start_time_ms, model, model_group, model_id, \
    custom_llm_provider, api_base, status, \"user\", metadata, request_tags, messages, response, \
    requester_ip_address";

/// Inserts a spend log row, replacing the row with the same `request_id` if there is one.
pub(super) fn upsert_log(conn: &Connection, l: &SpendLog) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO llmgate_spend_logs (
             request_id, call_type, api_key, spend, total_tokens, prompt_tokens,
             completion_tokens, cache_read_input_tokens, cache_creation_input_tokens,
             reasoning_tokens, start_time_ms, end_time_ms, completion_start_time_ms, model,
             model_group, model_id, custom_llm_provider, api_base, status, \"user\", metadata,
             request_tags, messages, response, requester_ip_address
         ) VALUES (
             :request_id, :call_type, :api_key, :spend, :total_tokens, :prompt_tokens,
             :completion_tokens, :cache_read_input_tokens, :cache_creation_input_tokens,
             :reasoning_tokens, :start_time_ms, :end_time_ms, :completion_start_time_ms, :model,
             :model_group, :model_id, :custom_llm_provider, :api_base, :status, :user, :metadata,
             :request_tags, :messages, :response, :requester_ip_address
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
             requester_ip_address = excluded.requester_ip_address",
    )?;
    let messages = l.messages.as_ref().map(json).transpose()?;
    let response = l.response.as_ref().map(json).transpose()?;
    stmt.execute(named_params! {
        ":request_id": l.request_id,
        ":call_type": l.call_type,
        ":api_key": l.api_key,
        ":spend": l.spend,
        ":total_tokens": int(l.total_tokens),
        ":prompt_tokens": int(l.prompt_tokens),
        ":completion_tokens": int(l.completion_tokens),
        ":cache_read_input_tokens": int(l.cache_read_input_tokens),
        ":cache_creation_input_tokens": int(l.cache_creation_input_tokens),
        ":reasoning_tokens": int(l.reasoning_tokens),
        ":start_time_ms": l.start_time_ms,
        ":end_time_ms": l.end_time_ms,
        ":completion_start_time_ms": l.completion_start_time_ms,
        ":model": l.model,
        ":model_group": l.model_group,
        ":model_id": l.model_id,
        ":custom_llm_provider": l.custom_llm_provider,
        ":api_base": l.api_base,
        ":status": l.status,
        ":user": l.user,
        ":metadata": json(&l.metadata)?,
        ":request_tags": json(&l.request_tags)?,
        ":messages": messages,
        ":response": response,
        ":requester_ip_address": l.requester_ip_address,
    })?;
    Ok(())
}

fn log_from_row(row: &Row<'_>) -> rusqlite::Result<SpendLog> {
    Ok(SpendLog {
        request_id: row.get("request_id")?,
        call_type: row.get("call_type")?,
        api_key: row.get("api_key")?,
        spend: row.get("spend")?,
        total_tokens: uint(row.get("total_tokens")?),
        prompt_tokens: uint(row.get("prompt_tokens")?),
        completion_tokens: uint(row.get("completion_tokens")?),
        cache_read_input_tokens: uint(row.get("cache_read_input_tokens")?),
        cache_creation_input_tokens: uint(row.get("cache_creation_input_tokens")?),
        reasoning_tokens: uint(row.get("reasoning_tokens")?),
        start_time_ms: row.get("start_time_ms")?,
        end_time_ms: row.get("end_time_ms")?,
        completion_start_time_ms: row.get("completion_start_time_ms")?,
        model: row.get("model")?,
        model_group: row.get("model_group")?,
        model_id: row.get("model_id")?,
        custom_llm_provider: row.get("custom_llm_provider")?,
        api_base: row.get("api_base")?,
        status: row.get("status")?,
        user: row.get("user")?,
        metadata: row.get::<_, Json<_>>("metadata")?.0,
        request_tags: row.get::<_, Json<_>>("request_tags")?.0,
        messages: row.get::<_, Option<Json<_>>>("messages")?.map(|j| j.0),
        response: row.get::<_, Option<Json<_>>>("response")?.map(|j| j.0),
        requester_ip_address: row.get("requester_ip_address")?,
    })
}

/// The `WHERE` clause (empty or with a leading space) and arguments of `q`'s filters.
fn log_conditions(q: &SpendQuery) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let mut text = |column: &str, value: &Option<String>| {
        if let Some(v) = value {
            args.push(Value::Text(v.clone()));
            conditions.push(format!("{column} = ?{}", args.len()));
        }
    };
    text("api_key", &q.api_key);
    text("request_id", &q.request_id);
    text("\"user\"", &q.user);
    text("model_group", &q.model);
    text("status", &q.status);
    if let Some(start) = q.start_ms {
        args.push(Value::Integer(start));
        conditions.push(format!("start_time_ms >= ?{}", args.len()));
    }
    if let Some(end) = q.end_ms {
        args.push(Value::Integer(end));
        conditions.push(format!("start_time_ms < ?{}", args.len()));
    }
    match conditions.is_empty() {
        true => (String::new(), args),
        false => (format!(" WHERE {}", conditions.join(" AND ")), args),
    }
}

/// Spend log rows matching `q`, newest first (`start_time_ms`, then `request_id`, descending).
pub(super) fn query_logs(conn: &Connection, q: &SpendQuery) -> rusqlite::Result<Vec<SpendLog>> {
    let (clause, mut args) = log_conditions(q);
    let mut sql = format!("SELECT {LOG_COLUMNS} FROM llmgate_spend_logs{clause}");
    sql.push_str(" ORDER BY start_time_ms DESC, request_id DESC");
    if q.limit > 0 || q.offset > 0 {
        let limit = if q.limit > 0 { q.limit } else { usize::MAX };
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        args.push(Value::Integer(i64::try_from(q.offset).unwrap_or(i64::MAX)));
        sql.push_str(&format!(
            " LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), log_from_row)?;
    rows.collect()
}

/// How many spend log rows match `q` (its limit and offset aside).
pub(super) fn count_logs(conn: &Connection, q: &SpendQuery) -> rusqlite::Result<u64> {
    let (clause, args) = log_conditions(q);
    let sql = format!("SELECT COUNT(*) FROM llmgate_spend_logs{clause}");
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(args), |row| row.get(0))?;
    Ok(uint(n))
}
