//! The JavaScript provider plugin `compat` (plugins/provider-js, built by
//! `scripts/build-plugins.sh` with jco's componentize-qjs backend) loaded by the real binary
//! next to the Rust `openai` plugin: plain and streamed chat completions under its own
//! prefixes, usage costed into a virtual key's spend and the spend logs, upstream errors
//! mapped to their classes, broken answers, `extra_headers`, param defaults and `api_base`,
//! and what its instances cost (load time, per request, memory per instance in flight, the
//! pool).

use std::time::{Duration, Instant};

use llmgate_mock::{MockOptions, MockServer};
use serde_json::{Value, json};

use crate::harness::{Gateway, Resp, Spec, chunk_content, client, openai_chunks, sse_data};

/// The plugin file stem in plugins/dist/.
const PLUGIN: &str = "provider-compat";
const MASTER: &str = "sk-master-provider-js";
/// USD per input / output token of every deployment.
const PRICE: (f64, f64) = (0.000_001, 0.000_002);
/// In-flight streams held at once when measuring instances (under the pool of 64).
const HELD: usize = 40;

/// Deployments of both prefixes on the mock at `u`, priced at [`PRICE`], and a master key.
fn config(u: &str) -> String {
    let prices = format!(
        "input_cost_per_token: {}, output_cost_per_token: {}",
        PRICE.0, PRICE.1
    );
    let dep = |group: &str, model: &str, extra: &str| {
        format!(
            "  - model_name: {group}\n    litellm_params: {{model: {model}, api_base: '{u}/v1', api_key: sk-upstream, {prices}{extra}}}\n    model_info: {{id: {group}}}\n"
        )
    };
    let mut s = String::from("model_list:\n");
    s.push_str(&dep(
        "samba",
        "sambanova/mock-gpt",
        ", temperature: 0.25, extra_headers: {X-Team: blue, X-Trace-Id: t-42}",
    ));
    s.push_str(&dep("limited", "hyperbolic/mock-error-429", ""));
    s.push_str(&dep("ctx", "sambanova/mock-error-context", ""));
    s.push_str(&dep("truncated", "sambanova/mock-truncate", ""));
    s.push_str(&dep("malformed", "sambanova/mock-malformed", ""));
    s.push_str(&dep("held-js", "sambanova/mock-slow-1500", ""));
    s.push_str(&dep("rust", "openai/mock-gpt", ""));
    // The wrong key: the mock answers OpenAI's 401. And an `api_base` that already names
    // the endpoint, with a trailing slash.
    s.push_str(&format!(
        "  - model_name: wrong-key\n    litellm_params: {{model: sambanova/mock-gpt, api_base: '{u}/v1', api_key: sk-wrong}}\n  - model_name: full-url\n    litellm_params: {{model: hyperbolic/mock-gpt, api_base: '{u}/v1/chat/completions/', api_key: sk-upstream}}\n"
    ));
    s.push_str(&format!(
        "general_settings:\n  master_key: {MASTER}\nllmgate:\n  plugin_limits:\n    max_instances: 64\n  routing:\n    default_policy: ordered\n"
    ));
    s
}

