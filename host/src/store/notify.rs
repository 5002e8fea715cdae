//! Key changes across instances (PostgreSQL only): the admin writes of `postgres.rs`
//! (`put_key`, `replace_key`, `delete_keys`, the copy) send `pg_notify('llmgate_keys',
//! payload)` inside their transaction, so the notification is delivered on commit and never
//! for a write that rolled back. The payload is a key's token (its hash, never the key),
//! or `new old` for a regeneration.
//!
//! Every instance runs one [`Listener`]: a thread of its own with a current-thread tokio
//! runtime (as the store thread has) and a dedicated connection, not one of the pool's,
//! named [`APPLICATION`] in `pg_stat_activity`. It `LISTEN`s on [`CHANNEL`]; for each
//! notification it reads the key's row on that connection and hands the [`KeySink`] (the
//! ledger, wired up in `lib.rs`: the store never calls the ledger) the row, or `None` once
//! the key is gone. Reading and handing over happen under the sink's admin lock, so a read
//! is never older than a change this instance commits at the same time.
//!
//! Backstop: a full resync (every key row; keys the database no longer has are gone) after
//! every (re)connect, so what changed while the connection was down is caught up at once,
//! and every `llmgate.key_resync_seconds` (default 10) for what a notification missed (a
//! row changed by hand). A lost connection is retried with backoff (200 ms doubling to 5 s),
//! logged once per outage and once when it is back.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::AsyncMessage;

use super::postgres::{PgUrl, chain};
use super::rows::{self, numbered_dollar};
use super::types::KeyRecord;

/// The notification channel of key changes.
pub const CHANNEL: &str = "llmgate_keys";
/// The listener connection's `application_name`.
pub const APPLICATION: &str = "llmgate-keys";
/// First pause before reconnecting; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between two reconnection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// Longest a read may take while the sink's admin lock is held (then the connection is
/// given up and made again).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the listener hands what it reads: the ledger's side of key propagation.
pub trait KeySink: Send + Sync + 'static {
    /// The lock this instance's own key changes hold while they write; the listener holds
    /// it while it reads and hands a change over.
    fn admin_lock(&self) -> &tokio::sync::Mutex<()>;
    /// Key `token` as the database has it now (`None`: deleted). `replaced`: the token a
    /// regeneration replaced with this one (the entry it takes over). Called with
    /// [`KeySink::admin_lock`] held.
    fn apply_key(&self, token: &str, rec: Option<KeyRecord>, replaced: Option<&str>);
    /// Every key the database has; any other key is gone. Called with
    /// [`KeySink::admin_lock`] held.
    fn apply_all(&self, recs: Vec<KeyRecord>);
}

/// The running listener thread; stopped by [`Listener::stop`] (the store's close) or
/// when the process ends.
pub(super) struct Listener {
    stop: Option<oneshot::Sender<()>>,
}

impl Listener {
    /// Starts the listener thread on `url`: resync every `every`.
    pub(super) fn start(
        url: PgUrl,
        sink: Arc<dyn KeySink>,
        every: Duration,
    ) -> anyhow::Result<Listener> {
        let (stop, stopped) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the key listener's runtime")?;
        std::thread::Builder::new()
            .name("llmgate-keys".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = keep_listening(&url, &*sink, every) => {}
                    }
                });
            })
            .context("starting the key listener thread")?;
        Ok(Listener { stop: Some(stop) })
    }

    /// Stops listening (the thread ends at its next await).
    pub(super) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sessions, one after the other, for as long as the thread runs.
