//! The store thread: owns the database connection (a [`Backend`]: SQLite or PostgreSQL),
//! takes messages in queue order, and commits the spend events of each batch in one
//! transaction.
//!
//! A wake-up drains up to [`MAX_BATCH`] queued messages; one that starts with a spend
//! event first waits [`GROUP_COMMIT`] for more. Spend events accumulate in
//! [`Pending`]; an admin command first commits what is pending (so it is applied after
//! every event queued before it), then runs in its own transaction. A failed commit is
//! retried with backoff; if it still fails, the events stay pending and are retried with
//! the next batch (or after [`IDLE_RETRY`] when nothing arrives), and whoever waits on them
//! (`flush`, `close`) gets the error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::oneshot;

use super::rows::KeySpend;
use super::types::{KeyRecord, SpendAggregate, SpendEvent, SpendLog, SpendQuery, SpendTotals};

/// How long a spend event waits for others to share its transaction.
const GROUP_COMMIT: Duration = Duration::from_millis(20);
/// Most messages taken from the queue per wake-up.
const MAX_BATCH: usize = 1024;
/// Waits between the attempts at committing one batch (so `len() + 1` attempts).
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];
/// With events left over from a failed commit, retry this often when the queue is idle.
const IDLE_RETRY: Duration = Duration::from_secs(5);

/// Where a command's answer goes.
pub(super) type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

/// What the [`Store`](super::Store) handle sends to the thread.
pub(super) enum Msg {
    /// A write from the hot path, batched.
    Event(SpendEvent),
    /// Answer once every event queued before it is committed.
    Flush(Reply<()>),
    /// Commit everything, close the connection, answer, stop. Always the last message.
    Close(Reply<()>),
    /// All keys.
    LoadKeys(Reply<Vec<KeyRecord>>),
    /// Insert or replace one key.
    PutKey(Box<KeyRecord>, Reply<()>),
    /// Delete the first key and insert the second, atomically.
    ReplaceKey(String, Box<KeyRecord>, Reply<()>),
    /// Delete keys; answers the tokens that existed.
    DeleteKeys(Vec<String>, Reply<Vec<String>>),
    /// Read spend logs.
    QueryLogs(Box<SpendQuery>, Reply<Vec<SpendLog>>),
    /// Count spend log rows.
    CountLogs(Box<SpendQuery>, Reply<u64>),
    /// Sum spend log rows per group.
    Aggregate(Box<SpendAggregate>, Reply<Vec<SpendTotals>>),
}

/// What a database backend does for the thread. Each call runs to completion before the
/// next message is taken up; the write calls run in one transaction each.
pub(super) trait Backend {
    /// Writes every pending log row, then the newest spend of each key, in one transaction.
    fn write_events(&mut self, pending: &Pending) -> anyhow::Result<()>;
    /// All keys, oldest first.
    fn load_keys(&mut self) -> anyhow::Result<Vec<KeyRecord>>;
    /// Inserts or replaces a key; [`super::AliasTaken`] if another key has its alias.
    fn put_key(&mut self, rec: &KeyRecord) -> anyhow::Result<()>;
    /// Deletes `old` and inserts `rec` in one transaction.
    fn replace_key(&mut self, old: &str, rec: &KeyRecord) -> anyhow::Result<()>;
    /// Deletes keys; the tokens that existed.
    fn delete_keys(&mut self, tokens: Vec<String>) -> anyhow::Result<Vec<String>>;
    /// Spend log rows matching `q`.
    fn query_logs(&mut self, q: &SpendQuery) -> anyhow::Result<Vec<SpendLog>>;
    /// How many spend log rows match `q`.
    fn count_logs(&mut self, q: &SpendQuery) -> anyhow::Result<u64>;
    /// Sums of spend log rows per group.
    fn aggregate(&mut self, q: &SpendAggregate) -> anyhow::Result<Vec<SpendTotals>>;
    /// Closes the connection.
    fn close(self) -> anyhow::Result<()>;
}

/// Spend events received but not committed yet, and who waits for them.
#[derive(Default)]
pub(super) struct Pending {
    /// Spend log rows, in the order they came.
    pub logs: Vec<Arc<SpendLog>>,
    /// Last reported spend per token: only the newest value needs writing.
    pub key_spend: HashMap<String, KeySpend>,
    waiters: Vec<Reply<()>>,
}

impl Pending {
    fn has_data(&self) -> bool {
        !self.logs.is_empty() || !self.key_spend.is_empty()
    }

    fn add(&mut self, ev: SpendEvent) {
        match ev {
            SpendEvent::Log(log) => self.logs.push(log),
            SpendEvent::KeySpend {
                token,
                spend,
                budget_reset_at,
                model_spend,
            } => {
                self.key_spend.insert(
                    token,
                    KeySpend {
                        spend,
                        budget_reset_at,
                        model_spend,
                    },
                );
            }
        }
    }

    /// A key row was just written or deleted by an admin command, which carries the ledger's
    /// newest values: an older pending spend must not overwrite it later.
    fn forget_key(&mut self, token: &str) {
        self.key_spend.remove(token);
    }
}

