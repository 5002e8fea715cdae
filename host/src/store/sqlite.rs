//! The SQLite backend: the store thread's [`Backend`] over one `rusqlite` connection, and
//! the bindings of the shared rows ([`Arg`] as a parameter, [`Cols`] over a row).

use anyhow::Context;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};

use super::AliasTaken;
use super::report::{self, Dialect};
use super::rows::{self, Arg, Cols};
use super::types::{KeyRecord, Overwrite, SpendAggregate, SpendLog, SpendQuery, SpendTotals};
use super::worker::{Backend, Pending};

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(*v),
            Arg::Real(v) => ValueRef::Real(*v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

impl Cols for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn opt_text(&self, col: &str) -> rusqlite::Result<Option<String>> {
        self.get(col)
    }

    fn opt_int(&self, col: &str) -> rusqlite::Result<Option<i64>> {
        self.get(col)
    }

    fn opt_real(&self, col: &str) -> rusqlite::Result<Option<f64>> {
        self.get(col)
    }

    fn bad(_col: &str, e: Box<dyn std::error::Error + Send + Sync>) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e)
    }
}

/// A JSON encoding failure as a statement error.
fn encode(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// The store thread's SQLite connection.
pub(super) struct Sqlite(pub Connection);

impl Backend for Sqlite {
    fn write_events(&mut self, pending: &Pending) -> anyhow::Result<()> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut log = tx.prepare_cached(rows::UPSERT_LOG)?;
            for l in &pending.logs {
                log.execute(params_from_iter(rows::log_args(l).map_err(encode)?))?;
            }
            let mut reset = tx.prepare_cached(rows::RESET_KEY)?;
            for (token, from, to) in &pending.resets {
                reset.execute(rusqlite::params![token, from, to])?;
            }
            for c in pending.charges.values() {
                charge(&tx, c)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load_keys(&mut self) -> anyhow::Result<Vec<KeyRecord>> {
        let mut stmt = self.0.prepare_cached(&rows::load_keys_sql())?;
        let keys = stmt.query_map([], |row| rows::key_from_row(row))?;
        Ok(keys.collect::<rusqlite::Result<_>>()?)
    }

    fn put_key(&mut self, rec: &KeyRecord, spend: Overwrite) -> anyhow::Result<()> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        check_alias(&tx, rec)?;
        upsert_key(&tx, rec, spend).context("writing the key")?;
        tx.commit().context("committing the key")?;
        Ok(())
    }

    fn replace_key(&mut self, old: &str, rec: &KeyRecord) -> anyhow::Result<()> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(rows::RENAME_KEY)?
            .execute([old, &rec.token])
            .context("renaming the key")?;
        tx.prepare_cached(rows::RENAME_KEY_LEASES)?
            .execute([old, &rec.token])?;
        check_alias(&tx, rec)?;
        upsert_key(&tx, rec, Overwrite::default()).context("writing the new key")?;
        tx.commit().context("committing the key")?;
        Ok(())
    }

    fn delete_keys(&mut self, tokens: Vec<String>) -> anyhow::Result<Vec<String>> {
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = Vec::new();
        for token in tokens {
            if delete_key(&tx, &token).context("deleting a key")? {
                deleted.push(token);
            }
        }
        tx.commit().context("committing the deletion")?;
        Ok(deleted)
    }

    fn query_logs(&mut self, q: &SpendQuery) -> anyhow::Result<Vec<SpendLog>> {
        let (sql, args) = rows::query_logs_sql(q);
        let mut stmt = self.0.prepare_cached(&sql)?;
        let logs = stmt.query_map(params_from_iter(args), |row| rows::log_from_row(row))?;
        Ok(logs.collect::<rusqlite::Result<_>>()?)
    }

    fn count_logs(&mut self, q: &SpendQuery) -> anyhow::Result<u64> {
        let (sql, args) = rows::count_logs_sql(q);
        let n = self
            .0
            .prepare_cached(&sql)?
            .query_row(params_from_iter(args), |row| row.int("n"))?;
        Ok(rows::uint(n))
    }

    fn aggregate(&mut self, q: &SpendAggregate) -> anyhow::Result<Vec<SpendTotals>> {
        let (sql, args) = report::aggregate_sql(q, Dialect::Sqlite);
        let n = q.group_by.len();
        let mut stmt = self.0.prepare_cached(&sql)?;
        let sums = stmt.query_map(params_from_iter(args), |row| report::totals(row, n))?;
        Ok(sums.collect::<rusqlite::Result<_>>()?)
    }

    fn close(self) -> anyhow::Result<()> {
        self.0.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

fn upsert_key(conn: &Connection, k: &KeyRecord, spend: Overwrite) -> rusqlite::Result<()> {
    let args = rows::key_args(k, spend).map_err(encode)?;
    conn.prepare_cached(rows::UPSERT_KEY)?
        .execute(params_from_iter(args))?;
    Ok(())
}

/// Deletes one key and its leases; whether it existed.
fn delete_key(conn: &Connection, token: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(rows::DELETE_KEY_LEASES)?
        .execute([token])?;
    Ok(conn.prepare_cached(rows::DELETE_KEY)?.execute([token])? > 0)
}

/// One (summed) charge: the lease first (what it paid comes off `leased` only if the lease
/// still exists), then the key, then its model window.
fn charge(conn: &Connection, c: &super::types::Charge) -> anyhow::Result<()> {
    let mut taken = 0.0;
    if let Some(l) = &c.lease
        && conn
            .prepare_cached(rows::CHARGE_LEASE)?
            .execute(rusqlite::params![l.id, l.usd])?
            > 0
    {
        taken = l.usd;
    }
    conn.prepare_cached(rows::CHARGE_KEY)?
        .execute(rusqlite::params![c.token, c.cost, taken])?;
    if let Some(m) = &c.model {
        let stored: Option<String> = conn
            .prepare_cached(rows::KEY_MODEL_SPEND)?
            .query_row([&c.token], |row| row.get(0))
            .optional()?;
        if let Some(stored) = stored {
            let json = rows::add_model_spend(&stored, m, c.cost)?;
            conn.prepare_cached(rows::SET_KEY_MODEL_SPEND)?
                .execute(rusqlite::params![c.token, json])?;
        }
    }
    Ok(())
}

/// Fails with [`AliasTaken`] when another key has `rec`'s alias.
fn check_alias(conn: &Connection, rec: &KeyRecord) -> anyhow::Result<()> {
    let Some(alias) = &rec.key_alias else {
        return Ok(());
    };
    let owner: Option<String> = conn
        .prepare_cached(rows::ALIAS_OWNER)?
        .query_row([alias, &rec.token], |row| row.get(0))
        .optional()?;
    match owner {
        Some(_) => Err(AliasTaken(alias.clone()).into()),
        None => Ok(()),
    }
}
