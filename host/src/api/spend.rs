//! LiteLLM's spend report routes, admin-only, with LiteLLM's paths, parameters and field
//! names: `/global/spend/report`, `/global/spend/logs`, `/global/spend/keys`,
//! `/global/spend/models`, `/spend/tags` and `/user/daily/activity`. Each answer is summed
//! in SQL on the store thread ([`Store::aggregate`](crate::store::Store::aggregate)); keys
//! appear by hash (`api_key`/`token`) and alias, never as themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::keys::{LogView, date};
use super::{Admin, ApiError, Query};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::ledger::hash_key;
use crate::store::{SpendAggregate, SpendGroup, SpendQuery, SpendTotals};

/// One UTC day in milliseconds.
const DAY_MS: i64 = 86_400_000;
/// The window of the routes without dates (LiteLLM's `Last30d...` views).
const DEFAULT_DAYS: i64 = 30;
/// The most a `limit` or `page_size` may ask for.
const MAX_LIMIT: usize = 1000;

/// The query parameters of the report routes (each route reads the ones it has).
#[derive(serde::Deserialize, Default)]
pub struct ReportQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    group_by: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
    limit: Option<String>,
    page: Option<String>,
    page_size: Option<String>,
    user_id: Option<String>,
    request_id: Option<String>,
    status_filter: Option<String>,
}

/// `value` (`YYYY-MM-DD`) as the unix milliseconds of that UTC day's midnight.
fn day_ms(name: &str, value: &str) -> Result<i64, Error> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value.trim(), format)
        .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
        .map_err(|_| {
            Error::BadRequest(format!("`{name}` must be a date YYYY-MM-DD, got `{value}`"))
        })
}

/// The range `[start, end)` in ms of `start_date`..=`end_date` (whole UTC days). Missing
/// dates: an error when `required`, else the last 30 days up to today.
fn range(q: &ReportQuery, required: bool) -> Result<(i64, i64), Error> {
    let today = time::OffsetDateTime::now_utc()
        .date()
        .midnight()
        .assume_utc();
    let today = today.unix_timestamp() * 1000;
    let given = |name: &str, v: &Option<String>| match v.as_deref().filter(|s| !s.trim().is_empty())
    {
        Some(s) => day_ms(name, s).map(Some),
        None if required => Err(Error::BadRequest(format!(
            "`{name}` is required (YYYY-MM-DD)"
        ))),
        None => Ok(None),
    };
    let start = given("start_date", &q.start_date)?;
    let end = given("end_date", &q.end_date)?.map(|e| e + DAY_MS);
    let end = end.unwrap_or(today + DAY_MS);
    let start = start.unwrap_or(end - DEFAULT_DAYS * DAY_MS);
    if end <= start {
        return Err(Error::BadRequest(
            "`end_date` must not be before `start_date`".into(),
        ));
    }
    Ok((start, end))
}

/// Query parameter `name` as a whole number from 1 to [`MAX_LIMIT`], `default` when absent.
fn bounded(name: &str, value: Option<&str>, default: usize) -> Result<usize, Error> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::BadRequest(format!(
            "`{name}` must be a whole number from 1 to {MAX_LIMIT}, got `{v}`"
        ))),
    }
}

/// `api_key` as a key hash: a 64-hex-digit hash as given, a key (`sk-...`) hashed.
fn key_hash(value: Option<&str>) -> Option<String> {
    let k = value.map(str::trim).filter(|k| !k.is_empty())?;
    Some(
        match k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => k.to_ascii_lowercase(),
            false => hash_key(k),
        },
    )
}

/// Runs one aggregation on the store thread.
async fn sums(gw: &Gateway, q: SpendAggregate) -> Result<Vec<SpendTotals>, ApiError> {
    let rows = gw.ledger().store().aggregate(q).await;
    rows.map_err(|e| Error::Internal(format!("summing spend logs: {e:#}")).into())
}

/// The group value `i` of a row.
fn group(t: &SpendTotals, i: usize) -> &str {
    t.groups.get(i).map_or("", String::as_str)
}

/// `GET /global/spend/keys?limit=N`: the keys with the most spend in the last 30 days,
/// highest first: `[{api_key, total_spend, key_alias, key_name}]`.
pub async fn keys(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    top(&gw, &q, SpendGroup::ApiKey).await.map(|rows| {
        let list = rows.iter().map(|t| {
            json!({"api_key": group(t, 0), "total_spend": t.spend,
                   "key_alias": t.key_alias, "key_name": t.key_name})
        });
        Json(Value::Array(list.collect()))
    })
}

