//! Fault injection: an OpenAI-shaped upstream that breaks in every way the mock knows (reset
//! mid-body and mid-stream, a clean close mid-answer, malformed SSE, comments only, a stream
//! that never ends, an oversize body, invalid JSON, slow headers), seen by OpenAI and
//! Anthropic clients, plain and streamed. Each case checks the client's status and error
//! shape, whether the fallback group answered, and the spend log row.
//!
//! Also here: the request checks that must answer 400 before anything goes upstream, what
//! `/health/readiness` tells a caller without the master key, and how the retry and
//! fallback headers count attempts.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, client, sse_data};

/// Prices of every fault deployment (USD per input and output token), so that partial
/// answers cost something.
const PRICES: (f64, f64) = (0.001, 0.002);

/// Which API the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    OpenAi,
    Anthropic,
}

/// A client request for `model` in `dialect`.
fn request(dialect: Dialect, model: &str, stream: bool) -> (&'static str, Value) {
    let messages = json!([{"role": "user", "content": "tell me a few words"}]);
    match dialect {
        Dialect::OpenAi => (
            "/v1/chat/completions",
            json!({"model": model, "messages": messages, "stream": stream}),
        ),
        Dialect::Anthropic => (
            "/v1/messages",
            json!({"model": model, "max_tokens": 64, "messages": messages, "stream": stream}),
        ),
    }
}

/// What came back.
struct Answer {
    status: u16,
    group: String,
    call_id: Option<String>,
    body: String,
}

