//! The e2e suite on PostgreSQL: with `LLMGATE_TEST_POSTGRES` set to a server's admin URL
//! (`postgresql://postgres@127.0.0.1:55432/postgres`; scripts/test.sh starts one), every
//! gateway the harness starts gets `DATABASE_URL` for a database of its own, made on first
//! use with `CREATE DATABASE`. The database is named after the SQLite file the gateway
//! would have used (`LLMGATE_DB`), so a test that restarts a gateway on one file restarts
//! it on one database.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// The test server's admin URL, when the suite runs on PostgreSQL.
pub fn admin_url() -> Option<String> {
    std::env::var("LLMGATE_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Whether the suite runs on PostgreSQL.
pub fn active() -> bool {
    admin_url().is_some()
}

/// The URL of the database standing for the SQLite file `key` (created if missing), or
/// `None` when the suite runs on SQLite.
pub fn database_for(key: &str) -> Option<String> {
    let admin = admin_url()?;
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let name = format!("llmgate_e2e_{:016x}", h.finish());
    Some(create(&admin, &name))
}

/// A new database with a fresh name (tests that share one between gateways), or `None` on
/// SQLite.
pub fn fresh_database() -> Option<String> {
    let admin = admin_url()?;
    let name = format!("llmgate_e2e_{}", uuid::Uuid::new_v4().simple());
    Some(create(&admin, &name))
}

/// `CREATE DATABASE name` unless it exists; its URL.
fn create(admin: &str, name: &str) -> String {
    let sql = format!("CREATE DATABASE {name}");
    let admin_owned = admin.to_owned();
    // The harness is called from async tests: the client runs on a runtime of its own.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&admin_owned, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("LLMGATE_TEST_POSTGRES: cannot connect: {e}"));
            let task = tokio::spawn(conn);
            if let Err(e) = client.batch_execute(&sql).await {
                let exists = e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE);
                assert!(exists, "{sql}: {e:?}");
            }
            drop(client);
            let _ = task.await;
        });
    })
    .join()
    .unwrap();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("LLMGATE_TEST_POSTGRES: a URL ending in /db");
    format!("{base}/{name}")
}

/// An admin's readiness answer names the database: the SQLite file (`db_path`), or on
/// PostgreSQL its URL without a password (`db_url`).
pub fn assert_db_shown(v: &serde_json::Value) {
    if active() {
        let url = v["db_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no db_url: {v}"));
        assert!(url.starts_with("postgresql://postgres@127.0.0.1:"), "{v}");
        assert!(v.get("db_path").is_none(), "{v}");
    } else {
        let path = v["db_path"]
            .as_str()
            .unwrap_or_else(|| panic!("no db_path: {v}"));
        assert!(path.ends_with("llmgate.db"), "{v}");
    }
}
