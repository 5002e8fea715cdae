//! Key management and spend routes, with LiteLLM's paths, fields and shapes:
//! `/key/generate`, `/key/info`, `/key/update`, `/key/delete`, `/key/{key}/regenerate`,
//! `/key/list`, `/spend/logs`. All need the master key except `GET /key/info`, which a key
//! may call for itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{Admin, AnyKey, ApiError, Query};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::ledger::{Caller, hash_key, window};
use crate::store::{SpendLog, SpendQuery};

/// The body as a JSON object (an empty body is an empty object).
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

/// What an admin route answers.
type Answer = Result<Json<Value>, ApiError>;

/// `POST /key/generate`.
pub async fn generate(State(gw): State<Arc<Gateway>>, _: Admin, body: Bytes) -> Answer {
    Ok(Json(gw.ledger().generate(&object(&body)?).await?))
}

/// `POST /key/update`.
pub async fn update(State(gw): State<Arc<Gateway>>, _: Admin, body: Bytes) -> Answer {
    Ok(Json(gw.ledger().update(&object(&body)?).await?))
}

/// `POST /key/delete`.
pub async fn delete(State(gw): State<Arc<Gateway>>, _: Admin, body: Bytes) -> Answer {
    Ok(Json(gw.ledger().delete(&object(&body)?).await?))
}

/// `POST /key/{key}/regenerate`.
pub async fn regenerate(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Path(key): Path<String>,
    body: Bytes,
) -> Answer {
    Ok(Json(gw.ledger().regenerate(&key, &object(&body)?).await?))
}

/// `POST /key/regenerate` with `{"key": ...}` in the body.
pub async fn regenerate_body(State(gw): State<Arc<Gateway>>, _: Admin, body: Bytes) -> Answer {
    let b = object(&body)?;
    let Some(key) = b.get("key").and_then(Value::as_str).map(str::to_string) else {
        return Err(
            Error::BadRequest("`key` is required: the key (sk-...) or its hash".into()).into(),
        );
    };
    Ok(Json(gw.ledger().regenerate(&key, &b).await?))
}

/// `GET /key/info[?key=...]`: the master key names a key; a key sees itself.
pub async fn info(
    State(gw): State<Arc<Gateway>>,
    AnyKey(caller): AnyKey,
    Query(q): Query<InfoQuery>,
) -> Answer {
    let ledger = gw.ledger();
    let asked = q.key.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let info = match (&caller, asked) {
        (Caller::Key(own), None) => ledger.info(own),
        (Caller::Key(own), Some(k)) => {
            let own_token = own.token();
            if k != own_token && hash_key(k) != own_token {
                return Err(Error::Forbidden(
                    "a key may only read its own /key/info; use the master key for others".into(),
                )
                .into());
            }
            ledger.info(own)
        }
        (_, Some(k)) => match ledger.find(k) {
            Some(e) => ledger.info(&e),
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
    Ok(Json(info))
}

/// `GET /key/list?page=1&size=10&return_full_object=false&key_alias=&user_id=`.
pub async fn list(State(gw): State<Arc<Gateway>>, _: Admin, Query(q): Query<ListQuery>) -> Answer {
    let (page, size) = (
        number("page", q.page.as_deref(), 1)?,
        number("size", q.size.as_deref(), 10)?,
    );
    let full = q
        .return_full_object
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Json(gw.ledger().list(
        page,
        size,
        full,
        q.key_alias.as_deref(),
        q.user_id.as_deref(),
    )))
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
fn date(name: &str, value: Option<&str>) -> Result<Option<i64>, Error> {
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
#[derive(serde::Serialize)]
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
static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));

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
    };
    let rows = ledger.store().query_logs(query).await.map_err(read_error)?;
    let summarize = q.summarize.is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    if summarize && start.is_some() && end.is_some() {
        return Ok(Json(summary(&rows)).into_response());
    }
    Ok(Json(rows.iter().map(LogView::of).collect::<Vec<_>>()).into_response())
}

/// Spend per day, with breakdowns by model, key and user.
fn summary(rows: &[SpendLog]) -> Value {
    #[derive(Default)]
    struct Day {
        spend: f64,
        models: BTreeMap<String, f64>,
        keys: BTreeMap<String, f64>,
        users: BTreeMap<String, f64>,
    }
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for r in rows {
        let day = window::iso_ms(r.start_time_ms)[..10].to_string();
        let d = days.entry(day).or_default();
        d.spend += r.spend;
        *d.models.entry(r.model_group.clone()).or_default() += r.spend;
        *d.keys.entry(r.api_key.clone()).or_default() += r.spend;
        *d.users.entry(r.user.clone()).or_default() += r.spend;
    }
    Value::Array(
        days.into_iter()
            .map(|(day, d)| {
                json!({
                    "startTime": day,
                    "spend": d.spend,
                    "models": d.models,
                    "api_keys": d.keys,
                    "users": d.users,
                })
            })
            .collect(),
    )
}
