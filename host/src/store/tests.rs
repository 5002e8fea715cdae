//! Store tests: each opens a fresh database, an SQLite file in a temporary folder or, for
//! the tests written for both backends (`both!`), a new PostgreSQL database on the server
//! `LLMGATE_TEST_POSTGRES` names (`postgresql://postgres@127.0.0.1:55432/postgres`; those
//! tests pass with a printed reason when it is unset).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;

/// A key's spend in one model group's window.
fn window(model: &str, spend: f64, reset_at: i64) -> ModelSpend {
    let w = ModelWindow {
        reset_at: Some(reset_at),
        spend,
    };
    [(model.to_string(), w)].into_iter().collect()
}

/// Budgets as a request gives them.
fn budgets(given: serde_json::Value) -> ModelBudgets {
    ModelBudgets::parse(&given).unwrap()
}

/// Where a test's store lives: a fresh SQLite file or a fresh PostgreSQL database.
enum Place {
    File(tempfile::TempDir),
    Postgres(Box<PgUrl>),
}

impl Place {
    fn sqlite() -> Self {
        Place::File(tempfile::tempdir().unwrap())
    }

    /// A new database on the test server, or `None` (printed) without one.
    async fn postgres() -> Option<Self> {
        Some(Place::Postgres(Box::new(fresh_postgres().await?)))
    }

    /// Opens (again) the store of this place.
    async fn open(&self) -> Store {
        match self {
            Place::File(dir) => Store::open(&db(dir)).unwrap(),
            Place::Postgres(url) => Store::open_postgres(url, Duration::from_secs(5))
                .await
                .unwrap(),
        }
    }
}

/// The test server's admin URL, or `None` with the reason printed.
fn test_server() -> Option<String> {
    let url = std::env::var("LLMGATE_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!(
            "skipped on PostgreSQL: LLMGATE_TEST_POSTGRES is not set (scripts/test.sh starts a server and sets it)"
        );
    }
    url
}

/// Runs `sql` on the test server's admin database.
async fn admin_sql(admin: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

/// A new, empty database on the test server.
async fn fresh_postgres() -> Option<PgUrl> {
    let admin = test_server()?;
    let name = format!("llmgate_unit_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&admin, &format!("CREATE DATABASE {name}")).await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(PgUrl::parse(&format!("{base}/{name}")).unwrap())
}

/// A test written once for both backends: `name::sqlite` and `name::postgres`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Place::sqlite()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(place) = super::Place::postgres().await {
                    super::$name(place).await;
                }
            }
        }
    };
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested").join("llmgate.db")
}

