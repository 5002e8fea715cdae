//! The PostgreSQL backend: the store thread's [`Backend`] over a small `deadpool-postgres`
//! pool, driven by a current-thread tokio runtime that the store thread owns (so the
//! handle, the queue and the batching are the SQLite backend's, unchanged).
//!
//! - [`PgUrl`]: a `postgresql://` or `postgres://` URL, checked at config load; shown (in
//!   logs, errors, the readiness page) as `postgresql://user@host:port/db`, never with its
//!   password. Its `sslmode` and `sslrootcert` (or `PGSSLROOTCERT`) are read by
//!   [`super::tls`]; [`connector`] is the TLS connector every connection to the database
//!   uses (the store's pool, the lease thread's, `llmgate db copy`).
//! - Opening waits for the server, retrying with backoff up to a bound and logging
//!   `waiting for PostgreSQL at host:port/db: <why>`; a wrong password or a missing
//!   database fails at once.
//! - Migrations: the shared [`super::schema`] list, in one transaction that first takes a
//!   transaction-scoped advisory lock, so instances starting together apply each once.
//! - A batch's log rows, window resets and charges are pipelined on one connection inside
//!   its transaction; a charge adds to the key's spend ([`CHARGE`]), so instances sharing
//!   the database never overwrite each other's.

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::AliasTaken;
use super::report::{self, Dialect};
use super::rows::{self, Arg, Cols, numbered_dollar};
use super::schema;
use super::tls::{self, Tls};
use super::types::{KeyRecord, Overwrite, SpendAggregate, SpendLog, SpendQuery, SpendTotals};
use super::worker::{Backend, Pending};

/// The advisory lock the migrations run under (any constant; "llmgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x006c_6c6d_6761_7465;
/// Connections the pool keeps at most (the store thread uses one at a time; a spare
/// replaces a broken one without waiting). Each is checked with an empty query when taken
/// (`RecyclingMethod::Verified`: one round trip per batch), so a server restart costs a
/// reconnect, not a failed write.
const POOL_SIZE: usize = 2;
/// Longest pause between two connection attempts at start.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// One (summed) charge: `$1` token, `$2` cost, `$3` what lease `$4` paid. The lease row is
/// updated first, in the same statement (its row lock orders this against a reclaim of the
/// lease by another instance), and what it paid comes off `leased` only if it still exists.
const CHARGE: &str = "WITH l AS (
         UPDATE llmgate_key_leases SET usd = usd - $3 WHERE id = $4 RETURNING id
     )
     UPDATE llmgate_verification_tokens
     SET spend = spend + $2,
         leased = CASE WHEN EXISTS (SELECT 1 FROM l) THEN GREATEST(leased - $3, 0)
                       ELSE leased END
     WHERE token = $1";

/// A PostgreSQL connection URL (it holds the password): parsed once, shown without it.
#[derive(Clone)]
pub struct PgUrl {
    pub(super) url: String,
    config: tokio_postgres::Config,
    tls: Tls,
    shown: String,
}

impl PgUrl {
    /// Whether `url` names PostgreSQL (`postgresql://` or `postgres://`).
    pub fn is_postgres(url: &str) -> bool {
        url.starts_with("postgresql://") || url.starts_with("postgres://")
    }

    /// Parses a `postgresql://user:password@host:port/db?sslmode=disable` URL, with
    /// `PGSSLROOTCERT` from the process environment. The error never repeats the URL (it
    /// may hold a password).
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        let root = std::env::var("PGSSLROOTCERT").ok();
        PgUrl::parse_env(url, root.as_deref())
    }

    /// [`PgUrl::parse`] with `root_env` standing for `PGSSLROOTCERT` (the CA file used when
    /// the URL names none). The CA file is read now: a missing one fails here.
    pub fn parse_env(url: &str, root_env: Option<&str>) -> Result<PgUrl, String> {
        let (rest, tls) = Tls::from_url(url, root_env)?;
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|e: tokio_postgres::Error| {
                format!("not a valid PostgreSQL URL ({})", chain(&e))
            })?;
        config.ssl_mode(tls.driver_mode());
        let shown = shown(&config);
        Ok(PgUrl {
            url: url.to_owned(),
            config,
            tls,
            shown,
        })
    }

    /// The connection settings of the key change listener's own connection
    /// (`notify.rs`): named `llmgate-keys` in `pg_stat_activity`.
    pub(super) fn listener_config(&self) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name(super::notify::APPLICATION);
        config
    }

    /// `host:port/db`, for messages.
    pub fn place(&self) -> &str {
        self.shown
            .split_once('@')
            .map_or(&self.shown, |(_, place)| place)
    }
}

