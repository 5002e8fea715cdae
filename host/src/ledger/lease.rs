//! This instance's side of budget leases on a shared database (the database side and the
//! design: `store/lease.rs`; the bound: ARCHITECTURE.md, "Budgets across instances").
//!
//! Per key, [`Held`] is the lease: the USD it has left (`left`, what it was granted less
//! what settled requests paid from it). A request is admitted while the reservations in
//! flight plus its own fit in `left` ([`Held::short`]); otherwise it waits for one grant
//! ([`Leasing::top_up`]). A settled request pays its cost from `left` ([`Held::pay`]) and
//! its charge tells the store how much the lease paid. [`Leasing::upkeep`] renews the
//! leases, notices reclaimed ones, and gives back the leases of idle keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Admission, KeyEntry, Ledger, budget_held, check_spend, unix_now, unix_now_ms, window};
use crate::error::Error;
use crate::store::{Ask, Leases};

/// Float slack when checking that a grant covers a request (a billionth of a USD).
const EPSILON: f64 = 1e-9;
/// A lease is asked for at least this many times a request's reservation, so that most
/// requests are admitted without asking.
const CHUNK_REQUESTS: f64 = 64.0;
/// ... and for what the key's requests reserved over this long at their recent rate, so a
/// busy key rides through a database restart on the lease it holds.
const CHUNK_HORIZON_SECS: f64 = 10.0;
/// A key with nothing in flight and no admission for this long gives its lease back.
const IDLE: Duration = Duration::from_secs(5);

/// A key's lease, as this instance counts it.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// The lease's id in the database; `None` until the first grant (or after a release).
    pub id: Option<String>,
    /// USD left: granted, less what settled requests paid.
    pub left: f64,
    /// When the last grant was applied (unix ms).
    granted_ms: i64,
    /// When a request last used the lease (unix ms).
    used_ms: i64,
    /// What the requests admitted since the last grant reserved (USD): their rate sizes
    /// the next grant.
    reserved_since: f64,
}

impl Held {
    /// How many USD the lease is short of the reservations in flight plus `worst`; `None`
    /// when it covers them.
    pub fn short(&self, reserved: f64, worst: f64) -> Option<f64> {
        let need = reserved + worst - self.left;
        (need > EPSILON).then_some(need)
    }

    /// A request admitted against the lease reserved `worst`.
    pub fn note(&mut self, worst: f64) {
        self.reserved_since += worst;
    }

    /// What to ask for beyond the need: 64 reservations of this size, or what the key's
    /// requests reserved over [`CHUNK_HORIZON_SECS`] at their rate since the last grant.
    fn chunk(&self, worst: f64, now_ms: i64) -> f64 {
        let secs = ((now_ms - self.granted_ms) as f64 / 1000.0).max(0.5);
        (worst * CHUNK_REQUESTS).max(self.reserved_since / secs * CHUNK_HORIZON_SECS)
    }

    /// A settled request's cost: paid from what is left; returns the part the lease paid
    /// (a request that cost more than it reserved may overdraw what is left).
    pub fn pay(&mut self, cost: f64) -> f64 {
        if self.id.is_none() {
            return 0.0;
        }
        self.used_ms = unix_now_ms();
        let taken = cost.min(self.left.max(0.0));
        self.left -= taken;
        taken
    }

    /// Drops the lease here; its id, to give it back.
    pub fn forget(&mut self) -> Option<String> {
        self.left = 0.0;
        self.id.take()
    }
}

/// This instance's leasing: the lease thread, its instance id, the lease lifetime.
pub(super) struct Leasing {
    leases: Leases,
    /// `<host>-<pid>-<random>`: the instance part of every lease id.
    instance: String,
    ttl: Duration,
    next_id: AtomicU64,
    /// Leases dropped where nothing could wait for the database (a budget changed by
    /// another instance): given back at the next upkeep round.
    dropped: std::sync::Mutex<Vec<String>>,
}

