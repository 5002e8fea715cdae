//! OpenAI-compatible proxying through the real binary: plain, streamed, tools, errors,
//! fallback, limits.

use serde_json::{Value, json};

use crate::support::mock::keyed_mock as mock;
use crate::support::{
    Config, Deployment, Gateway, chunk_content, openai_chunks, openai_config, sse_data,
};

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn plain_completion_is_proxied_with_model_rewritten_and_key_applied() {
    let m = mock().await;
    let gw = Gateway::start(&openai_config(&m.url(), &[("gpt-4o", "mock-gpt")]));
    for path in ["/v1/chat/completions", "/chat/completions"] {
        let r = gw.post(path, &chat("gpt-4o", "hello there")).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["x-litellm-model-id"], "gpt-4o-0");
        assert!(!r.headers()["x-litellm-call-id"].is_empty());
        assert_eq!(r.headers()["x-litellm-attempted-retries"], "0");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "echo: hello there");
        assert_eq!(v["object"], "chat.completion");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    let reqs = m.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].body["model"], "mock-gpt");
    assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-upstream"));
}

#[tokio::test]
async fn streaming_passes_chunks_and_hides_usage_unless_asked() {
    let m = mock().await;
    let gw = Gateway::start(&openai_config(&m.url(), &[("gpt-4o", "mock-gpt")]));
    let mut body = chat("gpt-4o", "one two three");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let chunks = openai_chunks(&text);
    assert_eq!(chunk_content(&chunks), "echo: one two three");
    assert!(
        chunks.iter().all(|c| c["usage"].is_null()),
        "usage chunk leaked: {text}"
    );
    // The gateway asked the upstream for usage anyway (to cost the stream).
    assert_eq!(
        m.requests()[0].body["stream_options"]["include_usage"],
        true
    );

    body["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn openclaw_sized_request_with_tools_streams_a_tool_call() {
    let m = mock().await;
    let gw = Gateway::start(&openai_config(&m.url(), &[("claude-opus-4-6", "mock-gpt")]));
    let system: String = (0..900)
        .map(|i| format!("Rule {i}: be careful with tool {}. ", i % 14))
        .collect();
    assert!(system.len() > 30_000);
    let tools: Vec<Value> = (0..14)
        .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}"), "description": "does things",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}))
        .collect();
    let body = json!({
        "model": "claude-opus-4-6",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "please use tool now"}],
        "tools": tools,
        "max_completion_tokens": 64000,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(&r.text().await.unwrap());
    let mut args = String::new();
    let mut name = None;
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        if let Some(tc) = c["choices"][0]["delta"]["tool_calls"][0].as_object() {
            if let Some(n) = tc.get("function").and_then(|f| f["name"].as_str()) {
                name = Some(n.to_string());
            }
            args.push_str(
                tc.get("function")
                    .and_then(|f| f["arguments"].as_str())
                    .unwrap_or(""),
            );
        }
    }
    assert_eq!(name.as_deref(), Some("tool_0"));
    assert_eq!(args, r#"{"q":"mock"}"#);
    let up = &m.requests()[0].body;
    assert_eq!(up["tools"], body["tools"]);
    assert_eq!(up["messages"], body["messages"]);
    assert_eq!(up["max_completion_tokens"], 64000);
}