/// `postgresql://user@host:port/db` (no password).
fn shown(c: &tokio_postgres::Config) -> String {
    let user = c.get_user().unwrap_or("");
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let host = match hosts.is_empty() {
        true => "localhost".to_owned(),
        false => hosts.join(","),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{host}:{port}/{db}")
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgUrl").field(&self.shown).finish()
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.tls == other.tls
    }
}

/// The TLS connector for `url`'s connections (its `sslmode` and CA, [`super::tls`]): give it
/// to every `tokio_postgres::Config::connect` and pool manager, so no connection to the
/// database skips it.
pub(super) fn connector(url: &PgUrl) -> tokio_postgres_rustls::MakeRustlsConnect {
    url.tls.connector()
}

/// An error and its causes, `a: b: c` (tokio-postgres puts the server's message in the
/// cause).
pub(super) fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        // A wrapper often repeats its cause's message at its end: show it once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql_checked(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql_checked(ty, out),
                _ => v.to_sql_checked(ty, out),
            },
            Arg::Real(v) => v.to_sql_checked(ty, out),
            Arg::Text(v) => v.as_ref().to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT8 | Type::TEXT | Type::VARCHAR
        )
    }

    to_sql_checked!();
}

impl Cols for tokio_postgres::Row {
    type Error = anyhow::Error;

    fn opt_text(&self, col: &str) -> anyhow::Result<Option<String>> {
        Ok(self.try_get(col)?)
    }

    fn opt_int(&self, col: &str) -> anyhow::Result<Option<i64>> {
        let ty = self
            .columns()
            .iter()
            .find(|c| c.name() == col)
            .map(|c| c.type_().clone());
        Ok(match ty {
            Some(Type::INT4) => self.try_get::<_, Option<i32>>(col)?.map(i64::from),
            Some(Type::INT2) => self.try_get::<_, Option<i16>>(col)?.map(i64::from),
            _ => self.try_get(col)?,
        })
    }

    fn opt_real(&self, col: &str) -> anyhow::Result<Option<f64>> {
        Ok(self.try_get(col)?)
    }

    fn bad(col: &str, e: Box<dyn StdError + Send + Sync>) -> anyhow::Error {
        anyhow!("column {col}: {e}")
    }
}

/// The arguments as the driver takes them.
fn params<'a>(args: &'a [Arg<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// The store thread's PostgreSQL pool and the runtime that drives it.
pub(super) struct Postgres {
    rt: tokio::runtime::Runtime,
    pool: Pool,
}

impl Postgres {
    /// Connects (waiting up to `wait` for the server) and applies pending migrations.
    /// Blocks the calling thread (the store thread), which keeps the runtime.
    pub(super) fn open(url: &PgUrl, wait: Duration) -> anyhow::Result<Postgres> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the PostgreSQL store's runtime")?;
        let pool = rt.block_on(async {
            let pool = pool(url, wait, POOL_SIZE)?;
            let mut client = connect(&pool, url, wait).await?;
            migrate(&mut client)
                .await
                .with_context(|| format!("migrating the PostgreSQL database {url}"))?;
            anyhow::Ok(pool)
        })?;
        Ok(Postgres { rt, pool })
    }

    /// A connection from the pool.
    async fn client(pool: &Pool) -> anyhow::Result<deadpool_postgres::Object> {
        pool.get()
            .await
            .map_err(|e| anyhow!("no connection to PostgreSQL: {}", chain(&e)))
    }
}

