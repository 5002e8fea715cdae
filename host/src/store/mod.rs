//! The store: virtual keys and spend logs, in SQLite (embedded, the default) or PostgreSQL
//! (several instances, one database).
//!
//! [`Store`] is a cheap, cloneable handle to one dedicated thread that owns the database
//! connection (a backend: `sqlite.rs` or `postgres.rs`, chosen at open: [`Store::open`],
//! [`Store::open_postgres`]); no tokio worker ever waits on the database. Every call is a
//! message on one queue, handled in order:
//!
//! - [`Store::record`] is for the request path: it queues a [`SpendEvent`] and returns at
//!   once (the queue is unbounded, nothing is dropped). The thread drains what is queued
//!   (up to 1024 messages per wake-up) and commits all of its events in one transaction;
//!   a key's charges are added to its stored spend (summed per key in a batch), so
//!   instances sharing a database never overwrite each other's spend.
//!   several spend updates of one key in a batch are written once, with the newest value.
//! - The admin calls ([`Store::put_key`], [`Store::replace_key`], [`Store::delete_keys`]) and
//!   the reads ([`Store::load_keys`], [`Store::query_logs`]) first commit the events queued
//!   before them, then run in their own transaction and answer once it is committed.
//! - [`Store::flush`] answers once everything recorded before it is committed;
//!   [`Store::close`] commits everything queued and stops the thread.
//!
//! A failed commit (disk full, database locked) is logged and retried with backoff; events
//! that still cannot be written stay in memory and are retried with the next batch.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use llmgate::store::{SpendQuery, Store};
//!
//! let store = Store::open(&llmgate::store::default_path(None))?;
//! let keys = store.load_keys().await?;
//! // ... store.record(event) on every request ...
//! let logs = store.query_logs(SpendQuery { limit: 50, ..Default::default() }).await?;
//! store.close().await?;
//! # let _ = (keys, logs);
//! # Ok(())
//! # }
//! ```
//!
//! On PostgreSQL, [`Store::listen_keys`] starts the key change listener (`notify.rs`):
//! what another instance changes reaches this one's [`KeySink`] within a second.
//!
//! Both backends run the same migrations (`schema.rs`) and the same statements (`rows.rs`,
//! `report.rs`; placeholders and the two dialect-specific expressions aside).

mod copy;
mod lease;
mod lock;
mod maintain;
mod notify;
mod postgres;
mod report;
mod rows;
mod schema;
mod sqlite;
mod tls;
mod types;
mod worker;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::{OnceCell, oneshot};

pub use copy::{Copied, copy_to_postgres};
pub use lease::{Ask, Granted, Leases};
pub use lock::lock_path;
pub use maintain::{Backup, Migrated, SchemaStatus, backup, migrate, schema_status};
pub use notify::KeySink;
pub use postgres::{PgUrl, schema_status as postgres_schema_status};
pub use schema::MIGRATIONS;
pub use types::{
    Charge, KeyRecord, ModelBudget, ModelBudgets, ModelCharge, ModelSpend, ModelWindow, Overwrite,
    SpendAggregate, SpendEvent, SpendGroup, SpendLog, SpendQuery, SpendTotals, Taken,
};
use worker::{Msg, Reply};

/// [`Store::put_key`] or [`Store::replace_key`] was given a `key_alias` that another key
/// already has; nothing was written. Find it with `err.downcast_ref::<AliasTaken>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key_alias `{0}` is already taken by another key")]
pub struct AliasTaken(pub String);

