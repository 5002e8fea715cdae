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
//! - `llmgate db copy --to postgresql://...` (or `--to os.environ/VAR`) copies every key
//!   and spend log row of the SQLite file into a PostgreSQL database, migrating it first
//!   ([`store::copy_to_postgres`]): the way from one instance to several. It takes the
//!   file's lock like `migrate`, and may be run again (nothing is duplicated).
//!
//! On a PostgreSQL store (`database_url`, `DATABASE_URL`): `migrate` connects, which runs
//! the same migrations under an advisory lock; `backup` answers [`pg_dump_hint`], the
//! `pg_dump` command to run (a dump is PostgreSQL's own tool's job), and exits 1.

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
    /// `db copy --to URL`: every key and spend log row into a PostgreSQL database.
    Copy {
        /// `postgresql://...` or `os.environ/VAR` (it may hold a password: never shown).
        to: String,
    },
}

/// How long `db copy` waits for the target's server (as a start does by default).
const COPY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `action` on the database the config (`config`, `overrides` and the environment)
/// names. Answers the line to print; fails with what went wrong (or, for
/// `migrate --check`, with the pending versions).
pub fn run(
    config: Option<&Path>,
    overrides: &config::Overrides,
    action: &Action,
) -> anyhow::Result<String> {
    let loaded = config::load(config, overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(pg) = &loaded.postgres {
        return postgres(pg, action);
    }
    let db = &loaded.database_path;
    match action {
        Action::Migrate { check: false } => migrate(db),
        Action::Migrate { check: true } => check(db),
        Action::Backup { file } => backup(db, file),
        Action::Copy { to } => copy(db, to),
    }
}

/// `db copy`: `to` resolved (`os.environ/VAR`) and checked, then the copy; the line names
/// the target without its password.
fn copy(db: &Path, to: &str) -> anyhow::Result<String> {
    let url = match to.strip_prefix("os.environ/") {
        Some(var) => std::env::var(var)
            .map_err(|_| anyhow::anyhow!("--to {to}: the variable {var} is not set"))?,
        None => to.to_owned(),
    };
    if !store::PgUrl::is_postgres(&url) {
        bail!("--to: db copy writes to PostgreSQL only: give a postgresql:// URL");
    }
    let url = store::PgUrl::parse(&url).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let done = store::copy_to_postgres(db, &url, COPY_WAIT)?;
    Ok(format!(
        "copied {} keys, {} spend log rows from {} to {url}",
        done.keys,
        done.spend_logs,
        db.display()
    ))
}

/// The actions on a PostgreSQL store: `migrate` connects (waiting as a start does), which
/// applies pending migrations under the advisory lock; `backup` answers [`pg_dump_hint`].
fn postgres(pg: &config::postgres::Postgres, action: &Action) -> anyhow::Result<String> {
    match action {
        Action::Backup { file } => bail!("{}", pg_dump_hint(&pg.url.to_string(), file)),
        Action::Copy { .. } => bail!(
            "the database is already PostgreSQL ({}): db copy reads an SQLite file; name \
             it with llmgate.database_path (and unset DATABASE_URL)",
            pg.url
        ),
        Action::Migrate { check: true } => {
            let status = store::postgres_schema_status(&pg.url, pg.wait)?;
            report_status(&pg.url.to_string(), status)
        }
        Action::Migrate { check: false } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let db = store::Store::open_postgres(&pg.url, pg.wait).await?;
                db.close().await
            })?;
            Ok(format!(
                "{}: schema version {}, up to date",
                pg.url,
                store::MIGRATIONS.len()
            ))
        }
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
    report_status(&db.display().to_string(), store::schema_status(db)?)
}

/// `migrate --check`'s answer for the database shown as `db`: up to date, or why not.
fn report_status(db: &str, status: store::SchemaStatus) -> anyhow::Result<String> {
    if !status.exists {
        bail!(
            "there is no database at {} yet: `llmgate db migrate` (or the gateway's start) \
             creates it at schema version {}",
            db,
            status.latest
        );
    }
    if status.pending() {
        bail!(
            "{}: schema version {}, this llmgate migrates to {}: run `llmgate db migrate` \
             (or start the gateway, which migrates)",
            db,
            status.current,
            status.latest
        );
    }
    if status.current > status.latest {
        bail!(
            "{}: schema version {}, newer than this llmgate knows ({}); upgrade llmgate",
            db,
            status.current,
            status.latest
        );
    }
    Ok(format!(
        "{}: schema version {}, up to date",
        db, status.current
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

/// What `db backup` answers for a PostgreSQL database at `url`: the `pg_dump` command that
/// writes it to `file` in the custom format (restored with `pg_restore`). The URL is shown
/// without its password (`pg_dump` reads it from `PGPASSWORD` or `~/.pgpass`).
pub fn pg_dump_hint(url: &str, file: &Path) -> String {
    format!(
        "the database is PostgreSQL: back it up with pg_dump, e.g.\n  \
         PGPASSWORD=... pg_dump --format=custom --file={} {}\n\
         and restore it with pg_restore --dbname=URL FILE",
        shell_quote(&file.display().to_string()),
        shell_quote(&without_password(url))
    )
}

/// `url` without the password of its user info (`postgresql://user:pw@host/db` →
/// `postgresql://user@host/db`) or of its query (`?password=...`).
pub fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    format!("{scheme}{authority}{tail}")
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_refuses_a_target_that_is_not_postgres_and_a_missing_file_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("none.db");
        let err = copy(&db, "sqlite:///tmp/x.db").unwrap_err().to_string();
        assert!(err.contains("PostgreSQL only"), "{err}");
        let err = copy(&db, "os.environ/LLMGATE_UNIT_NO_SUCH_VAR")
            .unwrap_err()
            .to_string();
        assert!(err.contains("LLMGATE_UNIT_NO_SUCH_VAR is not set"), "{err}");
        let err = format!(
            "{:#}",
            copy(&db, "postgresql://u:s3cret@127.0.0.1:1/db").unwrap_err()
        );
        assert!(err.contains("no database at"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(!db.exists(), "a missing file is not created");
    }

    #[test]
    fn passwords_never_reach_the_pg_dump_hint() {
        for (url, shown) in [
            (
                "postgresql://gate:s3cret@db.internal:5432/llmgate",
                "postgresql://gate@db.internal:5432/llmgate",
            ),
            (
                "postgres://gate:p%40ss@h/db?sslmode=disable&password=s3cret",
                "postgres://gate@h/db?sslmode=disable",
            ),
            ("postgresql://h/db?password=s3cret", "postgresql://h/db"),
            ("postgresql://gate@h", "postgresql://gate@h"),
        ] {
            assert_eq!(without_password(url), shown, "{url}");
        }
        let hint = pg_dump_hint(
            "postgresql://gate:s3cret@db:5432/llmgate",
            Path::new("/backups/it's.dump"),
        );
        assert!(!hint.contains("s3cret"), "{hint}");
        assert!(
            hint.contains(
                "pg_dump --format=custom --file='/backups/it'\\''s.dump' postgresql://gate@db:5432/llmgate"
            ),
            "{hint}"
        );
    }
}
