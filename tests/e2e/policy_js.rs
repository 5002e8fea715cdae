//! The JavaScript routing policy `cheapest` (plugins/policy-js, built by
//! `scripts/build-plugins.sh` with componentize-js) loaded by the real binary: cheapest
//! deployment first, failover to the next cheapest, the price cap, and `GET /plugins`.

use std::time::{Duration, Instant};

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::{Config, Deployment, Gateway, Spec};

/// The plugin file stem in plugins/dist/.
const PLUGIN: &str = "policy-cheapest";

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// One deployment; `per_token` is `(input_cost_per_token, output_cost_per_token)`.
fn deployment(group: &str, id: &str, model: &str, url: &str, per_token: (f64, f64)) -> Deployment {
    Deployment::openai(group, model, url)
        .prices(per_token.0, per_token.1)
        .id(id)
}

/// Each group lists its dear deployment (40 USD per million tokens) before its cheap one
/// (3 USD per million), so config order alone would pick the dear one.
fn config(url: &str) -> String {
    const DEAR: (f64, f64) = (0.000_01, 0.000_03);
    const CHEAP: (f64, f64) = (0.000_001, 0.000_002);
    let mut c = Config::new();
    // `reference` is the same pair routed by the Rust policy, for comparison.
    for (group, cheap_model) in [
        ("reference", "mock-gpt"),
        ("priced", "mock-gpt"),
        ("failover", "mock-error-500"),
        ("capped", "mock-gpt"),
        ("capped-failing", "mock-error-500"),
    ] {
        let (dear, cheap) = (format!("{group}-dear"), format!("{group}-cheap"));
        c = c
            .deployment(deployment(group, &dear, "mock-gpt", url, DEAR))
            .deployment(deployment(group, &cheap, cheap_model, url, CHEAP));
    }
    c.routing_setting(
        "groups",
        json!({
            "reference": {"policy": "ordered"},
            "priced": {"policy": "cheapest"},
            "failover": {"policy": "cheapest", "config": {}},
            "capped": {"policy": "cheapest", "config": {"max_price_per_mtok": 1}},
            "capped-failing": {"policy": "cheapest", "config": {"max_price_per_mtok": 10}},
        }),
    )
    .yaml()
}

async fn start() -> (MockServer, Gateway) {
    let m = crate::support::mock::keyed_mock().await;
    let cfg = config(&m.url());
    let started = Instant::now();
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: &["openai", "policy-ordered", PLUGIN],
        ..Spec::default()
    });
    // The component embeds a JS engine (QuickJS): report what loading it costs (compiled
    // once, then read from the on-disk cache).
    let load_ms = gw
        .logs()
        .lines()
        .map(strip_ansi)
        .find(|l| l.contains("loaded routing policy") && l.contains("cheapest@0.1.0"))
        .and_then(|l| {
            Some(
                l.split(" ms=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_string(),
            )
        });
    eprintln!(
        "policy_js: gateway up in {:?}; cheapest@0.1.0 loaded (compiled, or read from the disk cache), instantiated and described in {} ms",
        started.elapsed(),
        load_ms.as_deref().unwrap_or("?")
    );
    (m, gw)
}

#[tokio::test]
async fn js_policy_routes_cheapest_first_fails_over_and_enforces_the_price_cap() {
    let (m, gw) = start().await;

    // The cheaper deployment serves, although it is listed second.
    let r = gw.post("/v1/chat/completions", &chat("priced", "hi")).await;
    assert_eq!(r.status(), 200, "{}", gw.logs());
    assert_eq!(r.headers()["x-litellm-model-id"], "priced-cheap");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi");

    // The cheap upstream fails with a 500 (class `upstream`): the dear one serves.
    let r = gw
        .post("/v1/chat/completions", &chat("failover", "again"))
        .await;
    assert_eq!(r.status(), 200, "{}", gw.logs());
    assert_eq!(r.headers()["x-litellm-model-id"], "failover-dear");
    assert_eq!(r.headers()["x-litellm-attempted-retries"], "1");
    let tried: Vec<String> = m
        .requests()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(tried[tried.len() - 2..], ["mock-error-500", "mock-gpt"]);

    // Nothing is under a cap of 1 USD per million tokens: a 400 in OpenAI's error shape,
    // and no upstream is called.
    let before = m.requests().len();
    let r = gw.post("/v1/chat/completions", &chat("capped", "x")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("under the price cap"), "{v}");
    assert_eq!(m.requests().len(), before);

    // A cap of 10 leaves only the cheap deployment: when it fails, the dear one (over the
    // cap) is not tried.
    let r = gw
        .post("/v1/chat/completions", &chat("capped-failing", "x"))
        .await;
    assert_eq!(r.status(), 500, "{}", gw.logs());
    assert_eq!(m.requests().len(), before + 1);
    assert_eq!(m.requests()[before].body["model"], "mock-error-500");

    // Listed as a policy plugin, next to the Rust one.
    let v: Value = gw.get_json("/plugins").await;
    let plugins = v["plugins"].as_array().unwrap();
    let js = plugins
        .iter()
        .find(|p| p["name"] == "cheapest")
        .unwrap_or_else(|| panic!("cheapest not listed: {v}"));
    assert_eq!(js["kind"], "policy", "{v}");
    assert_eq!(js["version"], "0.1.0", "{v}");
    assert!(js["last_error"].is_null(), "{v}");
    assert!(plugins.iter().any(|p| p["name"] == "ordered"), "{v}");

    // Repeated requests: each instantiates the policy afresh and calls `route` once, and
    // every one is routed the same way. The same pair of deployments routed by the Rust
    // policy, for comparison. The times are printed for information only: speed is the
    // bench's business, and a loaded machine must not fail this test.
    let rust = per_request(&gw, "reference", "reference-dear").await;
    let js = per_request(&gw, "priced", "priced-cheap").await;
    eprintln!(
        "policy_js: per request (this host build, mock upstream): {js:?} routed by cheapest@0.1.0 (JS), {rust:?} by ordered (Rust)"
    );
}

/// A log line without its colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Mean time of a whole request to `group`, after a warm-up; every request must be served
/// by the deployment `id`.
async fn per_request(gw: &Gateway, group: &str, id: &str) -> Duration {
    const N: u32 = 20;
    for _ in 0..2 {
        let r = gw.post("/v1/chat/completions", &chat(group, "w")).await;
        assert_eq!(r.status(), 200, "{}", gw.logs());
    }
    let t = Instant::now();
    for _ in 0..N {
        let r = gw.post("/v1/chat/completions", &chat(group, "t")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-litellm-model-id"], id, "{group}");
    }
    t.elapsed() / N
}
