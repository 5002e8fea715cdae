//! Alerts (`general_settings.alerting`) through the real binary, received by a local
//! webhook receiver this test runs: a key's budget crossings (soft budget, 80 %, exceeded;
//! each once, the key never in a payload), a slow request, Slack's `{"text"}` shape against
//! LiteLLM's `WebhookEvent`, a deployment going down and coming back, plugin files that fail
//! to load at start and on hot reload, the retry of a delivery that got a 500, and a dead
//! webhook URL that fails no request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use crate::support::admin::{generate, hash, key_spend};
use crate::support::http::{chat_on, client};
use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Spec, plugin};

const MASTER: &str = "sk-master-alerts-1234";
/// USD per input token (2^-10): costs are exact in `f64`.
const IN: f64 = 0.000_976_562_5;
/// USD per output token (2^-9).
const OUT: f64 = 0.001_953_125;
/// The secret part of the Slack URL: it must never show in the gateway's logs.
const SLACK_TOKEN: &str = "T0ALERTS/B0ALERTS/slack-url-secret-token";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Every POST, by path (the first per path was answered 500).
    posts: Vec<(String, String)>,
    /// The POSTs answered 200: (path, body).
    accepted: Vec<(String, Value)>,
}

/// The local receiver: `POST /hook/{name}` records the body (the first POST of each name
/// answers 500, to make the gateway retry), and `POST /v1/chat/completions` is an upstream
/// that fails while `failing` is set.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    failing: Arc<AtomicBool>,
}

