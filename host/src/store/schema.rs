//! The numbered schema migrations (both backends run the same ones) and opening the
//! SQLite file (connection PRAGMAs, then the migrations).
//!
//! The DDL sticks to types and syntax that PostgreSQL accepts unchanged (`TEXT`, `BIGINT`,
//! `DOUBLE PRECISION`, `INTEGER` for booleans, JSON as `TEXT`, partial unique index, the
//! reserved column name `"user"` quoted), so a PostgreSQL backend can run the same migrations.
//! `BIGINT` and `DOUBLE PRECISION` rather than `INTEGER` and `REAL`: in PostgreSQL those are
//! 32-bit integers (too small for unix milliseconds) and 4-byte floats (too coarse for USD);
//! SQLite maps them to the same INTEGER and REAL affinities.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The migrations, applied in order; migration `n` (1-based) is `MIGRATIONS[n - 1]`.
/// Append only: never edit a migration that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: virtual keys and spend logs.
    r#"
CREATE TABLE llmgate_verification_tokens (
    token                 TEXT PRIMARY KEY,
    key_name              TEXT NOT NULL,
    key_alias             TEXT,
    spend                 DOUBLE PRECISION NOT NULL DEFAULT 0,
    max_budget            DOUBLE PRECISION,
    budget_duration       TEXT,
    budget_reset_at       BIGINT,
    expires               BIGINT,
    models                TEXT NOT NULL DEFAULT '[]',
    metadata              TEXT NOT NULL DEFAULT '{}',
    tpm_limit             BIGINT,
    rpm_limit             BIGINT,
    max_parallel_requests BIGINT,
    model_max_budget      TEXT NOT NULL DEFAULT '{}',
    model_spend           TEXT NOT NULL DEFAULT '{}',
    blocked               INTEGER NOT NULL DEFAULT 0,
    user_id               TEXT,
    team_id               TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX llmgate_verification_tokens_key_alias
    ON llmgate_verification_tokens (key_alias) WHERE key_alias IS NOT NULL;

CREATE TABLE llmgate_spend_logs (
    request_id                  TEXT PRIMARY KEY,
    call_type                   TEXT NOT NULL,
    api_key                     TEXT NOT NULL,
    spend                       DOUBLE PRECISION NOT NULL,
    total_tokens                BIGINT NOT NULL,
    prompt_tokens               BIGINT NOT NULL,
    completion_tokens           BIGINT NOT NULL,
    cache_read_input_tokens     BIGINT NOT NULL,
    cache_creation_input_tokens BIGINT NOT NULL,
    reasoning_tokens            BIGINT NOT NULL,
    start_time_ms               BIGINT NOT NULL,
    end_time_ms                 BIGINT NOT NULL,
    completion_start_time_ms    BIGINT,
    model                       TEXT NOT NULL,
    model_group                 TEXT NOT NULL,
    model_id                    TEXT NOT NULL,
    custom_llm_provider         TEXT NOT NULL,
    api_base                    TEXT NOT NULL,
    status                      TEXT NOT NULL,
    "user"                      TEXT NOT NULL,
    metadata                    TEXT NOT NULL,
    request_tags                TEXT NOT NULL,
    messages                    TEXT,
    response                    TEXT,
    requester_ip_address        TEXT
);
CREATE INDEX llmgate_spend_logs_api_key ON llmgate_spend_logs (api_key, start_time_ms);
CREATE INDEX llmgate_spend_logs_start_time_ms ON llmgate_spend_logs (start_time_ms);
CREATE INDEX llmgate_spend_logs_user ON llmgate_spend_logs ("user", start_time_ms);
"#,
    // 2: a key's soft budget (LiteLLM's `soft_budget`: an alert, not a limit).
    r#"
ALTER TABLE llmgate_verification_tokens ADD COLUMN soft_budget DOUBLE PRECISION;
"#,
    // 3: budget leases of instances sharing one database (`store/lease.rs`): a key's
    // `leased` is the sum of its leases' `usd`, the budget its instances may still spend
    // without asking again.
    r#"
ALTER TABLE llmgate_verification_tokens ADD COLUMN leased DOUBLE PRECISION NOT NULL DEFAULT 0;
CREATE TABLE llmgate_key_leases (
    id         TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    instance   TEXT NOT NULL,
    usd        DOUBLE PRECISION NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX llmgate_key_leases_token ON llmgate_key_leases (token);
CREATE INDEX llmgate_key_leases_instance ON llmgate_key_leases (instance);
CREATE INDEX llmgate_key_leases_expires_at ON llmgate_key_leases (expires_at);
"#,
];

/// The table that records which migrations a database has seen.
pub(super) const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS llmgate_schema_version (
     version    BIGINT PRIMARY KEY,
     applied_at BIGINT NOT NULL
 );";

/// The migrations a database at version `current` still needs, numbered; fails when the
/// database is newer than this build.
pub(super) fn to_apply(current: i64) -> anyhow::Result<impl Iterator<Item = (i64, &'static str)>> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        bail!(
            "the database schema is at version {current}, newer than this llmgate knows ({known}); \
             upgrade llmgate"
        );
    }
    Ok((1_i64..)
        .zip(MIGRATIONS.iter().copied())
        .skip(usize::try_from(current).unwrap_or(0)))
}

/// Now, in unix seconds (a migration's `applied_at`).
pub(super) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Opens (creating the file and its parent folders) and migrates the database at `path`.
/// Every error names the path.
pub(super) fn open(path: &Path) -> anyhow::Result<Connection> {
    open_inner(path).with_context(|| format!("cannot open the database {}", path.display()))
}

fn open_inner(path: &Path) -> anyhow::Result<Connection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {}", parent.display()))?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first statement that reads the file: a file that is not SQLite fails here.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "SQLite could not switch to WAL journaling");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies the migrations the database has not seen yet, all in one write transaction (so
/// two processes opening the same new file do not both migrate it).
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(VERSION_TABLE)?;
    let current: i64 = tx
        .query_row(
            "SELECT MAX(version) FROM llmgate_schema_version",
            [],
            |row| row.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten()
        .unwrap_or(0);
    let now = now_secs();
    for (version, sql) in to_apply(current)? {
        tx.execute_batch(sql)
            .with_context(|| format!("applying schema migration {version}"))?;
        tx.execute(
            "INSERT INTO llmgate_schema_version (version, applied_at) VALUES (?1, ?2)",
            params![version, now],
        )?;
        tracing::info!(version, "applied store schema migration");
    }
    tx.commit()?;
    Ok(())
}

/// The schema version recorded in the database (tests).
#[cfg(test)]
pub(super) fn version(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0), COUNT(*) FROM llmgate_schema_version",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// How many migrations this build knows.
#[cfg(test)]
pub(super) const LATEST: usize = MIGRATIONS.len();
