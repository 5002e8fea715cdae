//! State several llmgate instances share through one Redis (LiteLLM's
//! `router_settings.redis_host`/`redis_port`/`redis_password`/`redis_url`): deployment
//! cooldowns and the rpm/tpm windows of keys and deployments. Without Redis configured
//! nothing here exists: the gateway and the ledger hold no [`Shared`], and no Redis code
//! runs on any path.
//!
//! **Cooldowns** are pushed, never polled on the request path. An instance that cools a
//! deployment down writes `llmgate:cooldown:<id>` with the cooldown as its TTL and
//! publishes it on `llmgate:cooldowns`; every instance's subscriber task applies it to its
//! local stats at once (the routing path reads only those local atomics). A subscriber
//! that (re)connects reads every cooldown key first, so one that was down or just started
//! learns the cooldowns in force. Durations travel, not clock times: instance clocks need
//! not agree.
//!
//! **Windows** (per calendar minute, `llmgate:key:<hash>:rpm:<minute>`, ...) are counted in
//! Redis by one Lua script per admission, which checks every limit of the request and
//! counts it only if all pass: one round trip, only for requests whose key or deployment
//! has a limit, and the count is exact across instances (no over-admission while Redis
//! answers). Tokens are added when a request settles, off the request path.
//!
//! **Redis down**: a command that fails or takes longer than [`COMMAND_TIMEOUT`] makes
//! that request fall back to the instance's local counters; the link task notices (its
//! subscription ends or a ping fails), warns once, keeps reconnecting every
//! [`RECONNECT_EVERY`], and says so when Redis is back. While down each instance enforces
//! limits alone and cooldowns stay local; [`Shared::status`] feeds readiness.

mod link;
mod target;
mod windows;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

pub use target::Target;
pub use windows::{Check, Counter, window_key};

/// Longest a request waits for Redis before it counts locally instead.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause between reconnection attempts while Redis is down.
pub const RECONNECT_EVERY: Duration = Duration::from_millis(500);
/// Writes (cooldowns, token counts) queued for Redis at most; more are dropped (counted).
const QUEUE: usize = 8192;

/// Whether the shared Redis is usable now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Connected and subscribed: state is shared.
    Connected,
    /// Not reachable (or refusing us): every instance runs on its local state.
    Down,
}

/// The shared Redis: its connection (while up), the subscriber and writer tasks, and the
/// hook that applies other instances' cooldowns. Dropping it stops the tasks.
pub struct Shared {
    inner: Arc<Inner>,
    _tasks: Vec<AbortOnDropHandle<()>>,
}

/// Applies a cooldown another instance started: `(deployment id, milliseconds)`.
type OnCooldown = Box<dyn Fn(&str, u64) + Send + Sync>;

/// What the tasks and the handle share.
struct Inner {
    target: Target,
    client: redis::Client,
    /// The connection while Redis is up (`None`: down).
    conn: arc_swap::ArcSwapOption<ConnectionManager>,
    writes: mpsc::Sender<Write>,
    /// Set once, at start ([`Shared::on_cooldown`]).
    on_cooldown: OnceLock<OnCooldown>,
    /// This process, so it skips its own announcements.
    instance: String,
    /// Writes dropped because the queue was full.
    dropped: AtomicU64,
}

/// A write queued for Redis, off the request path.
enum Write {
    /// A deployment cooled down for this many milliseconds.
    Cooldown { id: String, ms: u64 },
    /// Add `n` to a window counter (tokens used, or a refused request taken back).
    Add { key: String, n: i64 },
}

impl Shared {
    /// Start sharing through `target`: the link task connects (and keeps reconnecting)
    /// and the writer task sends queued writes. Must run inside a Tokio runtime. Fails only
    /// on settings the client refuses; an unreachable Redis is not an error (it is down).
    pub fn start(target: Target) -> anyhow::Result<Self> {
        let client = redis::Client::open(target.connection_info()?).map_err(|e| {
            anyhow::anyhow!("Redis {}: {}", target.shown(), target.scrub(&e.to_string()))
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = Arc::new(Inner {
            target,
            client,
            conn: arc_swap::ArcSwapOption::empty(),
            writes: tx,
            on_cooldown: OnceLock::new(),
            instance: uuid::Uuid::new_v4().to_string(),
            dropped: AtomicU64::new(0),
        });
        let tasks = vec![
            AbortOnDropHandle::new(tokio::spawn(link::supervise(inner.clone()))),
            AbortOnDropHandle::new(tokio::spawn(link::write(inner.clone(), rx))),
        ];
        Ok(Self {
            inner,
            _tasks: tasks,
        })
    }

    /// Connected or down.
    pub fn status(&self) -> Status {
        if self.inner.conn.load().is_some() {
            Status::Connected
        } else {
            Status::Down
        }
    }

    /// Where Redis is (no password).
    pub fn shown(&self) -> String {
        self.inner.target.shown()
    }

    /// Writes dropped since start because Redis could not keep up.
    pub fn dropped_writes(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Apply every cooldown another instance starts with `f(deployment id, milliseconds)`
    /// (set once, at start).
    pub fn on_cooldown(&self, f: impl Fn(&str, u64) + Send + Sync + 'static) {
        let _ = self.inner.on_cooldown.set(Box::new(f));
    }

    /// Tell every instance that deployment `id` cools down for `ms` milliseconds (queued;
    /// never waits).
    pub fn cooldown(&self, id: &str, ms: u64) {
        self.inner.queue(Write::Cooldown {
            id: id.to_string(),
            ms,
        });
    }

    /// Add `n` to window counter `key` (queued; never waits). Skipped while Redis is down.
    pub fn add(&self, key: String, n: i64) {
        if n != 0 && self.inner.conn.load().is_some() {
            self.inner.queue(Write::Add { key, n });
        }
    }

    /// Check `counters` against their limits in Redis and, if every one passes, add to
    /// each its `add`, atomically (one round trip). [`Check::Local`] when Redis is down,
    /// fails or is slower than [`COMMAND_TIMEOUT`]: the caller counts locally.
    pub async fn check(&self, counters: &[Counter]) -> Check {
        let Some(conn) = self.inner.conn.load_full() else {
            return Check::Local;
        };
        let mut conn = ConnectionManager::clone(&conn);
        windows::check(&mut conn, counters).await
    }
}

impl Inner {
    fn queue(&self, w: Write) {
        if self.writes.try_send(w).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
