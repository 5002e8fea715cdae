//! Three gateways on one PostgreSQL database hold one key's budget as one gateway would
//! (budget leases: ARCHITECTURE.md, "Budgets across instances"). On the server
//! `LLMGATE_TEST_POSTGRES` names; skipped with a printed reason without one (scripts/test.sh
//! runs the e2e suite a second time on PostgreSQL).
//!
//! - 1,000 concurrent requests spread over the three, half streamed, some clients gone
//!   before the answer: the key's spend is the sum of its spend-log rows, below the
//!   documented bound (`max_budget` + one request's reservation), and once the gateways
//!   stop no lease holds anything.
//! - `kill -9` one of them under load: the others go on serving, and the dead one's leases
//!   are reclaimed within their lifetime.
//! - PostgreSQL away (a TCP hop cut): requests go on within the leases held, keys without a
//!   budget are served from memory, a key that needs a new lease gets 503 (never 401), and
//!   once the database is back nothing queued meanwhile is lost.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::budgets::storm_body;
use super::postgres::{server_port, skip};
use super::*;
use crate::support::postgres;

const REQUESTS: usize = 1000;
/// Lease lifetime of the gateways here (`llmgate.budget_lease_seconds`).
const LEASE_SECS: u64 = 2;
/// A generous deadline for a key change to reach the other instances (the target is a
/// second; `cluster_keys.rs` prints the times): notifications only, the resync is an hour.
const PROPAGATION: Duration = Duration::from_secs(10);

/// `n` gateways on the database `db`, with short leases.
fn gateways(m: &MockServer, db: &str, n: usize) -> Vec<Gateway> {
    let cfg = config(&m.url())
        .llmgate_setting("budget_lease_seconds", LEASE_SECS)
        .yaml();
    let env = [("DATABASE_URL", db)];
    (0..n)
        .map(|_| {
            Gateway::start_spec(Spec {
                config: &cfg,
                plugins: PLUGINS,
                env: &env,
                ..Spec::default()
            })
        })
        .collect()
}

/// What the database holds for key `token`.
#[derive(Debug)]
struct Stored {
    spend: f64,
    leased: f64,
    lease_rows: i64,
    logged: f64,
    log_rows: i64,
}

async fn stored(db: &str, token: &str) -> Stored {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT k.spend, k.leased,
                    (SELECT COUNT(*) FROM llmgate_key_leases WHERE token = $1),
                    (SELECT COALESCE(SUM(spend), 0) FROM llmgate_spend_logs WHERE api_key = $1),
                    (SELECT COUNT(*) FROM llmgate_spend_logs WHERE api_key = $1)
             FROM llmgate_verification_tokens AS k WHERE k.token = $1",
            &[&token],
        )
        .await
        .unwrap();
    drop(client);
    let _ = task.await;
    Stored {
        spend: row.get(0),
        leased: row.get(1),
        lease_rows: row.get(2),
        logged: row.get(3),
        log_rows: row.get(4),
    }
}

/// The leases of the gateway with process id `pid` (the instance part of a lease id is
/// `<host>-<pid>-<random>`).
async fn leases_of(db: &str, pid: u32) -> i64 {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM llmgate_key_leases WHERE instance LIKE $1",
            &[&format!("%-{pid}-%")],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let _ = task.await;
    n
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Answered with this status.
    Status(u16),
    /// The client went away first (on purpose).
    Left,
    /// No answer: the connection failed.
    Failed,
}

/// Request `i` of a storm on `url`: streamed when `i` is even; every tenth request's client
/// goes away early (before the answer, or after the first streamed bytes).
async fn one(c: &reqwest::Client, url: &str, key: &str, i: usize) -> End {
    let stream = i.is_multiple_of(2);
    let send = c
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&storm_body(stream))
        .send();
    let leave = i % 10 == 1 || i % 10 == 4;
    if leave && !stream {
        // Gone while the upstream is still thinking (it takes 800 ms).
        return match tokio::time::timeout(Duration::from_millis(300), send).await {
            Ok(Ok(r)) => End::Status(r.status().as_u16()),
            Ok(Err(_)) => End::Failed,
            Err(_) => End::Left,
        };
    }
    let Ok(mut r) = send.await else {
        return End::Failed;
    };
    let status = r.status().as_u16();
    if leave && status == 200 {
        // Gone after the first bytes of the stream.
        let _ = r.chunk().await;
        return End::Left;
    }
    match r.bytes().await {
        Ok(_) => End::Status(status),
        Err(_) => End::Failed,
    }
}

/// Three gateways on a fresh database and a key with a budget of `requests` requests.
struct Shared {
    db: String,
    _m: MockServer,
    gws: Vec<Gateway>,
    /// One request's worst case (its reservation).
    w: f64,
    budget: f64,
    key: String,
}

