//! Virtual keys, budgets, rate limits and spend: the in-memory ledger in front of the store.
//!
//! The ledger is authoritative while the gateway runs: every key's settings and running
//! spend live in memory behind one small mutex per key, so admitting a request is an
//! in-memory check, never a database round trip. The store ([`crate::store`]) gets every
//! change as a queued write, batched off the request path. On PostgreSQL, keys another
//! instance changes arrive through the store's key listener ([`Ledger::sync_key`],
//! `sync.rs`).
//!
//! **Budgets hold under concurrency.** Admission and settlement are atomic per key:
//! - [`Ledger::admit`] checks the key (blocked, expired, model allowed), resets budget
//!   windows that are due, checks the budget, the rpm, tpm and parallel limits, and then
//!   *reserves* the request's cost and tokens before it goes out: its input upper bound at
//!   the dearest input price plus its output allowance (`max_tokens`, else the bounded
//!   default; the rule is in [`crate::pricing`]).
//! - [`Ticket::settle`] (or dropping the ticket) releases the reservation and adds the real
//!   cost and tokens, success or failure, exactly once.
//!
//! **Refusals say why.** The budget check answers, in this order:
//! - real spend alone at or over the budget: 400 `budget_exceeded`, "Budget has been
//!   exceeded! ... Current cost: <spend>, Max budget: <budget>" (LiteLLM's message; the
//!   cost is the settled spend, never the reservations);
//! - strict only: the request's own reservation does not fit in `budget - spend`: 400
//!   `budget_too_small_for_request` (waiting cannot help; a smaller `max_tokens` can);
//! - otherwise, if the reservations of the requests in flight leave no room: 429
//!   `budget_held_by_requests_in_flight` with `Retry-After`, since a retry once they settle
//!   can succeed.
//!
//! **The bound.** With the default rule (`reserve`) a request is admitted while
//! `spend + reserved < max_budget`. Take the last request admitted: every request admitted
//! before it had settled (its cost is in `spend`) or was in flight (its reservation is in
//! `reserved`). So if every request costs at most what it reserved, the final spend is below
//! `max_budget + R`, R the largest single reservation: at most one request over the budget,
//! however many run at once. A request with `max_tokens` never costs more than it reserved;
//! one without it that writes more than the reserved default (4096 tokens) adds the excess
//! output at the output price to the bound. With `llmgate.budget_admission: strict` a
//! request is admitted only if `spend + reserved + R <= max_budget` and a request without
//! `max_tokens` reserves the model's whole output cap, so spend never exceeds the budget, at
//! the price of refusing requests whose worst case is large.
//!
//! **Token limits** work the same way: a request holds its token estimate (input bound +
//! output allowance) against its key's `tpm_limit` from admission to settlement, and is
//! admitted while `tokens used this minute + tokens held < tpm_limit`; tokens served in a
//! minute stay below `tpm_limit` plus one request's estimate. `rpm_limit` counts a request
//! at admission, so it is exact.

mod lease;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

pub use crate::config::Admission;
use crate::error::Error;
use crate::observe::{Facts, KeyTotals, Observer, Record};
use crate::store::{
    Charge, KeyRecord, ModelBudgets, ModelCharge, ModelWindow, SpendEvent, SpendLog, Store, Taken,
};

/// Ledger settings from the config.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// SHA-256 of the master key; `None` turns authentication off (LiteLLM's behaviour).
    pub master_key_hash: Option<[u8; 32]>,
    /// Budget admission rule.
    pub admission: Admission,
    /// Write spend log rows (`general_settings.disable_spend_logs: true` turns them off).
    pub spend_logs: bool,
    /// Keep request and response bodies in spend logs
    /// (`general_settings.store_prompts_in_spend_logs`).
    pub store_prompts: bool,
    /// How long a budget lease lives past its last renewal, on a shared database
    /// (`llmgate.budget_lease_seconds`, default 10 s; at least 1 s).
    pub lease_ttl: std::time::Duration,
}

/// Who is calling.
#[derive(Clone)]
pub enum Caller {
    /// Authentication is off (no master key configured).
    Open,
    /// The master key.
    Master,
    /// A virtual key.
    Key(Arc<KeyEntry>),
}

