//! The log's format: plain text without colour codes when stderr is not a terminal, and
//! JSON (one object per line) by each of LiteLLM's three switches.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::admin::{generate, hash};
use crate::support::http::post;
use crate::support::mock::{UPSTREAM_KEY, keyed_mock};
use crate::support::{Config, Deployment, Gateway, Spec, openai_config};

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

/// The gateway's JSON log lines of target `llmgate::access` (their `fields`), once there are
/// at least `n` of them.
fn access_lines(gw: &Gateway, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = gw
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "llmgate::access")
            .map(|v| v["fields"].clone())
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const MASTER: &str = "sk-master-logging-1234";

/// A gateway with a master key and prices: `gpt-4o` answers, `flaky` fails (500) and falls
/// back to `gpt-4o`, `endless` streams forever. JSON logs.
fn priced_gateway(m: &llmgate_mock::MockServer, args: &'static [&'static str]) -> Gateway {
    let u = m.url();
    let dep = |name: &str, model: &str| {
        Deployment::openai(name, model, &u)
            .api_key(UPSTREAM_KEY)
            .prices(0.000_976_562_5, 0.001_953_125)
    };
    let cfg = Config::new()
        .master_key(MASTER)
        .deployment(dep("gpt-4o", "mock-gpt"))
        .deployment(dep("flaky", "mock-error-500"))
        .deployment(dep("endless", "mock-endless"))
        .router_setting("num_retries", 0)
        .router_setting("allowed_fails", 100)
        .router_setting("fallbacks", json!([{"flaky": ["gpt-4o"]}]))
        .yaml();
    Gateway::start_spec(Spec {
        config: &cfg,
        args,
        ..Spec::default()
    })
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
           "max_tokens": 8, "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn every_request_ends_in_one_access_line_naming_the_key_by_alias_and_hash() {
    let m = keyed_mock().await;
    let gw = priced_gateway(&m, &["--json-logs"]);
    let (key, _) = generate(&gw, MASTER, json!({"key_alias": "team-a-bot"})).await;

    let plain = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat("gpt-4o", false),
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    let streamed = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat("gpt-4o", true),
    )
    .await;
    assert_eq!(streamed.status, 200, "{}", streamed.text);
    let fell_back = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat("flaky", false),
    )
    .await;
    assert_eq!(fell_back.status, 200, "{}", fell_back.text);
    let bad_key = post(
        &gw,
        "/v1/chat/completions",
        Some("sk-wrong"),
        &chat("gpt-4o", false),
    )
    .await;
    assert_eq!(bad_key.status, 401);
    let unknown = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat("nope", false),
    )
    .await;
    assert_eq!(unknown.status, 404);

    let lines = access_lines(&gw, 5);
    assert_eq!(lines.len(), 5, "one line per request: {lines:#?}");
    let [plain_l, stream_l, fallback_l, bad_l, unknown_l] = &lines[..] else {
        unreachable!()
    };
    // The whole answer: who, what, where, how it went, what it cost.
    assert_eq!(
        plain_l["call_id"],
        plain.header("x-litellm-call-id").unwrap()
    );
    assert_eq!(plain_l["key_alias"], "team-a-bot");
    assert_eq!(plain_l["key_hash"], hash(&key));
    assert_eq!(plain_l["caller"], "key");
    assert_eq!(plain_l["api"], "/v1/chat/completions");
    assert_eq!(plain_l["model"], "gpt-4o");
    assert_eq!(plain_l["group"], "gpt-4o");
    assert_eq!(
        plain_l["deployment"],
        plain.header("x-litellm-model-id").unwrap()
    );
    assert_eq!(plain_l["provider"], "openai");
    assert_eq!(
        (plain_l["status"].as_u64(), plain_l["attempts"].as_u64()),
        (Some(200), Some(1))
    );
    assert_eq!(plain_l["stream"], false);
    assert!(plain_l["input_tokens"].as_u64().unwrap() > 0, "{plain_l}");
    assert!(plain_l["output_tokens"].as_u64().unwrap() > 0, "{plain_l}");
    assert_eq!(
        plain_l["cost"].as_f64().unwrap(),
        plain.header_f64("x-litellm-response-cost")
    );
    assert!(plain_l["latency_ms"].as_i64().unwrap() >= 0);
    assert!(
        plain_l.get("ttft_ms").is_none() && plain_l.get("error").is_none(),
        "{plain_l}"
    );
    // A stream has its time to first token and its usage.
    assert_eq!(
        (stream_l["stream"].as_bool(), stream_l["status"].as_u64()),
        (Some(true), Some(200))
    );
    let ttft = stream_l["ttft_ms"].as_i64().expect("ttft_ms of a stream");
    assert!(
        ttft <= stream_l["latency_ms"].as_i64().unwrap(),
        "{stream_l}"
    );
    assert!(
        stream_l["output_tokens"].as_u64().unwrap() > 0,
        "{stream_l}"
    );
    // A fallback counts both attempts and names the deployment that answered.
    assert_eq!(fallback_l["model"], "flaky");
    assert_eq!(fallback_l["attempts"], 2, "{fallback_l}");
    assert_eq!(
        fallback_l["deployment"],
        fell_back.header("x-litellm-model-id").unwrap()
    );
    // Refusals before admission are logged too, with their class and what is known.
    assert_eq!(
        (bad_l["status"].as_u64(), bad_l["error"].as_str()),
        (Some(401), Some("AuthenticationError"))
    );
    assert_eq!(bad_l["caller"], "none");
    assert!(bad_l.get("key_hash").is_none(), "{bad_l}");
    assert_eq!(
        (unknown_l["status"].as_u64(), unknown_l["error"].as_str()),
        (Some(404), Some("NotFoundError"))
    );
    assert_eq!(unknown_l["model"], "nope");
    assert_eq!(unknown_l["key_alias"], "team-a-bot");
    // Never the key itself, nor the upstream's.
    let logs = gw.logs();
    assert!(
        !logs.contains(&key) && !logs.contains(UPSTREAM_KEY),
        "a key in the log"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_logged_as_499() {
    let m = keyed_mock().await;
    let gw = priced_gateway(&m, &["--json-logs"]);
    // A raw connection, closed after the first bytes of the stream: the client is gone.
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = chat("endless", true).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(format!("{head}{body}").as_bytes())
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = conn.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(conn);
    let lines = access_lines(&gw, 1);
    assert_eq!(lines.len(), 1, "{lines:#?} {}", gw.logs());
    assert_eq!(lines[0]["status"], 499, "{}", lines[0]);
    assert_eq!(lines[0]["error"], "ClientDisconnected");
    assert_eq!(lines[0]["caller"], "master");
}

#[tokio::test]
async fn the_text_access_line_carries_the_same_fields() {
    let m = keyed_mock().await;
    let gw = priced_gateway(&m, &[]);
    let r = post(
        &gw,
        "/v1/chat/completions",
        Some(MASTER),
        &chat("gpt-4o", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let logs = gw.logs_once("llmgate::access", Duration::from_secs(10));
    let line = logs
        .lines()
        .find(|l| l.contains("llmgate::access"))
        .unwrap_or_else(|| panic!("no access line: {logs}"));
    let call_id = format!("call_id={}", r.header("x-litellm-call-id").unwrap());
    for field in [
        call_id.as_str(),
        "caller=\"master\"",
        "status=200",
        "attempts=1",
        "group=\"gpt-4o\"",
        "cost=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(!line.contains(MASTER));
}
