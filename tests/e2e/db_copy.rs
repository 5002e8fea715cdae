//! `llmgate db copy --to postgresql://...`, the way from one SQLite gateway to several on
//! PostgreSQL: a gateway on an SQLite file creates keys and serves requests, stops; the
//! copy (refused while a gateway holds the file) fills a fresh PostgreSQL database, a
//! gateway started on it serves the same keys with the same spend and the same spend log
//! rows, and a second copy changes nothing. The password shows nowhere. Needs the server
//! `LLMGATE_TEST_POSTGRES` names (skipped, saying so, without one).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::database::{chat, db};
use crate::support::admin::{generate, info, spend_logs};
use crate::support::mock::keyed_mock;
use crate::support::{Config, Deployment, Gateway, Spec, postgres};

const MASTER: &str = "sk-master-db-copy";
/// A password the test server ignores (trust authentication): it must show nowhere.
const PASSWORD: &str = "pg-copy-pass-never-shown";

fn skip() -> bool {
    let off = !postgres::active();
    if off {
        eprintln!("skipped: LLMGATE_TEST_POSTGRES is not set (scripts/test.sh starts a server)");
    }
    off
}

/// One priced deployment of the mock, the master key and, when given, the SQLite file
/// (which wins over the harness's `DATABASE_URL`).
fn config(mock: &str, sqlite: Option<&Path>) -> String {
    let c = Config::new()
        .deployment(
            Deployment::openai("gpt", "mock-gpt", mock)
                .prices(0.000_976_562_5, 0.001_953_125)
                .id("dep-gpt"),
        )
        .master_key(MASTER);
    match sqlite {
        Some(p) => c.llmgate_setting("database_path", p.to_str().unwrap()),
        None => c,
    }
    .yaml()
}

/// `llmgate db copy --to TO --config CONFIG` with `env` (and no database variables of
/// the harness's): (success, stdout, stderr).
fn db_copy(config: &Path, to: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let config = config.to_str().unwrap();
    db(&["copy", "--to", to, "--config", config], env)
}

/// The spend log rows by request id, with what a copy must keep.
async fn rows(gw: &Gateway) -> Vec<(String, String, f64, u64, String)> {
    let mut rows: Vec<_> = spend_logs(gw, MASTER, "")
        .await
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap().to_string(),
                r["api_key"].as_str().unwrap().to_string(),
                r["spend"].as_f64().unwrap(),
                r["total_tokens"].as_u64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// A key's alias, spend and budget as `/key/info` shows them.
async fn key_view(gw: &Gateway, key: &str) -> (Value, f64, Value) {
    let v = info(gw, MASTER, key).await;
    (
        v["key_alias"].clone(),
        v["spend"].as_f64().unwrap(),
        v["max_budget"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn db_copy_moves_keys_spend_and_rows_from_sqlite_to_postgres_and_is_idempotent() {
    if skip() {
        return;
    }
    let m = keyed_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("single.db");
    let cfg = config(&m.url(), Some(&file));
    let cfg_path = dir.path().join("config.yaml");
    std::fs::write(&cfg_path, &cfg).unwrap();

    // One gateway on the SQLite file: two keys, four requests.
    let mut single = Gateway::start_spec(Spec {
        config: &cfg,
        ..Spec::default()
    });
    let (a, _) = generate(
        &single,
        MASTER,
        json!({"key_alias": "team-a", "max_budget": 9}),
    )
    .await;
    let (b, _) = generate(&single, MASTER, json!({"key_alias": "team-b"})).await;
    chat(&single, &a, "one", false).await;
    chat(&single, &a, "two", true).await;
    chat(&single, &b, "three", false).await;
    chat(&single, &b, "four", true).await;
    let before = rows(&single).await;
    assert_eq!(before.len(), 4, "{before:?}");
    let (ka, kb) = (key_view(&single, &a).await, key_view(&single, &b).await);
    assert!(ka.1 > 0.0 && kb.1 > 0.0, "{ka:?} {kb:?}");

    let target = postgres::fresh_database().unwrap();
    let secret = target.replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1);
    // Refused while the gateway holds the file, naming it; nothing is written.
    let (ok, out, err) = db_copy(&cfg_path, &secret, &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("in use") && err.contains(&file.display().to_string()),
        "{err}"
    );
    assert!(!err.contains(PASSWORD) && !out.contains(PASSWORD), "{err}");
    assert!(single.stop_graceful(Duration::from_secs(10)).is_some());

    // The copy, twice (the second through os.environ/VAR): the same counts, no password.
    let want = format!(
        "copied 2 keys, 4 spend log rows from {} to {target}",
        file.display()
    );
    let (ok, out, err) = db_copy(&cfg_path, &secret, &[]);
    assert!(ok, "{err}");
    assert!(out.contains(&want), "{out}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}{err}"
    );
    let (ok, out2, err) = db_copy(
        &cfg_path,
        "os.environ/LLMGATE_E2E_COPY_TO",
        &[("LLMGATE_E2E_COPY_TO", &secret)],
    );
    assert!(ok, "{err}");
    assert_eq!(out2, out);
    assert!(!err.contains(PASSWORD), "{err}");

    // A gateway on PostgreSQL: the same keys, spend and rows, and it serves them.
    let pg_cfg = config(&m.url(), None);
    let multi = Gateway::start_spec(Spec {
        config: &pg_cfg,
        env: &[("DATABASE_URL", &secret)],
        ..Spec::default()
    });
    assert_eq!(key_view(&multi, &a).await, ka);
    assert_eq!(key_view(&multi, &b).await, kb);
    assert_eq!(rows(&multi).await, before);
    chat(&multi, &a, "five", false).await;
    assert_eq!(rows(&multi).await.len(), 5);
    assert!(!multi.logs().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn db_copy_refuses_a_target_whose_other_key_has_the_same_alias() {
    if skip() {
        return;
    }
    let m = keyed_mock().await;
    let target = postgres::fresh_database().unwrap();
    // The target already has a key `shared` (another token).
    let pg = Gateway::start_spec(Spec {
        config: &config(&m.url(), None),
        env: &[("DATABASE_URL", &target)],
        ..Spec::default()
    });
    let (theirs, _) = generate(&pg, MASTER, json!({"key_alias": "shared"})).await;
    drop(pg);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.db");
    let cfg = config(&m.url(), Some(&file));
    let cfg_path = dir.path().join("config.yaml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let single = Gateway::start_spec(Spec {
        config: &cfg,
        ..Spec::default()
    });
    let (ours, _) = generate(&single, MASTER, json!({"key_alias": "shared"})).await;
    let (other, _) = generate(&single, MASTER, json!({"key_alias": "not-shared"})).await;
    drop(single);

    let (ok, out, err) = db_copy(&cfg_path, &target, &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("key_alias `shared`") && err.contains("nothing was copied"),
        "{err}"
    );
    // Nothing was written: the target's key is intact, ours are not there.
    let pg = Gateway::start_spec(Spec {
        config: &config(&m.url(), None),
        env: &[("DATABASE_URL", &target)],
        ..Spec::default()
    });
    assert_eq!(info(&pg, MASTER, &theirs).await["key_alias"], "shared");
    for key in [&ours, &other] {
        let r = crate::support::http::get(&pg, &format!("/key/info?key={key}"), Some(MASTER)).await;
        assert_eq!(r.status, 404, "{}", r.text);
    }
}
