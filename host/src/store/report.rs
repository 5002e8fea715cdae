//! Spend aggregation in SQL: sums of spend, tokens and requests over the spend log rows of a
//! time range, grouped by day, key, model group, user, team or request tag (the spend
//! report routes). Uses the `start_time_ms` and `(api_key, start_time_ms)` indexes.
//!
//! One statement for both backends; the two expressions that differ (the UTC day of a
//! timestamp, the rows of a JSON array) are the [`Dialect`]'s. Sums of integer columns are
//! cast to `BIGINT` (PostgreSQL sums them as `NUMERIC`).

use super::rows::{Arg, Cols, uint};
use super::types::{SpendAggregate, SpendGroup, SpendTotals};

/// The SQL flavour a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// SQLite (`strftime`, `json_each`).
    Sqlite,
    /// PostgreSQL (`to_char`, `jsonb_array_elements_text`).
    Postgres,
}

/// The SQL expression of one grouping column.
fn column(group: SpendGroup, dialect: Dialect) -> &'static str {
    match (group, dialect) {
        (SpendGroup::Day, Dialect::Sqlite) => {
            "strftime('%Y-%m-%d', l.start_time_ms / 1000, 'unixepoch')"
        }
        (SpendGroup::Day, Dialect::Postgres) => {
            "to_char(to_timestamp(l.start_time_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
        (SpendGroup::ApiKey, _) => "l.api_key",
        (SpendGroup::Model, _) => "l.model_group",
        (SpendGroup::Provider, _) => "l.custom_llm_provider",
        (SpendGroup::User, _) => "l.\"user\"",
        (SpendGroup::Team, _) => "COALESCE(k.team_id, 'Unassigned Team')",
        (SpendGroup::Tag, _) => "t.value",
    }
}

/// The join that gives one row per request tag (`t.value`).
fn tags_join(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => " CROSS JOIN json_each(l.request_tags) t",
        Dialect::Postgres => {
            " CROSS JOIN LATERAL jsonb_array_elements_text(l.request_tags::jsonb) AS t(value)"
        }
    }
}

/// The `WHERE` clause and its arguments for `q`'s range and key.
fn conditions(q: &SpendAggregate) -> (String, Vec<Arg<'_>>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(start) = q.start_ms {
        args.push(Arg::Int(start));
        conds.push(format!("l.start_time_ms >= ?{}", args.len()));
    }
    if let Some(end) = q.end_ms {
        args.push(Arg::Int(end));
        conds.push(format!("l.start_time_ms < ?{}", args.len()));
    }
    for (column, value) in [("l.api_key", &q.api_key), ("l.model_group", &q.model)] {
        if let Some(v) = value {
            args.push(Arg::from(v.as_str()));
            conds.push(format!("{column} = ?{}", args.len()));
        }
    }
    let clause = match conds.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conds.join(" AND ")),
    };
    (clause, args)
}

/// The statement and arguments summing the rows matching `q`, one row per distinct value
/// of its groups (columns `g0`, `g1`, ..., then the sums [`totals`] reads); by spend,
/// highest first, when `q.by_spend`, else by the groups in order.
pub(super) fn aggregate_sql(q: &SpendAggregate, dialect: Dialect) -> (String, Vec<Arg<'_>>) {
    let groups: Vec<&str> = q.group_by.iter().map(|g| column(*g, dialect)).collect();
    let select = groups
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} AS g{i}, "))
        .collect::<String>();
    let tags = match q.group_by.contains(&SpendGroup::Tag) {
        true => tags_join(dialect),
        false => "",
    };
    let (clause, mut args) = conditions(q);
    let mut sql = format!(
        "SELECT {select}SUM(l.spend) AS total_spend, CAST(COUNT(*) AS BIGINT) AS requests, \
         CAST(SUM(CASE WHEN l.status = 'success' THEN 1 ELSE 0 END) AS BIGINT) AS successful, \
         CAST(SUM(l.prompt_tokens) AS BIGINT) AS prompt_tokens, \
         CAST(SUM(l.completion_tokens) AS BIGINT) AS completion_tokens, \
         CAST(SUM(l.total_tokens) AS BIGINT) AS total_tokens, \
         CAST(SUM(l.cache_read_input_tokens) AS BIGINT) AS cache_read_input_tokens, \
         CAST(SUM(l.cache_creation_input_tokens) AS BIGINT) AS cache_creation_input_tokens, \
         MAX(k.key_alias) AS key_alias, MAX(k.key_name) AS key_name \
         FROM llmgate_spend_logs l{tags} \
         LEFT JOIN llmgate_verification_tokens k ON k.token = l.api_key{clause}"
    );
    if !groups.is_empty() {
        let names: Vec<String> = (0..groups.len()).map(|i| format!("g{i}")).collect();
        sql.push_str(&format!(" GROUP BY {}", names.join(", ")));
        match q.by_spend {
            true => sql.push_str(&format!(" ORDER BY total_spend DESC, {}", names.join(", "))),
            false => sql.push_str(&format!(" ORDER BY {}", names.join(", "))),
        }
    }
    if q.limit > 0 {
        args.push(Arg::Int(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    (sql, args)
}

/// One result row of [`aggregate_sql`] with `n` groups.
pub(super) fn totals<R: Cols>(row: &R, n: usize) -> Result<SpendTotals, R::Error> {
    let count = |c: &str| -> Result<u64, R::Error> { Ok(uint(row.opt_int(c)?.unwrap_or(0))) };
    let requests = count("requests")?;
    let successful = count("successful")?;
    Ok(SpendTotals {
        groups: (0..n)
            .map(|i| Ok(row.opt_text(&format!("g{i}"))?.unwrap_or_default()))
            .collect::<Result<_, R::Error>>()?,
        spend: row.opt_real("total_spend")?.unwrap_or(0.0),
        requests,
        successful_requests: successful,
        failed_requests: requests.saturating_sub(successful),
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
        total_tokens: count("total_tokens")?,
        cache_read_input_tokens: count("cache_read_input_tokens")?,
        cache_creation_input_tokens: count("cache_creation_input_tokens")?,
        key_alias: row.opt_text("key_alias")?,
        key_name: row.opt_text("key_name")?,
    })
}