/// `GET /global/spend/models?limit=N`: the model groups with the most spend in the last
/// 30 days, highest first: `[{model, total_spend}]`.
pub async fn models(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    top(&gw, &q, SpendGroup::Model).await.map(|rows| {
        let list = rows
            .iter()
            .map(|t| json!({"model": group(t, 0), "total_spend": t.spend}));
        Json(Value::Array(list.collect()))
    })
}

/// The top `limit` groups by spend over the last 30 days.
async fn top(gw: &Gateway, q: &ReportQuery, by: SpendGroup) -> Result<Vec<SpendTotals>, ApiError> {
    let limit = bounded("limit", q.limit.as_deref(), MAX_LIMIT)?;
    let (start, end) = range(&ReportQuery::default(), false)?;
    let agg = SpendAggregate {
        group_by: vec![by],
        start_ms: Some(start),
        end_ms: Some(end),
        by_spend: true,
        limit,
        ..SpendAggregate::default()
    };
    sums(gw, agg).await
}

/// `GET /global/spend/logs[?api_key=]`: spend per UTC day over the last 30 days, oldest
/// first: `[{date, spend}]`, with `api_key` (the hash) in each entry when one is given.
pub async fn logs(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = range(&ReportQuery::default(), false)?;
    let api_key = key_hash(q.api_key.as_deref());
    let agg = SpendAggregate {
        group_by: vec![SpendGroup::Day],
        start_ms: Some(start),
        end_ms: Some(end),
        api_key: api_key.clone(),
        ..SpendAggregate::default()
    };
    let rows = sums(&gw, agg).await?;
    let list = rows.iter().map(|t| match &api_key {
        Some(k) => json!({"date": group(t, 0), "spend": t.spend, "api_key": k}),
        None => json!({"date": group(t, 0), "spend": t.spend}),
    });
    Ok(Json(Value::Array(list.collect())))
}

/// `GET /spend/tags?start_date=&end_date=`: spend and request count per request tag
/// (last 30 days without dates), highest spend first:
/// `[{individual_request_tag, log_count, total_spend}]`.
pub async fn tags(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = range(&q, false)?;
    let agg = SpendAggregate {
        group_by: vec![SpendGroup::Tag],
        start_ms: Some(start),
        end_ms: Some(end),
        by_spend: true,
        ..SpendAggregate::default()
    };
    let rows = sums(&gw, agg).await?;
    let list = rows.iter().map(|t| {
        json!({"individual_request_tag": group(t, 0), "log_count": t.requests, "total_spend": t.spend})
    });
    Ok(Json(Value::Array(list.collect())))
}

/// `GET /global/spend/report?start_date=&end_date=&group_by=team|customer|api_key`
/// (both dates required, `team` by default). `team` and `customer`: per UTC day, spend
/// per team (the key's `team_id`; `Unassigned Team` for keys without one) or customer
/// (the request's `user`), each with its spend per model and key. `api_key`: per key,
/// highest first, with its cost and tokens per model.
pub async fn report(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = range(&q, true)?;
    let (by, field, name) = match q.group_by.as_deref().map(str::trim) {
        None | Some("" | "team") => (SpendGroup::Team, "teams", "team_name"),
        Some("customer") => (SpendGroup::User, "customers", "customer"),
        Some("api_key") => return Ok(Json(per_key(&gw, start, end).await?)),
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "`group_by` must be team, customer or api_key, got `{other}`"
            ))
            .into());
        }
    };
    let agg = SpendAggregate {
        group_by: vec![SpendGroup::Day, by, SpendGroup::Model, SpendGroup::ApiKey],
        start_ms: Some(start),
        end_ms: Some(end),
        ..SpendAggregate::default()
    };
    let rows = sums(&gw, agg).await?;
    // day -> group -> (spend, metadata), in the SQL's order (by day, then group).
    let mut days: BTreeMap<&str, BTreeMap<&str, (f64, Vec<Value>)>> = BTreeMap::new();
    for t in &rows {
        let entry = days.entry(group(t, 0)).or_default().entry(group(t, 1));
        let (spend, metadata) = entry.or_default();
        *spend += t.spend;
        metadata.push(json!({"model": group(t, 2), "api_key": group(t, 3),
                             "spend": t.spend, "total_tokens": t.total_tokens}));
    }
    let list = days.into_iter().map(|(day, groups)| {
        let groups = groups.into_iter().map(
            |(g, (spend, metadata))| json!({name: g, "total_spend": spend, "metadata": metadata}),
        );
        json!({"group_by_day": format!("{day}T00:00:00+00:00"), field: groups.collect::<Vec<_>>()})
    });
    Ok(Json(Value::Array(list.collect())))
}

