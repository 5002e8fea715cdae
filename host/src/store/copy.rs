//! `llmgate db copy`: every key and spend log row of an SQLite file into a PostgreSQL
//! database, outside a running gateway.
//!
//! The file is held by its lock (`lock.rs`) for the whole copy, so a gateway serving from
//! it makes the copy fail at once (naming the process), and none can start meanwhile. The
//! file is opened as a start opens it (pending migrations applied), read with the shared
//! statements (`rows.rs`), and written to PostgreSQL (migrated to the latest schema first,
//! as a start does) in two transactions: the keys, then the spend log rows.
//!
//! Idempotent: keys upsert by token and rows by `request_id`, so a second copy leaves the
//! same rows. A key whose alias another key (another token) of the target already has is
//! refused, and then nothing is written.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use super::postgres::{PgUrl, Postgres};
use super::sqlite::Sqlite;
use super::types::SpendQuery;
use super::worker::Backend;
use super::{AliasTaken, lock, schema};

/// What [`copy_to_postgres`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Keys upserted.
    pub keys: u64,
    /// Spend log rows upserted.
    pub spend_logs: u64,
}

/// Copies every key and spend log row of the SQLite file `db` into the PostgreSQL
/// database `to` (waiting up to `wait` for its server). Fails while a gateway holds `db`,
/// when `db` does not exist, and when a key's alias belongs to another key in `to`.
pub fn copy_to_postgres(db: &Path, to: &PgUrl, wait: Duration) -> anyhow::Result<Copied> {
    if !db.is_file() {
        bail!("there is no database at {}", db.display());
    }
    let _lock = lock::acquire(db)?;
    let mut source = Sqlite(schema::open(db)?);
    let keys = source
        .load_keys()
        .with_context(|| format!("reading the keys of {}", db.display()))?;
    let logs = source
        .query_logs(&SpendQuery::default())
        .with_context(|| format!("reading the spend logs of {}", db.display()))?;
    source.close()?;
    let mut target = Postgres::open(to, wait)?;
    let written = target
        .copy_in(&keys, &logs)
        .map_err(|e| match e.downcast::<AliasTaken>() {
            Ok(AliasTaken(alias)) => anyhow::anyhow!(
                "{to} already has a different key (another token) with key_alias `{alias}`; \
             nothing was copied: rename or delete one of the two keys first"
            ),
            Err(e) => e.context(format!("copying into {to}")),
        });
    target.close()?;
    written
}