/// A mock that wants `sk-upstream`, and a gateway with `compat`, `openai` and `ordered`.
async fn start() -> (MockServer, Gateway) {
    let m = MockServer::start(MockOptions {
        require_key: Some("sk-upstream".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let cfg = config(&m.url());
    let started = Instant::now();
    let gw = Gateway::start_spec(Spec {
        config: &cfg,
        plugins: &["openai", "policy-ordered", PLUGIN],
        // Plain log lines, to read the load times from.
        env: &[("NO_COLOR", "1")],
        ..Spec::default()
    });
    eprintln!(
        "provider_js: gateway up in {:?}; loaded (compiled, or read from the disk cache), instantiated and described in: compat@0.1.0 {} ms, openai@0.1.0 {} ms",
        started.elapsed(),
        load_ms(&gw, "compat@0.1.0"),
        load_ms(&gw, "openai@0.1.0"),
    );
    (m, gw)
}

/// The `ms=` of the plugin's "loaded provider plugin" log line.
fn load_ms(gw: &Gateway, plugin: &str) -> String {
    gw.logs()
        .lines()
        .find(|l| l.contains("loaded provider plugin") && l.contains(&format!("plugin={plugin}")))
        .and_then(|l| l.split(" ms=").nth(1)?.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// A chat completion through `gw` with `key`.
async fn send(gw: &Gateway, key: &str, body: &Value) -> Resp {
    post_chat(&gw.url, key, body).await
}

/// `POST {url}/v1/chat/completions` with `key`.
async fn post_chat(url: &str, key: &str, body: &Value) -> Resp {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    Resp::read(r).await
}

/// `GET {path}` with the master key, answered 200 with JSON.
async fn get(gw: &Gateway, path: &str) -> Value {
    let r = client()
        .get(format!("{}{path}", gw.url))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    let r = Resp::read(r).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.json()
}

/// A virtual key for every model.
async fn virtual_key(gw: &Gateway) -> String {
    let r = client()
        .post(format!("{}/key/generate", gw.url))
        .bearer_auth(MASTER)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let r = Resp::read(r).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["key"].as_str().unwrap().to_string()
}

/// The cost of `usage` at [`PRICE`].
fn cost(usage: &Value) -> f64 {
    let n = |k: &str| {
        usage[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k}: {usage}"))
    };
    n("prompt_tokens") * PRICE.0 + n("completion_tokens") * PRICE.1
}

/// The spend log row of one request, once the batched writer has written it.
async fn spend_row(gw: &Gateway, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = get(gw, &format!("/spend/logs?request_id={request_id}")).await;
        if let Some(row) = rows.as_array().and_then(|a| a.first()) {
            return row.clone();
        }
        assert!(Instant::now() < deadline, "no spend row for {request_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn js_provider_serves_plain_and_streamed_chat_and_its_usage_is_costed() {
    let (m, gw) = start().await;
    assert!(
        !gw.logs().contains("two provider plugins serve one prefix"),
        "a prefix of compat is claimed by another plugin: {}",
        gw.logs()
    );
    let key = virtual_key(&gw).await;

    // Plain: served by the JS plugin, costed from the usage it reported.
    let r = send(&gw, &key, &chat("samba", "héllo 😀")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text, gw.logs());
    assert_eq!(r.header("x-llmgate-plugin"), Some("compat@0.1.0"));
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"], "echo: héllo 😀",
        "{v}"
    );
    assert_eq!(v["model"], "mock-gpt-2024-08-06", "{v}");
    let mut spent = cost(&v["usage"]);
    assert!(spent > 0.0);
    assert!((r.header_f64("x-litellm-response-cost") - spent).abs() < 1e-12);

    // What went upstream: the deployment's model, its `temperature` default, its
    // `extra_headers` (names lower-cased), and the key, applied by the host.
    let up = m.requests().pop().unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(up.body["model"], "mock-gpt");
    assert_eq!(up.body["temperature"], 0.25);
    assert_eq!(up.body["messages"][0]["content"], "héllo 😀");
    let header = |k: &str| {
        up.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-team").as_deref(),
        Some("blue"),
        "{:?}",
        up.headers
    );
    assert_eq!(
        header("x-trace-id").as_deref(),
        Some("t-42"),
        "{:?}",
        up.headers
    );
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer sk-upstream")
    );
    // The client's own value wins over the default.
    let mut body = chat("samba", "cold");
    body["temperature"] = json!(0.9);
    let r = send(&gw, &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    spent += r.header_f64("x-litellm-response-cost");
    assert_eq!(m.requests().pop().unwrap().body["temperature"], 0.9);

    // Streamed, the client not asking for usage: the plugin asks for it and hides the
    // usage chunk, and the request is still costed.
    let mut body = chat("samba", "one two");
    body["stream"] = json!(true);
    let r = send(&gw, &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-llmgate-plugin"), Some("compat@0.1.0"));
    let chunks = openai_chunks(&r.text);
    assert_eq!(chunk_content(&chunks), "echo: one two", "{}", r.text);
    assert!(
        chunks.iter().all(|c| c["usage"].is_null()),
        "the usage chunk reached a client that did not ask: {}",
        r.text
    );
    let up = m.requests().pop().unwrap();
    assert_eq!(up.body["stream_options"], json!({"include_usage": true}));
    let row = spend_row(&gw, r.header("x-litellm-call-id").unwrap()).await;
    assert_eq!(row["status"], "success", "{row}");
    assert_eq!(row["custom_llm_provider"], "sambanova", "{row}");
    assert!(row["prompt_tokens"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["completion_tokens"], 3, "{row}");
    let stream_cost = row["spend"].as_f64().unwrap();
    assert!(
        stream_cost > 0.0 && (stream_cost - cost(&row)).abs() < 1e-12,
        "{row}"
    );
    spent += stream_cost;

    // Streamed, asking for usage: the usage chunk is the client's.
    body["stream_options"] = json!({"include_usage": true});
    let r = send(&gw, &key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let usage: Vec<Value> = sse_data(&r.text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|c| !c["usage"].is_null())
        .collect();
    assert_eq!(usage.len(), 1, "{}", r.text);
    spent += cost(&usage[0]["usage"]);

    // An `api_base` that already names the endpoint (the other prefix, unpriced).
    let r = send(&gw, &key, &chat("full-url", "x")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-llmgate-plugin"), Some("compat@0.1.0"));
    assert_eq!(m.requests().pop().unwrap().path, "/v1/chat/completions");

    // Every cost reached the virtual key's spend.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = get(&gw, &format!("/key/info?key={key}")).await;
        let spend = info["info"]["spend"].as_f64().unwrap();
        if (spend - spent).abs() < 1e-9 {
            break;
        }
        assert!(
            Instant::now() < deadline && spend < spent,
            "key spend {spend}, want {spent}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn js_provider_maps_upstream_errors_to_their_classes() {
    let (m, gw) = start().await;

    // 429: rate-limited, its Retry-After kept; the same before a stream starts.
    for stream in [false, true] {
        let mut body = chat("limited", "x");
        body["stream"] = json!(stream);
        let r = send(&gw, MASTER, &body).await;
        let e = r.openai_error(429);
        assert_eq!(e["type"], "rate_limit_error", "stream={stream}: {}", r.text);
        assert_eq!(e["code"], "rate_limit_exceeded", "{}", r.text);
        assert!(
            e["message"].as_str().unwrap().contains("status 429"),
            "{}",
            r.text
        );
        assert_eq!(r.header("retry-after"), Some("1"), "stream={stream}");
    }

    // 401 (the upstream refused the deployment's key): auth.
    let r = send(&gw, MASTER, &chat("wrong-key", "x")).await;
    let e = r.openai_error(401);
    assert_eq!(e["type"], "authentication_error", "{}", r.text);
    assert_eq!(e["code"], "invalid_api_key", "{}", r.text);
    assert!(r.header("retry-after").is_none());

    // A 400 whose code says the prompt is too long.
    let r = send(&gw, MASTER, &chat("ctx", "x")).await;
    let e = r.openai_error(400);
    assert_eq!(e["code"], "context_length_exceeded", "{}", r.text);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length"),
        "{}",
        r.text
    );

    // A 2xx answer that is not JSON: a 502, like `openai`.
    let r = send(&gw, MASTER, &chat("malformed", "x")).await;
    let e = r.openai_error(502);
    assert!(
        e["message"].as_str().unwrap().contains("not JSON"),
        "{}",
        r.text
    );
    // A stream that ends before its `finish_reason` and `[DONE]`: `finish` reports it, and
    // the client's stream ends with that error event.
    let mut body = chat("truncated", "a b c d");
    body["stream"] = json!(true);
    let r = send(&gw, MASTER, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let last: Value = serde_json::from_str(sse_data(&r.text).last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended before the response was complete"),
        "{}",
        r.text
    );

    // The plugin serves chat completions only: an Anthropic client gets a clear 400 and
    // nothing goes upstream.
    let before = m.count();
    let r = client()
        .post(format!("{}/v1/messages", gw.url))
        .bearer_auth(MASTER)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "samba", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let r = Resp::read(r).await;
    r.anthropic_error(400);
    assert_eq!(m.count(), before);

    // The errors are in the spend logs under the plugin's prefixes, and were not the
    // plugin's fault.
    let rows = get(&gw, "/spend/logs").await;
    let rows = rows.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["custom_llm_provider"] == "hyperbolic"
                && r["metadata"]["error_status"] == 429),
        "{rows:?}"
    );
    assert!(!gw.logs().contains("plugin_fault"), "{}", gw.logs());
}

/// What one JS instance costs: the time per request against the Rust `openai` plugin on the
/// same mock, and the memory of instances in flight (streams held open by a slow upstream).
/// Two rounds of [`HELD`] streams go through a pool of 64: the second one fits only if the
/// first round's instances went back to the pool. The numbers are printed for
/// information only: speed is the bench's business, and a loaded machine must not fail
/// this test.
#[tokio::test]
async fn js_provider_instances_are_pooled_and_their_cost_is_reported() {
    let (m, gw) = start().await;
    let rust = per_request(&gw, "rust").await;
    let js = per_request(&gw, "samba").await;
    eprintln!(
        "provider_js: per request (this host build, mock upstream): {js:?} through compat@0.1.0 (JS), {rust:?} through openai@0.1.0 (Rust)"
    );

    // The first round touches fresh pool slots; the second reuses them (their pages stay
    // resident), so it should grow by little.
    let fresh = hold_streams(&gw, &m, "held-js").await;
    let reused = hold_streams(&gw, &m, "held-js").await;
    eprintln!(
        "provider_js: resident memory per in-flight compat@0.1.0 instance ({HELD} streams held): {fresh:?} KiB in fresh pool slots, {reused:?} KiB in reused ones"
    );

    let v = get(&gw, "/plugins").await;
    assert_eq!(v["instance_pool"]["max_instances"], 64, "{v}");
    assert_eq!(v["instance_pool"]["exhausted_total"], 0, "{v}");
    let plugins = v["plugins"].as_array().unwrap();
    let js = plugins
        .iter()
        .find(|p| p["name"] == "compat")
        .unwrap_or_else(|| panic!("compat not listed: {v}"));
    assert_eq!(js["kind"], "provider", "{v}");
    assert_eq!(js["version"], "0.1.0", "{v}");
    assert!(js["last_error"].is_null(), "{v}");
    assert!(
        js["file"]
            .as_str()
            .unwrap()
            .ends_with("provider-compat.wasm"),
        "{v}"
    );
}

/// Mean time of a whole request to `group`, after a warm-up.
async fn per_request(gw: &Gateway, group: &str) -> Duration {
    const N: u32 = 20;
    for _ in 0..2 {
        let r = send(gw, MASTER, &chat(group, "w")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let t = Instant::now();
    for _ in 0..N {
        assert_eq!(send(gw, MASTER, &chat(group, "t")).await.status, 200);
    }
    t.elapsed() / N
}

/// Hold [`HELD`] streams of `group` open at once; every one must be served. Returns the
/// growth of the gateway's resident memory per stream while they were all held, in KiB
/// (`None` where `/proc` cannot tell).
async fn hold_streams(gw: &Gateway, m: &MockServer, group: &str) -> Option<i64> {
    let rss_kib = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse::<i64>().ok()
    };
    let before = (rss_kib(), m.count());
    let mut body = chat(group, "hold an instance");
    body["stream"] = json!(true);
    let tasks: Vec<_> = (0..HELD)
        .map(|_| {
            let (url, body) = (gw.url.clone(), body.clone());
            tokio::spawn(async move { post_chat(&url, MASTER, &body).await })
        })
        .collect();
    // Every stream has reached the upstream (and holds its instance) before the measure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.count() < before.1 + HELD {
        assert!(Instant::now() < deadline, "the streams did not all start");
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a stream ended before all were held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = rss_kib();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{group}: {}", r.text);
        assert_eq!(sse_data(&r.text).last().map(String::as_str), Some("[DONE]"));
    }
    Some((during? - before.0?) / i64::try_from(HELD).ok()?)
}
