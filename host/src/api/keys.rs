//! Key management and spend routes, with LiteLLM's paths, fields and shapes:
//! `/key/generate`, `/key/info`, `/key/update`, `/key/block`, `/key/unblock`, `/key/delete`,
//! `/key/{key}/regenerate`, `/key/list`, `/spend/logs`. All need the master key except
//! `GET /key/info`, which a key may call for itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Admin, AnyKey, ApiError, Query};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::ledger::admin::Issued;
use crate::ledger::{Caller, hash_key, window};
use crate::store::{KeyRecord, ModelBudgets, SpendLog, SpendQuery};

/// A key route's body: a JSON object (an empty body is an empty object); anything else is a
/// 400 in OpenAI's shape.
pub struct Object(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Object {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        object(&body)
            .map(Self)
            .map_err(|e| ApiError::from(e).into_response())
    }
}

/// `body` as a JSON object (an empty body is an empty object).
fn object(body: &Bytes) -> Result<Map<String, Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::BadRequest(
            "the request body must be a JSON object".into(),
        )),
        Err(e) => Err(Error::BadRequest(format!(
            "request body is not valid JSON: {e}"
        ))),
    }
}

/// A key as the key routes show it (`/key/info`'s `info`, `/key/list` objects, the
/// `/key/generate` answer), LiteLLM's fields by name (the order clients have always seen).
/// `key` and `token_id` are only in the answers that make a key.
#[derive(Serialize)]
pub struct KeyView<'a> {
    blocked: bool,
    budget_duration: Option<&'a str>,
    budget_reset_at: Option<String>,
    created_at: String,
    expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    key_alias: Option<&'a str>,
    key_name: &'a str,
    max_budget: Option<f64>,
    max_parallel_requests: Option<u64>,
    metadata: &'a Value,
    /// As the caller gave it.
    model_max_budget: &'a ModelBudgets,
    /// USD spent per model group in its window.
    model_spend: BTreeMap<&'a str, f64>,
    models: &'a [String],
    rpm_limit: Option<u64>,
    soft_budget: Option<f64>,
    spend: f64,
    team_id: Option<&'a str>,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<&'a str>,
    tpm_limit: Option<u64>,
    updated_at: String,
    user_id: Option<&'a str>,
}

impl<'a> KeyView<'a> {
    /// The view of `rec`.
    pub fn of(rec: &'a KeyRecord) -> Self {
        Self {
            blocked: rec.blocked,
            budget_duration: rec.budget_duration.as_deref(),
            budget_reset_at: rec.budget_reset_at.map(window::iso),
            created_at: window::iso(rec.created_at),
            expires: rec.expires.map(window::iso),
            key: None,
            key_alias: rec.key_alias.as_deref(),
            key_name: &rec.key_name,
            max_budget: rec.max_budget,
            max_parallel_requests: rec.max_parallel_requests,
            metadata: &rec.metadata,
            model_max_budget: &rec.model_max_budget,
            model_spend: rec
                .model_spend
                .iter()
                .map(|(m, w)| (m.as_str(), w.spend))
                .collect(),
            models: &rec.models,
            rpm_limit: rec.rpm_limit,
            soft_budget: rec.soft_budget,
            spend: rec.spend,
            team_id: rec.team_id.as_deref(),
            token: &rec.token,
            token_id: None,
            tpm_limit: rec.tpm_limit,
            updated_at: window::iso(rec.updated_at),
            user_id: rec.user_id.as_deref(),
        }
    }

    /// The answer to generate and regenerate: the view plus the key itself (shown only here).
    pub fn issued(issued: &'a Issued) -> Self {
        Self {
            key: Some(&issued.key),
            token_id: Some(&issued.record.token),
            ..Self::of(&issued.record)
        }
    }
}

/// `/key/info` and `/key/update`: the key's hash and its view.
#[derive(Serialize)]
pub struct InfoView<'a> {
    info: KeyView<'a>,
    key: &'a str,
}

impl<'a> InfoView<'a> {
    fn of(rec: &'a KeyRecord) -> Self {
        Self {
            info: KeyView::of(rec),
            key: &rec.token,
        }
    }
}

/// `/key/delete`: what was deleted, keys and aliases as named.
#[derive(Serialize)]
pub struct DeletedView {
    deleted_keys: Vec<String>,
}

/// `/key/list`: one page of hashes, or of whole views.
#[derive(Serialize)]
pub struct ListView<'a> {
    current_page: usize,
    keys: Vec<Listed<'a>>,
    total_count: usize,
    total_pages: usize,
}

