//! Deployment health through the real binary: `GET /health` probes every deployment with a
//! tiny real request and names the failing ones with their error (no secret, no spend),
//! background health checks feed cooldowns and readiness, and passive health (client
//! requests that fail) cools a deployment down and lets it back once it answers again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmgate_mock::{MockOptions, MockState};
use serde_json::{Value, json};

use crate::support::admin;
use crate::support::http::{get, post};
use crate::support::mock::{UPSTREAM_KEY, keyed_mock};
use crate::support::{Config, Deployment, Gateway, Resp};

const MASTER: &str = "sk-master-health-e2e-5150";

/// The key of the deployment the mock refuses: it must never show.
const BAD_KEY: &str = "sk-provider-bad-secret-4242";

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn general(mut cfg: Config, key: &str, value: Value) -> Config {
    cfg.general_settings
        .extra
        .insert(key.into(), serde_yaml_ng::to_value(value).unwrap());
    cfg
}

async fn health(gw: &Gateway, query: &str) -> Value {
    let r = get(gw, &format!("/health{query}"), Some(MASTER)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_no_secret(&r);
    r.json()
}

fn assert_no_secret(r: &Resp) {
    for s in [BAD_KEY, UPSTREAM_KEY, MASTER] {
        assert!(!r.text.contains(s), "{s} in {}", r.text);
    }
}

/// The admin readiness view of deployment `id`.
async fn readiness_of(gw: &Gateway, id: &str) -> Value {
    let r = get(gw, "/health/readiness", Some(MASTER)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_no_secret(&r);
    let v = r.json();
    v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model_id"] == id)
        .unwrap_or_else(|| panic!("no deployment {id} in {v}"))
        .clone()
}

/// Poll readiness until `ok` holds for deployment `id` (at most 20 s); its view then.
async fn wait_for(gw: &Gateway, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = readiness_of(gw, id).await;
        if ok(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id} never got there: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> u64 {
    (crate::support::clock::unix_now() * 1000.0) as u64
}

#[tokio::test]
async fn health_probes_each_deployment_and_names_the_failing_ones_without_secrets() {
    let m = keyed_mock().await;
    let u = m.url();
    let down = format!("http://127.0.0.1:{}/v1", closed_port());
    let cfg = Config::new()
        .master_key(MASTER)
        .deployment(Deployment::openai("good", "mock-good", &u).id("good-1"))
        .deployment(
            Deployment::openai("refused", "mock-refused", &u)
                .api_key(BAD_KEY)
                .id("refused-1"),
        )
        .deployment(
            Deployment::openai("emb", "mock-embed", &u)
                .info("mode", "embedding")
                .id("emb-1"),
        )
        .deployment(
            Deployment::openai("img", "mock-image", &u)
                .info("mode", "image_generation")
                .id("img-1"),
        )
        .deployment(
            Deployment::new("down", "openai/mock-down")
                .api_base(&down)
                .api_key(UPSTREAM_KEY)
                .id("down-1"),
        );
    let gw = Gateway::start(&cfg.yaml());

    // Admin only: probes cost money.
    assert_eq!(get(&gw, "/health", None).await.status, 401);
    let (vkey, _) = admin::generate(&gw, MASTER, json!({})).await;
    let r = get(&gw, "/health", Some(&vkey)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text);

    // Image deployments are not probed (a ping image costs more than it tells).
    let v = health(&gw, "").await;
    assert_eq!(v["healthy_count"], 2, "{v}");
    assert_eq!(v["unhealthy_count"], 2, "{v}");
    assert!(!v.to_string().contains("img-1"), "{v}");
    assert_eq!(v["healthy_endpoints"][1]["model_id"], "emb-1", "{v}");
    let good = &v["healthy_endpoints"][0];
    assert_eq!(good["model"], "openai/mock-good", "{v}");
    assert_eq!(good["model_id"], "good-1");
    assert_eq!(good["model_name"], "good");
    assert_eq!(good["api_base"], format!("{u}/v1"));
    assert!(good.get("error").is_none(), "{v}");
    let bad = v["unhealthy_endpoints"].as_array().unwrap();
    let by_id = |id: &str| bad.iter().find(|e| e["model_id"] == id).unwrap().clone();
    let refused = by_id("refused-1");
    let err = refused["error"].as_str().unwrap();
    assert!(err.contains("API key"), "{err}");
    let down_ep = by_id("down-1");
    assert_eq!(down_ep["api_base"], down);
    let err = down_ep["error"].as_str().unwrap();
    assert!(err.contains("could not connect"), "{err}");

    // The probe is a tiny chat request, sent the way a client's is (with the key).
    let probes: Vec<_> = m
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect();
    assert_eq!(probes.len(), 2, "{probes:?}");
    // An embedding deployment gets an embedding of `ping`.
    let emb: Vec<_> = m
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .collect();
    assert_eq!(emb.len(), 1, "{emb:?}");
    assert_eq!(emb[0].body["input"], "ping");
    for p in &probes {
        let body = &p.body;
        assert_eq!(body["max_tokens"], 1, "{body}");
        assert_eq!(body["messages"][0]["content"], "ping", "{body}");
    }

    // `?model=` checks one group; an unknown one is a 404, an empty one a 400.
    let only = health(&gw, "?model=good").await;
    assert_eq!(only["healthy_count"], 1, "{only}");
    assert_eq!(only["unhealthy_count"], 0, "{only}");
    let r = get(&gw, "/health?model=nope", Some(MASTER)).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let r = get(&gw, "/health?model=", Some(MASTER)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json()["error"]["message"].is_string());

    // Readiness shows each deployment's last probe; everyone sees the counts only.
    let d = readiness_of(&gw, "down-1").await;
    assert_eq!(d["last_probe"]["ok"], false, "{d}");
    assert!(
        d["last_probe"]["checked_at_ms"].as_u64().unwrap() > 0,
        "{d}"
    );
    let d = readiness_of(&gw, "good-1").await;
    assert_eq!(d["last_probe"]["ok"], true, "{d}");
    let open = get(&gw, "/health/readiness", None).await;
    assert_eq!(open.status, 200);
    let open = open.json();
    assert_eq!(open["status"], "healthy", "{open}");
    assert_eq!(open["deployments_healthy"], 3, "{open}");
    assert_eq!(open["deployments_unhealthy"], 2, "{open}");
    assert!(open.get("deployments").is_none(), "{open}");

    // No spend for the probes: the only row is the client request made now.
    let r = post(&gw, "/v1/chat/completions", Some(MASTER), &chat("good")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = admin::spend_logs(&gw, MASTER, "").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(!gw.logs().contains(BAD_KEY));
}

#[tokio::test]
async fn background_health_checks_keep_the_last_probe_and_cool_a_failing_deployment_down() {
    let m = keyed_mock().await;
    let u = m.url();
    let down = format!("http://127.0.0.1:{}/v1", closed_port());
    let cfg = Config::new()
        .master_key(MASTER)
        .deployment(
            Deployment::new("pair", "openai/mock-down")
                .api_base(&down)
                .api_key(UPSTREAM_KEY)
                .id("down-1")
                .param("order", 1),
        )
        .deployment(
            Deployment::openai("pair", "mock-good", &u)
                .id("good-1")
                .param("order", 2),
        )
        .router_setting("allowed_fails", 1)
        .router_setting("cooldown_time", 60);
    let cfg = general(cfg, "background_health_checks", json!(true));
    let cfg = general(cfg, "health_check_interval", json!(1));
    let gw = Gateway::start(&cfg.yaml());

    // Two failed probes within a minute, one allowed: the deployment cools down.
    let d = wait_for(&gw, "down-1", |d| d["state"] == "complete_outage").await;
    assert_eq!(d["last_probe"]["ok"], false, "{d}");
    assert!(
        d["last_probe"]["error"]
            .as_str()
            .unwrap()
            .contains("could not connect")
    );
    assert!(d["cooldown_until_ms"].as_u64().unwrap() > now_ms(), "{d}");
    let g = wait_for(&gw, "good-1", |d| d["last_probe"]["ok"] == true).await;
    assert_eq!(g["state"], "healthy", "{g}");

    // `/health` answers from the background results.
    let v = health(&gw, "").await;
    assert_eq!(v["healthy_endpoints"][0]["model_id"], "good-1", "{v}");
    assert_eq!(v["unhealthy_endpoints"][0]["model_id"], "down-1", "{v}");

    // The healthy deployment serves clients straight away while the other is down.
    let r = post(&gw, "/v1/chat/completions", Some(MASTER), &chat("pair")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-id"), Some("good-1"));
    assert_eq!(r.header("x-litellm-attempted-retries"), Some("0"));
}

#[tokio::test]
async fn failing_client_requests_cool_a_deployment_down_until_it_answers_again() {
    let m = keyed_mock().await;
    let port = closed_port();
    let cfg = Config::new()
        .master_key(MASTER)
        .deployment(
            Deployment::new("pair", "openai/mock-flaky")
                .api_base(&format!("http://127.0.0.1:{port}/v1"))
                .api_key(UPSTREAM_KEY)
                .id("flaky-1")
                .param("order", 1),
        )
        .deployment(
            Deployment::openai("pair", "mock-good", &m.url())
                .id("good-1")
                .param("order", 2),
        )
        .router_setting("allowed_fails", 1)
        .router_setting("cooldown_time", 2);
    let gw = Gateway::start(&cfg.yaml());
    crate::support::clock::away_from_minute_boundary(50.0).await;

    // Two failures within a minute, one allowed: out of rotation, the other one answers.
    for _ in 0..2 {
        let r = post(&gw, "/v1/chat/completions", Some(MASTER), &chat("pair")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-litellm-model-id"), Some("good-1"));
    }
    let d = readiness_of(&gw, "flaky-1").await;
    assert_eq!(d["state"], "complete_outage", "{d}");
    assert_eq!(d["failures"], 2, "{d}");
    assert_eq!(d["cooldowns"], json!([[502, 1]]), "{d}");
    let until = d["cooldown_until_ms"].as_u64().unwrap();
    assert!(until > now_ms(), "{d}");
    assert!(d["last_probe"].is_null(), "{d}");
    let open = get(&gw, "/health/readiness", None).await.json();
    assert_eq!(open["deployments_unhealthy"], 1, "{open}");

    // The upstream comes back; once the cooldown is over it serves again, and is healthy.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let state = Arc::new(MockState::new(MockOptions {
        require_key: Some(UPSTREAM_KEY.into()),
        ..MockOptions::default()
    }));
    let server = tokio::spawn(async move {
        axum::serve(listener, llmgate_mock::router(state))
            .await
            .unwrap();
    });
    wait_for(&gw, "flaky-1", |d| d["cooldown_until_ms"].is_null()).await;
    let r = post(&gw, "/v1/chat/completions", Some(MASTER), &chat("pair")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-litellm-model-id"), Some("flaky-1"));
    let d = readiness_of(&gw, "flaky-1").await;
    assert_eq!(d["state"], "healthy", "{d}");
    let open = get(&gw, "/health/readiness", None).await.json();
    assert_eq!(open["deployments_unhealthy"], 0, "{open}");
    server.abort();
}
