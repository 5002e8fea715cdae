//! Admission under concurrency through the real binary: what a refusal says and when it
//! happens.
//!
//! - A budget refused only because requests in flight hold it is a 429 with `Retry-After`,
//!   never the 400 "Budget has been exceeded!", and a request without `max_tokens` reserves a
//!   bounded default output (not the model's whole output cap).
//! - Strict admission refusing a request whose worst case does not fit says so, without
//!   claiming the budget was spent.
//! - `tpm_limit` reserves each request's token estimate at admission, so concurrent requests
//!   cannot serve many times the limit; `rpm_limit` counts at admission too.
//! - A full plugin instance pool is a 503 with `Retry-After`, counted and logged, and never
//!   puts the deployment into cooldown.
//!
//! Prices are powers of two, so every cost and sum of costs is exact in `f64`.

use std::time::Duration;

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::admin::{self, key_spend, spend_logs};
use crate::support::clock::away_from_minute_boundary;
use crate::support::http::{chat_on, client, post, storm_client, stream_usage};
use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Resp, Spec};

const MASTER: &str = "sk-master-admission";
/// USD per input token (2^-19, about gpt-4o's $2.5 per million).
const IN: f64 = 0.000_001_907_348_632_812_5;
/// USD per output token (2^-17, about gpt-4o's $10 per million).
const OUT: f64 = 0.000_007_629_394_531_25;
/// The deployment's output cap (gpt-4o's).
const OUTPUT_CAP: u64 = 16384;
/// Output tokens reserved for a request without `max_tokens` (host/src/ledger/cost.rs,
/// `llmgate.default_reserved_output_tokens`).
const DEFAULT_RESERVED_OUTPUT: u64 = 4096;
const PLUGINS: &[&str] = &["openai", "policy-ordered"];

/// One deployment per `(group, upstream model)`, priced at [`IN`]/[`OUT`] with
/// [`OUTPUT_CAP`], and a master key.
fn config(mock: &str, groups: &[(&str, &str)]) -> Config {
    groups
        .iter()
        .fold(Config::new(), |c, (name, model)| {
            c.deployment(
                Deployment::openai(name, model, mock)
                    .prices(IN, OUT)
                    .id(&format!("dep-{name}"))
                    .max_output_tokens(OUTPUT_CAP),
            )
        })
        .master_key(MASTER)
        .default_policy("ordered")
}

fn start(cfg: &str) -> Gateway {
    Gateway::start_spec(Spec {
        config: cfg,
        plugins: PLUGINS,
        ..Spec::default()
    })
}

impl Resp {
    /// `Retry-After` in whole seconds, which must be there.
    fn retry_after(&self) -> u64 {
        let v = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {self:?}"));
        let secs: u64 = v.parse().unwrap_or_else(|_| panic!("Retry-After {v:?}"));
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
        secs
    }

    /// (prompt, completion) tokens of a 200 (non-streamed: the body; streamed: the usage
    /// chunk).
    fn usage(&self) -> (u64, u64) {
        assert_eq!(self.status, 200, "{}", self.text);
        let usage = if self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
        {
            stream_usage(&self.text)
        } else {
            self.json()["usage"].clone()
        };
        (
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["completion_tokens"].as_u64().unwrap(),
        )
    }

    fn cost(&self) -> f64 {
        let (p, c) = self.usage();
        p as f64 * IN + c as f64 * OUT
    }
}

async fn generate(gw: &Gateway, body: Value) -> String {
    admin::generate(gw, MASTER, body).await.0
}

async fn spend_rows(gw: &Gateway, key: &str) -> Vec<Value> {
    spend_logs(gw, MASTER, &format!("api_key={key}")).await
}