#[tokio::test]
async fn upstream_errors_keep_status_and_openai_shape() {
    let m = mock().await;
    let gw = Gateway::start(&openai_config(
        &m.url(),
        &[
            ("rl", "mock-error-429"),
            ("boom", "mock-error-500"),
            ("ctx", "mock-error-context"),
        ],
    ));
    let r = gw.post("/v1/chat/completions", &chat("rl", "x")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let r = gw.post("/v1/chat/completions", &chat("boom", "x")).await;
    assert_eq!(r.status(), 500);
    let r = gw.post("/v1/chat/completions", &chat("ctx", "x")).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length")
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_gateway_keeps_serving() {
    let m = mock().await;
    let cfg = Config::openai(&m.url(), &[("gpt-4o", "mock-gpt")])
        .llmgate_setting("max_request_body_bytes", 200_000);
    let gw = Gateway::start(&cfg.yaml());
    let c = crate::harness::client();
    let url = format!("{}/v1/chat/completions", gw.url);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "not valid JSON"),
        (
            br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "missing required field `model`",
        ),
        (
            br#"{"model":"gpt-4o"}"#.to_vec(),
            400,
            "missing required field `messages`",
        ),
        (
            br#"{"model":"gpt-4o","messages":[]}"#.to_vec(),
            400,
            "must not be empty",
        ),
        (
            br#"{"model":42,"messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "must be a string",
        ),
        (
            br#"{"model":"gpt-4o","stream":"yes","messages":[{"role":"user","content":"x"}]}"#
                .to_vec(),
            400,
            "`stream`",
        ),
        (
            br#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            404,
            "model `nope` is not served",
        ),
        (vec![b' '; 300_000], 413, "larger than the limit"),
    ];
    for (body, status, needle) in cases {
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{needle}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg}");
        assert!(v["error"]["type"].is_string());
    }
    let r = c
        .get(format!("{}/v1/nothing", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing")
    );
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(m.count(), 0, "nothing invalid reached the upstream");
    let r = gw
        .post("/v1/chat/completions", &chat("gpt-4o", "still here"))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unreachable_upstream_is_502_then_falls_back_within_the_group() {
    let m = mock().await;
    // A port that refuses connections: bind, then drop.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let u = m.url();
    let cfg = Config::new()
        .deployment(
            Deployment::new("solo", "openai/mock-gpt").api_base(&format!("http://{dead}/v1")),
        )
        .deployment(Deployment::openai("pair", "mock-error-500", &u).param("order", 1))
        .deployment(Deployment::openai("pair", "mock-gpt", &u).param("order", 2));
    let gw = Gateway::start(&cfg.yaml());
    let r = gw.post("/v1/chat/completions", &chat("solo", "x")).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{v}"
    );
    let r = gw
        .post("/v1/chat/completions", &chat("pair", "fallback please"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-litellm-model-id"], "pair-2");
    assert_eq!(r.headers()["x-litellm-attempted-retries"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: fallback please"
    );
}

#[tokio::test]
async fn timeouts_and_broken_streams_end_with_errors_not_hangs() {
    let m = mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(Deployment::openai("hang", "mock-hang", &u).param("timeout", 1))
        .deployment(Deployment::openai("cut", "mock-disconnect", &u))
        .deployment(Deployment::openai("junk", "mock-malformed", &u));
    let gw = Gateway::start(&cfg.yaml());
    // The upstream never answers (it waits an hour): a 504 is the deployment's 1 s timeout
    // firing. The harness client's generous 60 s timeout turns a hang into a failure.
    let r = gw.post("/v1/chat/completions", &chat("hang", "x")).await;
    assert_eq!(r.status(), 504);

    let mut body = chat("cut", "a b c d e f");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(&r.text().await.unwrap());
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broke off"),
        "{last}"
    );
    assert!(!data.iter().any(|d| d == "[DONE]"));

    let r = gw.post("/v1/chat/completions", &chat("junk", "x")).await;
    assert_eq!(r.status(), 502);
    let mut body = chat("junk", "x");
    body["stream"] = json!(true);
    let data = sse_data(
        &gw.post("/v1/chat/completions", &body)
            .await
            .text()
            .await
            .unwrap(),
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{last}"
    );
}

#[tokio::test]
async fn quick_start_model_answers_any_name_and_lists_models() {
    let m = crate::support::mock::mock().await;
    let base = format!("{}/v1", m.url());
    let gw = Gateway::start_spec(crate::harness::Spec {
        args: &["--model", "openai/mock-gpt", "--api_base", &base],
        ..Default::default()
    });
    let r = gw
        .post("/v1/chat/completions", &chat("claude-opus-4-6", "hi"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(m.requests()[0].body["model"], "mock-gpt");
    let c = crate::harness::client();
    let v: Value = c
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "openai/mock-gpt");
    let v: Value = c
        .get(format!("{}/v1/models/openai/mock-gpt", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["id"], "openai/mock-gpt");
    let r = c
        .get(format!("{}/health/liveliness", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = c
        .get(format!("{}/health/readiness", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["db"], "connected");
    crate::support::postgres::assert_db_shown(&v);
    assert!(
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "openai")
    );
    let v: Value = c
        .get(format!("{}/plugins", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"openai") && names.contains(&"ordered"),
        "{v}"
    );
    assert_eq!(v["plugins"][0]["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn embeddings_are_proxied() {
    let m = mock().await;
    let gw = Gateway::start(&openai_config(
        &m.url(),
        &[("embed", "text-embedding-3-small")],
    ));
    for path in ["/v1/embeddings", "/embeddings"] {
        let r = gw
            .post(path, &json!({"model": "embed", "input": ["a b", "c"]}))
            .await;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    }
    assert_eq!(m.requests()[0].path, "/v1/embeddings");
    assert_eq!(m.requests()[0].body["model"], "text-embedding-3-small");
    let r = gw.post("/v1/embeddings", &json!({"model": "embed"})).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn model_discovery_carries_context_prices_and_modalities() {
    let m = mock().await;
    let base = format!("{}/v1", m.url());
    let mut cheap = Deployment::new("cheap", "openai/my-finetune")
        .api_base(&base)
        .max_input_tokens(32_000);
    cheap.litellm_params.input_cost_per_token = Some(0.000_001);
    let cfg = Config::new()
        .deployment(
            Deployment::new("gpt-4o", "openai/gpt-4o")
                .api_base(&base)
                .api_key("sk-secret-xyz"),
        )
        .deployment(cheap.info("supports_vision", true));
    let gw = Gateway::start(&cfg.yaml());
    let c = crate::harness::client();
    let v: Value = c
        .get(format!("{}/v1/models", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let by_id = |id: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    let g = by_id("gpt-4o");
    assert_eq!(g["context_length"], 128_000);
    assert_eq!(g["max_output_tokens"], 16_384);
    assert_eq!(g["input_modalities"], json!(["text", "image"]));
    assert_eq!(g["pricing"]["prompt"], "0.0000025");
    let cheap = by_id("cheap");
    assert_eq!(cheap["context_length"], 32_000);
    assert_eq!(cheap["pricing"]["prompt"], "0.000001");
    assert_eq!(cheap["input_modalities"], json!(["text", "image"]));
    let text = c
        .get(format!("{}/model/info", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("sk-secret-xyz"), "secret leaked: {text}");
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["data"][0]["model_name"], "gpt-4o");
    assert_eq!(info["data"][0]["litellm_params"]["model"], "openai/gpt-4o");
    assert_eq!(info["data"][0]["model_info"]["id"], "gpt-4o-0");
    assert_eq!(info["data"][0]["model_info"]["max_input_tokens"], 128_000);
}

/// An upstream answering with a redirect to another host: the gateway must not follow it
/// (that would carry the request and its API key past the `api_base` origin check).
#[tokio::test]
async fn an_upstream_redirect_is_not_followed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let count = reached.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = elsewhere.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector_addr = redirector.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = redirector.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere_addr}/v1/chat/completions\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    let cfg = Config::new().deployment(
        Deployment::new("hop", "openai/gpt-4o")
            .api_base(&format!("http://{redirector_addr}/v1"))
            .api_key("sk-secret"),
    );
    let gw = Gateway::start(&cfg.yaml());
    let r = gw.post("/v1/chat/completions", &chat("hop", "x")).await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 502, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the gateway followed the redirect to another host"
    );
}
