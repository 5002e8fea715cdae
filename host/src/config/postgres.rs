//! Choosing PostgreSQL as LiteLLM does: `general_settings.database_url: postgresql://...`
//! (or `postgres://`, or `os.environ/VAR`), else the `DATABASE_URL` environment variable
//! when the config names no database; and how long start-up waits for the server
//! (`llmgate.database_wait_seconds`, default 30).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::validator::{Validator, scalar_string};
use crate::store::PgUrl;

/// How long start-up waits for PostgreSQL by default.
const DEFAULT_WAIT_SECS: u64 = 30;

/// The PostgreSQL store, when the config or the environment picks one.
#[derive(Debug, Clone, PartialEq)]
pub struct Postgres {
    /// Where (the password inside is never shown).
    pub url: PgUrl,
    /// How long start-up waits for the server to accept connections.
    pub wait: Duration,
}

/// `general_settings.database_url` when it is a PostgreSQL URL; else `DATABASE_URL` when
/// neither it nor `llmgate.database_path` is set. A problem names the setting, never the
/// URL (it holds a password).
pub(super) fn parse(
    v: &mut Validator,
    general: &BTreeMap<String, Value>,
    database_path: Option<&str>,
    wait_secs: Option<u64>,
) -> Option<Postgres> {
    let (at, url) = match general.get("database_url") {
        Some(u) => {
            let u = scalar_string(u)?;
            let u = match u.strip_prefix("os.environ/") {
                Some(var) => v.lookup(var).unwrap_or_default(),
                None => u,
            };
            ("general_settings.database_url", u)
        }
        None if database_path.is_some() => return None,
        None => ("DATABASE_URL", v.lookup("DATABASE_URL").unwrap_or_default()),
    };
    if !PgUrl::is_postgres(&url) {
        if at == "DATABASE_URL" && !url.is_empty() {
            v.warn(
                at,
                "is not a postgresql:// URL; ignored (the SQLite file is used)",
            );
        }
        return None;
    }
    let url = match PgUrl::parse(&url) {
        Ok(url) => url,
        Err(e) => {
            v.problem(at, &e);
            return None;
        }
    };
    let wait = v.whole_seconds(
        "llmgate.database_wait_seconds",
        wait_secs.unwrap_or(DEFAULT_WAIT_SECS),
    )?;
    Some(Postgres { url, wait })
}