/// A chat request for `model`, with `max_tokens` when given.
fn chat_body(model: &str, text: &str, max_tokens: Option<u64>, stream: bool) -> Value {
    let mut b = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if let Some(n) = max_tokens {
        b["max_tokens"] = json!(n);
    }
    if stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// The body's input-token upper bound the gateway reserves (body bytes / 3).
fn input_bound(body: &Value) -> u64 {
    (serde_json::to_vec(body).unwrap().len() as u64).div_ceil(3)
}

/// The documented reservation, USD: the input bound at the input price, plus `max_tokens`,
/// else min(output cap, the default reserved output) at the output price.
fn reservation(body: &Value) -> f64 {
    let out = body["max_tokens"]
        .as_u64()
        .unwrap_or(OUTPUT_CAP.min(DEFAULT_RESERVED_OUTPUT));
    input_bound(body) as f64 * IN + out as f64 * OUT
}

/// Send `n` copies of `body` at once with `key`; the answers in order.
async fn storm(gw: &Gateway, key: &str, bodies: Vec<Value>) -> Vec<Resp> {
    let c = storm_client();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (c, url, key) = (c.clone(), gw.url.clone(), key.to_string());
            tokio::spawn(async move { chat_on(&c, &url, &key, &body).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Wait (generously) until the mock has received `n` requests.
async fn wait_for_upstream(m: &MockServer, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while m.count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream saw {} of {n} requests",
            m.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A 429 "budget held by requests in flight": rate-limit shape, its own code, Retry-After,
/// and a message with the real spend and the budget that does not claim the budget is spent.
fn assert_budget_held(r: &Resp, budget: f64) -> String {
    let e = r.openai_error(429);
    assert_eq!(e["type"], "rate_limit_error", "{}", r.text);
    assert_eq!(e["code"], "budget_held_by_requests_in_flight", "{}", r.text);
    r.retry_after();
    let msg = e["message"].as_str().unwrap().to_string();
    assert!(!msg.contains("Budget has been exceeded"), "{msg}");
    assert!(msg.contains(&format!("max budget {budget}")), "{msg}");
    assert!(msg.contains("in flight"), "{msg}");
    msg
}

// ---------------------------------------------------------------------------------------
// Budgets (#3)
// ---------------------------------------------------------------------------------------

const STORM: usize = 200;

/// 200 concurrent requests without `max_tokens` against a key whose budget pays for
/// thousands of them: while real spend is below the budget nothing is refused with the 400
/// budget error; requests refused because the budget is held by requests in flight get a 429
/// with Retry-After; each request reserves the bounded default output, not the model's
/// 16384-token cap; and the money adds up and stays within the documented bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_held_by_requests_in_flight_is_a_429_not_budget_exceeded() {
    let m = mock().await;
    // The upstream holds each request 2 s, so the 200 overlap.
    let gw = start(&config(&m.url(), &[("big", "mock-slow-2000")]).yaml());
    let budget = 1.0;
    let key = generate(&gw, json!({"max_budget": budget})).await;
    let body = chat_body("big", "a short question about budgets", None, false);
    let r = reservation(&body);
    // Premise: the budget is far more than what 200 requests really cost (checked below),
    // but less than 200 reservations.
    assert!(STORM as f64 * r > budget);

    let answers = storm(&gw, &key, vec![body.clone(); STORM]).await;

    let ok: Vec<&Resp> = answers.iter().filter(|a| a.status == 200).collect();
    let refused: Vec<&Resp> = answers.iter().filter(|a| a.status != 200).collect();
    let answered: f64 = ok.iter().map(|a| a.cost()).sum();
    assert!(answered < budget, "premise: real spend {answered} < budget");
    // Real spend never reached the budget, so no refusal may be the budget error: each is
    // the 429 of a budget held by requests in flight.
    for a in &refused {
        assert_budget_held(a, budget);
    }
    eprintln!(
        "admitted {} of {STORM}, refused {} (reservation {r}, budget {budget}, spend {answered})",
        ok.len(),
        refused.len()
    );
    assert!(
        !refused.is_empty(),
        "premise: the storm never held the whole budget, the test proves nothing"
    );
    // The reservation is the bounded one. At the first refusal spend + reserved >= budget,
    // and every request admitted before it had reserved r (spend is real costs, each below
    // r): so at least budget / r requests were admitted. With the model's whole output cap
    // reserved (16384 tokens), a quarter of that would have been.
    let floor = (budget / r).floor() as usize;
    assert!(
        ok.len() >= floor,
        "admitted {} < budget / reservation = {floor}: the reservation is larger than the rule",
        ok.len()
    );

    // The money adds up: key spend = sum of the spend log rows = sum of the answers' costs,
    // and within the documented bound (budget + one reservation).
    let spend = key_spend(&gw, MASTER, &key).await;
    let rows = spend_rows(&gw, &key).await;
    assert_eq!(
        rows.len(),
        ok.len(),
        "one spend log row per admitted request"
    );
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert_eq!(spend, logged, "key spend vs sum of spend log rows");
    assert_eq!(spend, answered, "key spend vs the answers' costs");
    assert!(
        spend < budget + r,
        "spend {spend} over budget {budget} + {r}"
    );

    // Once nothing is in flight the key is admitted again, and a spent budget is still the
    // 400 with the real spend (reservations do not count in "Current cost").
    let c = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
    assert_eq!(c.status, 200, "{}", c.text);
    let spend = spend + c.cost();
    let r2 = post(
        &gw,
        "/key/update",
        Some(MASTER),
        &json!({"key": key, "max_budget": spend}),
    )
    .await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    let e = post(&gw, "/v1/chat/completions", Some(&key), &body)
        .await
        .openai_error(400);
    assert_eq!(e["type"], "budget_exceeded");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("Current cost: {spend}, Max budget: {spend}")),
        "{msg}"
    );
}

/// Strict admission: a fresh key whose budget is smaller than one request's worst case is
/// refused with a message that names the worst case and the budget, not a "Budget has been
/// exceeded! Current cost: 0"; a request that would fit but for the requests in flight gets
/// the 429 with the real spend (0), not the reservations counted as cost.
#[tokio::test(flavor = "multi_thread")]
async fn strict_admission_explains_its_refusals() {
    let m = mock().await;
    let gw = start(
        &config(&m.url(), &[("big", "mock-gpt"), ("slow", "mock-slow-3000")])
            .budget_admission("strict")
            .yaml(),
    );
    // Strict reserves the whole output cap for a request without max_tokens.
    let body = chat_body("big", "hello", None, false);
    let worst = input_bound(&body) as f64 * IN + OUTPUT_CAP as f64 * OUT;
    let budget = 0.0625; // 2^-4, half a worst case
    let key = generate(&gw, json!({"max_budget": budget})).await;
    let r = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
    let e = r.openai_error(400);
    assert_eq!(e["type"], "budget_exceeded", "{}", r.text);
    assert_eq!(e["code"], "budget_too_small_for_request", "{}", r.text);
    let msg = e["message"].as_str().unwrap();
    assert!(!msg.contains("Current cost: 0"), "{msg}");
    assert!(!msg.contains("Budget has been exceeded"), "{msg}");
    assert!(msg.contains(&format!("max budget {budget}")), "{msg}");
    assert!(msg.contains(&format!("up to {worst}")), "{msg}");
    assert!(msg.contains("max_tokens"), "{msg}");
    assert!(r.header("retry-after").is_none(), "waiting does not help");
    // With a max_tokens that fits, the same key is served.
    let r = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat_body("big", "hello", Some(16), false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let spent = r.cost();

    // A key that fits one worst case of the slow group but not two.
    let slow = chat_body("slow", "hello", None, false);
    let w = input_bound(&slow) as f64 * IN + OUTPUT_CAP as f64 * OUT;
    let budget = 0.25; // 2^-2
    assert!(w <= budget && 2.0 * w > budget);
    let key2 = generate(&gw, json!({"max_budget": budget})).await;
    let before = m.count();
    let first = {
        let (url, k, b) = (gw.url.clone(), key2.clone(), slow.clone());
        tokio::spawn(async move {
            Resp::read(
                client()
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(k)
                    .json(&b)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    wait_for_upstream(&m, before + 1).await;
    let r = post(&gw, "/v1/chat/completions", Some(&key2), &slow).await;
    let msg = assert_budget_held(&r, budget);
    assert!(msg.contains("spent 0 of"), "the real spend is 0: {msg}");
    assert!(msg.contains(&format!("reserved {w}")), "{msg}");
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text);
    // Settled: the real cost is charged, the reservation is released, and the key is served.
    assert_eq!(key_spend(&gw, MASTER, &key2).await, first.cost());
    let again = post(&gw, "/v1/chat/completions", Some(&key2), &slow).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(key_spend(&gw, MASTER, &key).await, spent);
}

// ---------------------------------------------------------------------------------------
// Token and request rate limits (#10)
// ---------------------------------------------------------------------------------------

/// 40 concurrent requests against a `tpm_limit` that fits a few of them: each reserves its
/// token estimate (input upper bound + max_tokens) at admission, so the tokens served stay
/// within the limit plus one request's estimate; the others get the tpm 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tpm_limit_holds_under_concurrency() {
    let m = mock().await;
    let gw = start(&config(&m.url(), &[("slow", "mock-slow-1000")]).yaml());
    let body = chat_body("slow", "count my tokens please", Some(16), false);
    let estimate = input_bound(&body) + 16;
    let limit = 3 * estimate;
    let key = generate(&gw, json!({"tpm_limit": limit})).await;
    away_from_minute_boundary(45.0).await;

    let answers = storm(&gw, &key, vec![body; 40]).await;

    let mut served = 0;
    for a in &answers {
        if a.status == 200 {
            let (p, c) = a.usage();
            assert!(p + c <= estimate, "premise: usage within the estimate");
            served += p + c;
        } else {
            let e = a.openai_error(429);
            assert_eq!(e["type"], "rate_limit_error", "{}", a.text);
            assert!(
                e["message"].as_str().unwrap().contains("tpm_limit"),
                "{}",
                a.text
            );
            a.retry_after();
            assert_eq!(
                a.header("x-ratelimit-limit-tokens"),
                Some(limit.to_string().as_str())
            );
        }
    }
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    eprintln!("tpm: admitted {admitted} of 40, {served} tokens, limit {limit}");
    assert!(admitted > 0);
    assert!(
        served <= limit + estimate,
        "served {served} tokens: over the tpm_limit {limit} + one estimate {estimate}"
    );
}

/// `rpm_limit` is counted at admission: 40 concurrent requests, exactly the limit served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_limit_holds_under_concurrency() {
    let m = mock().await;
    let gw = start(&config(&m.url(), &[("slow", "mock-slow-500")]).yaml());
    let key = generate(&gw, json!({"rpm_limit": 5})).await;
    away_from_minute_boundary(45.0).await;
    let body = chat_body("slow", "x", Some(16), false);
    let answers = storm(&gw, &key, vec![body; 40]).await;
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 5);
    for a in answers.iter().filter(|a| a.status != 200) {
        let e = a.openai_error(429);
        assert!(e["message"].as_str().unwrap().contains("rpm_limit"), "{e}");
        a.retry_after();
    }
}

// ---------------------------------------------------------------------------------------
// Plugin instance exhaustion (#7)
// ---------------------------------------------------------------------------------------

/// With every plugin instance held by slow streams, a request is answered 503 with
/// Retry-After in both API shapes (not a 500 plugin fault), the refusal is counted in
/// `GET /plugins` and logged, and the deployment is not put into cooldown: once the streams
/// end, the same deployment serves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plugin_instance_exhaustion_is_a_503_and_no_cooldown() {
    let m = mock().await;
    // `held`: streams the upstream holds for a while. `fast`: two deployments in order;
    // the second is tried only after a rate limit, and one failure cools a deployment down
    // for five minutes, so a cooled-down `dep-fast-a` would hand the next request to
    // `dep-fast-b`.
    let u = m.url();
    let cfg = Config::new()
        .deployment(Deployment::openai("held", "mock-slow-12000", &u).id("dep-held"))
        .deployment(
            Deployment::openai("fast", "mock-gpt", &u)
                .param("order", 1)
                .id("dep-fast-a"),
        )
        .deployment(
            Deployment::openai("fast", "mock-gpt", &u)
                .param("order", 2)
                .id("dep-fast-b"),
        )
        .router_setting("allowed_fails", 0)
        .router_setting("cooldown_time", 300)
        .llmgate_setting("plugin_limits", json!({"max_instances": 64}))
        .default_policy("ordered")
        .routing_setting(
            "default_policy_config",
            json!({"retry_on": ["rate-limited"]}),
        )
        .yaml();
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: PLUGINS,
        ..Spec::default()
    });
    let fast = chat_body("fast", "quick", None, false);
    let r = post(&gw, "/v1/chat/completions", None, &fast).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-id"), Some("dep-fast-a"));

    // Open slow streams one at a time until one is refused: the pool is then full of them
    // (64 instances: the idle policy instance, the spares, the streams).
    let stream = chat_body("held", "hold an instance", None, true);
    let mut holders = Vec::new();
    let refused = loop {
        assert!(holders.len() <= 64, "64 streams held and none refused");
        let before = m.count();
        let (url, b) = (gw.url.clone(), stream.clone());
        let task = tokio::spawn(async move {
            Resp::read(
                client()
                    .post(format!("{url}/v1/chat/completions"))
                    .json(&b)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        });
        // Held (it reached the upstream) or answered at once (refused).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let held = loop {
            if m.count() > before {
                break true;
            }
            if task.is_finished() {
                break false;
            }
            assert!(std::time::Instant::now() < deadline, "no answer, not held");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if !held {
            break task.await.unwrap();
        }
        holders.push(task);
    };
    assert!(!holders.is_empty());
    eprintln!("pool full after {} held streams", holders.len());
    let e = refused.openai_error(503);
    assert_eq!(e["code"], "plugin_instances_exhausted", "{}", refused.text);
    refused.retry_after();

    // The deployment of `fast` is refused the same way, in both API shapes.
    let r = post(&gw, "/v1/chat/completions", None, &fast).await;
    let e = r.openai_error(503);
    assert_eq!(e["type"], "service_unavailable", "{}", r.text);
    assert_eq!(e["code"], "plugin_instances_exhausted", "{}", r.text);
    assert!(
        e["message"].as_str().unwrap().contains("max_instances"),
        "{}",
        r.text
    );
    r.retry_after();
    let r = Resp::read(
        client()
            .post(format!("{}/v1/messages", gw.url))
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json()["type"], "error", "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "overloaded_error", "{}", r.text);
    r.retry_after();
    assert!(
        holders.iter().all(|h| !h.is_finished()),
        "premise: the streams still hold their instances"
    );

    // Counted where metrics can read it, and logged.
    let plugins = gw.get_json("/plugins").await;
    let pool = &plugins["instance_pool"];
    assert_eq!(pool["max_instances"], 64, "{plugins}");
    assert!(pool["exhausted_total"].as_u64().unwrap() >= 3, "{plugins}");
    assert!(
        gw.logs().contains("plugin instance pool exhausted"),
        "no log line"
    );

    // The streams end normally...
    for h in holders {
        let r = h.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        r.usage();
    }
    // ... and the same deployment serves at once: it was never cooled down.
    let r = post(&gw, "/v1/chat/completions", None, &fast).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("x-litellm-model-id"),
        Some("dep-fast-a"),
        "the deployment went into cooldown"
    );
    assert!(
        !gw.logs().contains("deployment cooling down"),
        "{}",
        gw.logs()
    );
}
