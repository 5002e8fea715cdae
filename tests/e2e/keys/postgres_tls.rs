//! TLS to PostgreSQL through the binary, on a TLS cluster of the test's own
//! (`scripts/postgres.sh start-tls`: `ssl = on`, a throwaway CA and a server certificate
//! for 127.0.0.1, plain connections still allowed) on the PostgreSQL pass of the suite
//! (skipped with a printed reason on the SQLite pass): `sslmode=require` with
//! `sslrootcert` connects over TLS (the store's pool and the lease thread's) and serves a
//! key; `verify-full` with `PGSSLROOTCERT`
//! does too; a name the certificate lacks is refused by `verify-full`, not by `verify-ca`;
//! the wrong CA is refused at start (under `require`, and under the default
//! `prefer`: no fallback to plain text), and so is `sslmode=require` against a server
//! without TLS; no message shows the password.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;
use crate::support::postgres;

/// A password the test servers ignore (trust authentication): it must show nowhere.
const PASSWORD: &str = "pg-tls-pass-never-shown";

/// A TLS cluster on a free loopback port, stopped on drop.
struct TlsServer {
    dir: tempfile::TempDir,
    port: u16,
}

/// `scripts/postgres.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

impl TlsServer {
    /// Starts one (the script makes the CA and the certificates in the cluster's dir).
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = Command::new(script())
            .arg("start-tls")
            .arg(dir.path())
            .arg(port.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "postgres.sh start-tls failed");
        TlsServer { dir, port }
    }

    /// A file of the cluster's dir (`ca.pem`, `other-ca.pem`).
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Its `postgres` database's URL with [`PASSWORD`], and `query` after `?`.
    fn url(&self, query: &str) -> String {
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// `(encrypted, all)` connections named `llmgate` on the server at `url` (asked in plain
/// text, which the test server allows).
async fn llmgate_connections(url: &str) -> (i64, i64) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FROM pg_stat_activity a
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'llmgate'",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    (row.get(0), row.get(1))
}

/// Starts the binary on `url` (and `env`), which must fail; its stderr.
fn refused(url: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "model_list: []\nllmgate:\n  database_wait_seconds: 10\n",
    )
    .unwrap();
    let plugins = crate::harness::plugin("openai");
    let out = Command::new(env!("CARGO_BIN_EXE_llmgate"))
        .args(["--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&cfg)
        .arg("--plugins-dir")
        .arg(plugins.parent().unwrap())
        .env("DATABASE_URL", url)
        .env("LLMGATE_DB", dir.path().join("unused.db"))
        .env_remove("LLMGATE_CONFIG")
        .env_remove("PGSSLROOTCERT")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "it started:\n{err}");
    assert!(
        !err.contains("waiting for PostgreSQL"),
        "a TLS refusal is not retried:\n{err}"
    );
    assert!(!err.contains(PASSWORD), "the password leaked:\n{err}");
    err
}

/// The last line of `err` (the start's error).
fn last_line(err: &str) -> &str {
    err.lines().last().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_verifies_the_server_certificate() {
    let Some(plain_admin) = postgres::admin_url() else {
        eprintln!("skipped: LLMGATE_TEST_POSTGRES is not set (scripts/test.sh starts a server)");
        return;
    };
    let tls = TlsServer::start();
    let m = keyed_mock().await;
    let cfg = config(&m.url()).yaml();

    // sslmode=require with the server's CA: it starts, serves a key, and every connection
    // it holds is encrypted.
    let url = tls.url(&format!(
        "?sslmode=require&sslrootcert={}",
        tls.file("ca.pem")
    ));
    let env = [("DATABASE_URL", url.as_str())];
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: PLUGINS,
        env: &env,
        ..Spec::default()
    });
    // A budget, so the request takes a budget lease: the lease thread's pool connects too.
    let (key, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "over-tls", "max_budget": 5}),
    )
    .await;
    assert_eq!(chat_status(&gw, &key, "priced").await, 200);
    let (encrypted, all) = llmgate_connections(&tls.url("")).await;
    assert!(
        all >= 2 && encrypted == all,
        "{encrypted} of {all} encrypted"
    );
    let logs = gw.logs();
    assert!(!logs.contains(PASSWORD), "the password leaked:\n{logs}");
    drop(gw);

    // verify-full (the name 127.0.0.1 is in the certificate), the CA from PGSSLROOTCERT:
    // the key made above is there.
    let url = tls.url("?sslmode=verify-full");
    let ca = tls.file("ca.pem");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("PGSSLROOTCERT", ca.as_str()),
    ];
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: PLUGINS,
        env: &env,
        ..Spec::default()
    });
    assert_eq!(info(&gw, MASTER, &key).await["key_alias"], "over-tls");
    drop(gw);

    // Through a name the certificate does not carry (`hostaddr` dials 127.0.0.1):
    // verify-full refuses it, verify-ca (the chain only, as libpq) connects.
    let renamed = |mode: &str| {
        let query = format!(
            "?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
            tls.file("ca.pem")
        );
        tls.url(&query).replacen("@127.0.0.1:", "@db.example:", 1)
    };
    let err = refused(&renamed("verify-full"), &[]);
    assert!(
        last_line(&err).contains("does not name the URL's host"),
        "{err}"
    );
    let url = renamed("verify-ca");
    let env = [("DATABASE_URL", url.as_str())];
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: PLUGINS,
        env: &env,
        ..Spec::default()
    });
    assert_eq!(info(&gw, MASTER, &key).await["key_alias"], "over-tls");
    drop(gw);

    // The wrong CA: refused at once, saying why and what to change.
    let other = tls.file("other-ca.pem");
    let err = refused(
        &tls.url(&format!("?sslmode=require&sslrootcert={other}")),
        &[],
    );
    let last = last_line(&err);
    let place = format!("127.0.0.1:{}/postgres", tls.port);
    assert!(
        last.contains(&format!("cannot connect to PostgreSQL at {place}")),
        "{err}"
    );
    assert!(last.contains("UnknownIssuer"), "{err}");
    assert!(last.contains("sslrootcert="), "{err}");
    // Under the default sslmode (prefer) too: a certificate that fails is never a reason
    // to go on in plain text, though this server takes plain connections.
    let err = refused(&tls.url(""), &[("PGSSLROOTCERT", other.as_str())]);
    assert!(last_line(&err).contains("UnknownIssuer"), "{err}");

    // sslmode=require against the suite's server, which has no TLS: refused, saying so.
    let (base, _) = plain_admin.rsplit_once('/').unwrap();
    let plain = format!(
        "{}/postgres?sslmode=require",
        base.replacen("://postgres@", &format!("://postgres:{PASSWORD}@"), 1)
    );
    let err = refused(&plain, &[]);
    let last = last_line(&err);
    assert!(last.contains("server does not support TLS"), "{err}");
    assert!(last.contains("requires TLS"), "{err}");
}
