//! Routing through the `router` policy plugin with LiteLLM's `router_settings`: fallbacks
//! of every kind, retries with `Retry-After`, cooldowns, load balancing, aliases and Kilo
//! auto-routing; and hostile policies contained to their request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Spec, client};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "route me"}]})
}

/// An OpenAI-compatible deployment of the mock's `model` named `name`.
fn deployment(u: &str, name: &str, model: &str) -> Deployment {
    Deployment::openai(name, model, u).api_key("sk-x")
}

/// `model_list` entries: `(model_name, upstream model)`.
fn models(u: &str, entries: &[(&str, &str)]) -> Config {
    entries.iter().fold(Config::new(), |c, (name, model)| {
        c.deployment(deployment(u, name, model))
    })
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// How many requests the mock saw for an upstream model.
fn seen(m: &MockServer, model: &str) -> usize {
    m.requests()
        .iter()
        .filter(|r| r.body["model"] == model)
        .count()
}

#[tokio::test]
async fn litellm_fallbacks_of_every_kind_cross_groups() {
    let m = mock().await;
    let cfg = models(
        &m.url(),
        &[
            ("gpt-4o", "mock-error-500"),
            ("claude-sonnet", "mock-sonnet"),
            ("ctx", "mock-error-context"),
            ("big", "mock-big"),
            ("filtered", "mock-content-filter"),
            ("safe", "mock-safe"),
            ("bad", "mock-error-400"),
        ],
    );
    let cfg = cfg
        .router_setting(
            "fallbacks",
            json!([{"gpt-4o": ["claude-sonnet"]}, {"bad": ["claude-sonnet"]}, {"ctx": ["claude-sonnet"]}]),
        )
        .router_setting("context_window_fallbacks", json!([{"ctx": ["big"]}]))
        .router_setting("content_policy_fallbacks", json!([{"filtered": ["safe"]}]));
    let gw = Gateway::start(&cfg.yaml());

    // A 500 falls back to the next group; the headers say so.
    let r = gw.post("/v1/chat/completions", &chat("gpt-4o")).await;
    assert_eq!(r.status(), 200, "{}", gw.logs());
    assert_eq!(header(&r, "x-litellm-model-group"), "claude-sonnet");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(header(&r, "x-litellm-attempted-retries"), "0");
    // Streamed too: fallback happens before the first byte.
    let mut body = chat("gpt-4o");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-group"), "claude-sonnet");
    assert!(r.text().await.unwrap().contains("[DONE]"));

    // A context-length error goes to the context-window fallback, not the general one.
    let r = gw.post("/v1/chat/completions", &chat("ctx")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-group"), "big");
    // A content-policy error goes to the content-policy fallback.
    let r = gw.post("/v1/chat/completions", &chat("filtered")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-group"), "safe");
    // A plain bad request is the client's problem: no fallback, the upstream's 400.
    let before = seen(&m, "mock-sonnet");
    let r = gw.post("/v1/chat/completions", &chat("bad")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(seen(&m, "mock-sonnet"), before);
}

#[tokio::test]
async fn num_retries_waits_out_retry_after_then_gives_the_upstream_status() {
    let m = mock().await;
    let cfg = models(&m.url(), &[("limited", "mock-error-429")])
        .router_setting("num_retries", 1)
        .yaml();
    let gw = Gateway::start(&cfg);
    let t = Instant::now();
    let r = gw.post("/v1/chat/completions", &chat("limited")).await;
    let took = t.elapsed();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after"), "1");
    // Two attempts, the second after the upstream's Retry-After of 1 s.
    assert_eq!(seen(&m, "mock-error-429"), 2);
    assert!(took >= Duration::from_millis(950), "{took:?}");
}

#[tokio::test]
async fn allowed_fails_and_cooldown_take_a_failing_deployment_out_of_rotation() {
    let m = mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(deployment(&u, "pair", "mock-error-500").param("order", 1))
        .deployment(deployment(&u, "pair", "mock-good").param("order", 2))
        .router_setting("allowed_fails", 1)
        .router_setting("cooldown_time", 30);
    let gw = Gateway::start(&cfg.yaml());
    for i in 0..2 {
        let r = gw.post("/v1/chat/completions", &chat("pair")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-litellm-model-id"), "pair-1", "request {i}");
        assert_eq!(header(&r, "x-litellm-attempted-retries"), "1");
    }
    // Two failures within a minute, one allowed: the first deployment cools down and the
    // next requests go straight to the second.
    for _ in 0..3 {
        let r = gw.post("/v1/chat/completions", &chat("pair")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-litellm-attempted-retries"), "0");
    }
    assert_eq!(seen(&m, "mock-error-500"), 2);
    assert!(gw.logs().contains("deployment cooling down"));
}

#[tokio::test]
async fn load_balancing_strategies_spread_requests_as_configured() {
    let m = mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(deployment(&u, "weighted", "mock-w1").param("weight", 1))
        .deployment(deployment(&u, "weighted", "mock-w9").param("weight", 9))
        .deployment(deployment(&u, "busy", "mock-slow-400-b1"))
        .deployment(deployment(&u, "busy", "mock-slow-400-b2"))
        .deployment(deployment(&u, "fast", "mock-slow-120-f1"))
        .deployment(deployment(&u, "fast", "mock-f2"))
        .routing_setting(
            "groups",
            json!({
                "busy": {"config": {"strategy": "least-busy"}},
                "fast": {"config": {"strategy": "latency-based-routing"}},
            }),
        );
    let gw = Gateway::start(&cfg.yaml());

    // Weighted shuffle: 1 : 9.
    for _ in 0..200 {
        let r = gw.post("/v1/chat/completions", &chat("weighted")).await;
        assert_eq!(r.status(), 200);
    }
    let heavy = seen(&m, "mock-w9");
    assert_eq!(heavy + seen(&m, "mock-w1"), 200);
    assert!(
        (160..=196).contains(&heavy),
        "weight 9 of 10 got {heavy} of 200"
    );

    // Least busy: concurrent slow requests split across both deployments.
    let c = client();
    let url = format!("{}/v1/chat/completions", gw.url);
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 20)).await;
                c.post(url)
                    .json(&chat("busy"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (b1, b2) = (seen(&m, "mock-slow-400-b1"), seen(&m, "mock-slow-400-b2"));
    assert_eq!(b1 + b2, 10);
    assert!(b1 >= 4 && b2 >= 4, "least-busy split {b1}/{b2}");

    // Latency-based: once both latencies are known, the fast deployment gets the traffic.
    for _ in 0..30 {
        let r = gw.post("/v1/chat/completions", &chat("fast")).await;
        assert_eq!(r.status(), 200);
    }
    let slow = seen(&m, "mock-slow-120-f1");
    assert!(slow <= 3, "the slow deployment got {slow} of 30");
}

#[tokio::test]
async fn kilo_auto_picks_the_model_from_the_task() {
    let m = mock().await;
    let cfg = models(
        &m.url(),
        &[
            ("claude-opus-4-6", "mock-opus"),
            ("claude-sonnet-4-5", "mock-sonnet"),
        ],
    );
    let gw = Gateway::start(&cfg.yaml());
    let c = client();
    let ask = |headers: Vec<(&'static str, &'static str)>, model: &'static str| {
        let c = c.clone();
        let url = format!("{}/v1/chat/completions", gw.url);
        async move {
            let mut rb = c.post(url).json(&chat(model));
            for (k, v) in headers {
                rb = rb.header(k, v);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            header(&r, "x-litellm-model-group")
        }
    };
    let strong = "claude-opus-4-6";
    let fast = "claude-sonnet-4-5";
    for mode in [
        "plan",
        "debug",
        "orchestrator",
        "architect",
        "ask",
        "general",
    ] {
        assert_eq!(
            ask(vec![("x-kilocode-mode", mode)], "kilo/auto").await,
            strong,
            "{mode}"
        );
    }
    for mode in ["build", "code", "explore"] {
        assert_eq!(
            ask(vec![("x-kilocode-mode", mode)], "kilo/auto").await,
            fast,
            "{mode}"
        );
    }
    assert_eq!(
        ask(vec![], "kilo/auto").await,
        strong,
        "no mode: the default"
    );
    assert_eq!(
        ask(
            vec![
                ("x-kilocode-mode", "code"),
                ("X-KILOCODE-FEATURE", "openclaw")
            ],
            "kilo/auto"
        )
        .await,
        strong,
        "openclaw requests use the strong model"
    );
    // Listed as a model.
    let v: Value = gw.get_json("/v1/models").await;
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "kilo/auto")
    );
    drop(gw);

    // A configured name, default and mode mapping.
    let cfg = cfg.routing_setting(
        "auto",
        json!({
            "models": ["auto-coder"],
            "strong": "claude-opus-4-6",
            "fast": "claude-sonnet-4-5",
            "default": "fast",
            "modes": {"ask": "fast", "code": "strong"},
        }),
    );
    let gw = Gateway::start(&cfg.yaml());
    let url = format!("{}/v1/chat/completions", gw.url);
    let group = |mode: Option<&'static str>| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let mut rb = c.post(url).json(&chat("auto-coder"));
            if let Some(m) = mode {
                rb = rb.header("x-kilocode-mode", m);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            header(&r, "x-litellm-model-group")
        }
    };
    assert_eq!(group(None).await, fast);
    assert_eq!(group(Some("ask")).await, fast);
    assert_eq!(group(Some("code")).await, strong);
    assert_eq!(group(Some("plan")).await, strong);
}

#[tokio::test]
async fn auto_model_falls_back_to_the_other_model() {
    let m = mock().await;
    let cfg = models(
        &m.url(),
        &[
            ("claude-opus-4-6", "mock-error-503"),
            ("claude-sonnet-4-5", "mock-sonnet"),
        ],
    );
    let gw = Gateway::start(&cfg.yaml());
    let r = gw.post("/v1/chat/completions", &chat("kilo/auto")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-group"), "claude-sonnet-4-5");
    assert_eq!(header(&r, "x-litellm-attempted-fallbacks"), "1");
}

#[tokio::test]
async fn model_group_alias_answers_for_the_group() {
    let m = mock().await;
    let cfg = models(&m.url(), &[("gpt-4o", "mock-gpt")])
        .router_setting("model_group_alias", json!({"gpt-4": "gpt-4o"}));
    let gw = Gateway::start(&cfg.yaml());
    let r = gw.post("/v1/chat/completions", &chat("gpt-4")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-litellm-model-group"), "gpt-4o");
}

#[tokio::test]
async fn router_settings_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x, api_base: 'http://127.0.0.1:9/v1'}\nrouter_settings:\n  fallbacks: [{\"a\": [\"nope\"]}]\n  routing_strategy: fastest-please\n  num_retries: -1\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmgate"))
        .arg("--config")
        .arg(&cfg)
        .env("LLMGATE_DB", dir.path().join("db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router_settings.fallbacks.a: fallback `nope` is not a model group"),
        "{err}"
    );
    assert!(err.contains("router_settings.routing_strategy"), "{err}");
    assert!(err.contains("router_settings.num_retries"), "{err}");
}

#[tokio::test]
async fn hostile_policies_fail_only_their_request() {
    let m = mock().await;
    let cases = [
        ("loop", 500, "CPU deadline"),
        ("oom", 500, "ran out of memory"),
        ("panic", 500, "panics on purpose"),
        ("ghost", 500, "no-such-deployment"),
        ("many", 500, "planned 100000 attempts"),
        ("huge", 500, "hostile-policy@6.6.6"),
        ("reject", 418, "refuses this request"),
    ];
    let mut entries: Vec<(String, String)> = cases
        .iter()
        .map(|(c, _, _)| (c.to_string(), "mock-gpt".to_string()))
        .collect();
    entries.push(("good".into(), "mock-gpt".into()));
    let refs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let groups: serde_json::Map<String, Value> = cases
        .iter()
        .map(|(c, _, _)| {
            (
                c.to_string(),
                json!({"policy": "hostile-policy", "config": {"do": c}}),
            )
        })
        .collect();
    let cfg = models(&m.url(), &refs)
        .llmgate_setting(
            "plugin_limits",
            json!({"memory_mib": 32, "call_timeout_ms": 200}),
        )
        .routing_setting("groups", groups)
        .yaml();
    let mut gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: &["openai", "policy-router", "hostile-policy"],
        ..Spec::default()
    });
    let mut codes = HashMap::new();
    for (case, status, needle) in cases {
        // Never a hang: the harness client gives up after a generous 60 s, which fails the
        // test; how fast the answer comes is not asserted.
        let r = gw.post("/v1/chat/completions", &chat(case)).await;
        assert_eq!(r.status().as_u16(), status, "{case}");
        let v: Value = r.json().await.unwrap();
        let text = v["error"]["message"].as_str().unwrap().to_string();
        assert!(text.contains(needle), "{case}: {text}");
        assert!(text.len() < 4096, "{case}: the error is bounded");
        if status == 500 {
            assert!(
                text.contains("hostile-policy@6.6.6"),
                "{case}: fault not attributed: {text}"
            );
            assert_eq!(v["error"]["code"], "plugin_fault", "{case}");
        }
        codes.insert(case, status);
        // The gateway is still up and the good group still works after each one.
        assert!(gw.alive(), "gateway died after {case}");
        let r = gw.post("/v1/chat/completions", &chat("good")).await;
        assert_eq!(r.status(), 200, "after {case}");
    }
    assert_eq!(codes.len(), 7);
}
