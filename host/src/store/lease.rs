//! Budget leases: how instances sharing one PostgreSQL database hold a key's budget exactly
//! without a database round trip per request (the design and its bound: ARCHITECTURE.md,
//! "Budgets across instances").
//!
//! A key's row has `spend` (settled) and `leased` (the sum of its leases' `usd`). An
//! instance leases a slice of what is left (`max_budget - spend - leased`) in one short
//! transaction that locks the key's row ([`Leases::grant`]), admits requests against its
//! slice in memory, and pays each request's cost out of it: the charge, queued with the
//! request's spend log row, adds the cost to `spend` and takes what the lease paid off the
//! lease and off `leased` (`rows::CHARGE_LEASE`, `postgres::CHARGE`). So `spend + leased`
//! only grows by a grant, and a grant is refused once `spend + leased` reaches the budget.
//!
//! Leases live [`Ask::ttl`] past their last renewal: every instance renews the ones it
//! holds and reclaims everyone's expired ones ([`Leases::renew`]), so a killed instance's
//! slices come back (and so does a lease an instance dropped without giving it back). An idle lease is given back early ([`Leases::release`]), all of them at
//! shutdown.
//!
//! [`Leases`] is a handle to one thread (`llmgate-leases`) with a current-thread runtime
//! and a small pool of its own, so a grant never waits behind the store thread's batches.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, anyhow};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::postgres::PgUrl;

/// How long a grant, renewal or release may take before it counts as failed.
const DEADLINE: Duration = Duration::from_secs(2);
/// Connections the lease thread keeps at most.
const POOL_SIZE: usize = 4;

/// What an instance asks for when its lease on a key does not cover a request.
#[derive(Debug, Clone)]
pub struct Ask {
    /// Key hash.
    pub token: String,
    /// The lease's id (this instance's one lease on the key; a new id after a release).
    pub id: String,
    /// USD the request needs beyond what the lease has left.
    pub need: f64,
    /// What the instance's lease has left beyond its requests in flight: part of the key's
    /// `leased`, yet no request holds it, so the rule does not count it against the asker.
    pub idle: f64,
    /// USD the instance would like, for the requests after this one (at most a quarter of
    /// what is left is granted beyond `need`).
    pub chunk: f64,
    /// `budget_admission: strict`: grant only if `need` fits in what is left. Otherwise
    /// (`reserve`) grant while `spend + leased - idle < max_budget`, as one instance admits
    /// while `spend + reserved < max_budget` (the other instances' leases count as
    /// reserved).
    pub strict: bool,
    /// Now, unix seconds.
    pub now: i64,
    /// The next window end if the stored window has ended by `now` (`budget_duration`):
    /// the grant starts the window over first.
    pub next_reset: Option<i64>,
    /// How long the lease lives past this grant unless renewed.
    pub ttl: Duration,
}

/// The answer to an [`Ask`], with the key's budget as the database has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Granted {
    /// USD added to the lease (0: refused, nothing left to lease).
    pub usd: f64,
    /// The lease row was made by this grant: an older lease under the id had been
    /// reclaimed (it expired), so the instance's slice is `usd`, not its own count plus it.
    pub fresh: bool,
    /// The key's settled spend in the database, every instance's charges committed so far.
    pub spend: f64,
    /// What every instance's leases hold, this grant included.
    pub leased: f64,
    /// The key's budget; `None`: it has none (any more), nothing to lease.
    pub max_budget: Option<f64>,
}

enum Job {
    Grant(Ask, oneshot::Sender<anyhow::Result<Option<Granted>>>),
    Renew(
        Vec<String>,
        Duration,
        oneshot::Sender<anyhow::Result<HashSet<String>>>,
    ),
    Release(Vec<String>, oneshot::Sender<anyhow::Result<()>>),
}

/// Handle to the lease thread. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    tx: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").finish_non_exhaustive()
    }
}