/// A key in `/key/list`: its hash, or (`return_full_object=true`) its view.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Listed<'a> {
    /// The key's hash.
    Token(&'a str),
    /// The whole view.
    Full(Box<KeyView<'a>>),
}

/// `POST /key/generate`.
pub async fn generate(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Object(body): Object,
) -> Result<Response, ApiError> {
    issued(gw.ledger().generate(&body).await)
}

/// A made key's answer.
fn issued(made: Result<Issued, Error>) -> Result<Response, ApiError> {
    Ok(Json(KeyView::issued(&made?)).into_response())
}

/// `POST /key/update`.
pub async fn update(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Object(body): Object,
) -> Result<Response, ApiError> {
    let rec = gw.ledger().update(&body).await?;
    Ok(Json(InfoView::of(&rec)).into_response())
}

/// `POST /key/block` with `{"key": <key or hash>}`: the key is refused from its next
/// request on. Answers the key's view, as LiteLLM answers the updated key row.
pub async fn block(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Object(body): Object,
) -> Result<Response, ApiError> {
    let rec = gw.ledger().set_blocked(&body, true).await?;
    Ok(Json(KeyView::of(&rec)).into_response())
}

/// `POST /key/unblock` with `{"key": <key or hash>}`: the key serves again.
pub async fn unblock(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Object(body): Object,
) -> Result<Response, ApiError> {
    let rec = gw.ledger().set_blocked(&body, false).await?;
    Ok(Json(KeyView::of(&rec)).into_response())
}

/// `POST /key/delete`.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Object(body): Object,
) -> Result<Json<DeletedView>, ApiError> {
    let deleted_keys = gw.ledger().delete(&body).await?;
    Ok(Json(DeletedView { deleted_keys }))
}

/// `POST /key/{key}/regenerate`.
pub async fn regenerate(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Path(key): Path<String>,
    Object(body): Object,
) -> Result<Response, ApiError> {
    issued(gw.ledger().regenerate(&key, &body).await)
}

/// `POST /key/regenerate` with `{"key": ...}` in the body.
pub async fn regenerate_body(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Object(body): Object,
) -> Result<Response, ApiError> {
    let Some(key) = body.get("key").and_then(Value::as_str).map(str::to_string) else {
        return Err(
            Error::BadRequest("`key` is required: the key (sk-...) or its hash".into()).into(),
        );
    };
    issued(gw.ledger().regenerate(&key, &body).await)
}

/// `GET /key/info[?key=...]`: the master key names a key; a key sees itself.
pub async fn info(
    State(gw): State<Arc<Gateway>>,
    AnyKey(caller): AnyKey,
    Query(q): Query<InfoQuery>,
) -> Result<Response, ApiError> {
    let ledger = gw.ledger();
    let asked = q.key.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let rec = match (&caller, asked) {
        (Caller::Key(own), None) => own.record(),
        (Caller::Key(own), Some(k)) => {
            let own_token = own.token();
            if k != own_token && hash_key(k) != own_token {
                return Err(Error::Forbidden(
                    "a key may only read its own /key/info; use the master key for others".into(),
                )
                .into());
            }
            own.record()
        }
        (_, Some(k)) => match ledger.find(k) {
            Some(e) => e.record(),
            None => {
                let name = crate::ledger::key_name(k);
                return Err(Error::NotFound(format!("key {name} not found")).into());
            }
        },
        (_, None) => {
            return Err(Error::BadRequest(
                "pass ?key=<key or hash> (with the master key), or call with the key itself".into(),
            )
            .into());
        }
    };
    Ok(Json(InfoView::of(&rec)).into_response())
}

/// `GET /key/list?page=1&size=10&return_full_object=false&key_alias=&user_id=`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (page, size) = (
        number("page", q.page.as_deref(), 1)?,
        number("size", q.size.as_deref(), 10)?,
    );
    let full = q
        .return_full_object
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let found = gw
        .ledger()
        .list(page, size, q.key_alias.as_deref(), q.user_id.as_deref());
    let keys = found
        .records
        .iter()
        .map(|r| match full {
            true => Listed::Full(Box::new(KeyView::of(r))),
            false => Listed::Token(&r.token),
        })
        .collect();
    let view = ListView {
        current_page: found.page,
        keys,
        total_count: found.total,
        total_pages: found.pages,
    };
    Ok(Json(view).into_response())
}

/// `GET /key/info`'s query.
#[derive(serde::Deserialize)]
pub struct InfoQuery {
    /// The key (`sk-...`) or its hash; a key may name only itself.
    key: Option<String>,
}

/// `GET /key/list`'s query.
#[derive(serde::Deserialize)]
pub struct ListQuery {
    page: Option<String>,
    size: Option<String>,
    return_full_object: Option<String>,
    key_alias: Option<String>,
    user_id: Option<String>,
}