async fn send(gw: &Gateway, dialect: Dialect, model: &str, stream: bool) -> Answer {
    let (path, body) = request(dialect, model, stream);
    let r = client()
        .post(format!("{}{path}", gw.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let group = header("x-litellm-model-group").unwrap_or_default();
    let call_id = header("x-litellm-call-id");
    let status = r.status().as_u16();
    let body = r
        .text()
        .await
        .unwrap_or_else(|e| format!("(body broke: {e})"));
    Answer {
        status,
        group,
        call_id,
        body,
    }
}

/// The error object of a non-streamed error body, checked to be in `dialect`'s shape.
fn error_of(dialect: Dialect, body: &str) -> Value {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("error body not JSON ({e}): {body}"));
    match dialect {
        Dialect::OpenAi => {
            assert!(v["error"]["message"].is_string(), "not OpenAI's shape: {v}");
            assert!(v["error"]["type"].is_string(), "not OpenAI's shape: {v}");
            assert!(v.get("type").is_none(), "not OpenAI's shape: {v}");
        }
        Dialect::Anthropic => {
            assert_eq!(v["type"], "error", "not Anthropic's shape: {v}");
            assert!(v["error"]["type"].is_string(), "not Anthropic's shape: {v}");
            assert!(
                v["error"]["message"].is_string(),
                "not Anthropic's shape: {v}"
            );
        }
    }
    v["error"].clone()
}

/// A streamed body that must end with an error event in `dialect`'s shape and must not look
/// complete; returns the error object.
fn stream_error_of(dialect: Dialect, body: &str) -> Value {
    let data = sse_data(body);
    let last = data
        .last()
        .unwrap_or_else(|| panic!("empty stream: {body:?}"));
    let v: Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last event not JSON ({e}): {body}"));
    match dialect {
        Dialect::OpenAi => {
            assert!(
                !data.iter().any(|d| d == "[DONE]"),
                "[DONE] after a break: {body}"
            );
            assert!(v["error"]["message"].is_string(), "no error event: {body}");
        }
        Dialect::Anthropic => {
            assert!(
                body.contains("event: error\n"),
                "no Anthropic error event: {body}"
            );
            assert!(
                !body.contains("message_stop"),
                "a broken stream closed as complete: {body}"
            );
            assert_eq!(v["type"], "error", "last event not an error: {body}");
            assert!(v["error"]["type"].is_string(), "{body}");
        }
    }
    v["error"].clone()
}

/// The newest spend log row, once there are more than `before` rows (the writer batches).
async fn newest_row(gw: &Gateway, before: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = spend_rows(gw).await;
        if rows.len() > before {
            assert_eq!(rows.len(), before + 1, "more than one row for one request");
            return rows[0].clone();
        }
        assert!(Instant::now() < deadline, "no spend log row was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn spend_rows(gw: &Gateway) -> Vec<Value> {
    gw.get_json("/spend/logs")
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How a case must end for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// An error response with this status, before any byte of an answer.
    Status(u16),
    /// A 200 stream that ends with an error event.
    InStream,
}

/// One fault: the mock marker, the modes it applies to, and how it ends.
struct Fault {
    name: &'static str,
    marker: &'static str,
    plain: Option<Expect>,
    streamed: Option<Expect>,
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "reset mid-body",
        marker: "reset-body",
        plain: Some(Expect::Status(502)),
        streamed: None,
    },
    Fault {
        name: "reset mid-stream",
        marker: "disconnect",
        plain: None,
        streamed: Some(Expect::InStream),
    },
    Fault {
        name: "clean close mid-answer",
        marker: "truncate",
        plain: Some(Expect::Status(502)),
        streamed: Some(Expect::InStream),
    },
    Fault {
        name: "malformed SSE / invalid JSON",
        marker: "malformed",
        plain: Some(Expect::Status(502)),
        streamed: Some(Expect::InStream),
    },
    Fault {
        name: "comments only",
        marker: "comments-only",
        plain: None,
        streamed: Some(Expect::InStream),
    },
    Fault {
        name: "never-ending stream",
        marker: "endless",
        plain: None,
        streamed: Some(Expect::InStream),
    },
    Fault {
        name: "oversize body",
        marker: "oversize",
        plain: Some(Expect::Status(502)),
        streamed: Some(Expect::InStream),
    },
    Fault {
        name: "slow headers",
        marker: "slowheaders-4000",
        plain: Some(Expect::Status(504)),
        streamed: Some(Expect::Status(504)),
    },
];

/// Every fault twice: group `f-<marker>` alone, and `fb-<marker>` with a fallback to `backup`.
fn fault_config(mock: &str) -> String {
    let deployment = |name: &str, model: &str| {
        Deployment::openai(name, model, mock)
            .api_key("sk-up")
            .prices(PRICES.0, PRICES.1)
    };
    let mut c = Config::new();
    let mut fallbacks = Vec::new();
    for f in FAULTS {
        let model = format!("mock-{}", f.marker);
        for prefix in ["f", "fb"] {
            let mut d = deployment(&format!("{prefix}-{}", f.marker), &model);
            // Only slow headers need a short attempt timeout; the others fail on their own.
            if f.marker.starts_with("slowheaders") {
                d = d.param("timeout", 1);
            }
            c = c.deployment(d);
        }
        fallbacks.push(json!({format!("fb-{}", f.marker): ["backup"]}));
    }
    c.deployment(deployment("backup", "mock-gpt"))
        .router_setting("fallbacks", fallbacks)
        .llmgate_setting("stream_idle_timeout_seconds", 1)
        .llmgate_setting("max_stream_duration_seconds", 3)
        .llmgate_setting("max_response_body_bytes", 1_048_576)
        .yaml()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_in_both_dialects_plain_and_streamed() {
    let m = mock().await;
    let gw = Gateway::start(&fault_config(&m.url()));
    let mut cases = 0;
    for f in FAULTS {
        for (stream, expect) in [(false, f.plain), (true, f.streamed)] {
            let Some(expect) = expect else { continue };
            for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
                for with_fallback in [false, true] {
                    let case = format!(
                        "{} ({dialect:?}, {}, {})",
                        f.name,
                        if stream { "streamed" } else { "plain" },
                        if with_fallback {
                            "with fallback"
                        } else {
                            "alone"
                        }
                    );
                    let group = format!("{}-{}", if with_fallback { "fb" } else { "f" }, f.marker);
                    let before = spend_rows(&gw).await.len();
                    let a = send(&gw, dialect, &group, stream).await;
                    // A fallback can only answer while nothing has reached the client.
                    let falls_back = with_fallback && matches!(expect, Expect::Status(_));
                    if falls_back {
                        assert_eq!(a.status, 200, "{case}: {}", a.body);
                        assert_eq!(a.group, "backup", "{case}: the fallback did not answer");
                        if stream {
                            let done = match dialect {
                                Dialect::OpenAi => "[DONE]",
                                Dialect::Anthropic => "message_stop",
                            };
                            assert!(a.body.contains(done), "{case}: {}", a.body);
                        }
                    } else {
                        match expect {
                            Expect::Status(code) => {
                                assert_eq!(a.status, code, "{case}: {}", a.body);
                                let e = error_of(dialect, &a.body);
                                assert!(!e["message"].as_str().unwrap().is_empty(), "{case}");
                            }
                            Expect::InStream => {
                                assert_eq!(a.status, 200, "{case}: {}", a.body);
                                assert_eq!(a.group, group, "{case}: answered by another group");
                                stream_error_of(dialect, &a.body);
                            }
                        }
                    }
                    let row = newest_row(&gw, before).await;
                    if let Some(id) = &a.call_id {
                        assert_eq!(row["request_id"], id.as_str(), "{case}: {row}");
                    }
                    let spend = row["spend"].as_f64().unwrap();
                    if falls_back {
                        assert_eq!(row["status"], "success", "{case}: {row}");
                        assert_eq!(row["model_group"], group.as_str(), "{case}: {row}");
                        assert!(spend > 0.0, "{case}: {row}");
                    } else {
                        assert_eq!(row["status"], "failure", "{case}: {row}");
                        if expect == Expect::InStream {
                            // Started streams are billed for what they took (at least the prompt).
                            assert!(spend > 0.0, "{case}: a broken stream billed $0: {row}");
                        }
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 48);
}

/// Issue #11, item 6: an Anthropic client of an OpenAI-shaped upstream that closes the
/// stream cleanly in the middle of the answer (no `finish_reason`, no `[DONE]`) gets an
/// error event, not `end_turn` + `message_stop`; the spend log row is a failure that bills
/// the partial answer, as on `/v1/chat/completions`.
#[tokio::test]
async fn a_cut_off_stream_is_an_error_on_messages_and_is_billed() {
    let m = mock().await;
    let cfg = Config::new().deployment(
        Deployment::openai("cut", "mock-truncate", &m.url())
            .api_key("sk-up")
            .prices(PRICES.0, PRICES.1),
    );
    let gw = Gateway::start(&cfg.yaml());
    for dialect in [Dialect::Anthropic, Dialect::OpenAi] {
        let before = spend_rows(&gw).await.len();
        let a = send(&gw, dialect, "cut", true).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            !a.body.contains("end_turn"),
            "{dialect:?}: closed as complete: {}",
            a.body
        );
        let e = stream_error_of(dialect, &a.body);
        assert!(
            e["message"].as_str().unwrap().contains("ended"),
            "{dialect:?}: {e}"
        );
        let row = newest_row(&gw, before).await;
        assert_eq!(row["request_id"], a.call_id.as_deref().unwrap(), "{row}");
        assert_eq!(row["status"], "failure", "{dialect:?}: {row}");
        assert!(
            row["spend"].as_f64().unwrap() > 0.0,
            "{dialect:?}: billed $0: {row}"
        );
    }
}

/// Issue #11, item 11a: an upstream that keeps the connection busy with SSE comments holds
/// no request forever (`stream_idle_timeout_seconds`), nor does one that streams forever
/// (`max_stream_duration_seconds`).
#[tokio::test]
async fn comment_only_and_endless_streams_time_out() {
    let m = mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(Deployment::openai("chatty", "mock-comments-only", &u).api_key("sk-up"))
        .deployment(Deployment::openai("endless", "mock-endless", &u).api_key("sk-up"))
        .llmgate_setting("stream_idle_timeout_seconds", 1)
        .llmgate_setting("max_stream_duration_seconds", 2);
    let gw = Gateway::start(&cfg.yaml());
    for (group, needle) in [
        ("chatty", "stream_idle_timeout_seconds"),
        ("endless", "max_stream_duration_seconds"),
    ] {
        for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
            let a = tokio::time::timeout(Duration::from_secs(30), send(&gw, dialect, group, true))
                .await
                .unwrap_or_else(|_| panic!("{group} ({dialect:?}) still streaming after 30 s"));
            assert_eq!(a.status, 200);
            let e = stream_error_of(dialect, &a.body);
            assert!(
                e["message"].as_str().unwrap().contains(needle),
                "{group} {dialect:?}: {e}"
            );
        }
    }
}

/// Issue #11, item 11b: bodies the gateway cannot vouch for are refused with a 400 in the
/// client API's own shape, and nothing reaches the upstream.
#[tokio::test]
async fn malformed_requests_are_refused_before_the_upstream() {
    let m = mock().await;
    let cfg =
        Config::new().deployment(Deployment::openai("gpt", "mock-gpt", &m.url()).api_key("sk-up"));
    let gw = Gateway::start(&cfg.yaml());
    let bodies = |dialect: Dialect| -> Vec<(String, Vec<u8>)> {
        let (_, base) = request(dialect, "gpt", false);
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            serde_json::to_vec(&b).unwrap()
        };
        let mut invalid_utf8 = serde_json::to_vec(&base).unwrap();
        let at = invalid_utf8.windows(4).position(|w| w == b"tell").unwrap();
        invalid_utf8[at] = 0xff;
        vec![
            ("invalid UTF-8".into(), invalid_utf8),
            (
                "max_tokens \"100\"".into(),
                with("max_tokens", json!("100")),
            ),
            ("max_tokens -1".into(), with("max_tokens", json!(-1))),
            ("max_tokens 1.5".into(), with("max_tokens", json!(1.5))),
            (
                "max_completion_tokens \"5\"".into(),
                with("max_completion_tokens", json!("5")),
            ),
            ("stream \"yes\"".into(), with("stream", json!("yes"))),
            ("model 7".into(), with("model", json!(7))),
            ("not JSON".into(), b"{\"model\": \"gpt\", ".to_vec()),
        ]
    };
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        let (path, _) = request(dialect, "gpt", false);
        for (what, body) in bodies(dialect) {
            let r = client()
                .post(format!("{}{path}", gw.url))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(status, 400, "{dialect:?} {what}: {text}");
            let e = error_of(dialect, &text);
            assert!(!e["message"].as_str().unwrap().is_empty());
        }
    }
    assert_eq!(m.count(), 0, "a malformed request reached the upstream");
    // The same requests, well typed, do go through.
    let (path, mut ok) = request(Dialect::OpenAi, "gpt", false);
    ok["max_tokens"] = json!(100);
    let r = gw.post(path, &ok).await;
    assert_eq!(r.status(), 200);
    assert_eq!(m.count(), 1);
}

/// Issue #11, item 11c: without the master key, readiness says whether the gateway serves,
/// not where its database is or what it is made of.
#[tokio::test]
async fn readiness_shows_paths_only_to_the_master_key() {
    const MASTER: &str = "sk-master-faults-1";
    let m = mock().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("gpt", "mock-gpt", &m.url()).api_key("sk-up"))
        .master_key(MASTER);
    let gw = Gateway::start(&cfg.yaml());
    let readiness = |key: Option<&'static str>| {
        let url = format!("{}/health/readiness", gw.url);
        async move {
            let mut rb = client().get(url);
            if let Some(k) = key {
                rb = rb.bearer_auth(k);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    for key in [None, Some("sk-not-a-key")] {
        let text = readiness(key).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "healthy", "{v}");
        assert_eq!(v["db"], "connected", "{v}");
        assert!(v["event_loops"].as_u64().unwrap() >= 1, "{v}");
        assert!(v.get("db_path").is_none(), "{key:?}: {v}");
        assert!(
            !text.contains("llmgate.db"),
            "{key:?}: a path leaked: {text}"
        );
        assert!(!text.contains('/'), "{key:?}: a path leaked: {text}");
        assert!(v.get("providers").is_none(), "{key:?}: {v}");
    }
    let v: Value = serde_json::from_str(&readiness(Some(MASTER)).await).unwrap();
    crate::support::postgres::assert_db_shown(&v);
    assert!(
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "openai")
    );
}