/// The thread's body: runs until [`Msg::Close`] or until every handle is dropped.
/// `queued`: the count of spend events in the queue, taken down as they are taken up.
pub(super) fn run<B: Backend>(db: B, rx: Receiver<Msg>, queued: &AtomicU64) {
    let mut worker = Worker {
        db,
        pending: Pending::default(),
        queued,
    };
    let mut close_reply = None;
    'outer: loop {
        let first = if worker.pending.has_data() {
            match rx.recv_timeout(IDLE_RETRY) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    worker.commit();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(msg) => msg,
                Err(_) => break,
            }
        };
        // Group commit: a spend event waits a moment for the ones right behind it, so a
        // steady trickle of requests costs one transaction (and one wake-up of this thread)
        // per window instead of one per request. Admin commands and flushes go at once.
        if matches!(first, Msg::Event(_)) {
            std::thread::sleep(GROUP_COMMIT);
        }
        let batch = std::iter::once(first).chain(rx.try_iter().take(MAX_BATCH - 1));
        for msg in batch {
            if let Msg::Close(reply) = msg {
                close_reply = Some(reply);
                break 'outer;
            }
            worker.handle(msg);
        }
        worker.commit();
    }
    // Closing (or every handle dropped): commit what is left, then close the connection.
    worker.commit();
    let Worker { db, pending, .. } = worker;
    let mut result = if pending.has_data() {
        Err(anyhow!(
            "{} spend log rows and {} key spend updates could not be written",
            pending.logs.len(),
            pending.key_spend.len()
        ))
    } else {
        Ok(())
    };
    if let Err(e) = &result {
        tracing::error!("store closing: {e:#}");
    }
    if let Err(e) = db.close() {
        tracing::error!("closing the database: {e:#}");
        if result.is_ok() {
            result = Err(e.context("closing the database"));
        }
    }
    if let Some(reply) = close_reply {
        let _ = reply.send(result);
    }
}

struct Worker<'q, B> {
    db: B,
    pending: Pending,
    queued: &'q AtomicU64,
}

impl<B: Backend> Worker<'_, B> {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Event(ev) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.pending.add(ev);
            }
            Msg::Flush(reply) => self.pending.waiters.push(reply),
            Msg::Close(reply) => {
                // `run` stops at Close; answer anyway rather than leave the caller hanging.
                let _ = reply.send(Ok(()));
            }
            Msg::LoadKeys(reply) => {
                self.commit();
                let _ = reply.send(self.db.load_keys().context("loading keys"));
            }
            Msg::PutKey(rec, reply) => {
                self.commit();
                let result = self.db.put_key(&rec);
                if result.is_ok() {
                    self.pending.forget_key(&rec.token);
                }
                let _ = reply.send(result);
            }
            Msg::ReplaceKey(old, rec, reply) => {
                self.commit();
                let result = self.db.replace_key(&old, &rec);
                if result.is_ok() {
                    self.pending.forget_key(&old);
                    self.pending.forget_key(&rec.token);
                }
                let _ = reply.send(result);
            }
            Msg::DeleteKeys(tokens, reply) => {
                self.commit();
                let result = self.db.delete_keys(tokens);
                if let Ok(deleted) = &result {
                    for token in deleted {
                        self.pending.forget_key(token);
                    }
                }
                let _ = reply.send(result);
            }
            Msg::QueryLogs(q, reply) => {
                self.commit();
                let _ = reply.send(self.db.query_logs(&q).context("reading spend logs"));
            }
            Msg::CountLogs(q, reply) => {
                self.commit();
                let _ = reply.send(self.db.count_logs(&q).context("counting spend logs"));
            }
            Msg::Aggregate(q, reply) => {
                self.commit();
                let _ = reply.send(self.db.aggregate(&q).context("summing spend logs"));
            }
        }
    }

    /// Commits the pending events (retrying with backoff) and answers the waiters.
    fn commit(&mut self) {
        if !self.pending.has_data() {
            for waiter in self.pending.waiters.drain(..) {
                let _ = waiter.send(Ok(()));
            }
            return;
        }
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match self.db.write_events(&self.pending) {
                Ok(()) => break Ok(()),
                Err(e) => {
                    tracing::error!(
                        attempt,
                        logs = self.pending.logs.len(),
                        keys = self.pending.key_spend.len(),
                        "writing spend to the database failed: {e:#}"
                    );
                    match BACKOFF.get(attempt - 1) {
                        Some(wait) => std::thread::sleep(*wait),
                        None => break Err(e),
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                self.pending.logs.clear();
                self.pending.key_spend.clear();
                for waiter in self.pending.waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(
                    logs = self.pending.logs.len(),
                    keys = self.pending.key_spend.len(),
                    "spend kept in memory; retried with the next write"
                );
                for waiter in self.pending.waiters.drain(..) {
                    let _ = waiter.send(Err(anyhow!(
                        "writing spend to the database failed after {attempt} attempts: {e:#}"
                    )));
                }
            }
        }
    }
}