impl Caller {
    /// What kind of caller this is, for logs and metrics: `open`, `master` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Master => "master",
            Self::Key(_) => "key",
        }
    }

    /// Whether this caller may use admin routes.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Open | Self::Master)
    }
}

/// One virtual key: its record (settings and spend) and live counters.
pub struct KeyEntry {
    state: Mutex<KeyState>,
    /// Held while this instance asks the database for more of the key's budget, so the
    /// requests that need it wait for one grant instead of each sending their own.
    leasing: tokio::sync::Mutex<()>,
}

impl KeyEntry {
    fn new(rec: KeyRecord) -> Self {
        Self {
            state: Mutex::new(KeyState::new(rec)),
            leasing: tokio::sync::Mutex::new(()),
        }
    }
}

struct KeyState {
    rec: KeyRecord,
    /// USD reserved by requests in flight.
    reserved: f64,
    /// Reserved per model group, for model budgets.
    model_reserved: HashMap<String, f64>,
    in_flight: u64,
    /// Tokens held by requests in flight (their estimates), for tpm.
    reserved_tokens: u64,
    /// Current minute (unix seconds / 60) of the rpm/tpm counters.
    minute: i64,
    requests_this_minute: u64,
    tokens_this_minute: u64,
    /// Removed from the ledger (deleted); settles still count, admits fail.
    deleted: bool,
    /// This instance's lease on the key's budget, on a shared database (`lease.rs`).
    lease: lease::Held,
}

impl KeyEntry {
    fn lock(&self) -> MutexGuard<'_, KeyState> {
        // A panic while holding the lock cannot leave the counters half-updated in a way
        // worse than refusing every request of this key: keep serving with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ok` unless the key is deleted, blocked or expired: the 401 every route answers then.
    pub fn usable(&self) -> Result<(), Error> {
        self.lock().refusal(unix_now()).map_or(Ok(()), Err)
    }

    /// A snapshot of the record with windows that are due reset (in the snapshot only: the
    /// key's next use resets them and writes the reset).
    pub fn record(&self) -> KeyRecord {
        let mut snapshot = KeyState::new(self.lock().rec.clone());
        let _ = snapshot.roll(unix_now());
        snapshot.rec
    }

    /// The key's hash.
    pub fn token(&self) -> String {
        self.lock().rec.token.clone()
    }

    /// The key's hash, `rpm_limit` and `tpm_limit`.
    pub fn rate_limits(&self) -> (String, Option<u64>, Option<u64>) {
        let st = self.lock();
        (st.rec.token.clone(), st.rec.rpm_limit, st.rec.tpm_limit)
    }
}

impl KeyState {
    /// Why the key may not be used at `now` (deleted, blocked, expired), if it may not.
    fn refusal(&self, now: i64) -> Option<Error> {
        let name = &self.rec.key_name;
        if self.deleted {
            return Some(Error::Unauthorized(format!("key {name} was deleted")));
        }
        if self.rec.blocked {
            return Some(Error::Unauthorized(format!(
                "key {name} is blocked; unblock it with POST /key/unblock (the master key)"
            )));
        }
        match self.rec.expires {
            Some(exp) if now >= exp => Some(Error::Unauthorized(format!(
                "Expired Key: key {name} expired at {}",
                window::iso(exp)
            ))),
            _ => None,
        }
    }

    /// Reset budget windows that are due. Returns the store's write when the key's own
    /// window started over (model windows start over in the store with their next charge).
    fn roll(&mut self, now: i64) -> Option<SpendEvent> {
        let mut reset = None;
        if let (Some(at), Some(d)) = (self.rec.budget_reset_at, &self.rec.budget_duration)
            && now >= at
        {
            self.rec.spend = 0.0;
            self.rec.budget_reset_at = window::parse(d).ok().map(|p| window::next_reset(p, now));
            reset = Some(SpendEvent::KeyReset {
                token: self.rec.token.clone(),
                from: at,
                to: self.rec.budget_reset_at,
            });
        }
        for (model, w) in &mut self.rec.model_spend {
            if w.reset_at.is_some_and(|t| now >= t) {
                let reset_at = model_period(&self.rec.model_max_budget, model)
                    .map(|p| window::next_reset(p, now));
                *w = ModelWindow {
                    reset_at,
                    spend: 0.0,
                };
            }
        }
        let minute = now.div_euclid(60);
        if minute != self.minute {
            self.minute = minute;
            self.requests_this_minute = 0;
            self.tokens_this_minute = 0;
        }
        reset
    }

