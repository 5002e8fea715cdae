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

use super::types::{
    Charge, KeyRecord, Overwrite, SpendAggregate, SpendEvent, SpendLog, SpendQuery, SpendTotals,
};

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
    /// Insert one key or replace its settings (and its spend too when the flag is set).
    PutKey(Box<KeyRecord>, Overwrite, Reply<()>),
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
    /// Writes every pending log row, then the window resets, then the charges (summed per
    /// key and lease), in one transaction.
    fn write_events(&mut self, pending: &Pending) -> anyhow::Result<()>;
    /// All keys, oldest first.
    fn load_keys(&mut self) -> anyhow::Result<Vec<KeyRecord>>;
    /// Inserts a key or replaces its settings (its spend too with `spend`);
    /// [`super::AliasTaken`] if another key has its alias.
    fn put_key(&mut self, rec: &KeyRecord, spend: Overwrite) -> anyhow::Result<()>;
    /// Renames `old` to `rec`'s token (keeping its spend and leases) and writes `rec`'s
    /// settings, in one transaction.
    fn replace_key(&mut self, old: &str, rec: &KeyRecord) -> anyhow::Result<()>;
    /// Deletes keys (and their leases); the tokens that existed.
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
    /// Window resets `(token, from, to)`, in order; written before the charges, so a charge
    /// queued before a reset counts in the new window (never lost from it).
    pub resets: Vec<(String, i64, Option<i64>)>,
    /// Charges, summed per key, lease and model group.
    pub charges: HashMap<ChargeKey, Charge>,
    waiters: Vec<Reply<()>>,
}

/// What charges are summed by: the key, the lease that paid, the model group.
pub(super) type ChargeKey = (String, Option<String>, Option<String>);

impl Pending {
    fn has_data(&self) -> bool {
        !self.logs.is_empty() || !self.resets.is_empty() || !self.charges.is_empty()
    }

    fn add(&mut self, ev: SpendEvent) {
        match ev {
            SpendEvent::Log(log) => self.logs.push(log),
            SpendEvent::KeyReset { token, from, to } => self.resets.push((token, from, to)),
            SpendEvent::KeyCharge(c) => {
                let at = (
                    c.token.clone(),
                    c.lease.as_ref().map(|l| l.id.clone()),
                    c.model.as_ref().map(|m| m.group.clone()),
                );
                match self.charges.get_mut(&at) {
                    Some(sum) => {
                        sum.cost += c.cost;
                        if let (Some(s), Some(l)) = (&mut sum.lease, &c.lease) {
                            s.usd += l.usd;
                        }
                        if let (Some(s), Some(m)) = (&mut sum.model, c.model) {
                            s.now = s.now.max(m.now);
                        }
                    }
                    None => {
                        self.charges.insert(at, c);
                    }
                }
            }
        }
    }

    fn clear(&mut self) {
        self.logs.clear();
        self.resets.clear();
        self.charges.clear();
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
            "{} spend log rows and {} key charges could not be written",
            pending.logs.len(),
            pending.charges.len()
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
            Msg::PutKey(rec, spend, reply) => {
                self.commit();
                let _ = reply.send(self.db.put_key(&rec, spend));
            }
            Msg::ReplaceKey(old, rec, reply) => {
                self.commit();
                let _ = reply.send(self.db.replace_key(&old, &rec));
            }
            Msg::DeleteKeys(tokens, reply) => {
                self.commit();
                let _ = reply.send(self.db.delete_keys(tokens));
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
                        keys = self.pending.charges.len(),
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
                self.pending.clear();
                for waiter in self.pending.waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(
                    logs = self.pending.logs.len(),
                    keys = self.pending.charges.len(),
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