impl Leasing {
    pub fn new(leases: Leases, ttl: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "llmgate".into());
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            leases,
            instance: format!("{host}-{}-{}", std::process::id(), &random[..8]),
            ttl: ttl.max(Duration::from_secs(1)),
            next_id: AtomicU64::new(1),
            dropped: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Asks the database for enough of `key`'s budget to admit a request reserving `worst`
    /// (one grant at a time per key: the others wait, then find it covered). Fails with the
    /// refusal the database's figures call for when nothing is left, or 503 when the
    /// database does not answer.
    pub async fn top_up(
        &self,
        key: &KeyEntry,
        worst: f64,
        admission: Admission,
    ) -> Result<(), Error> {
        let _one = key.leasing.lock().await;
        let now = unix_now();
        let ask = {
            let mut st = key.lock();
            let Some(need) = st.lease.short(st.reserved, worst) else {
                return Ok(());
            };
            let id = st
                .lease
                .id
                .get_or_insert_with(|| {
                    let n = self.next_id.fetch_add(1, Ordering::Relaxed);
                    format!("{}/{n}", self.instance)
                })
                .clone();
            let next_reset = st
                .rec
                .budget_duration
                .as_deref()
                .and_then(|d| window::parse(d).ok())
                .map(|p| window::next_reset(p, now));
            Ask {
                token: st.rec.token.clone(),
                id,
                need,
                idle: (st.lease.left - st.reserved).max(0.0),
                chunk: st.lease.chunk(worst, unix_now_ms()),
                strict: admission == Admission::Strict,
                now,
                next_reset,
                ttl: self.ttl,
            }
        };
        tracing::debug!(?ask, "asking for a budget lease");
        let granted = self.leases.grant(ask).await.map_err(|e| {
            tracing::warn!("leasing budget from PostgreSQL failed: {e:#}");
            Error::Unavailable(format!(
                "the key's budget needs the database, which did not answer ({e}); retry shortly"
            ))
        })?;
        tracing::debug!(key = %key.lock().rec.key_name, ?granted, "budget lease grant");
        let mut st = key.lock();
        let Some(g) = granted else {
            st.deleted = true;
            return Err(Error::Unauthorized(format!(
                "key {} was deleted",
                st.rec.key_name
            )));
        };
        st.rec.spend = st.rec.spend.max(g.spend);
        let Some(cap) = g.max_budget else {
            // The budget was removed by another instance: nothing to lease.
            st.rec.max_budget = None;
            return Ok(());
        };
        st.rec.max_budget = Some(cap);
        if g.usd <= 0.0 {
            let scope = format!("Key={}", st.rec.key_name);
            check_spend(admission, &scope, g.spend, worst, cap)?;
            let elsewhere = (g.leased - st.lease.left).max(0.0);
            return Err(budget_held(
                &scope,
                g.spend,
                cap,
                st.reserved + elsewhere,
                worst,
            ));
        }
        if g.fresh {
            st.lease.left = g.usd;
        } else {
            st.lease.left += g.usd;
        }
        st.lease.granted_ms = unix_now_ms();
        st.lease.used_ms = st.lease.granted_ms;
        st.lease.reserved_since = 0.0;
        Ok(())
    }

    /// The refusal when grants kept being used up by this instance's other requests before
    /// this one got its turn.
    pub fn crowded(&self, key: &KeyEntry, need: f64) -> Error {
        let st = key.lock();
        let cap = st.rec.max_budget.unwrap_or(0.0);
        let scope = format!("Key={}", st.rec.key_name);
        budget_held(&scope, st.rec.spend, cap, st.reserved, need)
    }

