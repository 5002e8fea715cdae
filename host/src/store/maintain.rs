//! Work on a database file outside a running gateway: the `llmgate db` subcommands.
//!
//! - [`migrate`] applies pending migrations under the same lock a gateway holds (`lock.rs`),
//!   so it never changes the schema under a gateway that is serving from the file.
//! - [`schema_status`] and [`backup`] only read, through a read-only connection, and take
//!   no lock: they run beside a serving gateway. SQLite readers do not block its writer
//!   (WAL), and `VACUUM INTO` copies one consistent snapshot: every transaction committed
//!   before it started, none after.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

use super::{lock, schema};

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version before (0: a new or empty file).
    pub from: i64,
    /// The schema version now (this build's latest).
    pub to: i64,
}

/// A database's schema version against this build's, from [`schema_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Whether the file exists at all.
    pub exists: bool,
    /// The version recorded in the file (0 if it does not exist or was never migrated).
    pub current: i64,
    /// The version this build migrates to.
    pub latest: i64,
}

impl SchemaStatus {
    /// Whether a gateway or `llmgate db migrate` would apply migrations to it.
    pub fn pending(&self) -> bool {
        self.current < self.latest
    }
}

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The new file.
    pub file: PathBuf,
    /// Its schema version.
    pub version: i64,
    /// Keys in it.
    pub keys: u64,
    /// Spend log rows in it.
    pub spend_logs: u64,
}

/// Opens the database at `path` (creating it if missing) and applies pending migrations,
/// as a gateway's start does, then closes it. Fails, naming the other process, while a
/// gateway has the file open.
pub fn migrate(path: &Path) -> anyhow::Result<Migrated> {
    let _lock = lock::acquire(path)?;
    // Under the lock nobody else migrates between this read and the migrations.
    let from = if path.exists() {
        recorded_version(&open_read_only(path)?)
            .with_context(|| format!("reading the schema version of {}", path.display()))?
    } else {
        0
    };
    let conn = schema::open(path)?;
    conn.close()
        .map_err(|(_, e)| e)
        .with_context(|| format!("closing the database {}", path.display()))?;
    Ok(Migrated { from, to: latest() })
}

/// The schema version of the database at `path` against this build's; only reads.
pub fn schema_status(path: &Path) -> anyhow::Result<SchemaStatus> {
    let latest = latest();
    if !path.exists() {
        return Ok(SchemaStatus {
            exists: false,
            current: 0,
            latest,
        });
    }
    let conn = open_read_only(path)?;
    let current = recorded_version(&conn)
        .with_context(|| format!("reading the schema version of {}", path.display()))?;
    Ok(SchemaStatus {
        exists: true,
        current,
        latest,
    })
}

/// Writes a consistent copy of the database at `db` to the new file `to` with SQLite's
/// `VACUUM INTO`, through a read-only connection (so beside a serving gateway, which keeps
/// writing meanwhile). Refuses an existing `to`, and a `db` that does not exist.
pub fn backup(db: &Path, to: &Path) -> anyhow::Result<Backup> {
    if to.exists() {
        bail!("{} already exists; refusing to overwrite it", to.display());
    }
    if !db.is_file() {
        bail!("there is no database at {}", db.display());
    }
    let Some(target) = to.to_str() else {
        bail!("{}: the backup's path must be valid UTF-8", to.display());
    };
    let conn = open_read_only(db)?;
    conn.execute("VACUUM INTO ?1", [target])
        .with_context(|| format!("backing up {} to {}", db.display(), to.display()))?;
    drop(conn);
    describe(to).with_context(|| format!("reading the backup {}", to.display()))
}

/// The schema version and row counts of a fresh backup.
fn describe(file: &Path) -> anyhow::Result<Backup> {
    let conn = open_read_only(file)?;
    let count = |table: &str| -> rusqlite::Result<u64> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })
    };
    Ok(Backup {
        file: file.to_path_buf(),
        version: recorded_version(&conn)?,
        keys: count("llmgate_verification_tokens")?,
        spend_logs: count("llmgate_spend_logs")?,
    })
}