    fn model_spend(&self, model: &str) -> f64 {
        self.rec.model_spend.get(model).map_or(0.0, |w| w.spend)
    }

    /// The key's spend and what is left of its limits this minute, for the request record.
    fn totals(&self) -> KeyTotals {
        KeyTotals {
            spend: self.rec.spend,
            max_budget: self.rec.max_budget,
            soft_budget: self.rec.soft_budget,
            remaining_requests: self
                .rec
                .rpm_limit
                .map(|l| l.saturating_sub(self.requests_this_minute)),
            remaining_tokens: self
                .rec
                .tpm_limit
                .map(|l| l.saturating_sub(self.tokens_this_minute)),
        }
    }

    /// The store's write for a request of model group `group` that cost `cost`, `taken`
    /// of it paid by this instance's lease.
    fn charge(&self, group: &str, cost: f64, taken: f64, now: i64) -> SpendEvent {
        let lease = self.lease.id.as_ref().filter(|_| taken > 0.0);
        SpendEvent::KeyCharge(Charge {
            token: self.rec.token.clone(),
            cost,
            lease: lease.map(|id| Taken {
                id: id.clone(),
                usd: taken,
            }),
            model: model_budget(&self.rec, group).map(|_| ModelCharge {
                group: group.to_string(),
                reset_at: model_period(&self.rec.model_max_budget, group)
                    .map(|p| window::next_reset(p, now)),
                now,
            }),
        })
    }
}

/// A model budget of a key (`model_max_budget`), USD.
fn model_budget(rec: &KeyRecord, model: &str) -> Option<f64> {
    rec.model_max_budget.get(model).map(|b| b.max_budget)
}

/// The window (`time_period`) of a model's budget in `model_max_budget`.
fn model_period(budgets: &ModelBudgets, model: &str) -> Option<window::Period> {
    let w = budgets.get(model)?.window.as_deref()?;
    window::parse(w).ok()
}

/// What one admitted request holds until it settles: its reservation, parallel slot and
/// the spend log row being filled in.
pub struct Ticket {
    ledger: Arc<Ledger>,
    key: Option<Arc<KeyEntry>>,
    group: String,
    reserved: f64,
    /// Tokens held against the key's tpm window.
    reserved_tokens: u64,
    /// The spend log row; completed at settlement.
    pub log: SpendLog,
    /// `x-ratelimit-*` headers for the response.
    pub rate_headers: Vec<(&'static str, String)>,
    /// Estimated cost if the ticket is dropped without settling (client went away).
    pub fallback_cost: f64,
    /// What the pipeline records beside the row, for the request's [`Record`].
    pub facts: Facts,
    settled: bool,
}

/// How a request ended, for [`Ticket::settle`].
pub struct Outcome {
    /// USD.
    pub cost: f64,
    /// Whether it succeeded.
    pub success: bool,
    /// Tokens used (for tpm).
    pub tokens: u64,
}

impl Ticket {
    /// Whether full request/response logging is on.
    pub fn ledger_store_prompts(&self) -> bool {
        self.ledger.settings.store_prompts
    }

    /// The key's spend and budget now (for response headers), if a key is in use.
    pub fn key_spend(&self) -> Option<(f64, Option<f64>)> {
        let key = self.key.as_ref()?;
        let st = key.lock();
        Some((st.rec.spend, st.rec.max_budget))
    }

    /// Release the reservation, charge the real cost, and queue the spend log row.
    /// Returns the key's spend after this request.
    pub fn settle(mut self, outcome: Outcome) -> f64 {
        self.settle_inner(outcome)
    }