fn key(token: &str, alias: Option<&str>) -> KeyRecord {
    KeyRecord {
        token: token.to_owned(),
        key_name: format!("sk-...{}", &token[token.len().saturating_sub(4)..]),
        key_alias: alias.map(str::to_owned),
        spend: 1.25,
        max_budget: Some(10.5),
        soft_budget: Some(7.25),
        budget_duration: Some("30d".to_owned()),
        budget_reset_at: Some(1_700_000_000),
        expires: Some(1_800_000_000),
        models: vec!["gpt-4o".to_owned(), "claude-*".to_owned()],
        metadata: json!({"team": "search", "n": [1, 2]}),
        tpm_limit: Some(100_000),
        rpm_limit: Some(60),
        max_parallel_requests: Some(1 << 40),
        model_max_budget: budgets(json!({"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}})),
        model_spend: window("gpt-4o", 0.1, 1_700_000_000),
        blocked: true,
        user_id: Some("alice".to_owned()),
        team_id: Some("t1".to_owned()),
        created_at: 1_690_000_000,
        updated_at: 1_690_000_001,
    }
}

fn bare_key(token: &str) -> KeyRecord {
    KeyRecord {
        key_name: "sk-...bare".to_owned(),
        ..KeyRecord::new(token.to_owned(), String::new(), 1_690_000_100)
    }
}

fn log(id: &str, api_key: &str, user: &str, start: i64) -> SpendLog {
    SpendLog {
        request_id: id.to_owned(),
        call_type: "acompletion".to_owned(),
        api_key: api_key.to_owned(),
        spend: 0.000_123_456_789,
        total_tokens: 30,
        prompt_tokens: 10,
        completion_tokens: 20,
        cache_read_input_tokens: 3,
        cache_creation_input_tokens: 4,
        reasoning_tokens: 5,
        start_time_ms: start,
        end_time_ms: start + 500,
        completion_start_time_ms: Some(start + 100),
        model: "gpt-4o-2024-08-06".to_owned(),
        model_group: "gpt-4o".to_owned(),
        model_id: "dep-1".to_owned(),
        custom_llm_provider: "openai".to_owned(),
        api_base: "https://api.openai.com/v1".to_owned(),
        status: "success".to_owned(),
        user: user.to_owned(),
        metadata: json!({"key_alias": "ci", "attempts": [{"deployment": "dep-1"}]}),
        request_tags: vec!["prod".to_owned(), "batch".to_owned()],
        messages: Some(json!([{"role": "user", "content": "hi"}])),
        response: Some(json!(null)),
        requester_ip_address: Some("10.0.0.1".to_owned()),
    }
}

/// A charge of `cost` to `token`, counted against its `gpt-4o` budget window too.
fn charge(token: &str, cost: f64) -> SpendEvent {
    SpendEvent::KeyCharge(Charge {
        token: token.to_owned(),
        cost,
        lease: None,
        model: Some(ModelCharge {
            group: "gpt-4o".to_owned(),
            reset_at: Some(1_700_000_999),
            now: 1_700_000_000,
        }),
    })
}

async fn all_logs(store: &Store) -> Vec<SpendLog> {
    store.query_logs(SpendQuery::default()).await.unwrap()
}

#[tokio::test]
async fn migrations_apply_once_and_reopen_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    for _ in 0..3 {
        let store = Store::open(&path).unwrap();
        store.put_key(bare_key("a")).await.unwrap();
        store.close().await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (version, rows) = schema::version(&conn).unwrap();
    assert_eq!(version, i64::try_from(schema::LATEST).unwrap());
    assert_eq!(rows, version, "one row per migration, none applied twice");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    Store::open(&path).unwrap().close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO llmgate_schema_version VALUES (999, 0)", [])
        .unwrap();
    drop(conn);
    let err = format!("{:#}", Store::open(&path).unwrap_err());
    assert!(err.contains("999"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

async fn keys_round_trip_every_field(place: Place) {
    let store = place.open().await;
    let full = key("aaaa1111", Some("ci"));
    let bare = bare_key("bbbb2222");
    store.put_key(full.clone()).await.unwrap();
    store.put_key(bare.clone()).await.unwrap();
    assert_eq!(
        store.load_keys().await.unwrap(),
        vec![full.clone(), bare.clone()]
    );

    // put_key replaces every setting and keeps the running spend; put_key_with replaces
    // that too.
    let mut changed = bare_key("aaaa1111");
    changed.key_alias = Some("ci-2".to_owned());
    store.put_key(changed.clone()).await.unwrap();
    let kept = KeyRecord {
        spend: full.spend,
        model_spend: full.model_spend.clone(),
        ..changed.clone()
    };
    let mut expected = vec![kept, bare.clone()];
    expected.sort_by_key(|k| (k.created_at, k.token.clone()));
    assert_eq!(store.load_keys().await.unwrap(), expected);
    store
        .put_key_with(changed.clone(), Overwrite::ALL)
        .await
        .unwrap();
    let mut expected = vec![changed.clone(), bare.clone()];
    expected.sort_by_key(|k| (k.created_at, k.token.clone()));
    assert_eq!(store.load_keys().await.unwrap(), expected);

    // Regeneration: the old token goes, the new one comes with the old one's spend, in one
    // step.
    let mut regenerated = full.clone();
    regenerated.token = "cccc3333".to_owned();
    store
        .replace_key("aaaa1111".to_owned(), regenerated.clone())
        .await
        .unwrap();
    let renamed = KeyRecord {
        spend: changed.spend,
        model_spend: changed.model_spend.clone(),
        ..regenerated.clone()
    };
    assert_eq!(
        store.load_keys().await.unwrap(),
        vec![renamed, bare.clone()]
    );

    let deleted = store
        .delete_keys(vec![
            "cccc3333".to_owned(),
            "missing".to_owned(),
            "bbbb2222".to_owned(),
        ])
        .await
        .unwrap();
    assert_eq!(deleted, vec!["cccc3333".to_owned(), "bbbb2222".to_owned()]);
    assert!(store.load_keys().await.unwrap().is_empty());

    store.put_key(full.clone()).await.unwrap();
    store.close().await.unwrap();
    let store = place.open().await;
    assert_eq!(store.load_keys().await.unwrap(), vec![full]);
    store.close().await.unwrap();
}
both!(keys_round_trip_every_field);

#[test]
fn model_budgets_are_read_and_shown_as_given() {
    let given = json!({
        "a": 2.5,
        "b": {"budget_limit": "0.5", "time_period": "1d", "tpm_limit": 10},
        "c": {"max_budget": 1, "budget_duration": "30d"},
        "d": {"budget_limit": 3, "time_period": null},
    });
    let b = budgets(given.clone());
    assert_eq!(serde_json::to_value(&b).unwrap(), given);
    let got = |m: &str| b.get(m).map(|b| (b.max_budget, b.window.clone()));
    assert_eq!(got("a"), Some((2.5, None)));
    assert_eq!(got("b"), Some((0.5, Some("1d".into()))));
    assert_eq!(got("c"), Some((1.0, Some("30d".into()))));
    assert_eq!(got("d"), Some((3.0, None)));
    assert_eq!(got("e"), None);
    assert_eq!(b.iter().count(), 4);
    assert_eq!(budgets(json!(null)), ModelBudgets::default());

    // What a request may not give is refused with the entry named (tests/e2e/keys/model_budgets.rs).
    let err = ModelBudgets::parse(&json!({"a": "1.0"})).unwrap_err();
    assert!(err.contains("entry `a` needs a budget"), "{err}");
}

/// A database written before `model_max_budget` was typed (the column held whatever JSON
/// the API accepted) still loads, and shows each entry as it was written.
#[tokio::test]
async fn model_budgets_of_an_old_row_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    Store::open(&path).unwrap().close().await.unwrap();
    let old = r#"{"bare":0.25,"full":{"budget_limit":"1.5","time_period":"1d"},"odd":{"budget_limit":2,"time_period":5},"hand":{"note":"no limit"}}"#;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO llmgate_verification_tokens (token, key_name, spend, models, metadata,
             model_max_budget, model_spend, blocked, created_at, updated_at)
         VALUES ('old1', 'sk-...old1', 0.5, '[]', '{}', ?1,
             '{\"full\":{\"reset_at\":1700000000,\"spend\":0.1}}', 0, 1, 2)",
        [old],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO llmgate_verification_tokens (token, key_name, spend, models, metadata,
             model_max_budget, model_spend, blocked, created_at, updated_at)
         VALUES ('old2', 'sk-...old2', 0, '[]', '{}', 'null', '{}', 0, 3, 4)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    let keys = store.load_keys().await.unwrap();
    let b = &keys[0].model_max_budget;
    let got = |m: &str| b.get(m).map(|b| (b.max_budget, b.window.clone()));
    assert_eq!(got("bare"), Some((0.25, None)));
    assert_eq!(got("full"), Some((1.5, Some("1d".into()))));
    // What the runtime always did with these: a limit without a window, and no budget.
    assert_eq!(got("odd"), Some((2.0, None)));
    assert_eq!(got("hand"), None);
    assert_eq!(
        serde_json::to_string(b).unwrap(),
        r#"{"bare":0.25,"full":{"budget_limit":"1.5","time_period":"1d"},"hand":{"note":"no limit"},"odd":{"budget_limit":2,"time_period":5}}"#
    );
    assert_eq!(keys[0].model_spend, window("full", 0.1, 1_700_000_000));
    assert_eq!(keys[1].model_max_budget, ModelBudgets::default());

    // Written back, the column is what it was (keys in order).
    store.put_key(keys[0].clone()).await.unwrap();
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let text: String = conn
        .query_row(
            "SELECT model_max_budget FROM llmgate_verification_tokens WHERE token = 'old1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let as_written: serde_json::Value = serde_json::from_str(old).unwrap();
    assert_eq!(text, as_written.to_string());
}

async fn counters_beyond_i64_are_clamped(place: Place) {
    let store = place.open().await;
    let mut k = bare_key("big");
    k.tpm_limit = Some(u64::MAX);
    store.put_key(k).await.unwrap();
    let mut l = log("r1", "big", "u", 1);
    l.total_tokens = u64::MAX;
    store.record(SpendEvent::Log(Arc::new(l)));
    assert_eq!(
        store.load_keys().await.unwrap()[0].tpm_limit,
        Some(i64::MAX.unsigned_abs())
    );
    assert_eq!(
        all_logs(&store).await[0].total_tokens,
        i64::MAX.unsigned_abs()
    );
    store.close().await.unwrap();
}
both!(counters_beyond_i64_are_clamped);

async fn alias_must_be_unique(place: Place) {
    let store = place.open().await;
    store.put_key(key("t1", Some("shared"))).await.unwrap();

    let err = store.put_key(key("t2", Some("shared"))).await.unwrap_err();
    assert!(err.to_string().contains("already taken"), "{err}");
    assert_eq!(
        err.downcast_ref::<AliasTaken>(),
        Some(&AliasTaken("shared".to_owned()))
    );
    assert_eq!(store.load_keys().await.unwrap().len(), 1, "nothing written");

    // The same key keeps its own alias; keys without aliases do not collide.
    store.put_key(key("t1", Some("shared"))).await.unwrap();
    store.put_key(bare_key("t3")).await.unwrap();
    store.put_key(bare_key("t4")).await.unwrap();

    // Regeneration keeps the alias of the key it replaces, but cannot take another's.
    store
        .replace_key("t1".to_owned(), key("t5", Some("shared")))
        .await
        .unwrap();
    let err = store
        .replace_key("t3".to_owned(), key("t6", Some("shared")))
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<AliasTaken>().is_some(), "{err}");
    let tokens: Vec<_> = store
        .load_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.token)
        .collect();
    assert_eq!(
        tokens,
        vec!["t5", "t3", "t4"],
        "the failed replace deleted nothing"
    );
    store.close().await.unwrap();
}
both!(alias_must_be_unique);

async fn recorded_spend_survives_reopen(place: Place) {
    let store = place.open().await;
    store.put_key(bare_key("k1")).await.unwrap();
    let first = log("r1", "k1", "bob", 1_000);
    store.record(SpendEvent::Log(Arc::new(first.clone())));
    store.record(charge("k1", 0.5));
    store.record(charge("k1", 0.25));
    store.record(charge("deleted-key", 9.0));
    store.record(SpendEvent::KeyReset {
        token: "k1".to_owned(),
        from: 1,
        to: Some(2),
    });
    store.flush().await.unwrap();
    assert_eq!(all_logs(&store).await, vec![first.clone()]);
    store.close().await.unwrap();

    let store = place.open().await;
    assert_eq!(all_logs(&store).await, vec![first]);
    let keys = store.load_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "a charge of an unknown key inserts nothing");
    assert_eq!(keys[0].spend, 0.75, "charges add up");
    assert_eq!(
        keys[0].budget_reset_at, None,
        "a reset of a window that is not the stored one does nothing"
    );
    assert_eq!(keys[0].model_spend, window("gpt-4o", 0.75, 1_700_000_999));
    store.close().await.unwrap();
}
both!(recorded_spend_survives_reopen);

async fn duplicate_request_id_replaces_the_row(place: Place) {
    let store = place.open().await;
    store.record(SpendEvent::Log(Arc::new(log("r1", "k", "u", 1))));
    store.flush().await.unwrap();
    let mut again = log("r1", "k", "u", 2);
    again.status = "failure".to_owned();
    again.messages = None;
    again.response = None;
    store.record(SpendEvent::Log(Arc::new(again.clone())));
    store.record(SpendEvent::Log(Arc::new(log("r2", "k", "u", 3))));
    store.flush().await.unwrap();
    let logs = all_logs(&store).await;
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[1], again);
    store.close().await.unwrap();
}
both!(duplicate_request_id_replaces_the_row);

async fn close_drains_every_queued_event(place: Place) {
    let store = place.open().await;
    store.put_key(bare_key("k1")).await.unwrap();
    const N: i64 = 5_000;
    for i in 0..N {
        store.record(SpendEvent::Log(Arc::new(log(
            &format!("r{i:05}"),
            "k1",
            "u",
            i,
        ))));
        store.record(charge("k1", 0.5));
    }
    store.close().await.unwrap();
    // Idempotent; afterwards record is a no-op and calls fail.
    store.close().await.unwrap();
    store.record(SpendEvent::Log(Arc::new(log("late", "k1", "u", 0))));
    assert!(store.flush().await.is_err());
    assert!(store.load_keys().await.is_err());

    let store = place.open().await;
    let logs = all_logs(&store).await;
    assert_eq!(logs.len(), usize::try_from(N).unwrap());
    assert_eq!(logs[0].request_id, format!("r{:05}", N - 1));
    #[expect(clippy::cast_precision_loss, reason = "small test numbers")]
    let total = N as f64 * 0.5;
    assert_eq!(store.load_keys().await.unwrap()[0].spend, total);
    store.close().await.unwrap();
}
both!(close_drains_every_queued_event);

async fn concurrent_close_calls_all_wait(place: Place) {
    let store = place.open().await;
    for i in 0..2_000 {
        store.record(SpendEvent::Log(Arc::new(log(
            &format!("r{i}"),
            "k",
            "u",
            i,
        ))));
    }
    let other = store.clone();
    let (a, b) = tokio::join!(store.close(), other.close());
    a.unwrap();
    b.unwrap();
    // Both returned only after the drain: the database holds everything.
    let store = place.open().await;
    let n = store.count_logs(SpendQuery::default()).await.unwrap();
    assert_eq!(n, 2_000);
    store.close().await.unwrap();
}
both!(concurrent_close_calls_all_wait);

async fn charges_and_admin_changes_do_not_clobber_each_other(place: Place) {
    let store = place.open().await;
    store.put_key(key("k1", Some("a"))).await.unwrap();
    // key() starts at 1.25 spent.

    // An admin update of other columns, then a charge: both kept.
    let mut updated = key("k1", Some("a"));
    updated.max_budget = Some(99.0);
    updated.blocked = false;
    updated.spend = 7.0;
    store.put_key(updated.clone()).await.unwrap();
    store.record(charge("k1", 3.0));
    store.flush().await.unwrap();
    let keys = store.load_keys().await.unwrap();
    assert_eq!(keys[0].max_budget, Some(99.0));
    assert_eq!(
        keys[0].spend, 4.25,
        "a settings write keeps the stored spend (another instance's charges are in it)"
    );

    // A charge queued before an admin's spend is applied before it.
    store.record(charge("k1", 4.0));
    let mut again = updated.clone();
    again.max_budget = Some(100.0);
    again.spend = 4.5;
    let overwrite = Overwrite {
        spend: true,
        model_spend: false,
    };
    store.put_key_with(again, overwrite).await.unwrap();

    let keys = store.load_keys().await.unwrap();
    assert_eq!(keys[0].max_budget, Some(100.0));
    assert_eq!(keys[0].spend, 4.5);

    store.record(charge("k1", 0.5));
    store.close().await.unwrap();
    let store = place.open().await;
    let k = &store.load_keys().await.unwrap()[0];
    assert_eq!(k.max_budget, Some(100.0));
    assert!(!k.blocked);
    assert_eq!(k.key_alias.as_deref(), Some("a"));
    assert_eq!(k.spend, 5.0);
    store.close().await.unwrap();
}
both!(charges_and_admin_changes_do_not_clobber_each_other);

async fn query_filters_and_order(place: Place) {
    let store = place.open().await;
    let rows = [
        log("a", "k1", "alice", 100),
        log("b", "k1", "bob", 200),
        log("c", "k2", "alice", 200),
        log("d", "k2", "bob", 300),
        log("e", "k1", "alice", 400),
    ];
    for row in &rows {
        store.record(SpendEvent::Log(Arc::new(row.clone())));
    }
    let ids = |logs: Vec<SpendLog>| logs.into_iter().map(|l| l.request_id).collect::<Vec<_>>();
    let q = |f: fn(&mut SpendQuery)| {
        let mut q = SpendQuery::default();
        f(&mut q);
        q
    };
    // No flush: a read sees what was recorded before it.
    assert_eq!(ids(all_logs(&store).await), ["e", "d", "c", "b", "a"]);
    let cases: [(SpendQuery, &[&str]); 9] = [
        (q(|q| q.api_key = Some("k1".into())), &["e", "b", "a"]),
        (q(|q| q.request_id = Some("c".into())), &["c"]),
        (q(|q| q.request_id = Some("zzz".into())), &[]),
        (q(|q| q.user = Some("alice".into())), &["e", "c", "a"]),
        (q(|q| q.start_ms = Some(200)), &["e", "d", "c", "b"]),
        (q(|q| q.end_ms = Some(300)), &["c", "b", "a"]),
        (
            q(|q| {
                q.start_ms = Some(200);
                q.end_ms = Some(400);
                q.user = Some("bob".into());
            }),
            &["d", "b"],
        ),
        (q(|q| q.limit = 2), &["e", "d"]),
        (
            q(|q| {
                q.api_key = Some("k2".into());
                q.limit = 1;
            }),
            &["d"],
        ),
    ];
    for (query, expected) in cases {
        let got = ids(store.query_logs(query.clone()).await.unwrap());
        assert_eq!(got, expected, "{query:?}");
    }
    store.close().await.unwrap();
}
both!(query_filters_and_order);

#[tokio::test]
async fn failed_commit_keeps_events_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Store::open(&path).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON llmgate_spend_logs
             BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END;",
        )
        .unwrap();
    store.record(SpendEvent::Log(Arc::new(log("r1", "k", "u", 1))));
    let err = store.flush().await.unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");

    other.execute_batch("DROP TRIGGER fail").unwrap();
    store.record(SpendEvent::Log(Arc::new(log("r2", "k", "u", 2))));
    store.flush().await.unwrap();
    assert_eq!(
        ids_of(&store).await,
        ["r2", "r1"],
        "the failed event was kept and retried"
    );
    store.close().await.unwrap();
}

