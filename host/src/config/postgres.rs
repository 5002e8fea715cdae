//! Choosing PostgreSQL as LiteLLM does: `general_settings.database_url: postgresql://...`
//! (or `postgres://`, or `os.environ/VAR`), else the `DATABASE_URL` environment variable
//! when the config names no database (its TLS CA file from `sslrootcert` or
//! `PGSSLROOTCERT`); and how long start-up waits for the server
//! (`llmgate.database_wait_seconds`, default 30); how often every key is read again as a
//! backstop to the key change notifications (`llmgate.key_resync_seconds`, default 10).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::validator::{Validator, scalar_string};
use crate::store::PgUrl;

/// How long start-up waits for PostgreSQL by default.
const DEFAULT_WAIT_SECS: u64 = 30;
/// How long a budget lease lives past its last renewal by default.
const DEFAULT_LEASE_SECS: u64 = 10;
/// How often every key is read again by default (`llmgate.key_resync_seconds`).
const DEFAULT_RESYNC_SECS: u64 = 10;
/// The longest resync interval accepted (a day).
const MAX_RESYNC_SECS: u64 = 86_400;

/// The PostgreSQL store, when the config or the environment picks one.
#[derive(Debug, Clone, PartialEq)]
pub struct Postgres {
    /// Where (the password inside is never shown).
    pub url: PgUrl,
    /// How long start-up waits for the server to accept connections.
    pub wait: Duration,
    /// How long an instance's budget lease lives past its last renewal
    /// (`llmgate.budget_lease_seconds`, default 10): how soon a killed instance's leases
    /// come back.
    pub lease_ttl: Duration,
    /// How often every key is read again, besides the notifications
    /// ([`crate::store::KeySink`]).
    pub key_resync: Duration,
}

/// `general_settings.database_url` when it is a PostgreSQL URL; else `DATABASE_URL` when
/// neither it nor `llmgate.database_path` is set. A problem names the setting, never the
/// URL (it holds a password).
pub(super) fn parse(
    v: &mut Validator,
    general: &BTreeMap<String, Value>,
    database_path: Option<&str>,
    (wait_secs, lease_secs): (Option<u64>, Option<u64>),
    resync_secs: Option<u64>,
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
    let url = match PgUrl::parse_env(&url, v.lookup("PGSSLROOTCERT").as_deref()) {
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
    let lease_ttl = v.whole_seconds(
        "llmgate.budget_lease_seconds",
        lease_secs.unwrap_or(DEFAULT_LEASE_SECS),
    )?;
    if lease_ttl < Duration::from_secs(1) {
        v.problem("llmgate.budget_lease_seconds", "must be at least 1");
        return None;
    }
    let resync = v.in_range(
        "llmgate.key_resync_seconds",
        Some(resync_secs.unwrap_or(DEFAULT_RESYNC_SECS)),
        1..=MAX_RESYNC_SECS,
    )?;
    Some(Postgres {
        url,
        wait,
        lease_ttl,
        key_resync: Duration::from_secs(resync),
    })
}

#[cfg(test)]
mod tests {
    use super::super::raw::RawConfig;
    use super::super::{Config, ConfigError, Overrides};

    const MODEL: &str = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n";

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml_ng::from_str(&format!("{MODEL}{extra}")).unwrap();
        super::super::validate::validate(
            raw,
            "config.yaml".into(),
            &Overrides::default(),
            &env.iter().copied().collect(),
        )
    }

    fn shown(c: &Config) -> Option<String> {
        c.postgres.as_ref().map(|p| p.url.to_string())
    }

    #[test]
    fn chosen_by_database_url_os_environ_or_database_url_env() {
        let url = "postgresql://u:pw-secret@db:5433/keys";
        let want = Some("postgresql://u@db:5433/keys".to_owned());
        let c = load(&format!("general_settings: {{database_url: {url}}}\n"), &[]).unwrap();
        assert_eq!(shown(&c), want);
        assert_eq!(c.postgres.unwrap().wait, std::time::Duration::from_secs(30));
        let c = load(
            "general_settings: {database_url: os.environ/PG}\nllmgate: {database_wait_seconds: 5}\n",
            &[("PG", url)],
        )
        .unwrap();
        assert_eq!(shown(&c), want);
        assert_eq!(c.postgres.unwrap().wait, std::time::Duration::from_secs(5));
        // DATABASE_URL, when the config names no database.
        let c = load(
            "",
            &[("DATABASE_URL", "postgres://u:pw-secret@db:5433/keys")],
        )
        .unwrap();
        assert_eq!(shown(&c), want);
        // The config's SQLite file wins over DATABASE_URL.
        for extra in [
            "llmgate: {database_path: /tmp/x.db}\n",
            "general_settings: {database_url: 'sqlite:///tmp/x.db'}\n",
        ] {
            let c = load(extra, &[("DATABASE_URL", url)]).unwrap();
            assert_eq!(shown(&c), None, "{extra}");
        }
        // A DATABASE_URL that is not PostgreSQL: SQLite, with a warning.
        let c = load("", &[("DATABASE_URL", "mysql://x")]).unwrap();
        assert_eq!(shown(&c), None);
        assert!(
            c.warnings.iter().any(|w| w.contains("DATABASE_URL")),
            "{:?}",
            c.warnings
        );
        assert_eq!(shown(&load("", &[]).unwrap()), None, "SQLite by default");
    }

    #[test]
    fn key_resync_seconds_defaults_to_ten_and_refuses_zero() {
        let db = "general_settings: {database_url: 'postgresql://u@db/keys'}\n";
        let resync = |extra: &str| {
            load(&format!("{db}{extra}"), &[]).map(|c| c.postgres.unwrap().key_resync)
        };
        assert_eq!(resync("").unwrap(), std::time::Duration::from_secs(10));
        assert_eq!(
            resync("llmgate: {key_resync_seconds: 2}\n").unwrap(),
            std::time::Duration::from_secs(2)
        );
        let err = resync("llmgate: {key_resync_seconds: 0}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("llmgate.key_resync_seconds: must be between 1 and 86400"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let err = load(
            "general_settings: {database_url: 'postgresql://u:pw-secret@db/keys?sslmode=verify-ca'}\n",
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("general_settings.database_url: sslmode=verify-ca needs the server's CA"),
            "{text}"
        );
        assert!(!text.contains("pw-secret"), "{text}");
        // PGSSLROOTCERT is read from the config's environment, and a missing file named.
        let err = load(
            "general_settings: {database_url: 'postgresql://u:pw-secret@db/keys?sslmode=require'}\n",
            &[("PGSSLROOTCERT", "/nonexistent/ca.pem")],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sslrootcert=/nonexistent/ca.pem"), "{text}");
        assert!(!text.contains("pw-secret"), "{text}");
        let err = load(
            "",
            &[("DATABASE_URL", "postgresql://u:pw-secret@db:nope/keys")],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("DATABASE_URL: not a valid PostgreSQL URL"),
            "{text}"
        );
        assert!(!text.contains("pw-secret"), "{text}");
    }
}