    fn settle_inner(&mut self, outcome: Outcome) -> f64 {
        if self.settled {
            return 0.0;
        }
        self.settled = true;
        let cost = if outcome.cost.is_finite() && outcome.cost > 0.0 {
            outcome.cost
        } else {
            0.0
        };
        let now_ms = unix_now_ms();
        self.log.spend = cost;
        self.log.end_time_ms = now_ms;
        self.log.status = if outcome.success {
            "success"
        } else {
            "failure"
        }
        .into();
        let store = &self.ledger.store;
        let mut key_spend = 0.0;
        let mut totals = None;
        if let Some(key) = &self.key {
            let mut st = key.lock();
            let now = now_ms / 1000;
            if let Some(reset) = st.roll(now) {
                store.record(reset);
            }
            st.reserved = (st.reserved - self.reserved).max(0.0);
            if let Some(r) = st.model_reserved.get_mut(&self.group) {
                *r = (*r - self.reserved).max(0.0);
            }
            st.in_flight = st.in_flight.saturating_sub(1);
            st.reserved_tokens = st.reserved_tokens.saturating_sub(self.reserved_tokens);
            st.tokens_this_minute = st.tokens_this_minute.saturating_add(outcome.tokens);
            if let (Some(shared), Some(_)) = (self.ledger.shared.get(), st.rec.tpm_limit) {
                let minute = (now_ms / 1000).div_euclid(60);
                let key = crate::shared::window_key("key", &st.rec.token, "tpm", minute);
                shared.add(key, i64::try_from(outcome.tokens).unwrap_or(i64::MAX));
            }
            st.rec.spend += cost;
            if cost > 0.0 && model_budget(&st.rec, &self.group).is_some() {
                let w = st.rec.model_spend.entry(self.group.clone()).or_default();
                w.spend += cost;
            }
            key_spend = st.rec.spend;
            let taken = st.lease.pay(cost);
            if cost > 0.0 {
                // Queued under the lock, after the window reset it follows.
                store.record(st.charge(&self.group, cost, taken, now));
            }
            totals = Some(st.totals());
        }
        let log = Arc::new(std::mem::take(&mut self.log));
        let facts = Arc::new(std::mem::take(&mut self.facts));
        self.ledger.observer.record(&Record {
            log: &log,
            facts: &facts,
            key: totals,
        });
        if self.ledger.settings.spend_logs {
            store.record(SpendEvent::Log(log));
        }
        key_spend
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            // The response was abandoned (client disconnected mid-stream, or a task was
            // cancelled): charge the estimate so far rather than nothing.
            let cost = self.fallback_cost;
            if let Some(m) = self.log.metadata.as_object_mut() {
                m.entry("error")
                    .or_insert_with(|| json!("the client went away before the response finished"));
            }
            if self.facts.error_class.is_none() {
                self.facts.error_class = Some(crate::observe::CLIENT_GONE);
                self.facts.status = 499;
            }
            self.settle_inner(Outcome {
                cost,
                success: false,
                tokens: 0,
            });
        }
    }
}

/// What [`Ledger::admit`] needs to know about a request.
pub struct Admit<'a> {
    /// The model group.
    pub group: &'a str,
    /// USD to reserve (the rule in [`crate::pricing`]).
    pub reserve: f64,
    /// Tokens to hold against the key's tpm window: input bound + output allowance.
    pub tokens: u64,
    /// The spend log row template (request id, call type, times, user, ...).
    pub log: SpendLog,
    /// The pipeline's facts so far (API, model asked, caller).
    pub facts: Facts,
    /// What every instance has counted this minute against the key, when a shared window
    /// ([`crate::shared`]) answered: the local counters take it as their floor.
    pub seen: Option<Seen>,
}

/// A key's rpm/tpm window as counted by every instance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// Requests admitted this minute (this one included when `counted`).
    pub requests: u64,
    /// Tokens used this minute.
    pub tokens: u64,
    /// The shared window already checked this request against `rpm_limit` and counted it:
    /// the local rpm check is skipped (the shared count is authoritative, and it includes
    /// requests this instance is still admitting).
    pub counted: bool,
}

/// The ledger: keys by hash, settings, and the store behind them.
pub struct Ledger {
    store: Store,
    settings: Settings,
    keys: RwLock<HashMap<String, Arc<KeyEntry>>>,
    /// Where every request's record goes when it ends.
    observer: Observer,
    /// Serializes admin changes so a key is never written by two of them at once.
    admin: tokio::sync::Mutex<()>,
    /// The shared Redis, whose tpm windows get every settled key's tokens.
    shared: std::sync::OnceLock<Arc<crate::shared::Shared>>,
    /// Budget leases, when the database is shared (PostgreSQL).
    leasing: Option<lease::Leasing>,
}