/// The `group_by=api_key` report: per key, highest cost first, with cost and tokens per
/// model.
async fn per_key(gw: &Gateway, start: i64, end: i64) -> Result<Value, ApiError> {
    let agg = SpendAggregate {
        group_by: vec![SpendGroup::ApiKey, SpendGroup::Model],
        start_ms: Some(start),
        end_ms: Some(end),
        ..SpendAggregate::default()
    };
    let rows = sums(gw, agg).await?;
    let mut keys: BTreeMap<&str, (f64, u64, u64, Vec<Value>)> = BTreeMap::new();
    for t in &rows {
        let (cost, input, output, models) = keys.entry(group(t, 0)).or_default();
        *cost += t.spend;
        *input += t.prompt_tokens;
        *output += t.completion_tokens;
        models.push(json!({"model": group(t, 1), "total_cost": t.spend,
                           "total_input_tokens": t.prompt_tokens,
                           "total_output_tokens": t.completion_tokens}));
    }
    let mut list: Vec<_> = keys.into_iter().collect();
    list.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    let list = list
        .into_iter()
        .map(|(key, (cost, input, output, models))| {
            json!({"api_key": key, "total_cost": cost, "total_input_tokens": input,
               "total_output_tokens": output, "model_details": models})
        });
    Ok(Value::Array(list.collect()))
}

/// LiteLLM's `SpendMetrics`: the sums of one day or one breakdown entry.
#[derive(Serialize, Default, Clone, Copy)]
pub struct Metrics {
    spend: f64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
    total_tokens: u64,
    successful_requests: u64,
    failed_requests: u64,
    api_requests: u64,
}

impl Metrics {
    fn of(t: &SpendTotals) -> Self {
        Self {
            spend: t.spend,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cache_read_input_tokens: t.cache_read_input_tokens,
            cache_creation_input_tokens: t.cache_creation_input_tokens,
            total_tokens: t.total_tokens,
            successful_requests: t.successful_requests,
            failed_requests: t.failed_requests,
            api_requests: t.requests,
        }
    }
}

/// `GET /user/daily/activity?start_date=&end_date=&model=&api_key=&page=&page_size=`
/// (both dates required; `page` from 1, `page_size` days per page, 50 by default):
/// LiteLLM's `SpendAnalyticsPaginatedResponse`, one result per UTC day with traffic,
/// oldest first, broken down by model, provider and key; `metadata` has the totals over
/// the whole range and the page.
pub async fn daily_activity(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let (start, end) = range(&q, true)?;
    let page = bounded("page", q.page.as_deref(), 1)?;
    let page_size = bounded("page_size", q.page_size.as_deref(), 50)?;
    let base = SpendAggregate {
        start_ms: Some(start),
        end_ms: Some(end),
        api_key: key_hash(q.api_key.as_deref()),
        model: q.model.clone().filter(|m| !m.trim().is_empty()),
        ..SpendAggregate::default()
    };
    let by = |groups: Vec<SpendGroup>| SpendAggregate {
        group_by: groups,
        ..base.clone()
    };
    let days = sums(&gw, by(vec![SpendGroup::Day])).await?;
    let total_pages = days.len().div_ceil(page_size).max(1);
    let shown: Vec<&SpendTotals> = days
        .iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .collect();
    let mut results = Vec::with_capacity(shown.len());
    let breakdowns = [
        ("models", SpendGroup::Model),
        ("providers", SpendGroup::Provider),
        ("api_keys", SpendGroup::ApiKey),
    ];
    let mut parts = Vec::new();
    for (field, g) in breakdowns {
        parts.push((field, sums(&gw, by(vec![SpendGroup::Day, g])).await?));
    }
    for day in shown {
        results.push(day_result(day, &parts));
    }
    let total = days
        .iter()
        .fold(Metrics::default(), |m, t| m.plus(&Metrics::of(t)));
    Ok(Json(json!({
        "results": results,
        "metadata": activity_metadata(&total, page, total_pages),
    })))
}