async fn ids_of(store: &Store) -> Vec<String> {
    all_logs(store)
        .await
        .into_iter()
        .map(|l| l.request_id)
        .collect()
}

#[tokio::test]
async fn garbage_file_fails_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db.db");
    std::fs::write(
        &path,
        b"this is not an SQLite database, just some text\n".repeat(100),
    )
    .unwrap();
    let err = format!("{:#}", Store::open(&path).unwrap_err());
    assert!(err.contains(&path.display().to_string()), "{err}");

    // A folder where the file should be fails the same way.
    let err = format!("{:#}", Store::open(dir.path()).unwrap_err());
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn default_path_order() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let config_dir = Some(Path::new("/etc/llmgate"));
    assert_eq!(
        default_path_from(env(&[("LLMGATE_DB", "/x/y.db")]), config_dir),
        Path::new("/x/y.db")
    );
    assert_eq!(
        default_path_from(
            env(&[("LLMGATE_DB", ""), ("XDG_DATA_HOME", "/d"), ("HOME", "/h")]),
            config_dir
        ),
        Path::new("/etc/llmgate/llmgate.db"),
        "next to the config, not in a folder every run shares"
    );
    assert_eq!(
        default_path_from(env(&[("HOME", "/h")]), None),
        Path::new("llmgate.db")
    );
    assert_eq!(
        default_path_from(env(&[]), Some(Path::new(""))),
        Path::new("llmgate.db"),
        "a config given as a bare file name: the working directory"
    );
}