/// SHA-256 of a key, lower-case hex: what is stored and logged instead of the key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Display form of a key: `sk-...abcd`.
pub fn key_name(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

/// Every request header a gateway key is accepted from, in the order [`presented_key`]
/// reads them. The gateway never hands these to plugins (it derives its deny-list from
/// this list, so the two cannot drift).
pub const KEY_HEADERS: &[&str] = &["x-litellm-api-key", "authorization", "x-api-key", "api-key"];

/// The key a request presents: `x-litellm-api-key`, `Authorization: Bearer`, `x-api-key`
/// (Anthropic) or `api-key` (Azure), the first one set ([`KEY_HEADERS`]).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    KEY_HEADERS.iter().find_map(|&k| {
        let v = headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())?;
        Some(match k {
            "authorization" => v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
                .trim(),
            _ => v,
        })
    })
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    unix_now_ms() / 1000
}

/// Unix milliseconds now.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Ledger {
    /// Load every key from the store.
    pub async fn open(store: Store, settings: Settings) -> anyhow::Result<Arc<Self>> {
        let records = store.load_keys().await?;
        let now = unix_now();
        let mut keys = HashMap::with_capacity(records.len());
        for rec in records {
            let entry = KeyEntry::new(rec);
            let token = {
                let mut st = entry.lock();
                if let Some(reset) = st.roll(now) {
                    store.record(reset);
                }
                st.rec.token.clone()
            };
            keys.insert(token, Arc::new(entry));
        }
        let leasing = store
            .leases()
            .map(|l| lease::Leasing::new(l.clone(), settings.lease_ttl));
        Ok(Arc::new(Self {
            store,
            settings,
            keys: RwLock::new(keys),
            observer: Observer::default(),
            admin: tokio::sync::Mutex::new(()),
            shared: std::sync::OnceLock::new(),
            leasing,
        }))
    }

    /// Where every request's record goes when it ends ([`Observer::add`] a sink at start).
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// A request refused before admission gave it a ticket (no key, a bad body, an unknown
    /// model, a limit): its record, with the caller's key named as the spend log names it.
    pub fn refused(&self, caller: Option<&Caller>, mut log: SpendLog, facts: Facts) {
        log.end_time_ms = unix_now_ms();
        log.status = "failure".into();
        match caller {
            Some(Caller::Key(key)) => key.lock().tag(&mut log),
            Some(Caller::Master) => self.tag_master(&mut log),
            _ => {}
        }
        self.observer.record(&Record {
            log: &Arc::new(log),
            facts: &Arc::new(facts),
            key: None,
        });
    }

    /// As LiteLLM does: the master key's requests are logged under its hash.
    fn tag_master(&self, log: &mut SpendLog) {
        if let Some(h) = &self.settings.master_key_hash {
            log.api_key = hex::encode(h);
        }
    }

    /// Count settled tokens in `shared`'s tpm windows too (set once, at start).
    pub fn set_shared(&self, shared: Arc<crate::shared::Shared>) {
        let _ = self.shared.set(shared);
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether a master key is set (authentication on).
    pub fn auth_enabled(&self) -> bool {
        self.settings.master_key_hash.is_some()
    }

    fn keys_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<KeyEntry>>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn keys_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<KeyEntry>>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The key with this hash.
    pub fn key_by_token(&self, token: &str) -> Option<Arc<KeyEntry>> {
        self.keys_read().get(token).cloned()
    }

    /// Identify the caller. With no master key configured everyone is let in.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Error> {
        let Some(master) = &self.settings.master_key_hash else {
            return Ok(Caller::Open);
        };
        let Some(key) = presented_key(headers) else {
            return Err(Error::Unauthorized(
                "No api key passed in. Send `Authorization: Bearer <key>` or `x-api-key: <key>`."
                    .into(),
            ));
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if bool::from(digest.ct_eq(master)) {
            return Ok(Caller::Master);
        }
        let token = hex::encode(digest);
        match self.key_by_token(&token) {
            Some(k) => Ok(Caller::Key(k)),
            None => Err(Error::Unauthorized(format!(
                "Invalid proxy server token passed. Received API key = {}, hashed = {token}; the key is not known (never generated, deleted or regenerated).",
                key_name(key)
            ))),
        }
    }

    /// Admit a request: check the key and reserve the worst case. `Open` and `Master`
    /// callers are not limited but their requests are still logged and costed. On a shared
    /// database a key's budget is held by this instance's lease: a request the lease does
    /// not cover waits for one grant (`lease.rs`), then is admitted or refused.
    pub async fn admit(self: &Arc<Self>, caller: &Caller, req: Admit<'_>) -> Result<Ticket, Error> {
        let Caller::Key(key) = caller else {
            let mut log = req.log;
            if matches!(caller, Caller::Master) {
                self.tag_master(&mut log);
            }
            return Ok(self.ticket(req.group, None, (log, req.facts), (0.0, 0), Vec::new()));
        };
        let mut asked = 0;
        let (worst, headers) = loop {
            match self.admit_key(key, &req)? {
                Step::Admitted { worst, headers } => break (worst, headers),
                Step::Lease { need, worst } => {
                    let leasing = self.leasing.as_ref().ok_or_else(|| {
                        Error::Internal("a lease was needed without a shared database".into())
                    })?;
                    if asked == 3 {
                        return Err(leasing.crowded(key, need));
                    }
                    asked += 1;
                    leasing.top_up(key, worst, self.settings.admission).await?;
                }
            }
        };
        let mut log = req.log;
        key.lock().tag(&mut log);
        // Built only now: a refused request holds no ticket, so it writes no spend row.
        Ok(self.ticket(
            req.group,
            Some(key.clone()),
            (log, req.facts),
            (worst, req.tokens),
            headers,
        ))
    }

    fn ticket(
        self: &Arc<Self>,
        group: &str,
        key: Option<Arc<KeyEntry>>,
        (log, facts): (SpendLog, Facts),
        (reserved, reserved_tokens): (f64, u64),
        rate_headers: Vec<(&'static str, String)>,
    ) -> Ticket {
        Ticket {
            ledger: self.clone(),
            group: group.to_string(),
            reserved,
            reserved_tokens: if key.is_some() { reserved_tokens } else { 0 },
            key,
            log,
            rate_headers,
            fallback_cost: 0.0,
            facts,
            settled: false,
        }
    }

    /// One try at admitting `req` on `key`, under its lock: admitted (the reservation made),
    /// refused, or short of lease.
    fn admit_key(&self, key: &KeyEntry, req: &Admit<'_>) -> Result<Step, Error> {
        let now = unix_now();
        let mut st = key.lock();
        if let Some(reset) = st.roll(now) {
            self.store.record(reset);
        }
        let counted = req.seen.is_some_and(|s| s.counted);
        if let Some(seen) = req.seen {
            st.tokens_this_minute = st.tokens_this_minute.max(seen.tokens);
            if !counted {
                st.requests_this_minute = st.requests_this_minute.max(seen.requests);
            }
        }
        if let Some(refused) = st.refusal(now) {
            return Err(refused);
        }
        let worst = if req.reserve.is_finite() {
            req.reserve.max(0.0)
        } else {
            f64::MAX
        };
        st.check_model(req.group)?;
        let leased = self.leasing.is_some();
        let short = st.check_budgets(self.settings.admission, req.group, worst, leased)?;
        let reset_secs = (60 - now.rem_euclid(60)).max(1) as u64;
        st.check_rates(reset_secs, counted)?;
        if let Some(need) = short {
            return Ok(Step::Lease { need, worst });
        }
        st.reserve(req.group, worst, req.tokens, now);
        if let Some(seen) = req.seen.filter(|s| s.counted) {
            // Counted in the shared window, which is this minute's count everywhere.
            st.requests_this_minute = (st.requests_this_minute - 1).max(seen.requests);
        }
        Ok(Step::Admitted {
            worst,
            headers: rate_headers(&st, reset_secs),
        })
    }
}

/// What one try at admission on a key's state came to.
enum Step {
    /// Reserved `worst`.
    Admitted {
        worst: f64,
        headers: Vec<(&'static str, String)>,
    },
    /// This instance's lease is `need` USD short of the request's `worst`.
    Lease { need: f64, worst: f64 },
}

/// The steps of [`Ledger::admit`] on a key's state, in the order it takes them: the model
/// allowed, the budgets, the rate limits, then the reservation.
impl KeyState {
    fn check_model(&self, group: &str) -> Result<(), Error> {
        if model_allowed(&self.rec.models, group) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "key {} is not allowed to access model `{group}`; it may use: {}",
            self.rec.key_name,
            self.rec.models.join(", ")
        )))
    }

    /// The key's budget, then its budget for this model group. With `leased` (a shared
    /// database) the key's budget must also be covered by this instance's lease:
    /// `Ok(Some(need))` when the lease is `need` USD short.
    fn check_budgets(
        &self,
        admission: Admission,
        group: &str,
        worst: f64,
        leased: bool,
    ) -> Result<Option<f64>, Error> {
        let name = &self.rec.key_name;
        let mut short = None;
        if let Some(cap) = self.rec.max_budget {
            let scope = format!("Key={name}");
            // The spend this instance knows of and its own requests in flight first (on one
            // instance, the whole check); then, sharing the database, the lease.
            check_budget(admission, &scope, self.rec.spend, self.reserved, worst, cap)?;
            if leased {
                short = self.lease.short(self.reserved, worst);
            }
        }
        if let Some(cap) = model_budget(&self.rec, group) {
            let reserved = self.model_reserved.get(group).copied().unwrap_or(0.0);
            let scope = format!("Key={name} for model {group}");
            let spend = self.model_spend(group);
            check_budget(admission, &scope, spend, reserved, worst, cap)?;
        }
        Ok(short)
    }

    /// `max_parallel_requests`, `rpm_limit`, then `tpm_limit` (used up, or held by requests
    /// in flight); `reset_secs` until the minute's counters reset. `rpm_checked`: a shared
    /// window has already admitted the request under `rpm_limit`.
    fn check_rates(&self, reset_secs: u64, rpm_checked: bool) -> Result<(), Error> {
        let name = &self.rec.key_name;
        let limited = |message: String, retry_after_secs: u64, headers| Error::RateLimited {
            message,
            retry_after_secs,
            headers,
        };
        if let Some(limit) = self.rec.max_parallel_requests
            && self.in_flight >= limit
        {
            return Err(limited(
                format!(
                    "key {name} has {} requests in flight; its max_parallel_requests is {limit}",
                    self.in_flight
                ),
                1,
                vec![],
            ));
        }
        if let Some(limit) = self.rec.rpm_limit
            && !rpm_checked
            && self.requests_this_minute >= limit
        {
            return Err(limited(
                format!(
                    "key {name} reached its rpm_limit of {limit} requests per minute; retry in {reset_secs}s"
                ),
                reset_secs,
                rate_headers(self, reset_secs),
            ));
        }
        let Some(limit) = self.rec.tpm_limit else {
            return Ok(());
        };
        let used = self.tokens_this_minute;
        if used >= limit {
            return Err(limited(
                format!(
                    "key {name} reached its tpm_limit of {limit} tokens per minute ({used} used); retry in {reset_secs}s"
                ),
                reset_secs,
                rate_headers(self, reset_secs),
            ));
        }
        // Not used up, but held by requests in flight: they settle (usually for less than
        // they hold) well before the minute ends.
        if used.saturating_add(self.reserved_tokens) >= limit {
            return Err(limited(
                format!(
                    "key {name} reached its tpm_limit of {limit} tokens per minute ({used} used, {} held by {} requests in flight); retry in 1s",
                    self.reserved_tokens, self.in_flight
                ),
                1,
                rate_headers(self, reset_secs),
            ));
        }
        Ok(())
    }

    /// Admitted: hold `worst` (and, for a model budget, open the model's window) and count
    /// the request and its tokens.
    fn reserve(&mut self, group: &str, worst: f64, tokens: u64, now: i64) {
        self.reserved += worst;
        if model_budget(&self.rec, group).is_some() {
            if !self.rec.model_spend.contains_key(group) {
                let reset_at = model_period(&self.rec.model_max_budget, group)
                    .map(|p| window::next_reset(p, now));
                let w = ModelWindow {
                    reset_at,
                    spend: 0.0,
                };
                self.rec.model_spend.insert(group.to_string(), w);
            }
            *self.model_reserved.entry(group.to_string()).or_default() += worst;
        }
        self.in_flight += 1;
        self.lease.note(worst);
        self.reserved_tokens = self.reserved_tokens.saturating_add(tokens);
        self.requests_this_minute += 1;
    }

    /// The spend row names the key (its hash) and, as LiteLLM's metadata does, its alias,
    /// user and team.
    fn tag(&self, log: &mut SpendLog) {
        log.api_key = self.rec.token.clone();
        let Some(m) = log.metadata.as_object_mut() else {
            return;
        };
        if let Some(alias) = &self.rec.key_alias {
            m.insert("user_api_key_alias".into(), json!(alias));
        }
        if let Some(u) = &self.rec.user_id {
            m.insert("user_api_key_user_id".into(), json!(u));
        }
        if let Some(t) = &self.rec.team_id {
            m.insert("user_api_key_team_id".into(), json!(t));
        }
    }
}