/// A pool of at most `size` connections to `url`; a connection attempt gives up after
/// `wait` (clamped to 1–10 s) unless the URL sets `connect_timeout`.
pub(super) fn pool(url: &PgUrl, wait: Duration, size: usize) -> anyhow::Result<Pool> {
    let mut config = url.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(wait.clamp(Duration::from_secs(1), Duration::from_secs(10)));
    }
    config.application_name("llmgate");
    let manager = Manager::from_config(
        config,
        connector(url),
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the PostgreSQL pool")
}

/// Whether waiting cannot help: bad credentials, no such database, an untrusted
/// certificate, no TLS where it is required.
fn permanent(e: &deadpool_postgres::PoolError) -> bool {
    let deadpool_postgres::PoolError::Backend(e) = e else {
        return false;
    };
    if tls::permanent(e) {
        return true;
    }
    e.code().is_some_and(|c| {
        [
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::INVALID_CATALOG_NAME,
        ]
        .contains(c)
    })
}

/// The first connection: retried with backoff until `wait` has passed.
async fn connect(
    pool: &Pool,
    url: &PgUrl,
    wait: Duration,
) -> anyhow::Result<deadpool_postgres::Object> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(200);
    loop {
        let e = match pool.get().await {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        let mut why = chain(&e);
        if let deadpool_postgres::PoolError::Backend(b) = &e
            && let Some(hint) = tls::hint(b)
        {
            why = format!("{why} ({hint})");
        }
        let now = Instant::now();
        if permanent(&e) {
            bail!("cannot connect to PostgreSQL at {}: {why}", url.place());
        }
        if now >= deadline {
            bail!(
                "cannot connect to PostgreSQL at {} (waited up to {}s): {why}",
                url.place(),
                wait.as_secs()
            );
        }
        tracing::warn!("waiting for PostgreSQL at {}: {why}", url.place());
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The schema version of the PostgreSQL database at `url` against this build's, read only
/// (`llmgate db migrate --check`): nothing is created or migrated. `exists` is false when
/// llmgate never migrated it (no version table).
pub fn schema_status(url: &PgUrl, wait: Duration) -> anyhow::Result<super::SchemaStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pool = pool(url, wait, 1)?;
        let client = connect(&pool, url, wait).await?;
        let table: Option<String> = client
            .query_one("SELECT to_regclass('llmgate_schema_version')::text", &[])
            .await?
            .get(0);
        let current: i64 = match table {
            Some(_) => client
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM llmgate_schema_version",
                    &[],
                )
                .await?
                .get(0),
            None => 0,
        };
        Ok(super::SchemaStatus {
            exists: table.is_some(),
            current,
            latest: i64::try_from(schema::MIGRATIONS.len()).unwrap_or(i64::MAX),
        })
    })
}

/// Applies the migrations the database has not seen, in one transaction under an advisory
/// lock (a second instance starting at the same time waits, then sees them applied).
async fn migrate(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(schema::VERSION_TABLE).await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM llmgate_schema_version",
            &[],
        )
        .await?
        .get(0);
    let now = schema::now_secs();
    for (version, sql) in schema::to_apply(current)? {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying schema migration {version}"))?;
        tx.execute(
            "INSERT INTO llmgate_schema_version (version, applied_at) VALUES ($1, $2)",
            &[&version, &now],
        )
        .await?;
        tracing::info!(version, "applied store schema migration (PostgreSQL)");
    }
    tx.commit().await?;
    Ok(())
}

/// Upserts one key in `tx`, after checking its alias; a concurrent insert of the same alias
/// by another instance (the unique index) is [`AliasTaken`] too.
async fn put_key_in(
    tx: &deadpool_postgres::Transaction<'_>,
    rec: &KeyRecord,
    spend: Overwrite,
) -> anyhow::Result<()> {
    if let Some(alias) = &rec.key_alias {
        let owner = tx
            .query_opt(&numbered_dollar(rows::ALIAS_OWNER), &[alias, &rec.token])
            .await?;
        if owner.is_some() {
            return Err(AliasTaken(alias.clone()).into());
        }
    }
    let args = rows::key_args(rec, spend)?;
    let stmt = tx
        .prepare_cached(&numbered_dollar(rows::UPSERT_KEY))
        .await?;
    match tx.execute(&stmt, &params(&args)).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            Err(AliasTaken(rec.key_alias.clone().unwrap_or_default()).into())
        }
        Err(e) => Err(anyhow::Error::new(e).context("writing the key")),
    }
}