async fn aggregates_sum_per_day_team_and_tag(place: Place) {
    let store = place.open().await;
    let mut red = key("k-red", Some("red"));
    red.team_id = Some("team-red".into());
    store.put_key(red).await.unwrap();
    const DAY: i64 = 86_400_000;
    let day1 = 1_700_006_400_000; // 2023-11-15T00:00:00Z
    let mut rows = vec![
        log("a", "k-red", "u", day1 + 1),
        log("b", "k-red", "u", day1 + DAY - 1),
        log("c", "k-gone", "u", day1 + DAY),
    ];
    rows[1].spend = 0.5;
    rows[2].status = "failure".into();
    rows[2].request_tags = vec!["prod".into()];
    for r in rows {
        store.record(SpendEvent::Log(Arc::new(r)));
    }
    let sums = |group_by, start_ms, end_ms| {
        let q = SpendAggregate {
            group_by,
            start_ms,
            end_ms,
            ..SpendAggregate::default()
        };
        store.aggregate(q)
    };
    let days = sums(vec![SpendGroup::Day], None, None).await.unwrap();
    let days: Vec<_> = days
        .iter()
        .map(|t| (t.groups[0].as_str(), t.requests, t.failed_requests))
        .collect();
    assert_eq!(days, [("2023-11-15", 2, 0), ("2023-11-16", 1, 1)]);
    let teams = sums(vec![SpendGroup::Team], None, None).await.unwrap();
    assert_eq!(teams[0].groups, ["Unassigned Team"]);
    assert_eq!(
        (teams[1].groups[0].as_str(), teams[1].spend),
        ("team-red", 0.5 + 0.000_123_456_789)
    );
    // The second day only: one row, with one tag.
    let tags = sums(
        vec![SpendGroup::Tag],
        Some(day1 + DAY),
        Some(day1 + 2 * DAY),
    )
    .await
    .unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0].groups[0].as_str(), tags[0].requests), ("prod", 1));
    let keys = sums(vec![SpendGroup::ApiKey], Some(day1), Some(day1 + DAY))
        .await
        .unwrap();
    assert_eq!(
        (keys.len(), keys[0].key_alias.as_deref(), keys[0].requests),
        (1, Some("red"), 2)
    );
    store.close().await.unwrap();
}
both!(aggregates_sum_per_day_team_and_tag);