/// One day of `/user/daily/activity`: its metrics and its entries in each breakdown.
fn day_result(day: &SpendTotals, parts: &[(&str, Vec<SpendTotals>)]) -> Value {
    let mut breakdown = serde_json::Map::new();
    for (field, rows) in parts {
        let entries = rows
            .iter()
            .filter(|t| group(t, 0) == group(day, 0))
            .map(|t| {
                let metadata = match *field {
                    "api_keys" => json!({"key_alias": t.key_alias}),
                    _ => json!({}),
                };
                let entry = json!({"metrics": Metrics::of(t), "metadata": metadata});
                (group(t, 1).to_owned(), entry)
            });
        breakdown.insert((*field).to_owned(), Value::Object(entries.collect()));
    }
    json!({"date": group(day, 0), "metrics": Metrics::of(day), "breakdown": breakdown})
}

/// `/user/daily/activity`'s `metadata`: the range's totals and the page.
fn activity_metadata(total: &Metrics, page: usize, total_pages: usize) -> Value {
    json!({
        "total_spend": total.spend,
        "total_prompt_tokens": total.prompt_tokens,
        "total_completion_tokens": total.completion_tokens,
        "total_tokens": total.total_tokens,
        "total_cache_read_input_tokens": total.cache_read_input_tokens,
        "total_cache_creation_input_tokens": total.cache_creation_input_tokens,
        "total_api_requests": total.api_requests,
        "total_successful_requests": total.successful_requests,
        "total_failed_requests": total.failed_requests,
        "page": page,
        "total_pages": total_pages,
        "has_more": page < total_pages,
    })
}

impl Metrics {
    fn plus(self, o: &Metrics) -> Self {
        Self {
            spend: self.spend + o.spend,
            prompt_tokens: self.prompt_tokens + o.prompt_tokens,
            completion_tokens: self.completion_tokens + o.completion_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens + o.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens
                + o.cache_creation_input_tokens,
            total_tokens: self.total_tokens + o.total_tokens,
            successful_requests: self.successful_requests + o.successful_requests,
            failed_requests: self.failed_requests + o.failed_requests,
            api_requests: self.api_requests + o.api_requests,
        }
    }
}

/// `GET /spend/logs/ui?start_date=&end_date=&page=&page_size=&api_key=&user_id=&request_id=&model=&status_filter=`
/// (the log browser's route; both dates required, `YYYY-MM-DD HH:MM:SS` UTC, a date, or
/// RFC 3339): one page of spend log rows, newest first, `{data, total, page, page_size,
/// total_pages}`.
pub async fn logs_ui(
    State(gw): State<Arc<Gateway>>,
    _: Admin,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Value>, ApiError> {
    let required = |name: &str, v: &Option<String>| {
        date(name, v.as_deref())?
            .ok_or_else(|| Error::BadRequest(format!("`{name}` is required (YYYY-MM-DD HH:MM:SS)")))
    };
    let start = required("start_date", &q.start_date)?;
    let mut end = required("end_date", &q.end_date)?;
    if q.end_date.as_deref().is_some_and(|e| e.trim().len() != 10) {
        end += 1; // a time: inclusive
    }
    if end <= start {
        return Err(Error::BadRequest("`end_date` must not be before `start_date`".into()).into());
    }
    let status = match q.status_filter.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s @ ("success" | "failure")) => Some(s.to_owned()),
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "`status_filter` must be success or failure, got `{other}`"
            ))
            .into());
        }
    };
    let page = bounded("page", q.page.as_deref(), 1)?;
    let page_size = bounded("page_size", q.page_size.as_deref(), 50)?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let query = SpendQuery {
        api_key: key_hash(q.api_key.as_deref()),
        request_id: nonempty(q.request_id),
        user: nonempty(q.user_id),
        model: nonempty(q.model),
        status,
        start_ms: Some(start),
        end_ms: Some(end),
        limit: page_size,
        offset: (page - 1) * page_size,
    };
    let store = gw.ledger().store();
    let read_error =
        |e: anyhow::Error| ApiError::from(Error::Internal(format!("reading spend logs: {e:#}")));
    let total = store.count_logs(query.clone()).await.map_err(read_error)?;
    let rows = store.query_logs(query).await.map_err(read_error)?;
    let pages = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .div_ceil(page_size);
    let data: Vec<LogView<'_>> = rows.iter().map(LogView::of).collect();
    Ok(Json(json!({
        "data": data,
        "total": total,
        "page": page,
        "page_size": page_size,
        "total_pages": pages,
    })))
}
