//! The `llmgate db` subcommands: database maintenance outside a running gateway.
//!
//! Each finds the database as a gateway's start does (the same `--config`, environment and
//! defaults, through [`config::load`]) and works on it directly, then exits:
//!
//! - `llmgate db migrate` applies pending schema migrations and prints the version before
//!   and after. It takes the database's lock, so it refuses while a gateway serves from
//!   the file (a gateway migrates at start anyway). `--check` only reads, and fails if
//!   migrations are pending.
//! - `llmgate db backup FILE` writes a consistent copy with SQLite's `VACUUM INTO` through
//!   a read-only connection: it runs beside a serving gateway, which goes on writing.
//!   It refuses to overwrite `FILE`.
//!
//! The store is SQLite today. A PostgreSQL store slots in at [`run`]: `migrate` runs the
//! same migrations over its connection; `backup` prints the `pg_dump` command to run.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::{config, store};

/// What `llmgate db` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `db migrate`: apply pending migrations (`check`: only tell, failing if any are).
    Migrate {
        /// `--check`.
        check: bool,
    },
    /// `db backup FILE`: a consistent copy into a new file.
    Backup {
        /// Where the copy goes; must not exist.
        file: PathBuf,
    },
}

/// Runs `action` on the database the config (`config`, `overrides` and the environment)
/// names. Answers the line to print; fails with what went wrong (or, for
/// `migrate --check`, with the pending versions).
pub fn run(
    config: Option<&Path>,
    overrides: &config::Overrides,
    action: &Action,
) -> anyhow::Result<String> {
    let loaded = config::load(config, overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = &loaded.database_path;
    match action {
        Action::Migrate { check: false } => migrate(db),
        Action::Migrate { check: true } => check(db),
        Action::Backup { file } => backup(db, file),
    }
}

fn migrate(db: &Path) -> anyhow::Result<String> {
    let done = store::migrate(db)?;
    Ok(if done.from == done.to {
        format!("{}: schema version {}, up to date", db.display(), done.to)
    } else {
        format!(
            "{}: migrated from schema version {} to {}",
            db.display(),
            done.from,
            done.to
        )
    })
}

fn check(db: &Path) -> anyhow::Result<String> {
    let status = store::schema_status(db)?;
    if !status.exists {
        bail!(
            "there is no database at {} yet: `llmgate db migrate` (or the gateway's start) \
             creates it at schema version {}",
            db.display(),
            status.latest
        );
    }
    if status.pending() {
        bail!(
            "{}: schema version {}, this llmgate migrates to {}: run `llmgate db migrate` \
             (or start the gateway, which migrates)",
            db.display(),
            status.current,
            status.latest
        );
    }
    if status.current > status.latest {
        bail!(
            "{}: schema version {}, newer than this llmgate knows ({}); upgrade llmgate",
            db.display(),
            status.current,
            status.latest
        );
    }
    Ok(format!(
        "{}: schema version {}, up to date",
        db.display(),
        status.current
    ))
}

fn backup(db: &Path, file: &Path) -> anyhow::Result<String> {
    let done = store::backup(db, file)?;
    Ok(format!(
        "backed up {} to {}: schema version {}, {} keys, {} spend log rows",
        db.display(),
        done.file.display(),
        done.version,
        done.keys,
        done.spend_logs
    ))
}