/// Tells every instance's key listener (`notify.rs`) that the keys in `payload` changed
/// (a token, or `new old` for a regeneration); delivered when `tx` commits, not at all if
/// it rolls back.
async fn notify_key(tx: &tokio_postgres::Transaction<'_>, payload: &str) -> anyhow::Result<()> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&super::notify::CHANNEL, &payload],
    )
    .await
    .context("announcing the key change")?;
    Ok(())
}

/// Deletes one key and its leases in `client`; whether it existed.
async fn delete_key(client: &tokio_postgres::Transaction<'_>, token: &str) -> anyhow::Result<bool> {
    client
        .execute(&numbered_dollar(rows::DELETE_KEY_LEASES), &[&token])
        .await
        .context("deleting a key's leases")?;
    let n = client
        .execute(&numbered_dollar(rows::DELETE_KEY), &[&token])
        .await
        .context("deleting a key")?;
    Ok(n > 0)
}

/// Rows of a shared statement.
async fn query(
    client: &deadpool_postgres::Object,
    sql: &str,
    args: &[Arg<'_>],
) -> anyhow::Result<Vec<tokio_postgres::Row>> {
    let stmt = client.prepare_cached(&numbered_dollar(sql)).await?;
    Ok(client.query(&stmt, &params(args)).await?)
}

impl Postgres {
    /// Upserts `keys` (one transaction; a key whose alias another token has fails it with
    /// [`AliasTaken`]), then `logs` (a second one, pipelined). Answers how many of each.
    pub(super) fn copy_in(
        &mut self,
        keys: &[KeyRecord],
        logs: &[SpendLog],
    ) -> anyhow::Result<super::copy::Copied> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let mut client = Self::client(pool).await?;
            let tx = client.transaction().await?;
            for key in keys {
                put_key_in(&tx, key, Overwrite::ALL).await?;
                notify_key(&tx, &key.token).await?;
            }
            tx.commit().await.context("committing the keys")?;
            let tx = client.transaction().await?;
            let stmt = tx
                .prepare_cached(&numbered_dollar(rows::UPSERT_LOG))
                .await?;
            let args = logs
                .iter()
                .map(rows::log_args)
                .collect::<serde_json::Result<Vec<_>>>()?;
            let bound: Vec<_> = args.iter().map(|a| params(a)).collect();
            futures_util::future::try_join_all(bound.iter().map(|p| tx.execute(&stmt, p))).await?;
            tx.commit().await.context("committing the spend logs")?;
            Ok(super::copy::Copied {
                keys: keys.len() as u64,
                spend_logs: logs.len() as u64,
            })
        })
    }
}

impl Backend for Postgres {
    fn write_events(&mut self, pending: &Pending) -> anyhow::Result<()> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let mut client = Self::client(pool).await?;
            let tx = client.transaction().await?;
            let stmt = tx
                .prepare_cached(&numbered_dollar(rows::UPSERT_LOG))
                .await?;
            let args = pending
                .logs
                .iter()
                .map(|l| rows::log_args(l))
                .collect::<serde_json::Result<Vec<_>>>()?;
            // Pipelined: every row is sent before the first answer is awaited.
            let bound: Vec<_> = args.iter().map(|a| params(a)).collect();
            futures_util::future::try_join_all(bound.iter().map(|p| tx.execute(&stmt, p))).await?;
            let reset = tx.prepare_cached(&numbered_dollar(rows::RESET_KEY)).await?;
            let resets: Vec<[&(dyn ToSql + Sync); 3]> = pending
                .resets
                .iter()
                .map(|(token, from, to)| [token as _, from as _, to as _])
                .collect();
            futures_util::future::try_join_all(resets.iter().map(|p| tx.execute(&reset, p)))
                .await?;
            let charge = tx.prepare_cached(CHARGE).await?;
            let paid: Vec<(f64, Option<&str>)> = pending
                .charges
                .values()
                .map(|c| {
                    c.lease
                        .as_ref()
                        .map_or((0.0, None), |l| (l.usd, Some(l.id.as_str())))
                })
                .collect();
            let charges: Vec<[&(dyn ToSql + Sync); 4]> = pending
                .charges
                .values()
                .zip(&paid)
                .map(|(c, (taken, lease))| [&c.token as _, &c.cost as _, taken as _, lease as _])
                .collect();
            futures_util::future::try_join_all(charges.iter().map(|p| tx.execute(&charge, p)))
                .await?;
            for c in pending.charges.values() {
                if let Some(m) = &c.model {
                    let sql = format!("{} FOR UPDATE", numbered_dollar(rows::KEY_MODEL_SPEND));
                    if let Some(row) = tx.query_opt(&sql, &[&c.token]).await? {
                        let json = rows::add_model_spend(row.get(0), m, c.cost)?;
                        tx.execute(
                            &numbered_dollar(rows::SET_KEY_MODEL_SPEND),
                            &[&c.token, &json],
                        )
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn load_keys(&mut self) -> anyhow::Result<Vec<KeyRecord>> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let client = Self::client(pool).await?;
            let rows = query(&client, &rows::load_keys_sql(), &[]).await?;
            rows.iter().map(rows::key_from_row).collect()
        })
    }