impl Leases {
    /// Starts the lease thread for the database at `url` (already migrated by the store).
    pub(super) fn start(url: &PgUrl) -> anyhow::Result<Leases> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the lease thread's runtime")?;
        let pool = {
            let _entered = rt.enter();
            super::postgres::pool(url, DEADLINE, POOL_SIZE)?
        };
        std::thread::Builder::new()
            .name("llmgate-leases".into())
            .spawn(move || {
                rt.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(run(pool.clone(), job));
                    }
                    pool.close();
                });
            })
            .context("starting the lease thread")?;
        Ok(Leases { tx })
    }

    /// Leases more of a key's budget ([`Ask`]). `Ok(None)`: the key is not in the
    /// database (deleted). Fails when the database does not answer within 2 s.
    pub async fn grant(&self, ask: Ask) -> anyhow::Result<Option<Granted>> {
        self.call(|reply| Job::Grant(ask, reply)).await
    }

    /// Renews leases `ids` for `ttl` and reclaims every instance's expired leases; answers
    /// the ids that still exist (one missing was reclaimed: the instance stalled longer than
    /// the lease lives). A lease its instance no longer names expires and is reclaimed.
    pub async fn renew(&self, ids: Vec<String>, ttl: Duration) -> anyhow::Result<HashSet<String>> {
        self.call(|reply| Job::Renew(ids, ttl, reply)).await
    }

    /// Gives leases back: they are deleted and what they held leaves `leased`.
    pub async fn release(&self, ids: Vec<String>) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.call(|reply| Job::Release(ids, reply)).await
    }

    async fn call<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Job,
    ) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(job(reply))
            .map_err(|_| anyhow!("the lease thread has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the lease thread has stopped"))?
    }
}

async fn run(pool: Pool, job: Job) {
    match job {
        Job::Grant(ask, reply) => {
            let _ = reply.send(within(grant(&pool, &ask)).await);
        }
        Job::Renew(ids, ttl, reply) => {
            let _ = reply.send(within(renew(&pool, &ids, ttl)).await);
        }
        Job::Release(ids, reply) => {
            let _ = reply.send(within(release(&pool, &ids)).await);
        }
    }
}

/// `f`, failed if it takes longer than [`DEADLINE`].
async fn within<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(DEADLINE, f)
        .await
        .map_err(|_| anyhow!("PostgreSQL did not answer within {}s", DEADLINE.as_secs()))?
}

async fn client(pool: &Pool) -> anyhow::Result<deadpool_postgres::Object> {
    pool.get()
        .await
        .map_err(|e| anyhow!("no connection to PostgreSQL: {e}"))
}

/// Now, unix milliseconds (lease expiry).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// The grant: in one transaction that locks the key's row, start its window over if due,
/// then add what the rule allows to `leased` and to the lease.
async fn grant(pool: &Pool, ask: &Ask) -> anyhow::Result<Option<Granted>> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT spend, leased, max_budget, budget_reset_at FROM llmgate_verification_tokens
             WHERE token = $1 FOR UPDATE",
            &[&ask.token],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut spend: f64 = row.get(0);
    let leased: f64 = row.get(1);
    let max_budget: Option<f64> = row.get(2);
    let reset_at: Option<i64> = row.get(3);
    if let (Some(at), Some(next)) = (reset_at, ask.next_reset)
        && ask.now >= at
    {
        spend = 0.0;
        tx.execute(
            "UPDATE llmgate_verification_tokens SET spend = 0, budget_reset_at = $2
             WHERE token = $1",
            &[&ask.token, &next],
        )
        .await?;
    }
    let Some(cap) = max_budget else {
        tx.commit().await?;
        return Ok(Some(Granted {
            usd: 0.0,
            fresh: false,
            spend,
            leased,
            max_budget: None,
        }));
    };
    let usd = grantable(cap - spend - leased, ask);
    let mut fresh = false;
    if usd > 0.0 {
        tx.execute(
            "UPDATE llmgate_verification_tokens SET leased = leased + $2 WHERE token = $1",
            &[&ask.token, &usd],
        )
        .await?;
        let expires = now_ms().saturating_add(ttl_ms(ask.ttl));
        let row = tx
            .query_one(
                "INSERT INTO llmgate_key_leases (id, token, instance, usd, expires_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE
                     SET usd = llmgate_key_leases.usd + excluded.usd,
                         expires_at = excluded.expires_at
                 RETURNING (xmax = 0) AS fresh",
                &[&ask.id, &ask.token, &instance_of(&ask.id), &usd, &expires],
            )
            .await?;
        fresh = row.get(0);
    }
    tx.commit().await?;
    Ok(Some(Granted {
        usd,
        fresh,
        spend,
        leased: leased + usd,
        max_budget: Some(cap),
    }))
}

