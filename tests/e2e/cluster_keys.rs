//! Key changes across instances: three gateways on one PostgreSQL database. A key
//! generated, updated, blocked, unblocked, regenerated or deleted through one instance
//! takes effect on the others within a second (LISTEN/NOTIFY), with the key resync as
//! backstop: a row changed without a notification is caught up after the listening
//! connection is cut (the resync after every reconnect) and by the periodic resync
//! (`llmgate.key_resync_seconds`). Needs the server `LLMGATE_TEST_POSTGRES` names (skipped,
//! saying so, on the SQLite pass).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::support::admin::{generate, hash, info, update};
use crate::support::http::post;
use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Spec, postgres};

const MASTER: &str = "sk-master-cluster-keys";
/// A generous deadline for a change made through one instance to hold on every other: the
/// issue's target is a second (measured and printed: 12–150 ms here), but a test on a busy
/// machine asserts behaviour, not speed. The periodic resync is set to an hour in these
/// tests, so only a notification can be this fast.
const PROPAGATION: Duration = Duration::from_secs(10);

fn skip() -> bool {
    let off = !postgres::active();
    if off {
        eprintln!(
            "skipped: key propagation needs PostgreSQL (LLMGATE_TEST_POSTGRES; scripts/test.sh runs the suite on it too)"
        );
    }
    off
}

/// Two model groups of the mock, the master key and the resync interval.
fn config(mock: &str, resync_secs: u64) -> String {
    Config::new()
        .deployment(
            Deployment::openai("gpt", "mock-gpt", mock).prices(0.000_976_562_5, 0.001_953_125),
        )
        .deployment(Deployment::openai("other", "mock-other", mock))
        .master_key(MASTER)
        .llmgate_setting("key_resync_seconds", resync_secs)
        .yaml()
}

/// `n` gateways on the database `db`.
fn cluster(n: usize, config: &str, db: &str) -> Vec<Gateway> {
    (0..n)
        .map(|_| {
            Gateway::start_spec(Spec {
                config,
                env: &[("DATABASE_URL", db)],
                ..Spec::default()
            })
        })
        .collect()
}

