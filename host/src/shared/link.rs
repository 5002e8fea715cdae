//! The link to Redis: connect, subscribe to cooldowns, read the cooldowns in force, ping,
//! and reconnect after a loss; and the writer that sends queued writes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use tokio::sync::mpsc;

use super::{COMMAND_TIMEOUT, Inner, RECONNECT_EVERY, Write};

/// The channel cooldowns are announced on.
const CHANNEL: &str = "llmgate:cooldowns";
/// Cooldown keys: `llmgate:cooldown:<deployment id>`, the cooldown as TTL.
const COOLDOWN_KEY: &str = "llmgate:cooldown:";
/// How often a connected link checks Redis still answers.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Writes sent in one pipeline at most.
const BATCH: usize = 256;

/// A cooldown as announced: who, for how long, by which instance.
#[derive(serde::Serialize, serde::Deserialize)]
struct Announced {
    id: String,
    ms: u64,
    from: String,
}

/// Keep the link up for as long as the gateway runs: connect, share, and on a loss warn
/// once and retry every [`RECONNECT_EVERY`].
pub(super) async fn supervise(inner: Arc<Inner>) {
    let at = inner.target.shown();
    let mut down_reported = false;
    let mut ever_up = false;
    loop {
        match connect(&inner).await {
            Ok((conn, pubsub)) => {
                inner.conn.store(Some(Arc::new(conn.clone())));
                if ever_up {
                    tracing::info!(redis = %at, "Redis is back: cooldowns and rpm/tpm windows are shared again");
                } else {
                    tracing::info!(redis = %at, "Redis connected: cooldowns and rpm/tpm windows are shared");
                }
                ever_up = true;
                resync(&inner, conn.clone()).await;
                watch(&inner, conn, pubsub).await;
                inner.conn.store(None);
                tracing::warn!(redis = %at, "Redis connection lost: cooldowns and rpm/tpm limits are per instance until it is back; reconnecting");
                down_reported = true;
            }
            Err(e) => {
                if !down_reported {
                    tracing::warn!(redis = %at, error = %inner.target.scrub(&e), "Redis is not reachable: cooldowns and rpm/tpm limits are per instance until it is; retrying every {} ms", RECONNECT_EVERY.as_millis());
                    down_reported = true;
                }
            }
        }
        tokio::time::sleep(RECONNECT_EVERY).await;
    }
}

/// A command connection and a subscription to [`CHANNEL`].
async fn connect(inner: &Inner) -> Result<(ConnectionManager, PubSub), String> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1);
    let both = async {
        let conn = ConnectionManager::new_with_config(inner.client.clone(), config).await?;
        let mut pubsub = inner.client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>((conn, pubsub))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, both).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Apply announced cooldowns until the subscription ends or a ping fails.
async fn watch(inner: &Inner, mut conn: ConnectionManager, mut pubsub: PubSub) {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.tick().await;
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(m) => received(inner, &m),
                None => return,
            },
            _ = tick.tick() => {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                if !matches!(tokio::time::timeout(COMMAND_TIMEOUT * 2, ping).await, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

/// One announcement from another instance.
fn received(inner: &Inner, msg: &redis::Msg) {
    let Ok(payload) = msg.get_payload::<String>() else {
        return;
    };
    let Ok(a) = serde_json::from_str::<Announced>(&payload) else {
        return;
    };
    if a.from != inner.instance {
        apply(inner, &a.id, a.ms);
    }
}

fn apply(inner: &Inner, id: &str, ms: u64) {
    if let Some(f) = inner.on_cooldown.get() {
        tracing::info!(
            deployment = id,
            cooldown_ms = ms,
            "deployment cooling down (shared through Redis)"
        );
        f(id, ms);
    }
}

/// Read every cooldown in force (what was announced while this link was down).
async fn resync(inner: &Inner, mut conn: ConnectionManager) {
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(format!("{COOLDOWN_KEY}*"))
            .arg("COUNT")
            .arg(500);
        let page = cmd.query_async::<(u64, Vec<String>)>(&mut conn);
        let Ok(Ok((next, keys))) = tokio::time::timeout(COMMAND_TIMEOUT * 4, page).await else {
            return;
        };
        for key in keys {
            let mut cmd = redis::cmd("PTTL");
            cmd.arg(&key);
            let ttl = cmd.query_async::<i64>(&mut conn);
            if let Ok(Ok(ms)) = tokio::time::timeout(COMMAND_TIMEOUT, ttl).await
                && ms > 0
                && let Some(id) = key.strip_prefix(COOLDOWN_KEY)
            {
                apply(inner, id, ms as u64);
            }
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Send queued writes, a pipeline per batch; dropped while Redis is down.
pub(super) async fn write(inner: Arc<Inner>, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Some(conn) = inner.conn.load_full() {
            let mut conn = ConnectionManager::clone(&conn);
            let pipe = pipeline(&inner, &batch);
            let sent = pipe.query_async::<()>(&mut conn);
            if !matches!(
                tokio::time::timeout(COMMAND_TIMEOUT * 4, sent).await,
                Ok(Ok(()))
            ) {
                tracing::debug!(writes = batch.len(), "Redis writes failed; dropped");
            }
        }
        batch.clear();
    }
}

/// The commands of a batch of writes.
fn pipeline(inner: &Inner, batch: &[Write]) -> redis::Pipeline {
    let mut p = redis::pipe();
    for w in batch {
        match w {
            Write::Cooldown { id, ms } => {
                let key = format!("{COOLDOWN_KEY}{id}");
                // Create with the cooldown as TTL, or lengthen a shorter one; never shorten.
                p.cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(*ms)
                    .arg("NX")
                    .ignore();
                p.cmd("PEXPIRE").arg(&key).arg(*ms).arg("GT").ignore();
                let a = Announced {
                    id: id.clone(),
                    ms: *ms,
                    from: inner.instance.clone(),
                };
                if let Ok(payload) = serde_json::to_string(&a) {
                    p.cmd("PUBLISH").arg(CHANNEL).arg(payload).ignore();
                }
            }
            Write::Add { key, n } => {
                p.cmd("INCRBY").arg(key).arg(*n).ignore();
                p.cmd("PEXPIRE").arg(key).arg(120_000).ignore();
            }
        }
    }
    p
}