/// Two instances opening one new PostgreSQL database at once: each migration is applied
/// once (the advisory lock), and both work.
#[tokio::test]
async fn postgres_concurrent_opens_migrate_once() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let wait = Duration::from_secs(5);
    let (a, b, c) = tokio::join!(
        Store::open_postgres(&url, wait),
        Store::open_postgres(&url, wait),
        Store::open_postgres(&url, wait)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.put_key(bare_key("from-a")).await.unwrap();
    assert_eq!(b.load_keys().await.unwrap().len(), 1, "one database");
    for s in [a, b, c] {
        s.close().await.unwrap();
    }
    let (client, conn) = tokio_postgres::connect(&url.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0), COUNT(*) FROM llmgate_schema_version",
            &[],
        )
        .await
        .unwrap();
    let (version, rows): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(version, i64::try_from(schema::LATEST).unwrap());
    assert_eq!(rows, version, "one row per migration, none applied twice");
    drop(client);
    let _ = task.await;
}

/// A failed commit on PostgreSQL (a trigger refuses rows) keeps the events; once the
/// trigger is gone they are written with the next batch.
#[tokio::test]
async fn postgres_failed_commit_keeps_events_and_retries() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let store = Store::open_postgres(&url, Duration::from_secs(5))
        .await
        .unwrap();
    admin_sql(
        &url.url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$;
         CREATE TRIGGER fail BEFORE INSERT ON llmgate_spend_logs
             FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await;
    store.record(SpendEvent::Log(Arc::new(log("r1", "k", "u", 1))));
    let err = format!("{:#}", store.flush().await.unwrap_err());
    assert!(err.contains("disk full"), "{err}");

    admin_sql(&url.url, "DROP TRIGGER fail ON llmgate_spend_logs").await;
    store.record(SpendEvent::Log(Arc::new(log("r2", "k", "u", 2))));
    store.flush().await.unwrap();
    assert_eq!(
        ids_of(&store).await,
        ["r2", "r1"],
        "the failed event was kept"
    );
    store.close().await.unwrap();
}