/// A chat request with `key` for `model` on `gw`: its status and body.
async fn ask(gw: &Gateway, key: &str, model: &str) -> (u16, String) {
    let body =
        json!({"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(gw, "/v1/chat/completions", Some(key), &body).await;
    (r.status, r.text)
}

/// Polls every gateway in `gws` until `key` on `model` answers `want` (and, when given, a
/// body with `says`), failing if any takes longer than `bound` from `since`. Returns the
/// longest time it took.
async fn holds_within(
    what: &str,
    gws: &[&Gateway],
    key: &str,
    model: &str,
    (want, says): (u16, Option<&str>),
    since: Instant,
    bound: Duration,
) -> Duration {
    let mut longest = Duration::ZERO;
    for (i, gw) in gws.iter().enumerate() {
        loop {
            let (status, text) = ask(gw, key, model).await;
            if status == want && says.is_none_or(|s| text.contains(s)) {
                break;
            }
            assert!(
                since.elapsed() < bound,
                "{what}: instance {i} still answers {status} after {:?} (want {want}): {text}",
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        longest = longest.max(since.elapsed());
    }
    assert!(longest < bound, "{what}: took {longest:?}");
    eprintln!("{what}: held everywhere after {longest:?}");
    longest
}

/// An admin call on `gw` that must succeed; its answer and when it returned.
async fn admin(gw: &Gateway, path: &str, body: Value) -> (Value, Instant) {
    let r = post(gw, path, Some(MASTER), &body).await;
    assert_eq!(r.status, 200, "{path} {body}: {}", r.text);
    (r.json(), Instant::now())
}

/// A client of the test database, for changes the gateways are not told about.
async fn sql(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Sets `blocked` on a key's row directly: no notification is sent.
async fn block_by_hand(db: &tokio_postgres::Client, key: &str, blocked: bool) {
    let n = db
        .execute(
            "UPDATE llmgate_verification_tokens SET blocked = $2 WHERE token = $1",
            &[&hash(key), &i32::from(blocked)],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

const OK: (u16, Option<&str>) = (200, None);
const REFUSED_KEY: (u16, Option<&str>) = (401, None);

#[tokio::test(flavor = "multi_thread")]
async fn key_changes_on_one_instance_hold_on_the_others_within_a_second() {
    if skip() {
        return;
    }
    let m = mock().await;
    let db = postgres::fresh_database().unwrap();
    // No periodic resync during the test: only the notifications can be this fast.
    let gws = cluster(3, &config(&m.url(), 3600), &db);
    let (a, b, c) = (&gws[0], &gws[1], &gws[2]);

    // Generated on A: served by B and C.
    let (v, at) = admin(a, "/key/generate", json!({"key_alias": "roaming"})).await;
    let key = v["key"].as_str().unwrap().to_string();
    holds_within("generate on A", &[b, c], &key, "gpt", OK, at, PROPAGATION).await;

    // Updated on B (models, then max_budget): refused on A and C.
    let (_, at) = admin(b, "/key/update", json!({"key": key, "models": ["other"]})).await;
    let forbidden = (403, Some("not allowed to access model `gpt`"));
    holds_within(
        "models on B",
        &[a, c],
        &key,
        "gpt",
        forbidden,
        at,
        PROPAGATION,
    )
    .await;
    assert_eq!(ask(a, &key, "other").await.0, 200);
    let (_, at) = admin(
        b,
        "/key/update",
        json!({"key": key, "models": [], "max_budget": 0}),
    )
    .await;
    let over = (400, Some("Budget has been exceeded"));
    holds_within(
        "max_budget on B",
        &[a, c],
        &key,
        "gpt",
        over,
        at,
        PROPAGATION,
    )
    .await;
    let (_, at) = admin(b, "/key/update", json!({"key": key, "max_budget": null})).await;
    holds_within(
        "max_budget lifted on B",
        &[a, c],
        &key,
        "gpt",
        OK,
        at,
        PROPAGATION,
    )
    .await;

    // Blocked on C: 401 on A and B; unblocked: served again.
    let (_, at) = admin(c, "/key/block", json!({"key": key})).await;
    let blocked = (401, Some("is blocked"));
    holds_within("block on C", &[a, b], &key, "gpt", blocked, at, PROPAGATION).await;
    let (_, at) = admin(c, "/key/unblock", json!({"key": key})).await;
    holds_within("unblock on C", &[a, b], &key, "gpt", OK, at, PROPAGATION).await;

    // Regenerated on A: the old key is refused and the new one served on B and C, with
    // the settings and spend the key had.
    let (v, at) = admin(a, &format!("/key/{key}/regenerate"), json!({})).await;
    let new = v["key"].as_str().unwrap().to_string();
    holds_within(
        "regenerate on A (old)",
        &[b, c],
        &key,
        "gpt",
        REFUSED_KEY,
        at,
        PROPAGATION,
    )
    .await;
    holds_within(
        "regenerate on A (new)",
        &[b, c],
        &new,
        "gpt",
        OK,
        at,
        PROPAGATION,
    )
    .await;
    let shown = info(c, MASTER, &new).await;
    assert_eq!(shown["key_alias"], "roaming", "{shown}");
    assert!(shown["spend"].as_f64().unwrap() > 0.0, "{shown}");

    // Deleted on B: 401 on A and C.
    let (_, at) = admin(b, "/key/delete", json!({"keys": [new]})).await;
    holds_within(
        "delete on B",
        &[a, c],
        &new,
        "gpt",
        REFUSED_KEY,
        at,
        PROPAGATION,
    )
    .await;

    // The backstop: a row changed by hand sends no notification; cutting the listening
    // connections makes each instance reconnect and resync every key.
    let (other, _) = generate(a, MASTER, json!({})).await;
    holds_within(
        "second key",
        &[b, c],
        &other,
        "gpt",
        OK,
        Instant::now(),
        PROPAGATION,
    )
    .await;
    let pg = sql(&db).await;
    block_by_hand(&pg, &other, true).await;
    assert_eq!(
        ask(b, &other, "gpt").await.0,
        200,
        "no notification, no resync yet"
    );
    let cut = pg
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'llmgate-keys' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(cut, 3, "one listening connection per instance");
    let at = Instant::now();
    // Reconnecting waits 200 ms first; the resync follows the LISTEN.
    let resynced = Duration::from_secs(5);
    holds_within(
        "resync after reconnect",
        &[a, b, c],
        &other,
        "gpt",
        blocked,
        at,
        resynced,
    )
    .await;
    for gw in [a, b, c] {
        let logs = gw.logs_once(
            "key changes from other instances resumed",
            Duration::from_secs(5),
        );
        assert!(
            logs.contains("key changes from other instances resumed"),
            "{logs}"
        );
        assert_eq!(
            logs.matches("key changes from other instances paused")
                .count(),
            1,
            "logged once per outage: {logs}"
        );
        assert!(!logs.contains(MASTER), "{logs}");
    }
    // Listening again: an admin change is as fast as before.
    let (_, at) = admin(a, "/key/unblock", json!({"key": other})).await;
    holds_within(
        "unblock after reconnect",
        &[b, c],
        &other,
        "gpt",
        OK,
        at,
        PROPAGATION,
    )
    .await;
    // A change this instance made itself comes back as a notification and changes
    // nothing: A's spend (ahead of what it has written) never goes back (it may go up:
    // the other instances' charges to the key are in the database's).
    assert_eq!(ask(a, &other, "gpt").await.0, 200);
    let spend = |v: &Value| v["spend"].as_f64().unwrap();
    let before = spend(&info(a, MASTER, &other).await);
    assert!(before > 0.0);
    update(a, MASTER, json!({"key": other, "metadata": {"team": "x"}})).await;
    let deadline = Instant::now() + PROPAGATION;
    while info(b, MASTER, &other).await["metadata"]["team"] != "x" {
        assert!(Instant::now() < deadline, "metadata never reached B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = info(a, MASTER, &other).await;
    assert_eq!(after["metadata"]["team"], "x", "{after}");
    assert!(spend(&after) >= before, "{before} then {after}");
    assert_eq!(ask(a, &other, "gpt").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_periodic_resync_catches_a_row_changed_without_a_notification() {
    if skip() {
        return;
    }
    let m = mock().await;
    let db = postgres::fresh_database().unwrap();
    let gws = cluster(2, &config(&m.url(), 1), &db);
    let (a, b) = (&gws[0], &gws[1]);
    let (key, _) = generate(a, MASTER, json!({})).await;
    holds_within(
        "generate on A",
        &[b],
        &key,
        "gpt",
        OK,
        Instant::now(),
        PROPAGATION,
    )
    .await;
    let pg = sql(&db).await;
    // Resync every second: a hand-made change (no notification) holds everywhere; the
    // deadline is generous, the time is printed.
    let resync = Duration::from_secs(15);
    block_by_hand(&pg, &key, true).await;
    let blocked = (401, Some("is blocked"));
    holds_within(
        "blocked by hand",
        &[a, b],
        &key,
        "gpt",
        blocked,
        Instant::now(),
        resync,
    )
    .await;
    block_by_hand(&pg, &key, false).await;
    holds_within(
        "unblocked by hand",
        &[a, b],
        &key,
        "gpt",
        OK,
        Instant::now(),
        resync,
    )
    .await;
    let n = pg
        .execute(
            "DELETE FROM llmgate_verification_tokens WHERE token = $1",
            &[&hash(&key)],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    holds_within(
        "deleted by hand",
        &[a, b],
        &key,
        "gpt",
        REFUSED_KEY,
        Instant::now(),
        resync,
    )
    .await;
}
