//! The SQLite database as an operator meets it: where the file is by default (next to the
//! config) and the start-up line that names it; one gateway per file (a second one is
//! refused naming the first one's pid, a `kill -9`ed one leaves no lock behind); and the
//! `llmgate db migrate` and `llmgate db backup` subcommands, on fresh, old and served files.
//! SQLite only: when the suite runs on PostgreSQL (`LLMGATE_TEST_POSTGRES`), they skip.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::admin::{generate, hash, info, spend_logs};
use crate::support::http::post;
use crate::support::mock::keyed_mock;
use crate::support::{Config, Deployment, Gateway, Spec};

const MASTER: &str = "sk-master-db-e2e";

/// A config with one priced deployment of the mock and the master key.
fn config(mock: &str) -> String {
    Config::new()
        .deployment(
            Deployment::openai("gpt", "mock-gpt", mock)
                .prices(0.000_976_562_5, 0.001_953_125)
                .id("dep-gpt"),
        )
        .master_key(MASTER)
        .yaml()
}

/// Whether the suite runs on PostgreSQL (then these SQLite file tests skip, saying so).
fn on_postgres() -> bool {
    let pg = std::env::var_os("LLMGATE_TEST_POSTGRES").is_some_and(|v| !v.is_empty());
    if pg {
        eprintln!("skipped: a test of the SQLite file, and the suite runs on PostgreSQL");
    }
    pg
}

/// A gateway with `config`, `env` on top of the harness's (which names a database of its
/// own unless `env` sets `LLMGATE_DB`).
fn start(config: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_spec(Spec {
        config,
        env,
        ..Spec::default()
    })
}

