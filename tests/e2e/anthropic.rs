//! Anthropic `/v1/messages` through the real binary: native pass-through to Anthropic, and
//! translation both ways between Anthropic and OpenAI-shaped upstreams.

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::http::messages_call;
use crate::support::mock::{UPSTREAM_KEY, keyed_mock};
use crate::support::{Config, Deployment, Gateway, Spec, chunk_content, openai_chunks, sse_data};

const PLUGINS: &[&str] = &["openai", "anthropic", "policy-ordered"];

async fn setup() -> (MockServer, Gateway) {
    let m = keyed_mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(
            Deployment::new("claude", "anthropic/claude-sonnet-4-20250514")
                .api_base(&u)
                .api_key(UPSTREAM_KEY),
        )
        .deployment(
            Deployment::new("claude-busy", "anthropic/claude-error-429")
                .api_base(&u)
                .api_key(UPSTREAM_KEY),
        )
        .deployment(Deployment::openai("gpt", "mock-gpt", &u));
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        plugins: PLUGINS,
        ..Spec::default()
    });
    (m, gw)
}

fn anthropic_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 64000,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a careful agent.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [{"name": "read_file", "description": "Read a file", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello claude", "cache_control": {"type": "ephemeral"}}]}],
    })
}

/// A Messages call as Claude Code sends it, with the prompt-caching beta header.
async fn post_messages(gw: &Gateway, body: &Value) -> reqwest::Response {
    messages_call(gw, body)
        .header("anthropic-beta", "prompt-caching-2024-07-31")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn messages_pass_through_to_anthropic_untouched() {
    let (m, gw) = setup().await;
    let body = anthropic_body("claude", false);
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    let text = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "text")
        .unwrap();
    assert_eq!(text["text"], "echo: hello claude");
    assert!(
        v["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "thinking")
    );
    assert!(v["usage"]["input_tokens"].as_u64().is_some());

    let up = &m.requests()[0];
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.header("x-api-key"), Some("sk-upstream"));
    assert_eq!(up.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        up.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    assert_eq!(up.body["model"], "claude-sonnet-4-20250514");
    for key in ["system", "thinking", "tools", "messages", "max_tokens"] {
        assert_eq!(up.body[key], body[key], "{key} changed on the way");
    }
}

#[tokio::test]
async fn messages_stream_passes_the_exact_event_sequence() {
    let (_m, gw) = setup().await;
    let r = post_messages(&gw, &anthropic_body("claude", true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let names: Vec<&str> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("event: ")))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(
        names.contains(&"content_block_delta") && names.contains(&"message_delta"),
        "{names:?}"
    );
}

#[tokio::test]
async fn chat_completions_to_anthropic_are_translated_both_ways() {
    let (m, gw) = setup().await;
    let body = json!({"model": "claude", "max_completion_tokens": 1000,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]});
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi there");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let up = &m.requests()[0];
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.body["max_tokens"], 1000);
    assert_eq!(up.body["messages"][0]["role"], "user");
    assert!(up.body["system"].to_string().contains("be brief"));

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = openai_chunks(
        &gw.post("/v1/chat/completions", &body)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(chunk_content(&chunks), "echo: hi there");
    assert!(
        chunks
            .iter()
            .any(|c| c["usage"]["completion_tokens"].as_u64().is_some())
    );
}

#[tokio::test]
async fn messages_to_an_openai_upstream_are_translated_both_ways() {
    let (m, gw) = setup().await;
    let mut body = anthropic_body("gpt", false);
    body.as_object_mut().unwrap().remove("thinking");
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "echo: hello claude");
    let up = &m.requests()[0];
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(up.body["messages"][0]["role"], "system");
    assert_eq!(up.body["tools"][0]["function"]["name"], "read_file");

    body["stream"] = json!(true);
    let text = post_messages(&gw, &body).await.text().await.unwrap();
    let names: Vec<&str> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("event: ")))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let deltas: String = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(deltas, "echo: hello claude");
}

#[tokio::test]
async fn errors_answer_in_anthropic_shape() {
    let (_m, gw) = setup().await;
    let r = post_messages(&gw, &anthropic_body("nope", false)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    let r = post_messages(&gw, &anthropic_body("claude-busy", false)).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let r = crate::harness::client()
        .post(format!("{}/v1/messages", gw.url))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // count_tokens: Anthropic answers it; an OpenAI upstream cannot.
    let ct = json!({"model": "claude", "messages": [{"role": "user", "content": "count me"}]});
    let r = crate::harness::client()
        .post(format!("{}/v1/messages/count_tokens", gw.url))
        .json(&ct)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let mut ct = ct;
    ct["model"] = json!("gpt");
    let r = crate::harness::client()
        .post(format!("{}/v1/messages/count_tokens", gw.url))
        .json(&ct)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["type"], "error");
}

/// An upstream stream with CRLF line ends, sent so that a line's `\r` and its `\n` arrive in
/// separate reads (found by the `sse` fuzz target): every event keeps its name. The framer
/// used to forget the pending `\r` when nothing followed it yet, took the `\n` for a blank
/// line and dropped the event name (`content_block_start` became a nameless event).
#[tokio::test]
async fn a_crlf_stream_cut_between_cr_and_lf_keeps_every_event_name() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\r\ndata: {data}\r\n\r\n"))
        .collect();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = upstream.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                sock.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // Every piece ends with a `\r`; its `\n` starts the next piece.
                for piece in body.split_inclusive('\r') {
                    if sock.write_all(piece.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = sock.flush().await;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            });
        }
    });
    let cfg = Config::new().deployment(
        Deployment::new("claude", "anthropic/claude-sonnet-4-20250514")
            .api_base(&format!("http://{addr}"))
            .api_key(UPSTREAM_KEY),
    );
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        plugins: PLUGINS,
        ..Spec::default()
    });
    let r = post_messages(&gw, &anthropic_body("claude", true)).await;
    assert_eq!(r.status(), 200, "{}", gw.logs());
    let text = r.text().await.unwrap();
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|ev| !ev.trim().is_empty())
        .collect();
    let names: Vec<Option<&str>> = blocks
        .iter()
        .map(|ev| ev.lines().find_map(|l| l.strip_prefix("event: ")))
        .collect();
    let expected: Vec<Option<&str>> = events.iter().map(|(n, _)| Some(*n)).collect();
    assert_eq!(names, expected, "{text}");
}