    fn put_key(&mut self, rec: &KeyRecord, spend: Overwrite) -> anyhow::Result<()> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let mut client = Self::client(pool).await?;
            let tx = client.transaction().await?;
            put_key_in(&tx, rec, spend).await?;
            notify_key(&tx, &rec.token).await?;
            tx.commit().await.context("committing the key")
        })
    }

    fn replace_key(&mut self, old: &str, rec: &KeyRecord) -> anyhow::Result<()> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let mut client = Self::client(pool).await?;
            let tx = client.transaction().await?;
            let renamed: [&(dyn ToSql + Sync); 2] = [&old, &rec.token];
            tx.execute(&numbered_dollar(rows::RENAME_KEY), &renamed)
                .await
                .context("renaming the key")?;
            tx.execute(&numbered_dollar(rows::RENAME_KEY_LEASES), &renamed)
                .await
                .context("renaming the key's leases")?;
            put_key_in(&tx, rec, Overwrite::default()).await?;
            notify_key(&tx, &format!("{} {old}", rec.token)).await?;
            tx.commit().await.context("committing the key")
        })
    }

    fn delete_keys(&mut self, tokens: Vec<String>) -> anyhow::Result<Vec<String>> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let mut client = Self::client(pool).await?;
            let tx = client.transaction().await?;
            let mut deleted = Vec::new();
            for token in tokens {
                if delete_key(&tx, &token).await? {
                    notify_key(&tx, &token).await?;
                    deleted.push(token);
                }
            }
            tx.commit().await.context("committing the deletion")?;
            Ok(deleted)
        })
    }

    fn query_logs(&mut self, q: &SpendQuery) -> anyhow::Result<Vec<SpendLog>> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let client = Self::client(pool).await?;
            let (sql, args) = rows::query_logs_sql(q);
            let rows = query(&client, &sql, &args).await?;
            rows.iter().map(rows::log_from_row).collect()
        })
    }

    fn count_logs(&mut self, q: &SpendQuery) -> anyhow::Result<u64> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let client = Self::client(pool).await?;
            let (sql, args) = rows::count_logs_sql(q);
            let rows = query(&client, &sql, &args).await?;
            let row = rows.first().context("COUNT returned no row")?;
            Ok(rows::uint(row.int("n")?))
        })
    }

    fn aggregate(&mut self, q: &SpendAggregate) -> anyhow::Result<Vec<SpendTotals>> {
        let pool = &self.pool;
        self.rt.block_on(async {
            let client = Self::client(pool).await?;
            let (sql, args) = report::aggregate_sql(q, Dialect::Postgres);
            let rows = query(&client, &sql, &args).await?;
            rows.iter()
                .map(|r| report::totals(r, q.group_by.len()))
                .collect()
        })
    }

    fn close(self) -> anyhow::Result<()> {
        self.pool.close();
        drop(self.rt);
        Ok(())
    }
}
