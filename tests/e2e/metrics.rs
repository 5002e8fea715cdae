//! `GET /metrics`: off unless asked for (a 404 in OpenAI's shape that says how to turn it
//! on), on by `llmgate.metrics` or LiteLLM's `callbacks: ["prometheus"]`, behind the master key
//! with `require_auth_for_metrics_endpoint`. What the series count is checked with a real
//! Prometheus parser in `tests/python/test_metrics.py`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::{get, post};
use crate::support::mock::keyed_mock;
use crate::support::{Config, Gateway};

fn chat() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn metrics_are_off_unless_asked_for() {
    let m = keyed_mock().await;
    let gw = Gateway::start(&Config::openai(&m.url(), &[("gpt-4o", "mock-gpt")]).yaml());
    let r = get(&gw, "/metrics", None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let body: Value = serde_json::from_str(&r.text).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("litellm_settings.callbacks"), "{message}");
}

#[tokio::test]
async fn the_llmgate_switch_turns_metrics_on_without_auth() {
    let m = keyed_mock().await;
    let cfg = Config::openai(&m.url(), &[("gpt-4o", "mock-gpt")]).llmgate_setting("metrics", true);
    let gw = Gateway::start(&cfg.yaml());
    let served = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("litellm_proxy_total_requests_metric_total{"))
            .filter(|l| l.contains("requested_model=\"gpt-4o\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    let before = get(&gw, "/metrics", None).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert!(
        before.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        before
            .text
            .contains("# TYPE litellm_deployment_state gauge"),
        "{}",
        before.text
    );
    for _ in 0..3 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", None, &chat())
                .await
                .status,
            200
        );
    }
    let after = get(&gw, "/metrics", None).await;
    assert_eq!(
        served(&after.text) - served(&before.text),
        3.0,
        "{}",
        after.text
    );
}

#[tokio::test]
async fn litellm_callbacks_turn_metrics_on_and_auth_asks_for_the_master_key() {
    let m = keyed_mock().await;
    let mut cfg =
        Config::openai(&m.url(), &[("gpt-4o", "mock-gpt")]).master_key("sk-master-metrics");
    cfg.litellm_settings.insert(
        "success_callback".into(),
        serde_yaml_ng::from_str("[prometheus, langfuse]").unwrap(),
    );
    cfg.litellm_settings.insert(
        "require_auth_for_metrics_endpoint".into(),
        serde_yaml_ng::Value::Bool(true),
    );
    let gw = Gateway::start(&cfg.yaml());
    let logs = gw.logs_once("llmgate listening", Duration::from_secs(30));
    assert!(
        logs.contains("callback `langfuse` is not served by llmgate"),
        "{logs}"
    );
    let r = get(&gw, "/metrics", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = get(&gw, "/metrics", Some("sk-not-the-master")).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = get(&gw, "/metrics", Some("sk-master-metrics")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("litellm_deployment_state{"), "{}", r.text);
    assert!(!r.text.contains("sk-master-metrics"));
}