/// The budget check of one scope (the key, or one of its model budgets): `spend` settled,
/// `reserved` by requests in flight, `this` the request's reservation, `cap` the budget.
/// See the module docs for the three refusals and their order.
fn check_budget(
    admission: Admission,
    scope: &str,
    spend: f64,
    reserved: f64,
    this: f64,
    cap: f64,
) -> Result<(), Error> {
    check_spend(admission, scope, spend, this, cap)?;
    let fits = match admission {
        Admission::Reserve => spend + reserved < cap,
        Admission::Strict => spend + reserved + this <= cap,
    };
    if !fits {
        return Err(budget_held(scope, spend, cap, reserved, this));
    }
    Ok(())
}

/// The first two refusals of [`check_budget`]: spent, or (strict) the request cannot fit.
fn check_spend(
    admission: Admission,
    scope: &str,
    spend: f64,
    this: f64,
    cap: f64,
) -> Result<(), Error> {
    if spend >= cap {
        return Err(Error::BudgetExceeded {
            scope: format!("{scope} over budget."),
            spend,
            max_budget: cap,
        });
    }
    if admission == Admission::Strict && spend + this > cap {
        return Err(Error::BudgetTooSmall(format!(
            "Request over the remaining budget: {scope} has spent {spend} of its max budget {cap}, and this request may cost up to {this}. budget_admission: strict admits a request only if its worst case fits (a request without max_tokens reserves the model's whole output cap): send a smaller max_tokens, or raise max_budget."
        )));
    }
    Ok(())
}