/// Nothing listens: opening waits up to the bound, then fails naming host, port and
/// database, without the password.
#[tokio::test]
async fn postgres_unreachable_fails_after_the_wait_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = PgUrl::parse(&format!(
        "postgresql://llmgate:hunter2secret@127.0.0.1:{port}/keys?sslmode=disable"
    ))
    .unwrap();
    assert_eq!(
        url.to_string(),
        format!("postgresql://llmgate@127.0.0.1:{port}/keys")
    );
    assert!(!format!("{url:?}").contains("hunter2"));
    let started = std::time::Instant::now();
    let err = Store::open_postgres(&url, Duration::from_secs(1))
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(started.elapsed() >= Duration::from_millis(700), "it waited");
    assert!(err.contains(&format!("127.0.0.1:{port}/keys")), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn postgres_urls_are_checked_and_shown_without_password() {
    let shown = |u: &str| PgUrl::parse(u).map(|u| u.to_string());
    assert_eq!(
        shown("postgres://u:p%40ss@db.internal/llm").unwrap(),
        "postgresql://u@db.internal:5432/llm"
    );
    assert_eq!(
        shown("postgresql://u@h:6000").unwrap(),
        "postgresql://u@h:6000/u"
    );
    // TLS settings are read (and taken out of what the driver parses).
    assert_eq!(
        shown("postgresql://u:topsecret@h/db?sslmode=require&connect_timeout=3").unwrap(),
        "postgresql://u@h:5432/db"
    );
    let err = shown("postgresql://u:topsecret@h/db?sslmode=allow").unwrap_err();
    assert!(err.contains("sslmode=allow"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
    let err = shown("postgresql://u:topsecret@h:notaport/db").unwrap_err();
    assert!(!err.contains("topsecret"), "{err}");
    assert!(PgUrl::is_postgres("postgres://x") && PgUrl::is_postgres("postgresql://x"));
    assert!(!PgUrl::is_postgres("sqlite:///x.db"));
}

/// The leased budget of key `token` as stored: `(spend, leased, leases' usd summed)`.
async fn leased(url: &PgUrl, token: &str) -> (f64, f64, f64) {
    let (client, conn) = tokio_postgres::connect(&url.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT spend, leased, (SELECT COALESCE(SUM(usd), 0) FROM llmgate_key_leases
             WHERE token = $1) FROM llmgate_verification_tokens WHERE token = $1",
            &[&token],
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    (row.get(0), row.get(1), row.get(2))
}

fn ask(id: &str, need: f64, chunk: f64, ttl: Duration) -> Ask {
    Ask {
        token: "k1".to_owned(),
        id: id.to_owned(),
        need,
        idle: 0.0,
        chunk,
        strict: false,
        now: 1_700_000_000,
        next_reset: None,
        ttl,
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Two instances lease one key's budget: grants stop once `spend + leased` reaches the
/// budget, a charge moves what its lease paid into `spend`, a release and an expiry give
/// the rest back.
#[tokio::test]
async fn leases_split_a_budget_and_come_back() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let store = Store::open_postgres(&url, Duration::from_secs(5))
        .await
        .unwrap();
    let mut k = bare_key("k1");
    k.max_budget = Some(1.0);
    store.put_key(k).await.unwrap();
    let leases = store.leases().expect("PostgreSQL leases budgets").clone();
    let long = Duration::from_secs(60);

    // A: the need (0.1) and up to a quarter of what is left beyond it, capped by the chunk.
    let a = leases
        .grant(ask("a/1", 0.1, 10.0, long))
        .await
        .unwrap()
        .unwrap();
    assert!(near(a.usd, 0.25) && a.fresh, "{a:?}");
    let b = leases
        .grant(ask("b/1", 0.1, 10.0, long))
        .await
        .unwrap()
        .unwrap();
    assert!(
        near(b.usd, 0.1875) && b.fresh && near(b.leased, 0.4375),
        "{b:?}"
    );
    let again = leases
        .grant(ask("a/1", 0.1, 0.1, long))
        .await
        .unwrap()
        .unwrap();
    assert!(
        near(again.usd, 0.1) && !again.fresh,
        "a top-up adds to the lease: {again:?}"
    );
    assert!(near(leased(&url, "k1").await.1, 0.5375));

    // A request paid 0.2 from A's lease, one cost 0.05 more than A's lease paid.
    for (cost, paid) in [(0.2, 0.2), (0.3, 0.15)] {
        store.record(SpendEvent::KeyCharge(Charge {
            token: "k1".to_owned(),
            cost,
            lease: Some(Taken {
                id: "a/1".to_owned(),
                usd: paid,
            }),
            model: None,
        }));
    }
    store.flush().await.unwrap();
    let (spend, held, rows) = leased(&url, "k1").await;
    assert!(
        near(spend, 0.5) && near(held, 0.1875) && near(rows, 0.1875),
        "{spend} {held} {rows}"
    );

    // Grants go on until spend + leased reaches the budget; the one that crosses it is
    // the need alone (reserve), and after it nothing is granted.
    let c = leases
        .grant(ask("c/1", 0.4, 0.4, long))
        .await
        .unwrap()
        .unwrap();
    assert!(near(c.usd, 0.4), "{c:?}");
    let refused = leases
        .grant(ask("c/1", 0.1, 0.1, long))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refused.usd, 0.0, "{refused:?}");
    assert!(near(refused.spend + refused.leased, 1.0875));

    // B gives its lease back; C's expires (it is never renewed) and is reclaimed when A
    // renews; A's own lease is kept.
    leases.release(vec!["b/1".to_owned()]).await.unwrap();
    let short = leases
        .grant(ask("c/2", 0.01, 0.01, Duration::from_millis(1)))
        .await;
    assert!(short.unwrap().unwrap().usd > 0.0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let held_by_a = leases.renew(vec!["a/1".to_owned()], long).await.unwrap();
    assert!(
        held_by_a.contains("a/1") && held_by_a.len() == 1,
        "{held_by_a:?}"
    );
    let (spend, held, rows) = leased(&url, "k1").await;
    assert!(
        near(spend, 0.5) && near(held, 0.4) && near(rows, 0.4),
        "C's second lease reclaimed: {spend} {held} {rows}"
    );
    let held_by_c = leases
        .renew(vec!["c/1".to_owned(), "c/2".to_owned()], long)
        .await;
    assert_eq!(
        held_by_c.unwrap(),
        ["c/1".to_owned()].into(),
        "C's first lease is renewed by C; its reclaimed one is gone"
    );

    // A deleted key takes its leases with it; a grant for it answers None.
    store.delete_keys(vec!["k1".to_owned()]).await.unwrap();
    assert_eq!(
        leases.grant(ask("a/1", 0.1, 0.1, long)).await.unwrap(),
        None
    );
    store.close().await.unwrap();
}

/// What a [`KeySink`] was handed, in order.
#[derive(Debug, Clone, PartialEq)]
enum Heard {
    All(Vec<String>),
    Key(String, bool, Option<String>),
}

/// A sink that writes down what the key listener hands it.
#[derive(Default)]
struct Recorder {
    admin: tokio::sync::Mutex<()>,
    heard: Mutex<Vec<Heard>>,
}

impl KeySink for Recorder {
    fn admin_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.admin
    }

    fn apply_key(&self, token: &str, rec: Option<KeyRecord>, replaced: Option<&str>) {
        let heard = Heard::Key(token.to_owned(), rec.is_some(), replaced.map(str::to_owned));
        self.heard.lock().unwrap().push(heard);
    }

    fn apply_all(&self, recs: Vec<KeyRecord>) {
        let tokens = recs.into_iter().map(|r| r.token).collect();
        self.heard.lock().unwrap().push(Heard::All(tokens));
    }
}

impl Recorder {
    /// Waits (up to 10 s) until `n` things were handed over; all of them.
    async fn heard(&self, n: usize) -> Vec<Heard> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let heard = self.heard.lock().unwrap().clone();
            if heard.len() >= n || std::time::Instant::now() > deadline {
                return heard;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn the_key_listener_hands_over_each_committed_key_change_of_another_store() {
    let Some(place) = Place::postgres().await else {
        return;
    };
    let (writer, reader) = (place.open().await, place.open().await);
    let sink = Arc::new(Recorder::default());
    reader
        .listen_keys(sink.clone(), Duration::from_secs(3600))
        .unwrap();
    // The resync after connecting comes first.
    assert_eq!(sink.heard(1).await, vec![Heard::All(vec![])]);
    writer.put_key(key("tok-one", Some("a"))).await.unwrap();
    // Refused before it writes (the alias is taken): nothing is announced.
    let err = writer.put_key(key("tok-two", Some("a"))).await.unwrap_err();
    assert!(err.downcast_ref::<AliasTaken>().is_some(), "{err:#}");
    writer
        .replace_key("tok-one".into(), key("tok-new", Some("a")))
        .await
        .unwrap();
    writer.delete_keys(vec!["tok-new".into()]).await.unwrap();
    let heard = |t: &str, found, replaced: Option<&str>| {
        Heard::Key(t.to_owned(), found, replaced.map(str::to_owned))
    };
    assert_eq!(
        sink.heard(5).await[1..],
        [
            heard("tok-one", true, None),
            heard("tok-new", true, Some("tok-one")),
            heard("tok-one", false, None),
            heard("tok-new", false, None),
        ]
    );
    reader.close().await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test]
async fn listening_on_sqlite_is_nothing_to_do() {
    let place = Place::sqlite();
    let store = place.open().await;
    let sink = Arc::new(Recorder::default());
    store
        .listen_keys(sink.clone(), Duration::from_secs(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sink.heard.lock().unwrap().is_empty());
    store.close().await.unwrap();
}