impl Receiver {
    /// Start on 127.0.0.1; returns its `http://` URL.
    async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/hook/{*name}", post(hook))
            .route("/v1/chat/completions", post(upstream))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// The accepted bodies POSTed to `/hook/{name}`.
    fn bodies(&self, name: &str) -> Vec<Value> {
        let path = format!("/hook/{name}");
        let seen = self.seen.lock().unwrap();
        seen.accepted
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Every raw body received, on any path.
    fn raw(&self) -> String {
        let seen = self.seen.lock().unwrap();
        seen.posts
            .iter()
            .map(|(_, b)| b.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many POSTs `/hook/{name}` got, answered or not.
    fn posts(&self, name: &str) -> usize {
        let path = format!("/hook/{name}");
        let seen = self.seen.lock().unwrap();
        seen.posts.iter().filter(|(p, _)| *p == path).count()
    }

    /// The webhook events with `event` at `/hook/{name}`.
    fn events(&self, name: &str, event: &str) -> Vec<Value> {
        self.bodies(name)
            .into_iter()
            .filter(|b| b["event"] == event)
            .collect()
    }

    /// Wait (up to 20 s) until `f` holds.
    async fn until(&self, what: &str, f: impl Fn(&Self) -> bool) {
        for _ in 0..200 {
            if f(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never: {what}; received:\n{}", self.raw());
    }
}

async fn hook(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    body: String,
) -> impl IntoResponse {
    let path = format!("/hook/{name}");
    let mut seen = r.seen.lock().unwrap();
    let first = !seen.posts.iter().any(|(p, _)| *p == path);
    seen.posts.push((path.clone(), body.clone()));
    if first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    seen.accepted
        .push((path, serde_json::from_str(&body).unwrap_or(Value::Null)));
    StatusCode::OK
}

async fn upstream(State(r): State<Receiver>) -> axum::response::Response {
    if r.failing.load(Ordering::SeqCst) {
        let err = json!({"error": {"message": "upstream down", "type": "server_error"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(err)).into_response();
    }
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "flaky-1",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }))
    .into_response()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
}

/// `general_settings` with `alerting` and the rest of `settings`.
fn alerting(mut cfg: Config, channels: &[&str], settings: Value) -> Config {
    let extra = &mut cfg.general_settings.extra;
    extra.insert(
        "alerting".into(),
        serde_yaml_ng::to_value(channels).unwrap(),
    );
    for (k, v) in settings.as_object().unwrap() {
        extra.insert(k.clone(), serde_yaml_ng::to_value(v).unwrap());
    }
    cfg
}

#[tokio::test]
async fn budget_crossings_and_slow_requests_reach_slack_and_the_webhook_once_each() {
    let rx = Receiver::default();
    let hooks = rx.start().await;
    let m = mock().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("priced", "mock-gpt", &m.url()).prices(IN, OUT))
        .deployment(Deployment::openai("slow", "mock-slow-700", &m.url()))
        .master_key(MASTER);
    let cfg = alerting(
        cfg,
        &["slack", "webhook"],
        json!({"alerting_threshold": 0.5}),
    );
    let slack_url = format!("{hooks}/hook/services/{SLACK_TOKEN}");
    let webhook_url = format!("{hooks}/hook/webhook");
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        env: &[
            ("SLACK_WEBHOOK_URL", &slack_url),
            ("WEBHOOK_URL", &webhook_url),
        ],
        ..Spec::default()
    });
    let c = client();
    let url = &gw.url;

    // The cost of one request, from a key without budgets.
    let (probe, _) = generate(&gw, MASTER, json!({})).await;
    assert_eq!(chat_on(&c, url, &probe, &chat("priced")).await.status, 200);
    let cost = key_spend(&gw, MASTER, &probe).await;
    assert!(cost > 0.0);

    // Soft budget at 1.5 requests, max budget at 3.5 (80 %: 2.8).
    let (key, v) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "alerted", "soft_budget": 1.5 * cost, "max_budget": 3.5 * cost,
               "user_id": "u-alerts"}),
    )
    .await;
    assert_eq!(v["soft_budget"], json!(1.5 * cost), "{v}");
    let info = crate::support::admin::info(&gw, MASTER, &key).await;
    assert_eq!(info["soft_budget"], json!(1.5 * cost), "{info}");
    for i in 1..=4 {
        let r = chat_on(&c, url, &key, &chat("priced")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    // Over budget now: refused, and no alert again.
    let r = chat_on(&c, url, &key, &chat("priced")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A slow request (0.7 s > alerting_threshold 0.5 s).
    assert_eq!(chat_on(&c, url, MASTER, &chat("slow")).await.status, 200);

    rx.until("three budget events and a slow one on the webhook", |r| {
        ["soft_budget_crossed", "threshold_crossed", "budget_crossed"]
            .iter()
            .all(|e| !r.events("webhook", e).is_empty())
            && !r.events("webhook", "llm_too_slow").is_empty()
    })
    .await;
    rx.until("slack got as many", |r| {
        r.bodies(&format!("services/{SLACK_TOKEN}")).len() >= 4
    })
    .await;
    // Anything late would show now.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let token = hash(&key);
    for (event, spend) in [
        ("soft_budget_crossed", 2.0 * cost),
        ("threshold_crossed", 3.0 * cost),
        ("budget_crossed", 4.0 * cost),
    ] {
        let got = rx.events("webhook", event);
        assert_eq!(got.len(), 1, "{event} once: {got:?}");
        let e = &got[0];
        assert_eq!(e["event_group"], "key", "{e}");
        assert_eq!(e["token"], token, "{e}");
        assert_eq!(e["key_alias"], "alerted", "{e}");
        assert_eq!(e["user_id"], "u-alerts", "{e}");
        assert_eq!(e["spend"], json!(spend), "{e}");
        assert_eq!(e["max_budget"], json!(3.5 * cost), "{e}");
        assert_eq!(e["soft_budget"], json!(1.5 * cost), "{e}");
        assert!(
            e["event_message"].as_str().unwrap().contains("alerted"),
            "{e}"
        );
        assert!(e.as_object().unwrap().contains_key("team_id"), "{e}");
    }
    let slow = rx.events("webhook", "llm_too_slow");
    assert!(
        slow.iter()
            .any(|e| e["event_message"].as_str().unwrap().contains("`slow`")),
        "{slow:?}"
    );

    // Slack: `{"text": ...}` only, one per alert, the same alerts.
    let slack = rx.bodies(&format!("services/{SLACK_TOKEN}"));
    for b in &slack {
        let o = b.as_object().unwrap();
        assert_eq!(o.len(), 1, "{b}");
        assert!(o["text"].is_string(), "{b}");
    }
    let texts: Vec<&str> = slack.iter().map(|b| b["text"].as_str().unwrap()).collect();
    let count = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
    for needle in [
        "Soft Budget Crossed",
        "80% Threshold Crossed",
        "Key Budget: Budget Crossed",
    ] {
        assert_eq!(count(needle), 1, "{needle}: {texts:?}");
    }
    assert!(count("Responses are slow") >= 1, "{texts:?}");

    // The first POST to each URL got a 500 and was retried: nothing lost.
    assert_eq!(
        rx.posts("webhook"),
        rx.bodies("webhook").len() + 1,
        "{}",
        rx.raw()
    );
    assert!(
        gw.logs().contains("alert delivery failed: status 500"),
        "{}",
        gw.logs()
    );
    // No key and no webhook URL anywhere they should not be.
    assert!(!rx.raw().contains(&key), "the key was in an alert");
    assert!(!rx.raw().contains(&probe));
    assert!(!rx.raw().contains(MASTER));
    let logs = gw.logs();
    assert!(!logs.contains(SLACK_TOKEN), "the Slack URL was logged");
    assert!(!logs.contains(&webhook_url), "the webhook URL was logged");
}

#[tokio::test]
async fn a_deployment_going_down_and_coming_back_alerts_once_each() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("flaky", "flaky-1", &base).id("flaky-dep"))
        .router_setting("allowed_fails", 0)
        .router_setting("cooldown_time", 1)
        .router_setting("num_retries", 0);
    let cfg = alerting(
        cfg,
        &["webhook"],
        json!({"alert_types": ["cooldown_deployment"]}),
    );
    let webhook_url = format!("{base}/hook/webhook");
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        env: &[("WEBHOOK_URL", &webhook_url)],
        ..Spec::default()
    });
    let c = client();

    rx.failing.store(true, Ordering::SeqCst);
    let r = chat_on(&c, &gw.url, "", &chat("flaky")).await;
    assert_ne!(r.status, 200, "{}", r.text);
    rx.until("deployment down", |r| {
        !r.events("webhook", "deployment_down").is_empty()
    })
    .await;

    // The upstream recovers; once the 1 s cooldown is over a request succeeds.
    rx.failing.store(false, Ordering::SeqCst);
    let mut ok = false;
    for _ in 0..50 {
        if chat_on(&c, &gw.url, "", &chat("flaky")).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "the deployment never answered again: {}", gw.logs());
    rx.until("deployment back up", |r| {
        !r.events("webhook", "deployment_up").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let down = rx.events("webhook", "deployment_down");
    assert_eq!(down.len(), 1, "{down:?}");
    let msg = down[0]["event_message"].as_str().unwrap();
    assert!(
        msg.contains("`flaky-dep`") && msg.contains("`flaky`"),
        "{msg}"
    );
    assert!(msg.contains("500"), "the cooldown's status: {msg}");
    assert_eq!(down[0]["event_group"], "proxy");
    let up = rx.events("webhook", "deployment_up");
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(
        up[0]["event_message"]
            .as_str()
            .unwrap()
            .contains("`flaky-dep`")
    );
    // `alert_types` filters: nothing else was sent.
    assert_eq!(rx.bodies("webhook").len(), 2, "{}", rx.raw());
}

#[tokio::test]
async fn plugin_files_that_fail_to_load_alert_at_start_and_on_hot_reload() {
    let rx = Receiver::default();
    let base = rx.start().await;
    let m = mock().await;
    let dir = tempfile::tempdir().unwrap();
    for p in ["openai", "policy-ordered", "policy-router"] {
        std::fs::copy(plugin(p), dir.path().join(format!("{p}.wasm"))).unwrap();
    }
    std::fs::write(
        dir.path().join("broken-at-start.wasm"),
        b"\0asm not a component",
    )
    .unwrap();
    let cfg = Config::new().deployment(Deployment::openai("gpt", "mock-gpt", &m.url()));
    let cfg = alerting(cfg, &["webhook"], json!({}));
    let webhook_url = format!("{base}/hook/webhook");
    let plugins_dir = dir.path().display().to_string();
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        env: &[("WEBHOOK_URL", &webhook_url)],
        args: &["--plugins-dir", &plugins_dir],
        no_plugins_dir_arg: true,
        ..Spec::default()
    });
    rx.until("the start-up failure", |r| {
        r.events("webhook", "plugin_load_failure").iter().any(|e| {
            e["event_message"]
                .as_str()
                .unwrap()
                .contains("broken-at-start.wasm")
        })
    })
    .await;

    // Served anyway.
    let r = chat_on(&client(), &gw.url, "", &chat("gpt")).await;
    assert_eq!(r.status, 200, "{}", r.text);

    std::fs::write(dir.path().join("broken-on-reload.wasm"), b"\0asm garbage").unwrap();
    rx.until("the hot reload failure", |r| {
        r.events("webhook", "plugin_load_failure").iter().any(|e| {
            e["event_message"]
                .as_str()
                .unwrap()
                .contains("broken-on-reload.wasm")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = rx.events("webhook", "plugin_load_failure");
    // Each file once: the start-up one is not said again when the registry changes.
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|e| e["event_group"] == "proxy"));
}

#[tokio::test]
async fn a_dead_webhook_url_fails_and_delays_no_request() {
    let m = mock().await;
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = Config::new().deployment(Deployment::openai("gpt", "mock-gpt", &m.url()));
    // Every request is "slow": every request raises an alert that cannot be delivered.
    let cfg = alerting(cfg, &["webhook"], json!({"alerting_threshold": 0.000_001}));
    let url = format!("http://127.0.0.1:{dead}/hook");
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        env: &[("WEBHOOK_URL", &url)],
        ..Spec::default()
    });
    let c = client();
    for i in 0..30 {
        let r = chat_on(&c, &gw.url, "", &chat("gpt")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    let logs = gw.logs_once("alert delivery failed", Duration::from_secs(20));
    assert!(logs.contains("alert delivery failed"), "{logs}");
    assert!(!logs.contains(&url), "the webhook URL was logged");
}