/// The 429 of a budget held by requests in flight (`reserved`, on every instance when the
/// database is shared).
fn budget_held(scope: &str, spend: f64, cap: f64, reserved: f64, this: f64) -> Error {
    Error::BudgetHeld {
        message: format!(
            "Budget held by requests in flight: {scope} has spent {spend} of its max budget {cap}; requests in flight have reserved {reserved} and this request reserves {this}. Retry once they have settled."
        ),
        retry_after_secs: 1,
    }
}

fn rate_headers(st: &KeyState, reset_secs: u64) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if let Some(l) = st.rec.rpm_limit {
        h.push(("x-ratelimit-limit-requests", l.to_string()));
        h.push((
            "x-ratelimit-remaining-requests",
            l.saturating_sub(st.requests_this_minute).to_string(),
        ));
        h.push(("x-ratelimit-reset-requests", format!("{reset_secs}s")));
    }
    if let Some(l) = st.rec.tpm_limit {
        h.push(("x-ratelimit-limit-tokens", l.to_string()));
        h.push((
            "x-ratelimit-remaining-tokens",
            l.saturating_sub(st.tokens_this_minute.saturating_add(st.reserved_tokens))
                .to_string(),
        ));
        h.push(("x-ratelimit-reset-tokens", format!("{reset_secs}s")));
    }
    h
}

/// Whether a key with allowlist `models` may use model group `group`. Empty allows all;
/// `*` and `all-proxy-models` allow all; `prefix/*` style entries match by prefix.
pub fn model_allowed(models: &[String], group: &str) -> bool {
    models.is_empty()
        || models.iter().any(|m| {
            m == group
                || m == "*"
                || m == "all-proxy-models"
                || m.strip_suffix('*').is_some_and(|p| group.starts_with(p))
        })
}

impl KeyState {
    fn new(rec: KeyRecord) -> Self {
        Self {
            rec,
            reserved: 0.0,
            model_reserved: HashMap::new(),
            in_flight: 0,
            reserved_tokens: 0,
            minute: 0,
            requests_this_minute: 0,
            tokens_this_minute: 0,
            deleted: false,
            lease: lease::Held::default(),
        }
    }
}

pub mod admin;
mod sync;