/// The `llmgate` binary with `args`, the master key variables cleared and `env` set.
fn llmgate(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmgate"));
    cmd.args(args)
        .env_remove("LLMGATE_CONFIG")
        .env_remove("LLMGATE_DB")
        .env_remove("DATABASE_URL")
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("LLMGATE_MASTER_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `cmd` to its exit; panics if it is still running after a minute (a gateway that
/// started serving instead of refusing).
fn exits(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after a minute; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `llmgate db ARGS` with `env`: (success, stdout, stderr).
pub fn db(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut full = vec!["db"];
    full.extend_from_slice(args);
    let out = exits(llmgate(&full, env));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The schema version this build migrates to.
fn latest() -> usize {
    llmgate::store::MIGRATIONS.len()
}

/// A chat completion with `key`, which must succeed; its call id.
pub async fn chat(gw: &Gateway, key: &str, text: &str, stream: bool) -> String {
    let mut body = json!({
        "model": "gpt",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let r = post(gw, "/v1/chat/completions", Some(key), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.header("x-litellm-call-id").unwrap().to_string()
}

/// The request ids of the spend log rows, sorted.
async fn request_ids(gw: &Gateway) -> Vec<String> {
    let mut ids: Vec<String> = spend_logs(gw, MASTER, "")
        .await
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_database_is_next_to_the_config_and_named_at_start() {
    if on_postgres() {
        return;
    }
    let m = keyed_mock().await;
    // An empty LLMGATE_DB counts as unset: the default applies.
    let gw = start(&config(&m.url()), &[("LLMGATE_DB", "")]);
    let next_to_config = gw.config_path().parent().unwrap().join("llmgate.db");
    let line = format!("database sqlite={}", next_to_config.display());
    let logs = gw.logs_once(&line, Duration::from_secs(10));
    assert!(logs.contains(&line), "{logs}");
    assert!(next_to_config.is_file(), "{}", next_to_config.display());
    let (key, _) = generate(&gw, MASTER, json!({"key_alias": "here"})).await;
    let conn = rusqlite::Connection::open(&next_to_config).unwrap();
    let stored: String = conn
        .query_row(
            "SELECT token FROM llmgate_verification_tokens WHERE key_alias = 'here'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored,
        hash(&key),
        "the key went into the file next to the config"
    );

    // Without --config: the working directory (seen through `db migrate`, which finds the
    // database as a start does).
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = llmgate(&["db", "migrate"], &[]);
    cmd.current_dir(cwd.path());
    let out = exits(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let here = std::path::absolute(cwd.path().join("llmgate.db")).unwrap();
    assert!(
        stdout.contains(&format!("{}: migrated", here.display())),
        "{stdout}"
    );
    assert!(here.is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_gateway_on_one_file_is_refused_and_a_killed_ones_lock_does_not_linger() {
    if on_postgres() {
        return;
    }
    let m = keyed_mock().await;
    let cfg = config(&m.url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let db_env = [("LLMGATE_DB", path.to_str().unwrap())];
    let mut first = start(&cfg, &db_env);
    let (key, _) = generate(&first, MASTER, json!({"key_alias": "survivor"})).await;

    let plugins = first.plugins_dir();
    let config_path = first.config_path();
    let second_args = [
        "--config",
        config_path.to_str().unwrap(),
        "--plugins-dir",
        plugins.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ];
    let out = exits(llmgate(&second_args, &db_env));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the second gateway must not start: {err}"
    );
    assert!(
        err.contains(&format!("the database {} is in use", path.display())),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{out:?}"
    );

    // The first one goes on serving, keys and all.
    assert!(first.alive());
    assert_eq!(info(&first, MASTER, &key).await["key_alias"], "survivor");
    chat(&first, &key, "still here", false).await;

    // Migrating under a serving gateway is refused too; checking is not.
    let (ok, _, err) = db(&["migrate"], &db_env);
    assert!(!ok && err.contains("is in use"), "{err}");
    let (ok, out, err) = db(&["migrate", "--check"], &db_env);
    assert!(ok, "{err}");
    assert!(out.contains("up to date"), "{out}");

    // kill -9: no clean shutdown, the lock file stays behind, and still a new one starts.
    first.signal("KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.alive() {
        assert!(Instant::now() < deadline, "kill -9 did not end the gateway");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(llmgate::store::lock_path(&path).exists());
    let third = start(&cfg, &db_env);
    assert_eq!(info(&third, MASTER, &key).await["key_alias"], "survivor");
    chat(&third, &key, "after the kill", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn db_migrate_brings_fresh_and_old_files_to_the_latest_version_and_keeps_keys() {
    if on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let latest = latest();

    // Fresh: created and migrated from 0.
    let fresh = dir.path().join("fresh.db");
    let env = [("LLMGATE_DB", fresh.to_str().unwrap())];
    let (ok, _, err) = db(&["migrate", "--check"], &env);
    assert!(!ok && err.contains("no database"), "{err}");
    assert!(!fresh.exists(), "--check creates nothing");
    let (ok, out, err) = db(&["migrate"], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("migrated from schema version 0 to {latest}")),
        "{out}"
    );
    let (ok, out, err) = db(&["migrate"], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("schema version {latest}, up to date")),
        "{out}"
    );

    // Old: a file at version 1, written with the first migration's SQL, holding a key.
    let old = dir.path().join("old.db");
    let key = "sk-from-version-one";
    {
        let conn = rusqlite::Connection::open(&old).unwrap();
        conn.execute_batch(llmgate::store::MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE llmgate_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO llmgate_schema_version VALUES (1, 0);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO llmgate_verification_tokens
                 (token, key_name, key_alias, max_budget, created_at, updated_at)
             VALUES (?1, 'sk-...-one', 'veteran', 5.0, 1700000000, 1700000000)",
            [hash(key)],
        )
        .unwrap();
    }
    let env = [("LLMGATE_DB", old.to_str().unwrap())];
    let (ok, _, err) = db(&["migrate", "--check"], &env);
    assert!(!ok, "pending migrations fail the check");
    assert!(
        err.contains(&format!(
            "schema version 1, this llmgate migrates to {latest}"
        )),
        "{err}"
    );
    let (ok, out, err) = db(&["migrate"], &env);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("migrated from schema version 1 to {latest}")),
        "{out}"
    );
    let (ok, _, err) = db(&["migrate", "--check"], &env);
    assert!(ok, "{err}");
    let conn = rusqlite::Connection::open(&old).unwrap();
    let versions: i64 = conn
        .query_row("SELECT COUNT(*) FROM llmgate_schema_version", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(versions, i64::try_from(latest).unwrap());
    drop(conn);

    // The migrated key works in a gateway.
    let m = keyed_mock().await;
    let gw = start(&config(&m.url()), &env);
    let key_info = info(&gw, MASTER, key).await;
    assert_eq!(key_info["key_alias"], "veteran");
    assert_eq!(key_info["max_budget"], 5.0);
    chat(&gw, key, "an old key", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn db_backup_while_serving_gives_a_file_a_new_gateway_serves_the_same_keys_and_rows() {
    if on_postgres() {
        return;
    }
    let m = keyed_mock().await;
    let cfg = config(&m.url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let env = [("LLMGATE_DB", path.to_str().unwrap())];
    let gw = start(&cfg, &env);
    let (key, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "backed-up", "max_budget": 9}),
    )
    .await;
    chat(&gw, &key, "one", false).await;
    chat(&gw, &key, "two", true).await;
    // Reading the spend logs commits what is queued.
    let ids = request_ids(&gw).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    let spend = info(&gw, MASTER, &key).await["spend"].as_f64().unwrap();
    assert!(spend > 0.0);

    let backup = dir.path().join("backup.db");
    let config_path = gw.config_path();
    let args = [
        "backup",
        backup.to_str().unwrap(),
        "--config",
        config_path.to_str().unwrap(),
    ];
    let (ok, out, err) = db(&args, &env);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "backed up {} to {}",
            path.display(),
            backup.display()
        )),
        "{out}"
    );
    assert!(out.contains("1 keys, 2 spend log rows"), "{out}");
    // Never over an existing file.
    let before = std::fs::read(&backup).unwrap();
    let (ok, _, err) = db(&args, &env);
    assert!(!ok && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&backup).unwrap(), before);

    // The gateway served on through the backup.
    chat(&gw, &key, "three", false).await;

    // A second gateway on the copy: the same key, spend and rows (not the third request).
    let copy = start(&cfg, &[("LLMGATE_DB", backup.to_str().unwrap())]);
    let restored: Value = info(&copy, MASTER, &key).await;
    assert_eq!(restored["key_alias"], "backed-up");
    assert_eq!(restored["spend"].as_f64().unwrap(), spend);
    assert_eq!(request_ids(&copy).await, ids);
    chat(&copy, &key, "served from the copy", false).await;
    assert!(Path::new(&path).is_file());
}

/// `db migrate --check` on PostgreSQL only reads: a database llmgate never migrated fails
/// the check (and stays empty), `db migrate` migrates it, then the check passes. On the
/// PostgreSQL pass of the suite (skipped with a printed reason on SQLite).
#[test]
fn db_migrate_check_reads_a_postgresql_database_without_changing_it() {
    let Some(url) = crate::support::postgres::fresh_database() else {
        eprintln!("skipped: LLMGATE_TEST_POSTGRES is not set (scripts/test.sh starts a server)");
        return;
    };
    let env = [("DATABASE_URL", url.as_str())];
    let shown = url.split('@').nth(1).unwrap();
    let (ok, _, err) = db(&["migrate", "--check"], &env);
    assert!(
        !ok && err.contains("no database") && err.contains(shown),
        "{err}"
    );
    let (ok, _, err) = db(&["migrate", "--check"], &env);
    assert!(
        !ok && err.contains("no database"),
        "--check created nothing: {err}"
    );
    let (ok, out, err) = db(&["migrate"], &env);
    assert!(ok, "{err}");
    let (ok, out2, err) = db(&["migrate", "--check"], &env);
    assert!(ok, "{err}");
    let latest = latest();
    for out in [out, out2] {
        assert!(
            out.contains(&format!("schema version {latest}, up to date")),
            "{out}"
        );
    }
}