/// `GET /spend/logs`'s query.
#[derive(serde::Deserialize)]
pub struct LogsQuery {
    api_key: Option<String>,
    request_id: Option<String>,
    user_id: Option<String>,
    user: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    limit: Option<String>,
    summarize: Option<String>,
}

/// Query parameter `name` as a whole number, `default` when absent.
fn number(name: &str, value: Option<&str>, default: usize) -> Result<usize, Error> {
    value.map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| Error::BadRequest(format!("`{name}` must be a positive whole number")))
    })
}

/// Query parameter `name` as a time: a date (`YYYY-MM-DD`) or RFC 3339; a bare end day
/// includes the whole day.
pub(super) fn date(name: &str, value: Option<&str>) -> Result<Option<i64>, Error> {
    let Some(s) = value.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match window::parse_time_ms(s) {
        Some(ms) if name == "end_date" && s.len() == 10 => Ok(Some(ms + 86_400_000)),
        Some(ms) => Ok(Some(ms)),
        None => Err(Error::BadRequest(format!(
            "`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 time, got `{s}`"
        ))),
    }
}

/// One spend log row in LiteLLM's shape (fields in the order clients have always seen:
/// by name).
#[derive(Serialize)]
pub struct LogView<'a> {
    api_base: &'a str,
    api_key: &'a str,
    cache_creation_input_tokens: u64,
    cache_hit: &'static str,
    cache_read_input_tokens: u64,
    call_type: &'a str,
    #[serde(rename = "completionStartTime")]
    completion_start_time: Option<String>,
    completion_tokens: u64,
    custom_llm_provider: &'a str,
    #[serde(rename = "endTime")]
    end_time: String,
    messages: &'a Value,
    metadata: &'a Value,
    model: &'a str,
    model_group: &'a str,
    model_id: &'a str,
    prompt_tokens: u64,
    reasoning_tokens: u64,
    request_id: &'a str,
    request_tags: &'a [String],
    requester_ip_address: Option<&'a str>,
    response: &'a Value,
    spend: f64,
    #[serde(rename = "startTime")]
    start_time: String,
    status: &'a str,
    total_tokens: u64,
    user: &'a str,
}

/// What `messages` and `response` show when the row has none.
static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::Object(Map::new()));

impl<'a> LogView<'a> {
    /// The view of `l`.
    pub fn of(l: &'a SpendLog) -> Self {
        Self {
            api_base: &l.api_base,
            api_key: &l.api_key,
            cache_creation_input_tokens: l.cache_creation_input_tokens,
            cache_hit: "False",
            cache_read_input_tokens: l.cache_read_input_tokens,
            call_type: &l.call_type,
            completion_start_time: l.completion_start_time_ms.map(window::iso_ms),
            completion_tokens: l.completion_tokens,
            custom_llm_provider: &l.custom_llm_provider,
            end_time: window::iso_ms(l.end_time_ms),
            messages: l.messages.as_ref().unwrap_or(&EMPTY),
            metadata: &l.metadata,
            model: &l.model,
            model_group: &l.model_group,
            model_id: &l.model_id,
            prompt_tokens: l.prompt_tokens,
            reasoning_tokens: l.reasoning_tokens,
            request_id: &l.request_id,
            request_tags: &l.request_tags,
            requester_ip_address: l.requester_ip_address.as_deref(),
            response: l.response.as_ref().unwrap_or(&EMPTY),
            spend: l.spend,
            start_time: window::iso_ms(l.start_time_ms),
            status: &l.status,
            total_tokens: l.total_tokens,
            user: &l.user,
        }
    }
}

/// `GET /spend/logs`: rows filtered by `api_key` (the key or its hash), `request_id`,
/// `user_id`, `start_date`/`end_date` (`YYYY-MM-DD` or RFC 3339; `end_date` as a day is
/// inclusive). With both dates and `summarize` not `false`, one entry per day with spend by
/// model, key and user (LiteLLM's summary shape).
pub async fn spend_logs(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let start = date("start_date", q.start_date.as_deref())?;
    let end = date("end_date", q.end_date.as_deref())?;
    let api_key = q
        .api_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
                k.to_ascii_lowercase()
            } else {
                hash_key(k)
            }
        });
    let ledger = gw.ledger();
    // Rows of requests still queued for the store are visible at once.
    let read_error = |e: anyhow::Error| Error::Internal(format!("reading spend logs: {e:#}"));
    ledger.store().flush().await.map_err(read_error)?;
    let query = SpendQuery {
        api_key,
        request_id: q.request_id,
        user: q.user_id.or(q.user),
        start_ms: start,
        end_ms: end,
        limit: q.limit.and_then(|l| l.parse().ok()).unwrap_or(0),
        ..SpendQuery::default()
    };
    let rows = ledger.store().query_logs(query).await.map_err(read_error)?;
    let summarize = q.summarize.is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    if summarize && start.is_some() && end.is_some() {
        return Ok(Json(summary(&rows)).into_response());
    }
    Ok(Json(rows.iter().map(LogView::of).collect::<Vec<_>>()).into_response())
}

