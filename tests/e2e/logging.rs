//! The log's format: plain text without colour codes when stderr is not a terminal, and
//! JSON (one object per line) by each of LiteLLM's three switches.

use std::time::Duration;

use serde_json::Value;

use crate::support::mock::keyed_mock;
use crate::support::{Config, Gateway, Spec, openai_config};

/// The gateway's stderr once its start-up lines are in.
fn startup_logs(gw: &Gateway) -> String {
    gw.logs_once("llmgate listening", Duration::from_secs(30))
}

#[tokio::test]
async fn piped_logs_are_plain_text_without_colour_codes() {
    let m = keyed_mock().await;
    let gw = Gateway::start(&openai_config(&m.url(), &[("gpt-4o", "mock-gpt")]));
    let logs = startup_logs(&gw);
    assert!(logs.contains("llmgate listening"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in a piped log: {logs:?}"
    );
    assert!(
        serde_json::from_str::<Value>(logs.lines().next().unwrap()).is_err(),
        "{logs}"
    );
}

#[tokio::test]
async fn json_logs_by_flag_by_environment_and_by_config() {
    let m = keyed_mock().await;
    let config = openai_config(&m.url(), &[("gpt-4o", "mock-gpt")]);
    let mut asked = Config::openai(&m.url(), &[("gpt-4o", "mock-gpt")]);
    asked
        .litellm_settings
        .insert("json_logs".into(), serde_yaml_ng::Value::Bool(true));
    let in_config = asked.yaml();
    let cases = [
        (
            "--json-logs",
            Spec {
                config: &config,
                args: &["--json-logs"],
                ..Spec::default()
            },
        ),
        (
            "JSON_LOGS=True",
            Spec {
                config: &config,
                env: &[("JSON_LOGS", "True")],
                ..Spec::default()
            },
        ),
        (
            "litellm_settings.json_logs",
            Spec {
                config: &in_config,
                ..Spec::default()
            },
        ),
    ];
    for (switch, spec) in cases {
        let gw = Gateway::start_spec(spec);
        let logs = startup_logs(&gw);
        assert!(logs.contains("llmgate listening"), "{switch}: {logs}");
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{switch}: not a JSON line ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{switch}: {line}"
            );
        }
    }
}