/// Handle to the store thread. Cheap to clone; every clone talks to the same thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The SQLite file (`None` for PostgreSQL).
    path: Option<PathBuf>,
    /// The file's path or the PostgreSQL URL without its password, for messages.
    shown: String,
    /// The queue to the thread; `None` once [`Store::close`] has taken it.
    tx: RwLock<Option<mpsc::Sender<Msg>>>,
    /// The outcome of the one real close, shared by every `close()` call.
    closed: OnceCell<Result<(), String>>,
    /// Spend events queued to the thread and not yet taken up by it.
    queued: Arc<AtomicU64>,
    /// This process's claim on the SQLite file (`lock.rs`), given up once the store is
    /// closed; `None` on PostgreSQL (instances share it).
    lock: Mutex<Option<lock::DbLock>>,
    /// Budget leases (`lease.rs`), on PostgreSQL: several instances may share it.
    leases: Option<Leases>,
    /// The PostgreSQL database (`None` for SQLite), for the key change listener.
    url: Option<PgUrl>,
    /// The key change listener, once [`Store::listen_keys`] started it; stopped on close.
    listener: Mutex<Option<notify::Listener>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("db", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `path` (creating the file and its parent folders if missing),
    /// applies pending schema migrations, and starts the store thread. Fails, naming the
    /// path, if the file is not an SQLite database or cannot be read or written, or if
    /// another process has it open (the lock on `<path>.lock`, held until [`Store::close`]
    /// or the process ends).
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let lock = lock::acquire(path)?;
        let conn = schema::open(path)?;
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicU64::new(0));
        let taken = queued.clone();
        std::thread::Builder::new()
            .name("llmgate-store".into())
            .spawn(move || worker::run(sqlite::Sqlite(conn), rx, &taken))
            .context("starting the store thread")?;
        Ok(Store::handle(
            Some(path.to_path_buf()),
            path.display().to_string(),
            (tx, queued),
            Some(lock),
            None,
            None,
        ))
    }

    /// Connects to PostgreSQL at `url`, waiting up to `wait` for the server to accept
    /// connections (logging each retry), applies pending schema migrations (once, even when
    /// several instances start together), and starts the store thread. Errors name
    /// `host:port/db`, never the password.
    pub async fn open_postgres(url: &PgUrl, wait: Duration) -> anyhow::Result<Store> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicU64::new(0));
        let taken = queued.clone();
        let (ready, opened) = oneshot::channel();
        let target = url.clone();
        std::thread::Builder::new()
            .name("llmgate-store".into())
            .spawn(move || match postgres::Postgres::open(&target, wait) {
                Ok(db) => {
                    let _ = ready.send(Ok(()));
                    worker::run(db, rx, &taken);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })
            .context("starting the store thread")?;
        opened
            .await
            .map_err(|_| anyhow!("the store thread stopped while connecting"))??;
        let leases = Leases::start(url)?;
        Ok(Store::handle(
            None,
            url.to_string(),
            (tx, queued),
            None,
            Some(leases),
            Some(url.clone()),
        ))
    }

    fn handle(
        path: Option<PathBuf>,
        shown: String,
        (tx, queued): (mpsc::Sender<Msg>, Arc<AtomicU64>),
        lock: Option<lock::DbLock>,
        leases: Option<Leases>,
        url: Option<PgUrl>,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                path,
                shown,
                tx: RwLock::new(Some(tx)),
                closed: OnceCell::new(),
                queued,
                lock: Mutex::new(lock),
                leases,
                url,
                listener: Mutex::new(None),
            }),
        }
    }

    /// The budget leases of a database that several instances may share (PostgreSQL);
    /// `None` on SQLite, whose file one process owns.
    pub fn leases(&self) -> Option<&Leases> {
        self.inner.leases.as_ref()
    }

    /// Spend events queued to the store thread that it has not taken up yet.
    pub fn queue_depth(&self) -> u64 {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Where the data lives, for messages: the SQLite file's path, or the PostgreSQL URL
    /// without its password (`postgresql://user@host:port/db`).
    pub fn location(&self) -> &str {
        &self.inner.shown
    }

    /// PostgreSQL: starts the key change listener (`notify.rs`), which hands `sink` every
    /// key another instance creates, changes or deletes (within a second, by `LISTEN`),
    /// and every key again after each (re)connect and every `resync`. SQLite (one process
    /// per file): nothing to listen to, `Ok` at once. A second call replaces the listener.
    pub fn listen_keys(&self, sink: Arc<dyn KeySink>, resync: Duration) -> anyhow::Result<()> {
        let Some(url) = &self.inner.url else {
            return Ok(());
        };
        let listener = notify::Listener::start(url.clone(), sink, resync)?;
        *self
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener);
        Ok(())
    }

    /// All keys, oldest first (to load the in-memory ledger at start).
    pub async fn load_keys(&self) -> anyhow::Result<Vec<KeyRecord>> {
        self.call(Msg::LoadKeys).await
    }

    /// Inserts a key, or replaces the settings of the key with the same token (its running
    /// spend, which every instance's charges add to, stays); committed before it returns.
    /// Fails with [`AliasTaken`] if another key has the same alias.
    pub async fn put_key(&self, rec: KeyRecord) -> anyhow::Result<()> {
        self.put_key_with(rec, Overwrite::default()).await
    }

    /// As [`Store::put_key`], and replaces the key's `spend` and/or `model_spend` too, as
    /// `overwrite` says (an admin set the spend, or changed the model budgets).
    pub async fn put_key_with(&self, rec: KeyRecord, overwrite: Overwrite) -> anyhow::Result<()> {
        self.call(|reply| Msg::PutKey(Box::new(rec), overwrite, reply))
            .await
    }

    /// Renames `old_token` to `rec`'s token, keeping its spend and leases, and writes
    /// `rec`'s settings, in one transaction (key regeneration). Fails with [`AliasTaken`] if
    /// a key other than those two has `rec`'s alias.
    pub async fn replace_key(&self, old_token: String, rec: KeyRecord) -> anyhow::Result<()> {
        self.call(|reply| Msg::ReplaceKey(old_token, Box::new(rec), reply))
            .await
    }

    /// Deletes keys by token, in one transaction; returns the tokens that existed.
    pub async fn delete_keys(&self, tokens: Vec<String>) -> anyhow::Result<Vec<String>> {
        self.call(|reply| Msg::DeleteKeys(tokens, reply)).await
    }

    /// Queues a write from the request path: never blocks, never drops. After
    /// [`Store::close`] the event is discarded with a warning.
    pub fn record(&self, ev: SpendEvent) {
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        if self.send(Msg::Event(ev)).is_err() {
            self.inner.queued.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(db = %self.inner.shown, "spend event after the store was closed; not written");
        }
    }

    /// Spend log rows matching `q`, newest first (by `start_time_ms`, then `request_id`).
    /// Sees every event recorded before the call.
    pub async fn query_logs(&self, q: SpendQuery) -> anyhow::Result<Vec<SpendLog>> {
        self.call(|reply| Msg::QueryLogs(Box::new(q), reply)).await
    }

    /// How many spend log rows match `q` (its limit and offset aside).
    pub async fn count_logs(&self, q: SpendQuery) -> anyhow::Result<u64> {
        self.call(|reply| Msg::CountLogs(Box::new(q), reply)).await
    }

    /// Sums of the spend log rows matching `q`, per group (the spend report routes), in SQL
    /// on the store thread. Sees every event recorded before the call.
    pub async fn aggregate(&self, q: SpendAggregate) -> anyhow::Result<Vec<SpendTotals>> {
        self.call(|reply| Msg::Aggregate(Box::new(q), reply)).await
    }

    /// Waits until everything [`record`](Store::record)ed before this call is committed.
    /// Fails if the commit failed even after retries (the events stay queued in memory).
    pub async fn flush(&self) -> anyhow::Result<()> {
        self.call(Msg::Flush).await
    }

    /// Commits every queued write, closes the database and stops the thread. Idempotent:
    /// later (and concurrent) calls return the outcome of the first. Afterwards
    /// [`record`](Store::record) discards events and the other calls fail.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.inner
            .closed
            .get_or_init(|| async {
                if let Some(mut listener) = self
                    .inner
                    .listener
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    listener.stop();
                }
                let sender = self
                    .inner
                    .tx
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let Some(sender) = sender else {
                    return Ok(());
                };
                let (reply, answer) = oneshot::channel();
                let sent = sender.send(Msg::Close(reply));
                drop(sender);
                if sent.is_err() {
                    return Err("the store thread has stopped".to_owned());
                }
                let closed = match answer.await {
                    Ok(result) => result.map_err(|e| format!("{e:#}")),
                    Err(_) => Err("the store thread has stopped".to_owned()),
                };
                drop(
                    self.inner
                        .lock
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take(),
                );
                closed
            })
            .await
            .clone()
            .map_err(|e| anyhow!("closing the store {}: {e}", self.inner.shown))
    }

    fn send(&self, msg: Msg) -> Result<(), Msg> {
        let guard = self.inner.tx.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(tx) => tx.send(msg).map_err(|e| e.0),
            None => Err(msg),
        }
    }

    async fn call<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        if self.send(msg(reply)).is_err() {
            return Err(anyhow!("the store {} is closed", self.inner.shown));
        }
        answer
            .await
            .map_err(|_| anyhow!("the store thread has stopped"))?
    }
}

/// The database file's name when the config does not name one.
pub const DEFAULT_FILE: &str = "llmgate.db";

/// Where the database lives unless the config names it: `$LLMGATE_DB`, else
/// [`DEFAULT_FILE`] in `config_dir` (the folder of the `--config` file), else in the working
/// directory. An empty variable counts as unset. A relative path is made absolute against
/// the working directory (as SQLite would open it), so the start-up line names the real file.
pub fn default_path(config_dir: Option<&Path>) -> PathBuf {
    let path = default_path_from(|name| std::env::var_os(name), config_dir);
    std::path::absolute(&path).unwrap_or(path)
}

fn default_path_from(var: impl Fn(&str) -> Option<OsString>, config_dir: Option<&Path>) -> PathBuf {
    match var("LLMGATE_DB").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => config_dir.unwrap_or(Path::new("")).join(DEFAULT_FILE),
    }
}