/// One day of the spend summary (`/spend/logs` with both dates): spend, and spend by model
/// group, key and user, LiteLLM's fields by name.
#[derive(Default, Serialize)]
pub struct DayView {
    api_keys: BTreeMap<String, f64>,
    models: BTreeMap<String, f64>,
    spend: f64,
    #[serde(rename = "startTime")]
    start_time: String,
    users: BTreeMap<String, f64>,
}

/// Spend per day, with breakdowns by model, key and user.
fn summary(rows: &[SpendLog]) -> Vec<DayView> {
    let mut days: BTreeMap<String, DayView> = BTreeMap::new();
    for r in rows {
        let day = window::iso_ms(r.start_time_ms)[..10].to_string();
        let d = days.entry(day).or_default();
        d.spend += r.spend;
        *d.models.entry(r.model_group.clone()).or_default() += r.spend;
        *d.api_keys.entry(r.api_key.clone()).or_default() += r.spend;
        *d.users.entry(r.user.clone()).or_default() += r.spend;
    }
    days.into_iter()
        .map(|(day, d)| DayView {
            start_time: day,
            ..d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::assert_keys_by_name;
    use crate::store::{ModelSpend, ModelWindow};

    fn record() -> KeyRecord {
        let spend = ModelWindow {
            reset_at: Some(1_700_000_000),
            spend: 0.25,
        };
        KeyRecord {
            token: "t".repeat(64),
            key_name: "sk-...abcd".into(),
            key_alias: Some("alias".into()),
            spend: 1.5,
            max_budget: Some(10.0),
            soft_budget: Some(8.0),
            budget_duration: Some("30d".into()),
            budget_reset_at: Some(1_700_000_000),
            expires: Some(1_800_000_000),
            models: vec!["gpt-4o".into()],
            metadata: json!({"z": 1, "a": {"y": 2, "b": 3}}),
            tpm_limit: Some(1),
            rpm_limit: Some(2),
            max_parallel_requests: Some(3),
            model_max_budget: ModelBudgets::parse(
                &json!({"gpt-4o": {"time_period": "1d", "budget_limit": "1"}, "a": 2}),
            )
            .unwrap(),
            model_spend: ModelSpend::from([("gpt-4o".to_string(), spend)]),
            blocked: true,
            user_id: Some("u".into()),
            team_id: Some("t".into()),
            created_at: 1_690_000_000,
            updated_at: 1_690_000_001,
        }
    }

    #[test]
    fn key_views_show_their_fields_by_name() {
        let rec = record();
        assert_keys_by_name(&KeyView::of(&rec));
        assert_keys_by_name(&InfoView::of(&rec));
        let made = Issued {
            key: "sk-abcd".into(),
            record: rec.clone(),
        };
        let v = serde_json::to_value(KeyView::issued(&made)).unwrap();
        assert_eq!(
            (&v["key"], &v["token_id"]),
            (&json!("sk-abcd"), &json!(rec.token))
        );
        assert_keys_by_name(&KeyView::issued(&made));
        assert!(
            serde_json::to_value(KeyView::of(&rec))
                .unwrap()
                .get("key")
                .is_none()
        );
        let list = ListView {
            current_page: 1,
            keys: vec![
                Listed::Token(&rec.token),
                Listed::Full(Box::new(KeyView::of(&rec))),
            ],
            total_count: 2,
            total_pages: 1,
        };
        assert_keys_by_name(&list);
        assert_keys_by_name(&DeletedView {
            deleted_keys: vec!["k".into()],
        });
    }

    #[test]
    fn spend_summary_shows_its_fields_by_name() {
        let row = |day_ms: i64, spend: f64| SpendLog {
            start_time_ms: day_ms,
            spend,
            api_key: "k".into(),
            model_group: "m".into(),
            user: "u".into(),
            ..SpendLog::default()
        };
        let days = summary(&[row(0, 0.5), row(1_000, 0.25), row(86_400_000, 1.0)]);
        assert_keys_by_name(&days);
        let v = serde_json::to_value(&days).unwrap();
        assert_eq!(
            v,
            json!([
                {"startTime": "1970-01-01", "spend": 0.75, "models": {"m": 0.75}, "api_keys": {"k": 0.75}, "users": {"u": 0.75}},
                {"startTime": "1970-01-02", "spend": 1.0, "models": {"m": 1.0}, "api_keys": {"k": 1.0}, "users": {"u": 1.0}},
            ])
        );
        let log = row(0, 0.5);
        assert_keys_by_name(&LogView::of(&log));
    }
}