async fn shared_key(requests: f64) -> Shared {
    let db = postgres::fresh_database().unwrap();
    let m = keyed_mock().await;
    let mut gws = gateways(&m, &db, 1);
    let unit = chat(&gws[0], Some(MASTER), &storm_body(false)).await.cost();
    let w = worst_case(&storm_body(false)).max(worst_case(&storm_body(true)));
    let budget = requests * unit;
    let (key, _) = generate(&gws[0], MASTER, json!({"max_budget": budget})).await;
    // The other two start after the key exists (they load it from the database).
    gws.extend(gateways(&m, &db, 2));
    Shared {
        db,
        _m: m,
        gws,
        w,
        budget,
        key,
    }
}

fn count(ends: &[End], end: End) -> usize {
    ends.iter().filter(|e| **e == end).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_hold_one_budget_exactly() {
    if skip() {
        return;
    }
    // About 60 requests' worth: far fewer than the storm.
    let Shared {
        db,
        _m,
        mut gws,
        w,
        budget,
        key,
    } = shared_key(60.0).await;
    let urls: Vec<String> = gws.iter().map(|g| g.url.clone()).collect();

    let c = storm_client();
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let (c, url, key) = (c.clone(), urls[i % 3].clone(), key.clone());
            tokio::spawn(async move {
                // Starts spread over ~2 s, so admissions interleave with settlements.
                tokio::time::sleep(Duration::from_millis(((i * 7) % 1000) as u64 * 2)).await;
                one(&c, &url, &key, i).await
            })
        })
        .collect();
    let mut ends = Vec::new();
    for t in tasks {
        ends.push(t.await.unwrap());
    }
    let ok = count(&ends, End::Status(200));
    let (held, spent, left) = (
        count(&ends, End::Status(429)),
        count(&ends, End::Status(400)),
        count(&ends, End::Left),
    );
    eprintln!(
        "{REQUESTS} requests over 3 instances: {ok} answered, {left} clients gone, {held} held (429), {spent} budget exceeded (400); budget {budget}, worst case {w}"
    );
    assert_eq!(count(&ends, End::Failed), 0, "{ends:?}");
    assert_eq!(
        ok + held + spent + left,
        REQUESTS,
        "only 200, 429 and 400: {ends:?}"
    );
    assert!(ok > 10, "too few served to prove anything: {ok}");
    assert!(
        spent + held > 0,
        "the budget never ran out: the test proves nothing"
    );
    // Every instance served some (the budget is shared, not one instance's).
    for gw in &gws {
        let logs = gw.logs();
        assert!(
            logs.contains("budget lease grant"),
            "an instance never leased"
        );
    }

    // Graceful stops: every charge committed, every lease given back.
    for gw in &mut gws {
        let code = gw.stop_graceful(Duration::from_secs(30));
        assert_eq!(code.map(|s| s.success()), Some(true));
    }
    let s = stored(&db, &hash(&key)).await;
    eprintln!("stored: {s:?}");
    // The money adds up exactly (power-of-two prices: every sum is exact).
    assert_eq!(
        s.spend, s.logged,
        "key spend vs the sum of its spend-log rows"
    );
    assert!(
        s.log_rows >= i64::try_from(ok).unwrap(),
        "a row per answered request at least: {s:?}"
    );
    // The bound: at most one request's reservation over the budget, as on one instance.
    assert!(
        s.spend < budget + w,
        "overspent: {} >= budget {budget} + one worst case {w}",
        s.spend
    );
    assert!(
        s.spend >= budget - w,
        "the budget was not used: {} of {budget}",
        s.spend
    );
    // No reservation leaked.
    assert_eq!((s.leased, s.lease_rows), (0.0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instance_leases_come_back_while_the_others_serve() {
    if skip() {
        return;
    }
    let Shared {
        db,
        _m,
        mut gws,
        w,
        budget,
        key,
    } = shared_key(2000.0).await;
    let token = hash(&key);
    let urls: Vec<String> = gws.iter().map(|g| g.url.clone()).collect();

    // Load: 90 clients, 30 per instance, each sending one request after another for 6 s.
    let c = storm_client();
    let start = Instant::now();
    let load = Duration::from_secs(6);
    let workers: Vec<_> = (0..90)
        .map(|i| {
            let (c, url, key) = (c.clone(), urls[i % 3].clone(), key.clone());
            tokio::spawn(async move {
                let mut ends = Vec::new();
                let mut n = i;
                while start.elapsed() < load {
                    let end = one(&c, &url, &key, n).await;
                    ends.push((start.elapsed(), end));
                    n += 3;
                }
                (i % 3, ends)
            })
        })
        .collect();

    // Mid-load, B holds a lease; kill -9 it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = gws[1].pid();
    assert!(leases_of(&db, pid).await > 0, "B holds no lease under load");
    gws[1].signal("KILL");
    let killed = start.elapsed();
    let dead = Instant::now();
    // Its leases are reclaimed by the others' upkeep within their lifetime (+ a round).
    loop {
        if leases_of(&db, pid).await == 0 {
            break;
        }
        // A generous deadline (the time is printed; about the lease lifetime + a round).
        assert!(
            dead.elapsed() < Duration::from_secs(LEASE_SECS * 10),
            "the killed instance's leases were not reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reclaimed = dead.elapsed();
    eprintln!("killed B at {killed:?}; its leases reclaimed {reclaimed:?} later");

    let mut after = [0usize; 3];
    let mut all = Vec::new();
    for t in workers {
        let (at, ends) = t.await.unwrap();
        all.extend(
            ends.iter()
                .filter(|(_, e)| at != 1 || *e != End::Failed)
                .map(|(_, e)| *e),
        );
        for (when, end) in ends {
            if when > killed + Duration::from_millis(900) && end == End::Status(200) {
                after[at] += 1;
            }
            if at != 1 {
                assert_ne!(end, End::Failed, "A or C failed a request");
            }
        }
    }
    eprintln!(
        "answered after the kill: A {}, B {}, C {}; all but B's failures: {} answered, {} gone, {} held",
        after[0],
        after[1],
        after[2],
        count(&all, End::Status(200)),
        count(&all, End::Left),
        count(&all, End::Status(429))
    );
    assert!(after[0] > 0 && after[2] > 0, "A and C went on: {after:?}");
    assert_eq!(after[1], 0, "B is dead");

    // The survivors stop cleanly: the books balance (B's requests in flight when it died
    // left neither a row nor a charge), and nothing is leased any more.
    for i in [0, 2] {
        let code = gws[i].stop_graceful(Duration::from_secs(30));
        assert_eq!(code.map(|s| s.success()), Some(true));
    }
    let s = stored(&db, &token).await;
    eprintln!("stored: {s:?}");
    assert_eq!(
        s.spend, s.logged,
        "key spend vs the sum of its spend-log rows"
    );
    assert!(s.spend < budget + w);
    assert_eq!((s.leased, s.lease_rows), (0.0, 0), "{s:?}");
}

/// A TCP hop between the gateway and the test server that can be cut (every connection
/// closed, new ones refused) and restored: PostgreSQL "restarts" for this gateway only.
struct Hop {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hop {
    fn start(target: u16) -> Hop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (is_down, conns) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if is_down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Hop { port, down, open }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_postgres_away_requests_go_on_within_the_leases_and_nothing_is_lost() {
    if skip() {
        return;
    }
    let db = postgres::fresh_database().unwrap();
    let hop = Hop::start(server_port(&db));
    let via_hop = db.replacen(
        &format!(":{}/", server_port(&db)),
        &format!(":{}/", hop.port),
        1,
    );
    let m = keyed_mock().await;
    let cfg = config(&m.url())
        .llmgate_setting("budget_lease_seconds", 60)
        .yaml();
    let env = [("DATABASE_URL", via_hop.as_str())];
    let mut gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: PLUGINS,
        env: &env,
        ..Spec::default()
    });
    let body = chat_body("priced", "through an outage", false);
    let unit = chat(&gw, Some(MASTER), &body).await.cost();
    let (leased_key, _) = generate(&gw, MASTER, json!({"max_budget": 1000.0 * unit})).await;
    let (cold_key, _) = generate(&gw, MASTER, json!({"max_budget": 1000.0 * unit})).await;
    let (free_key, _) = generate(&gw, MASTER, json!({})).await;
    let mut served = 0;
    for _ in 0..5 {
        assert_eq!(chat(&gw, Some(&leased_key), &body).await.resp.status, 200);
        served += 1;
    }

    hop.cut();
    // Served from the lease (it holds dozens of requests' worst cases), and from memory for
    // a key without a budget: never a 401.
    for _ in 0..20 {
        let c = chat(&gw, Some(&leased_key), &body).await;
        assert_eq!(c.resp.status, 200, "{}", c.resp.text);
        served += 1;
        assert_eq!(chat(&gw, Some(&free_key), &body).await.resp.status, 200);
    }
    // A key with a budget and no lease yet needs the database: 503, said so, not 401.
    let r = post(&gw, "/v1/chat/completions", Some(&cold_key), &body).await;
    let e = r.openai_error(503);
    assert!(
        e["message"].as_str().unwrap().contains("did not answer"),
        "{}",
        r.text
    );

    hop.restore();
    // Back: the cold key gets its lease, and everything queued during the outage lands.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = chat(&gw, Some(&cold_key), &body).await;
        if c.resp.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {}", c.resp.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = gw.stop_graceful(Duration::from_secs(60));
    assert_eq!(code.map(|s| s.success()), Some(true), "{}", gw.logs());
    let s = stored(&db, &hash(&leased_key)).await;
    assert_eq!(
        s.log_rows, served,
        "every request served has its row: {s:?}"
    );
    assert_eq!(s.spend, s.logged, "{s:?}");
    assert_eq!(
        s.spend,
        f64::from(u32::try_from(served).unwrap()) * unit,
        "{s:?}"
    );
    assert_eq!((s.leased, s.lease_rows), (0.0, 0), "{s:?}");
    let logs = gw.logs();
    assert!(logs.contains("status=200"), "the access log is on:\n{logs}");
    assert!(
        !logs.contains("status=401"),
        "a 401 during the outage:\n{logs}"
    );
}

/// "Done means" of issue 14 in one test: three gateways, one PostgreSQL and one Redis act as
/// one gateway for a key made on one of them: its rpm limit holds across all three (Redis),
/// a block made on one holds on the others (PostgreSQL notifications), and
/// every spend row and the key's spend agree in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_postgresql_one_redis_act_as_one_gateway() {
    if skip() {
        return;
    }
    let Some(redis) = crate::support::redis::Redis::start(None) else {
        return;
    };
    let db = postgres::fresh_database().unwrap();
    let m = keyed_mock().await;
    let cfg = redis
        .router_settings()
        .into_iter()
        .fold(config(&m.url()), |c, (k, v)| c.router_setting(k, v))
        .llmgate_setting("budget_lease_seconds", LEASE_SECS)
        // Only notifications propagate within the test's deadlines.
        .llmgate_setting("key_resync_seconds", 3600)
        .yaml();
    let env = [("DATABASE_URL", db.as_str())];
    let mut gws: Vec<Gateway> = (0..3)
        .map(|_| {
            Gateway::start_spec(Spec {
                config: &cfg,
                plugins: PLUGINS,
                env: &env,
                ..Spec::default()
            })
        })
        .collect();
    let body = chat_body("priced", "one gateway", false);
    // The minute's rpm window must not roll over between the first request and the last.
    away_from_minute_boundary(40.0).await;
    let (key, _) = generate(&gws[0], MASTER, json!({"rpm_limit": 12, "max_budget": 1.0})).await;
    // Known everywhere (by notification; the time is printed).
    let made = Instant::now();
    for gw in &gws[1..] {
        while chat(gw, Some(&key), &chat_body("other", "known?", false))
            .await
            .resp
            .status
            == 401
        {
            assert!(
                made.elapsed() < PROPAGATION,
                "the new key did not reach {}",
                gw.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "the new key was known everywhere after {:?}",
        made.elapsed()
    );
    // The probes above counted 2 of the minute's 12; 30 concurrent requests over the three
    // instances: exactly 10 more are admitted.
    let urls: Vec<String> = gws.iter().map(|g| g.url.clone()).collect();
    let c = storm_client();
    let calls = (0..30).map(|i| {
        let (c, url, key, body) = (c.clone(), urls[i % 3].clone(), key.clone(), body.clone());
        async move { chat_on(&c, &url, &key, &body).await.status }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let n = |s: u16| statuses.iter().filter(|x| **x == s).count();
    assert_eq!((n(200), n(429)), (10, 20), "{statuses:?}");
    // Blocked on B: refused on A and C (the time is printed).
    let r = post(&gws[1], "/key/block", Some(MASTER), &json!({"key": key})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let blocked = Instant::now();
    for i in [0, 2] {
        loop {
            let r = post(&gws[i], "/v1/chat/completions", Some(&key), &body).await;
            if r.status == 401 {
                break;
            }
            assert!(blocked.elapsed() < PROPAGATION, "{}", r.text);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("the block held everywhere after {:?}", blocked.elapsed());
    for gw in &mut gws {
        assert_eq!(
            gw.stop_graceful(Duration::from_secs(30))
                .map(|s| s.success()),
            Some(true)
        );
    }
    let s = stored(&db, &hash(&key)).await;
    assert_eq!(
        s.log_rows, 12,
        "a row per request served, none for refusals: {s:?}"
    );
    assert_eq!(s.spend, s.logged, "{s:?}");
    assert_eq!((s.leased, s.lease_rows), (0.0, 0), "{s:?}");
}
