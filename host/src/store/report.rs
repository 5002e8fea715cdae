//! Spend aggregation in SQL: sums of spend, tokens and requests over the spend log rows of a
//! time range, grouped by day, key, model group, user, team or request tag (the spend
//! report routes). Uses the `start_time_ms` and `(api_key, start_time_ms)` indexes.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use super::types::{SpendAggregate, SpendGroup, SpendTotals};

/// The SQL expression of one grouping column.
fn column(group: SpendGroup) -> &'static str {
    match group {
        SpendGroup::Day => "strftime('%Y-%m-%d', l.start_time_ms / 1000, 'unixepoch')",
        SpendGroup::ApiKey => "l.api_key",
        SpendGroup::Model => "l.model_group",
        SpendGroup::Provider => "l.custom_llm_provider",
        SpendGroup::User => "l.\"user\"",
        SpendGroup::Team => "COALESCE(k.team_id, 'Unassigned Team')",
        SpendGroup::Tag => "t.value",
    }
}

/// The `WHERE` clause and its arguments for `q`'s range and key.
fn conditions(q: &SpendAggregate) -> (String, Vec<Value>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(start) = q.start_ms {
        args.push(Value::Integer(start));
        conds.push(format!("l.start_time_ms >= ?{}", args.len()));
    }
    if let Some(end) = q.end_ms {
        args.push(Value::Integer(end));
        conds.push(format!("l.start_time_ms < ?{}", args.len()));
    }
    for (column, value) in [("l.api_key", &q.api_key), ("l.model_group", &q.model)] {
        if let Some(v) = value {
            args.push(Value::Text(v.clone()));
            conds.push(format!("{column} = ?{}", args.len()));
        }
    }
    let clause = match conds.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conds.join(" AND ")),
    };
    (clause, args)
}

/// The sums of the rows matching `q`, one per distinct value of its groups; by spend,
/// highest first, when `q.by_spend`, else by the groups in order.
pub(super) fn aggregate(
    conn: &Connection,
    q: &SpendAggregate,
) -> rusqlite::Result<Vec<SpendTotals>> {
    let groups: Vec<&str> = q.group_by.iter().map(|g| column(*g)).collect();
    let select = groups
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} AS g{i}, "))
        .collect::<String>();
    let tags = match q.group_by.contains(&SpendGroup::Tag) {
        true => ", json_each(l.request_tags) t",
        false => "",
    };
    let (clause, mut args) = conditions(q);
    let mut sql = format!(
        "SELECT {select}SUM(l.spend) AS total_spend, COUNT(*), SUM(CASE WHEN l.status = 'success' THEN 1 ELSE 0 END), \
         SUM(l.prompt_tokens), SUM(l.completion_tokens), SUM(l.total_tokens), \
         SUM(l.cache_read_input_tokens), SUM(l.cache_creation_input_tokens), \
         MAX(k.key_alias), MAX(k.key_name) \
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
        args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let n = groups.len();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |row| totals(row, n))?;
    rows.collect()
}

/// One result row: `n` group values, then the sums.
fn totals(row: &Row<'_>, n: usize) -> rusqlite::Result<SpendTotals> {
    let count = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
    };
    let base = n;
    let requests = count(base + 1)?;
    let successful = count(base + 2)?;
    Ok(SpendTotals {
        groups: (0..n)
            .map(|i| row.get(i))
            .collect::<rusqlite::Result<_>>()?,
        spend: row.get::<_, Option<f64>>(base)?.unwrap_or(0.0),
        requests,
        successful_requests: successful,
        failed_requests: requests.saturating_sub(successful),
        prompt_tokens: count(base + 3)?,
        completion_tokens: count(base + 4)?,
        total_tokens: count(base + 5)?,
        cache_read_input_tokens: count(base + 6)?,
        cache_creation_input_tokens: count(base + 7)?,
        key_alias: row.get(base + 8)?,
        key_name: row.get(base + 9)?,
    })
}