    /// One round of upkeep: renew this instance's leases (reclaiming everyone's expired
    /// ones), forget those that were reclaimed, give back those of idle keys.
    async fn round(&self, ledger: &Ledger) -> anyhow::Result<()> {
        let started = unix_now_ms();
        let ids: Vec<String> = ledger
            .keys_read()
            .values()
            .filter_map(|k| k.lock().lease.id.clone())
            .collect();
        let held = self.leases.renew(ids, self.ttl).await?;
        let mut give_back =
            std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|p| p.into_inner()));
        for key in ledger.keys_read().values() {
            // A grant in progress: its outcome is not known yet; next round.
            let Ok(_one) = key.leasing.try_lock() else {
                continue;
            };
            let mut st = key.lock();
            let Some(id) = st.lease.id.clone() else {
                continue;
            };
            let lost = !held.contains(&id) && st.lease.granted_ms < started;
            let idle = st.in_flight == 0
                && started - st.lease.used_ms > i64::try_from(IDLE.as_millis()).unwrap_or(0);
            if lost || idle || st.deleted {
                give_back.extend(st.lease.forget());
            }
            if lost {
                tracing::warn!(
                    key = %st.rec.key_name,
                    "this instance's budget lease was reclaimed (it was not renewed in time)"
                );
            }
        }
        // Not given back (the database did not answer): no longer renewed either, so they
        // expire and are reclaimed.
        self.leases.release(give_back).await
    }

    /// Gives back every lease (shutdown).
    pub async fn release_all(&self, ledger: &Ledger) {
        let ids: Vec<String> = ledger
            .keys_read()
            .values()
            .filter_map(|k| k.lock().lease.forget())
            .collect();
        let n = ids.len();
        match self.leases.release(ids).await {
            Ok(()) if n > 0 => tracing::info!(leases = n, "budget leases given back"),
            Ok(()) => {}
            Err(e) => tracing::warn!(
                "giving budget leases back failed ({e:#}); they come back when they expire"
            ),
        }
    }
}

/// Renews, reclaims and gives back leases every quarter of their lifetime, until dropped.
pub struct Upkeep(tokio::task::JoinHandle<()>);

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Ledger {
    /// Starts lease upkeep ([`Upkeep`]); `None` unless the database is shared.
    pub fn lease_upkeep(self: &Arc<Self>) -> Option<Upkeep> {
        let every = self.leasing.as_ref()?.ttl / 4;
        let ledger = self.clone();
        Some(Upkeep(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(leasing) = &ledger.leasing else {
                    return;
                };
                match leasing.round(&ledger).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("budget leases renewed again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(
                            "renewing budget leases failed ({e:#}); requests go on within the leases held"
                        );
                    }
                    Err(_) => {}
                }
            }
        })))
    }

    /// A lease dropped by a change applied without waiting (`sync.rs`): given back at the
    /// next upkeep round.
    pub(super) fn drop_lease(&self, lease: Option<String>) {
        if let (Some(leasing), Some(id)) = (&self.leasing, lease) {
            leasing
                .dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id);
        }
    }

    /// Gives back one lease this instance has forgotten (its key's budget changed).
    pub(super) async fn give_back(&self, lease: Option<String>) {
        let (Some(leasing), Some(id)) = (&self.leasing, lease) else {
            return;
        };
        if let Err(e) = leasing.leases.release(vec![id]).await {
            tracing::warn!(
                "giving a budget lease back failed ({e:#}); it comes back when it expires"
            );
        }
    }

    /// Gives back this instance's leases (at shutdown, once requests have settled).
    pub async fn release_leases(&self) {
        if let Some(leasing) = &self.leasing {
            leasing.release_all(self).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn a_lease_covers_reservations_and_pays_costs_from_what_is_left() {
        let mut h = Held {
            id: Some("i/1".into()),
            left: 1.0,
            ..Held::default()
        };
        assert_eq!(h.short(0.5, 0.5), None);
        let short = h.short(0.5, 0.75).unwrap();
        assert!((short - 0.25).abs() < 1e-12);
        assert_eq!(h.pay(0.25), 0.25);
        assert!((h.left - 0.75).abs() < 1e-12);
        // A cost beyond what is left: the lease pays what it has.
        assert_eq!(h.pay(2.0), 0.75);
        assert_eq!(h.left, 0.0);
        // The next grant is sized by the rate of reservations since the last one.
        h.granted_ms = 0;
        assert_eq!(h.chunk(0.001, 1_000), 0.064);
        h.note(1.0);
        assert_eq!(h.chunk(0.001, 2_000), 5.0, "1 USD in 2 s: 10 s of it");
        // Without a lease nothing is paid from one.
        let mut none = Held::default();
        assert_eq!(none.pay(1.0), 0.0);
    }
}
