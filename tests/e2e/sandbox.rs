//! Hostile provider plugins are contained to their request, reported as plugin faults, and
//! the gateway stays up and keeps serving.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Spec};

#[tokio::test]
async fn hostile_plugins_fail_only_their_request() {
    let m = mock().await;
    let base = format!("{}/v1", m.url());
    let mut cfg = Config::new();
    for mode in [
        "loop",
        "oom",
        "panic",
        "exfil",
        "bad-header",
        "huge",
        "loop-stream",
        "fine",
    ] {
        cfg = cfg.deployment(Deployment::new(mode, &format!("hostile/{mode}")).api_base(&base));
    }
    let cfg = cfg
        .deployment(Deployment::new("good", "openai/mock-gpt").api_base(&base))
        .llmgate_setting(
            "plugin_limits",
            json!({"memory_mib": 32, "call_timeout_ms": 200}),
        )
        .yaml();
    let mut gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: &["openai", "policy-ordered", "hostile"],
        ..Spec::default()
    });
    let msg = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});

    let cases = [
        ("loop", "CPU deadline"),
        ("oom", "ran out of memory (cap 32 MiB)"),
        ("panic", "panicked on purpose"),
        ("exfil", "may only reach"),
        ("bad-header", "invalid header"),
        ("huge", "ran out of memory (cap 32 MiB)"),
    ];
    for (model, needle) in cases {
        // The deadline or the cap ends the call: the answer comes (the harness client gives
        // up after a generous 60 s, which fails the test), however slow the machine.
        let r = gw.post("/v1/chat/completions", &msg(model)).await;
        assert_eq!(r.status(), 500, "{model}");
        let v: Value = r.json().await.unwrap();
        let text = v["error"]["message"].as_str().unwrap();
        assert!(
            text.contains("hostile@6.6.6"),
            "{model}: fault not attributed: {text}"
        );
        assert!(text.contains(needle), "{model}: {text}");
        assert_eq!(v["error"]["code"], "plugin_fault");
        // The gateway is still up and serves the next request.
        assert!(gw.alive());
        let ok = gw.post("/v1/chat/completions", &msg("good")).await;
        assert_eq!(ok.status(), 200, "after {model}");
    }
    // Nothing was sent by the exfiltration attempt or the broken plans.
    assert!(m.requests().iter().all(|r| r.body["model"] != "exfil"));

    // A plugin that hangs mid-stream: the client's stream ends with an error event.
    let mut body = msg("loop-stream");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let last = crate::harness::sse_data(&text).pop().unwrap();
    let v: Value = serde_json::from_str(&last).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CPU deadline"),
        "{text}"
    );

    // A well-behaved request through the same hostile plugin works.
    let r = gw.post("/v1/chat/completions", &msg("fine")).await;
    assert_eq!(r.status(), 200);
    assert!(gw.logs().contains("hostile@6.6.6"));
}

#[tokio::test]
async fn many_concurrent_requests_each_get_their_own_instance() {
    let m = mock().await;
    let gw = Gateway::start(&crate::harness::openai_config(
        &m.url(),
        &[("gpt-4o", "mock-gpt")],
    ));
    let c = crate::harness::client();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        let url = format!("{}/v1/chat/completions", gw.url);
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "gpt-4o", "stream": i % 2 == 0, "messages": [{"role": "user", "content": format!("n{i}")}]});
            let r = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            assert!(text.contains(&format!("n{i}")), "{text}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(m.count(), 64);
}

/// Spare instances are made ahead of need, but every attempt still gets one that has never
/// served another request: state a plugin keeps in its instance never reaches the next one,
/// streamed or not, one after the other or concurrently.
#[tokio::test]
async fn every_attempt_gets_an_instance_no_request_used_before() {
    let m = mock().await;
    let cfg = Config::new()
        .deployment(Deployment::new("r", "hostile/remember").api_base(&format!("{}/v1", m.url())))
        .yaml();
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: &["openai", "policy-ordered", "hostile"],
        ..Spec::default()
    });
    let body = json!({"model": "r", "messages": [{"role": "user", "content": "x"}]});
    let uses = |r: &reqwest::Response| {
        r.headers()
            .get("x-hostile-instance-uses")
            .map(|v| v.to_str().unwrap().to_string())
    };
    for _ in 0..6 {
        let r = gw.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(uses(&r).as_deref(), Some("1"));
        // Let the spare be made after the answer, as it is between real requests.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &streamed).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let rs = futures_util::future::join_all((0..8).map(|_| gw.post("/v1/chat/completions", &body)))
        .await;
    for r in &rs {
        assert_eq!(r.status(), 200);
        assert_eq!(uses(r).as_deref(), Some("1"));
    }
}
