//! The PostgreSQL store through the binary (on the server `LLMGATE_TEST_POSTGRES` names;
//! skipped with a printed reason without one): two gateways on one database see each
//! other's keys after a (re)start, `database_url: os.environ/VAR` and `DATABASE_URL` both
//! select it, start-up waits for a server that comes up late, and fails clearly (no
//! password) for one that never does.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use super::*;
use crate::support::postgres;

/// A password the test server ignores (trust authentication): it must show nowhere.
const PASSWORD: &str = "pg-pass-never-shown";

/// The test server's URL of `db`, with [`PASSWORD`] in it; `None` (printed) without one.
fn url_with_password(db_url: &str) -> String {
    db_url.replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1)
}

/// Whether the suite runs without PostgreSQL (then a PostgreSQL test returns, saying so).
pub(super) fn skip() -> bool {
    let off = !postgres::active();
    if off {
        eprintln!("skipped: LLMGATE_TEST_POSTGRES is not set (scripts/test.sh starts a server)");
    }
    off
}

/// A free loopback port (nothing listens on it once this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port of the test server in `url`.
pub(super) fn server_port(url: &str) -> u16 {
    let after_at = url.split('@').nth(1).unwrap();
    let hostport = after_at.split('/').next().unwrap();
    hostport.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_two_gateways_share_keys_across_restarts() {
    if skip() {
        return;
    }
    let db = postgres::fresh_database().unwrap();
    let secret_url = url_with_password(&db);
    let m = keyed_mock().await;
    // Gateway A: `database_url: os.environ/VAR` in the config.
    let cfg_a = config(&m.url()).yaml().replace(
        "general_settings:\n",
        "general_settings:\n  database_url: os.environ/LLMGATE_E2E_PG_URL\n",
    );
    assert!(cfg_a.contains("database_url"), "{cfg_a}");
    let env_a = [("LLMGATE_E2E_PG_URL", secret_url.as_str())];
    let spec_a = || Spec {
        config: &cfg_a,
        plugins: PLUGINS,
        env: &env_a,
        ..Spec::default()
    };
    // Gateway B: `DATABASE_URL` in the environment, as LiteLLM reads it.
    let cfg_b = config(&m.url()).yaml();
    let env_b = [("DATABASE_URL", secret_url.as_str())];
    let spec_b = || Spec {
        config: &cfg_b,
        plugins: PLUGINS,
        env: &env_b,
        ..Spec::default()
    };

    let mut a = Gateway::start_spec(spec_a());
    let (key, _) = generate(
        &a,
        MASTER,
        json!({"key_alias": "shared-a", "max_budget": 5}),
    )
    .await;
    let first = chat(&a, Some(&key), &chat_body("priced", "hello from a", false)).await;
    assert_eq!(first.resp.status, 200, "{}", first.resp.text);
    assert_eq!(
        a.stop_graceful(Duration::from_secs(30))
            .map(|s| s.success()),
        Some(true)
    );

    // B, started on the same database, knows the key, its spend and its log row.
    let b = Gateway::start_spec(spec_b());
    let v = info(&b, MASTER, &key).await;
    assert_eq!(v["key_alias"], "shared-a", "{v}");
    assert_eq!(key_spend(&b, MASTER, &key).await, first.cost());
    let rows = spend_logs(&b, MASTER, "").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["api_key"], hash(&key));
    let second = chat(&b, Some(&key), &chat_body("priced", "hello from b", false)).await;
    assert_eq!(second.resp.status, 200, "{}", second.resp.text);
    let (key_b, _) = generate(&b, MASTER, json!({"key_alias": "made-on-b"})).await;

    // A, restarted, knows the key made on B and the spend through B.
    let a = Gateway::start_spec(spec_a());
    assert_eq!(info(&a, MASTER, &key_b).await["key_alias"], "made-on-b");
    assert_eq!(chat_status(&a, &key_b, "priced").await, 200);
    assert_eq!(
        key_spend(&a, MASTER, &key).await,
        first.cost() + second.cost()
    );

    // Both show the database without its password, and never log it.
    for gw in [&a, &b] {
        let r = client()
            .get(format!("{}/health/readiness", gw.url))
            .bearer_auth(MASTER)
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let shown = db.as_str();
        assert_eq!(v["db_url"], shown, "{v}");
        assert!(!text.contains(PASSWORD), "{text}");
        let logs = gw.logs();
        assert!(logs.contains(&format!("postgresql={shown}")), "{logs}");
        assert!(!logs.contains(PASSWORD), "the password leaked:\n{logs}");
    }
}

/// Forwards every connection to `127.0.0.1:port` to the test server, from `after` on: the
/// server "comes up" late.
fn late_server(port: u16, target: u16, after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_start_waits_for_a_server_that_comes_up_late() {
    if skip() {
        return;
    }
    let db = postgres::fresh_database().unwrap();
    let port = free_port();
    let late = db.replacen(&format!(":{}/", server_port(&db)), &format!(":{port}/"), 1);
    late_server(port, server_port(&db), Duration::from_secs(2));
    let m = keyed_mock().await;
    let cfg = config(&m.url())
        .llmgate_setting("database_wait_seconds", 60)
        .yaml();
    let url = url_with_password(&late);
    let env = [("DATABASE_URL", url.as_str())];
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: PLUGINS,
        env: &env,
        ..Spec::default()
    });
    let place = late.split('@').nth(1).unwrap();
    let logs = gw.logs();
    assert!(
        logs.contains(&format!("waiting for PostgreSQL at {place}")),
        "{logs}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
    let (key, _) = generate(&gw, MASTER, json!({"key_alias": "late"})).await;
    assert_eq!(chat_status(&gw, &key, "priced").await, 200);
}

#[test]
fn postgres_that_never_comes_up_fails_naming_host_port_and_database() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "model_list: []\nllmgate:\n  database_wait_seconds: 2\n",
    )
    .unwrap();
    let url = format!("postgresql://llmgate:{PASSWORD}@127.0.0.1:{port}/keys");
    let plugins = crate::harness::plugin("openai");
    let out = Command::new(env!("CARGO_BIN_EXE_llmgate"))
        .args(["--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&cfg)
        .arg("--plugins-dir")
        .arg(plugins.parent().unwrap())
        .env("DATABASE_URL", &url)
        .env("LLMGATE_DB", dir.path().join("unused.db"))
        .env_remove("LLMGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let place = format!("127.0.0.1:{port}/keys");
    assert!(
        err.contains(&format!("waiting for PostgreSQL at {place}")),
        "{err}"
    );
    let last = BufReader::new(err.as_bytes())
        .lines()
        .last()
        .unwrap()
        .unwrap();
    assert!(
        last.contains(&format!("cannot connect to PostgreSQL at {place}")),
        "{last}"
    );
    assert!(last.to_lowercase().contains("connection refused"), "{last}");
    assert!(!err.contains(PASSWORD), "the password leaked:\n{err}");
    assert!(
        !dir.path().join("unused.db").exists(),
        "SQLite was not used"
    );
}