/// What a grant may add, `left` being `max_budget - spend - leased`: at least the request's
/// need and up to the instance's chunk, but no more than a quarter of what is left (others
/// want their share); nothing when the rule refuses. Under `reserve` the need may exceed
/// what is left (the request that crosses the budget, as on one instance): then
/// `spend + leased` ends below `max_budget` plus that request's reservation, and no other
/// grant is made until spend and leases fall back below the budget.
fn grantable(left: f64, ask: &Ask) -> f64 {
    let need = ask.need.max(0.0);
    let admits = if ask.strict {
        left >= need
    } else {
        left + ask.idle.max(0.0) > 0.0
    };
    if !admits || !need.is_finite() {
        return 0.0;
    }
    let share = (left / 4.0).min(ask.chunk);
    need.max(share).max(f64::MIN_POSITIVE)
}

/// The instance part of a lease id (`<instance>/<n>`).
fn instance_of(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(i, _)| i)
}

/// Renews leases `ids`, then reclaims expired ones; the ids still held.
async fn renew(pool: &Pool, ids: &[String], ttl: Duration) -> anyhow::Result<HashSet<String>> {
    let client = client(pool).await?;
    let now = now_ms();
    let expires = now.saturating_add(ttl_ms(ttl));
    let rows = client
        .query(
            "UPDATE llmgate_key_leases SET expires_at = $2 WHERE id = ANY($1) RETURNING id",
            &[&ids, &expires],
        )
        .await?;
    let held = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let reclaimed = client
        .execute(&give_back("expires_at < $1"), &[&now])
        .await?;
    if reclaimed > 0 {
        tracing::info!(keys = reclaimed, "reclaimed expired budget leases");
    }
    Ok(held)
}

/// Deletes leases `ids`, taking what they held off their keys' `leased`.
async fn release(pool: &Pool, ids: &[String]) -> anyhow::Result<()> {
    let client = client(pool).await?;
    client.execute(&give_back("id = ANY($1)"), &[&ids]).await?;
    Ok(())
}

/// One statement: delete the leases `filter` selects and take what they held off their
/// keys' `leased` (a reclaim, a release).
fn give_back(filter: &str) -> String {
    format!(
        "WITH gone AS (DELETE FROM llmgate_key_leases WHERE {filter} RETURNING token, usd)
         UPDATE llmgate_verification_tokens AS k
         SET leased = GREATEST(k.leased - g.usd, 0)
         FROM (SELECT token, SUM(GREATEST(usd, 0)) AS usd FROM gone GROUP BY token) AS g
         WHERE k.token = g.token"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(need: f64, chunk: f64, strict: bool) -> Ask {
        Ask {
            token: "t".into(),
            id: "i/1".into(),
            need,
            idle: 0.0,
            chunk,
            strict,
            now: 0,
            next_reset: None,
            ttl: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_grant_covers_the_need_and_takes_at_most_a_quarter_beyond_it() {
        // Plenty left: the chunk, capped at a quarter of what is left.
        assert_eq!(grantable(100.0, &ask(1.0, 8.0, false)), 8.0);
        assert_eq!(grantable(16.0, &ask(1.0, 8.0, false)), 4.0);
        // The need always, even beyond the quarter.
        assert_eq!(grantable(8.0, &ask(3.0, 8.0, false)), 3.0);
    }

    #[test]
    fn reserve_crosses_once_and_strict_never() {
        // Reserve: something left, the need is granted even if it crosses the budget.
        assert_eq!(grantable(0.5, &ask(2.0, 8.0, false)), 2.0);
        // Nothing left: refused, so no second request crosses.
        assert_eq!(grantable(0.0, &ask(2.0, 8.0, false)), 0.0);
        assert_eq!(grantable(-1.5, &ask(2.0, 8.0, false)), 0.0);
        // An idle lease of the asker's own is not held against it.
        let idle = Ask {
            idle: 1.0,
            ..ask(0.5, 8.0, false)
        };
        assert_eq!(grantable(-0.5, &idle), 0.5);
        assert_eq!(grantable(-1.0, &idle), 0.0);
        // Strict: the need must fit.
        assert_eq!(grantable(0.5, &ask(2.0, 8.0, true)), 0.0);
        assert_eq!(grantable(2.0, &ask(2.0, 8.0, true)), 2.0);
    }

    #[test]
    fn a_lease_id_names_its_instance() {
        assert_eq!(instance_of("host-1234-ab/7"), "host-1234-ab");
    }
}