/// The schema version this build migrates to (how many migrations it knows).
fn latest() -> i64 {
    i64::try_from(schema::MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// The schema version recorded in the database, 0 for a file no llmgate has migrated yet.
fn recorded_version(conn: &Connection) -> rusqlite::Result<i64> {
    let tracked: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master
                        WHERE type = 'table' AND name = 'llmgate_schema_version')",
        [],
        |row| row.get(0),
    )?;
    if !tracked {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM llmgate_schema_version",
        [],
        |row| row.get(0),
    )
}

fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeyRecord, Store};

    fn db(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("llmgate.db")
    }

    /// A file at schema version 1, as an llmgate of that time left it.
    fn version_one(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE llmgate_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO llmgate_schema_version VALUES (1, 0);
             INSERT INTO llmgate_verification_tokens (token, key_name, created_at, updated_at)
             VALUES ('old-hash', 'sk-...old', 1, 1);",
        )
        .unwrap();
    }

    #[tokio::test]
    async fn a_second_open_is_refused_naming_the_file_and_pid_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let first = Store::open(&path).unwrap();
        let err = format!("{:#}", Store::open(&path).unwrap_err());
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let err = format!("{:#}", migrate(&path).unwrap_err());
        assert!(
            err.contains("in use"),
            "migrate waits for no gateway: {err}"
        );
        // Reading is not refused.
        assert!(!schema_status(&path).unwrap().pending());
        first.close().await.unwrap();
        Store::open(&path).unwrap().close().await.unwrap();
        let latest = i64::try_from(super::super::MIGRATIONS.len()).unwrap();
        assert_eq!(
            migrate(&path).unwrap(),
            Migrated {
                from: latest,
                to: latest
            }
        );
    }

    #[test]
    fn migrate_moves_an_old_file_to_the_latest_version_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        version_one(&path);
        let before = schema_status(&path).unwrap();
        assert_eq!((before.current, before.pending()), (1, true));
        let done = migrate(&path).unwrap();
        assert_eq!((done.from, done.to), (1, latest()));
        assert!(!schema_status(&path).unwrap().pending());
        let conn = Connection::open(&path).unwrap();
        let name: String = conn
            .query_row(
                "SELECT key_name FROM llmgate_verification_tokens WHERE token = 'old-hash'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(name, "sk-...old");
    }

    #[test]
    fn a_missing_file_has_every_migration_pending_and_migrate_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("llmgate.db");
        let status = schema_status(&path).unwrap();
        assert!(!status.exists && status.pending());
        assert!(!path.exists(), "checking creates nothing");
        assert_eq!(migrate(&path).unwrap().from, 0);
        assert!(schema_status(&path).unwrap().exists);
    }

    #[tokio::test]
    async fn backup_copies_an_open_store_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(&dir);
        let store = Store::open(&path).unwrap();
        let mut key = KeyRecord::new("hash-a".into(), "sk-...a".into(), 1);
        key.key_alias = Some("a".into());
        store.put_key(key).await.unwrap();
        let to = dir.path().join("copy.db");
        let done = backup(&path, &to).unwrap();
        let latest = i64::try_from(super::super::MIGRATIONS.len()).unwrap();
        assert_eq!((done.version, done.keys, done.spend_logs), (latest, 1, 0));
        let err = format!("{:#}", backup(&path, &to).unwrap_err());
        assert!(err.contains("already exists"), "{err}");
        store.close().await.unwrap();
        let copy = Store::open(&to).unwrap();
        let keys = copy.load_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].key_alias.as_deref(), Some("a"));
        copy.close().await.unwrap();
        let err = format!(
            "{:#}",
            backup(&dir.path().join("none.db"), &dir.path().join("x.db")).unwrap_err()
        );
        assert!(err.contains("no database"), "{err}");
    }
}
