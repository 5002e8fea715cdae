//! Two gateways (each its own SQLite file) sharing one real `redis-server`
//! (`router_settings.redis_*`): a cooldown started on one is in force on the other within
//! the bound, key and deployment rpm limits hold across both, a Redis outage leaves
//! requests flowing on local state and readiness saying so, and sharing resumes when Redis
//! is back. The password never shows.

use std::time::{Duration, Instant};

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::admin::generate;
use crate::support::clock::away_from_minute_boundary;
use crate::support::http::{Resp, get, post};
use crate::support::mock::mock;
use crate::support::redis::Redis;
use crate::support::{Config, Deployment, Gateway, Spec};

const MASTER: &str = "sk-master-redis";
const PASSWORD: &str = "redis-pw-7f3a9c1e";
/// How soon a cooldown started on one instance is in force on the others (pub/sub; the
/// README's bound is well under this).
const COOLDOWN_BOUND: Duration = Duration::from_secs(2);

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "share me"}]})
}

/// How many requests the mock saw for an upstream model.
fn seen(m: &MockServer, model: &str) -> usize {
    m.requests()
        .iter()
        .filter(|r| r.body["model"] == model)
        .count()
}

/// `cfg` pointed at `redis`, with the master key.
fn with_redis(cfg: Config, redis: &Redis) -> String {
    redis
        .router_settings()
        .into_iter()
        .fold(cfg.master_key(MASTER), |c, (k, v)| c.router_setting(k, v))
        .yaml()
}

/// Two gateways on one config and one Redis, each with its own database.
fn pair(config: &str, redis: &Redis) -> (Gateway, Gateway) {
    let env = redis.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start = || {
        Gateway::start_spec(Spec {
            config,
            env: &env,
            ..Spec::default()
        })
    };
    (start(), start())
}

async fn readiness(gw: &Gateway) -> Value {
    get(gw, "/health/readiness", Some(MASTER)).await.json()
}