/// Issue #11, item 11d: a retry (the same group again) and a fallback (another group) are
/// counted apart, as LiteLLM's `x-litellm-attempted-retries` / `-fallbacks` do.
#[tokio::test]
async fn retries_and_fallbacks_are_counted_apart() {
    let m = mock().await;
    let u = m.url();
    let deployment = |name: &str, model: &str| Deployment::openai(name, model, &u).api_key("sk-up");
    let cfg = Config::new()
        .deployment(deployment("flaky", "mock-error-500"))
        .deployment(deployment("pair", "mock-error-503").param("order", 1))
        .deployment(deployment("pair", "mock-gpt").param("order", 2))
        .deployment(deployment("backup", "mock-gpt"))
        .router_setting("num_retries", 1)
        .router_setting("retry_after", 0)
        .router_setting("allowed_fails", 100)
        .router_setting("fallbacks", json!([{"flaky": ["backup"]}]));
    let gw = Gateway::start(&cfg.yaml());
    let counts = |r: &reqwest::Response| {
        let h = |n: &str| r.headers()[n].to_str().unwrap().to_string();
        (
            h("x-litellm-model-group"),
            h("x-litellm-attempted-retries"),
            h("x-litellm-attempted-fallbacks"),
        )
    };
    // `flaky` is tried, retried once (num_retries), then falls back to `backup`.
    for stream in [false, true] {
        let (path, body) = request(Dialect::OpenAi, "flaky", stream);
        let before = m.count();
        let r = gw.post(path, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            m.count() - before,
            3,
            "attempts: flaky, flaky again, backup"
        );
        assert_eq!(
            counts(&r),
            ("backup".into(), "1".into(), "1".into()),
            "stream {stream}"
        );
    }
    // Another deployment of the same group is a retry, not a fallback.
    let (path, body) = request(Dialect::OpenAi, "pair", false);
    let r = gw.post(path, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(counts(&r), ("pair".into(), "1".into(), "0".into()));
}