async fn keep_listening(url: &PgUrl, sink: &dyn KeySink, every: Duration) {
    let mut pause = FIRST_PAUSE;
    // Whether the current outage has been logged (once per outage, not per attempt).
    let mut down = false;
    loop {
        let why = match session(url, sink, every, &mut down, &mut pause).await {
            Ok(never) => match never {},
            Err(e) => e,
        };
        if !down {
            tracing::warn!(
                "key changes from other instances paused: the listening connection to PostgreSQL at {} failed: {why:#}; reconnecting (a full resync follows)",
                url.place()
            );
            down = true;
        } else {
            tracing::debug!(
                "key listener: still no connection to {}: {why:#}",
                url.place()
            );
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// What the connection's driver task forwards.
enum Event {
    /// A notification's payload.
    Notified(String),
    /// The connection failed (or closed).
    Lost(String),
}

/// One connection: `LISTEN`, a full resync, then notifications and periodic resyncs until
/// the connection fails (the error).
async fn session(
    url: &PgUrl,
    sink: &dyn KeySink,
    every: Duration,
    down: &mut bool,
    pause: &mut Duration,
) -> anyhow::Result<std::convert::Infallible> {
    let (client, connection) = url
        .listener_config()
        .connect(super::postgres::connector(url))
        .await
        .map_err(|e| anyhow!("{}", chain(&e)))?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let _driver = Driver(tokio::spawn(drive(connection, tx)));
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| anyhow!("LISTEN: {}", chain(&e)))?;
    let keys = resync(&client, sink).await?;
    if std::mem::take(down) {
        tracing::info!(
            keys,
            "key changes from other instances resumed: listening to PostgreSQL at {} again (resynced every key)",
            url.place()
        );
    }
    *pause = FIRST_PAUSE;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = events.recv() => {
                let (payloads, lost) = batch(ev, &mut events);
                for p in &payloads {
                    changed(&client, sink, p).await?;
                }
                if let Some(why) = lost {
                    return Err(anyhow!("{why}"));
                }
            }
            _ = tick.tick() => {
                resync(&client, sink).await?;
            }
        }
    }
}

/// `first` and every event already queued behind it: the distinct payloads, in order, and
/// why the connection was lost if it was (the payloads before it are still applied).
fn batch(
    first: Option<Event>,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> (Vec<String>, Option<String>) {
    let mut payloads: Vec<String> = Vec::new();
    let mut next = first;
    loop {
        match next {
            Some(Event::Notified(p)) => {
                if !payloads.contains(&p) {
                    payloads.push(p);
                }
            }
            Some(Event::Lost(why)) => return (payloads, Some(why)),
            None => return (payloads, Some("the connection closed".to_owned())),
        }
        match events.try_recv() {
            Ok(ev) => next = Some(ev),
            Err(_) => return (payloads, None),
        }
    }
}

/// Aborts the connection's driver task when the session ends.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls the connection: forwards notifications, then why it ended.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<Event>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(n)) => {
                let _ = tx.send(Event::Notified(n.payload().to_owned()));
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Event::Lost(chain(&e)));
                return;
            }
        }
    }
    let _ = tx.send(Event::Lost("the connection closed".to_owned()));
}

/// A notification: read each key it names and hand it over, under the admin lock.
async fn changed(
    client: &tokio_postgres::Client,
    sink: &dyn KeySink,
    payload: &str,
) -> anyhow::Result<()> {
    let mut tokens = payload.split_whitespace();
    let Some(token) = tokens.next() else {
        return Ok(());
    };
    let replaced = tokens.next();
    let _admin = sink.admin_lock().lock().await;
    let rec = bounded(read_key(client, token)).await?;
    sink.apply_key(token, rec, replaced);
    if let Some(old) = replaced {
        let rec = bounded(read_key(client, old)).await?;
        sink.apply_key(old, rec, None);
    }
    Ok(())
}

/// Every key, handed over under the admin lock; how many there are.
async fn resync(client: &tokio_postgres::Client, sink: &dyn KeySink) -> anyhow::Result<usize> {
    let _admin = sink.admin_lock().lock().await;
    let recs = bounded(async {
        let rows = client
            .query(&rows::load_keys_sql(), &[])
            .await
            .map_err(|e| anyhow!("reading the keys: {}", chain(&e)))?;
        rows.iter()
            .map(rows::key_from_row)
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await?;
    let n = recs.len();
    sink.apply_all(recs);
    Ok(n)
}

/// Key `token`'s row, `None` once it is deleted.
async fn read_key(
    client: &tokio_postgres::Client,
    token: &str,
) -> anyhow::Result<Option<KeyRecord>> {
    let row = client
        .query_opt(&numbered_dollar(&rows::load_key_sql()), &[&token])
        .await
        .map_err(|e| anyhow!("reading a changed key: {}", chain(&e)))?;
    row.as_ref().map(rows::key_from_row).transpose()
}

/// `read`, given up after [`READ_TIMEOUT`].
async fn bounded<T>(read: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| anyhow!("a key read took over {}s", READ_TIMEOUT.as_secs()))?
}