/// Wait until `gw`'s readiness says `redis: want` (panics after 10 s).
async fn redis_state(gw: &Gateway, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = readiness(gw).await;
        if r["redis"] == want {
            return r;
        }
        assert!(Instant::now() < deadline, "redis never {want}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long until `gw` shows deployment `id` cooling down (panics past the bound).
async fn cooled_down_within_bound(gw: &Gateway, id: &str) -> Duration {
    let start = Instant::now();
    loop {
        let r = readiness(gw).await;
        let state = r["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["model_id"] == id)
            .map(|d| d["state"].clone());
        if state == Some(json!("complete_outage")) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < COOLDOWN_BOUND,
            "{id} not cooled down on the other instance: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A group `pair`: `pair-0` always answers 500 and is tried first, `pair-1` answers.
fn failing_pair(u: &str) -> Config {
    Config::new()
        .deployment(
            Deployment::openai("pair", "mock-error-500", u)
                .api_key("sk-x")
                .param("order", 1),
        )
        .deployment(
            Deployment::openai("pair", "mock-good", u)
                .api_key("sk-x")
                .param("order", 2),
        )
        .router_setting("allowed_fails", 0)
        .router_setting("cooldown_time", 60)
}

async fn chat_on(gw: &Gateway, key: &str, model: &str) -> Resp {
    post(gw, "/v1/chat/completions", Some(key), &chat(model)).await
}

/// A failure on A cools the deployment down on A; B learns it within the bound and
/// routes straight to the other deployment.
async fn cooldown_crosses(m: &MockServer, a: &Gateway, b: &Gateway) {
    let before = seen(m, "mock-error-500");
    let r = chat_on(a, MASTER, "pair").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-attempted-retries"), Some("1"));
    assert_eq!(seen(m, "mock-error-500"), before + 1);
    cooled_down_within_bound(b, "pair-0").await;
    let r = chat_on(b, MASTER, "pair").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-id"), Some("pair-1"));
    assert_eq!(r.header("x-litellm-attempted-retries"), Some("0"));
    assert_eq!(seen(m, "mock-error-500"), before + 1, "B tried pair-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cooldown_on_one_instance_holds_on_the_other_and_the_password_never_shows() {
    let Some(redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let m = mock().await;
    let (a, b) = pair(&with_redis(failing_pair(&m.url()), &redis), &redis);
    let ready = redis_state(&a, "connected").await;
    assert_eq!(
        ready["redis_at"],
        format!("redis://127.0.0.1:{}/0", redis.port)
    );
    redis_state(&b, "connected").await;
    cooldown_crosses(&m, &a, &b).await;
    // Open readiness (no key) says connected too, and nothing shows the password.
    let open = get(&b, "/health/readiness", None).await;
    assert!(
        open.text.contains(r#""redis":"connected""#),
        "{}",
        open.text
    );
    for text in [
        a.logs(),
        b.logs(),
        open.text,
        readiness(&a).await.to_string(),
    ] {
        assert!(!text.contains(PASSWORD), "password shown: {text}");
    }
    assert!(a.logs().contains("Redis connected"), "{}", a.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_redis_password_is_reported_without_showing_it_and_requests_flow() {
    let Some(redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let m = mock().await;
    // Through LiteLLM's environment fallbacks this time (no redis_* in the config).
    let wrong = "wrong-pw-0d9e8f7a";
    let cfg = Config::openai(&m.url(), &[("g", "mock-good")]).master_key(MASTER);
    let port = redis.port.to_string();
    let env = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", wrong),
    ];
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        env: &env,
        ..Spec::default()
    });
    let r = redis_state(&gw, "down").await;
    assert_eq!(chat_on(&gw, MASTER, "g").await.status, 200);
    let logs = gw.logs_once("Redis is not reachable", Duration::from_secs(10));
    for text in [logs, r.to_string()] {
        assert!(!text.contains(wrong), "password shown: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_and_deployment_rpm_limits_hold_across_instances() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let m = mock().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("free", "mock-good", &m.url()).api_key("sk-x"))
        .deployment(
            Deployment::openai("capped", "mock-good", &m.url())
                .api_key("sk-x")
                .info("rpm", 3),
        );
    let (a, b) = pair(&with_redis(cfg, &redis), &redis);
    redis_state(&a, "connected").await;
    redis_state(&b, "connected").await;
    // The same virtual key on both instances (each has its own database).
    let key = "sk-shared-key-0001";
    for gw in [&a, &b] {
        generate(gw, MASTER, json!({"key": key, "rpm_limit": 4})).await;
    }
    away_from_minute_boundary(45.0).await;
    // Key rpm_limit 4: 10 concurrent requests spread over both instances, 4 admitted.
    let statuses = storm(&a, &b, key, "free", 10).await;
    assert_eq!(count(&statuses, 200), 4, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 6, "{statuses:?}");
    let r = chat_on(&b, key, "free").await;
    assert!(r.text.contains("rpm_limit"), "{}", r.text);
    // Deployment rpm 3 (in model_info; the master key has no limits): 9 concurrent over
    // both instances, 3 served.
    let before = m.count();
    let statuses = storm(&a, &b, MASTER, "capped", 9).await;
    assert_eq!(count(&statuses, 200), 3, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 6, "{statuses:?}");
    assert_eq!(m.count() - before, 3);
    let r = chat_on(&a, MASTER, "capped").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("rpm/tpm limit"), "{}", r.text);
}

/// `n` concurrent requests for `model` with `key`, alternating between `a` and `b`.
async fn storm(a: &Gateway, b: &Gateway, key: &str, model: &str, n: usize) -> Vec<u16> {
    let calls = (0..n).map(|i| chat_on(if i % 2 == 0 { a } else { b }, key, model));
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_requests_flow_on_local_state_and_sharing_resumes() {
    let Some(mut redis) = Redis::start(Some(PASSWORD)) else {
        return;
    };
    let m = mock().await;
    let cfg = failing_pair(&m.url())
        .deployment(Deployment::openai("g", "mock-good", &m.url()).api_key("sk-x"));
    let (a, b) = pair(&with_redis(cfg, &redis), &redis);
    redis_state(&a, "connected").await;
    redis_state(&b, "connected").await;
    redis.kill();
    redis_state(&a, "down").await;
    redis_state(&b, "down").await;
    for gw in [&a, &b] {
        let r = chat_on(gw, MASTER, "g").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(gw.logs().contains("Redis connection lost"), "{}", gw.logs());
    }
    redis.restart();
    redis_state(&a, "connected").await;
    redis_state(&b, "connected").await;
    assert!(a.logs().contains("Redis is back"), "{}", a.logs());
    cooldown_crosses(&m, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_a_deployment_rpm_holds_on_its_instance_and_readiness_says_off() {
    let m = mock().await;
    let cfg = Config::new()
        .deployment(
            Deployment::openai("capped", "mock-good", &m.url())
                .api_key("sk-x")
                .param("rpm", 2),
        )
        .master_key(MASTER);
    let gw = Gateway::start(&cfg.yaml());
    assert_eq!(readiness(&gw).await["redis"], "off");
    away_from_minute_boundary(50.0).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(chat_on(&gw, MASTER, "capped").await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let r = chat_on(&gw, MASTER, "capped").await;
    assert!(r.header("retry-after").is_some(), "{:?}", r.text);
    assert_eq!(m.count(), 2);
    assert!(!gw.logs().contains("Redis"), "{}", gw.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_tpm_limit_counts_the_tokens_served_by_the_other_instance() {
    let Some(redis) = Redis::start(None) else {
        return;
    };
    let m = mock().await;
    let cfg = Config::openai(&m.url(), &[("g", "mock-good")]);
    let (a, b) = pair(&with_redis(cfg, &redis), &redis);
    redis_state(&a, "connected").await;
    redis_state(&b, "connected").await;
    let key = "sk-shared-tpm-0001";
    for gw in [&a, &b] {
        generate(gw, MASTER, json!({"key": key, "tpm_limit": 10})).await;
    }
    away_from_minute_boundary(45.0).await;
    let r = chat_on(&a, key, "g").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A's tokens reach Redis when its request settles (queued, off the request path).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = chat_on(&b, key, "g").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("tpm_limit"), "{}", r.text);
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("0"));
}
