//! End-to-end tests of the mock over real HTTP.
#![allow(clippy::expect_used, reason = "test failures should panic")]

use serde_json::{Value, json};

use crate::{MockOptions, MockServer};

async fn start() -> MockServer {
    MockServer::start(MockOptions::default())
        .await
        .expect("start mock")
}

async fn post(server: &MockServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send")
}

async fn json_of(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json")
}

/// The `data:` payloads of an SSE body.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data prefix").to_owned())
        .collect()
}

fn chat(model: &str, text: &str) -> Value {
    json!({ "model": model, "messages": [
        { "role": "system", "content": "be nice" },
        { "role": "user", "content": text },
    ]})
}

#[tokio::test]
async fn non_streamed_echo() {
    let server = start().await;
    let body = chat("mock-gpt", "hello there world");
    let resp = post(&server, &body).await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().expect("created") > 1_700_000_000);
    assert_eq!(v["model"], "mock-gpt-2024-08-06");
    assert_eq!(v["system_fingerprint"], "fp_mock");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "echo: hello there world");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    assert_eq!(v["usage"]["prompt_tokens"], prompt);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], prompt + 4);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );

    let reqs = server.requests();
    assert_eq!(server.count(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].body, body);
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));

    // Control endpoints.
    let client = reqwest::Client::new();
    let listed = json_of(
        client
            .get(format!("{}/_mock/requests", server.url()))
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(listed.as_array().expect("array").len(), 1);
    client
        .delete(format!("{}/_mock/requests", server.url()))
        .send()
        .await
        .expect("clear");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn images_cached_and_models() {
    let server = start().await;
    let body = json!({ "model": "mock-cached", "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "what is" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
        { "type": "text", "text": " this" },
    ]}]});
    let v = json_of(post(&server, &body).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: what is this[image]"
    );
    let prompt = v["usage"]["prompt_tokens"].as_u64().expect("prompt");
    assert_eq!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"],
        prompt / 2
    );

    let models = json_of(
        reqwest::get(format!("{}/models", server.url()))
            .await
            .expect("models"),
    )
    .await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "mock-gpt");
}

async fn stream_events(server: &MockServer, mut body: Value) -> Vec<String> {
    body["stream"] = json!(true);
    let resp = post(server, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().expect("ct"),
        "text/event-stream"
    );
    sse_data(&resp.text().await.expect("text"))
}

#[tokio::test]
async fn streaming_without_usage() {
    let server = start().await;
    let plain = json_of(post(&server, &chat("mock-gpt", "one two  three")).await).await;
    let expected = plain["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();

    let events = stream_events(&server, chat("mock-gpt", "one two  three")).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    // role + 4 words + finish
    assert_eq!(chunks.len(), 6);
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({ "role": "assistant", "content": "" })
    );
    let mut content = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "mock-gpt-2024-08-06");
        assert_eq!(c["system_fingerprint"], "fp_mock");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c.get("usage").is_none());
        if let Some(s) = c["choices"][0]["delta"]["content"].as_str() {
            content.push_str(s);
        }
    }
    assert_eq!(content, expected);
    let last = &chunks[chunks.len() - 1];
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
}

#[tokio::test]
async fn streaming_with_usage() {
    let server = start().await;
    let mut body = chat("mock-gpt", "alpha beta");
    let plain = json_of(post(&server, &body).await).await;
    body["stream_options"] = json!({ "include_usage": true });
    let events = stream_events(&server, body.clone()).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    let (usage_chunk, rest) = chunks.split_last().expect("chunks");
    assert_eq!(usage_chunk["choices"], json!([]));
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    let prompt = (streamed_body.to_string().len() as u64).div_ceil(4);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], prompt);
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        plain["usage"]["completion_tokens"]
    );
    assert!(
        rest.iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert_eq!(
        rest.last().expect("finish")["choices"][0]["finish_reason"],
        "stop"
    );
    let content: String = rest
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, plain["choices"][0]["message"]["content"]);
}

#[tokio::test]
async fn error_429_and_context() {
    let server = start().await;
    let resp = post(&server, &chat("mock-error-429", "hi")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v = json_of(resp).await;
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"].as_str().expect("msg").contains("429"));

    let resp = post(&server, &chat("mock-error-500", "hi")).await;
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(json_of(resp).await["error"]["type"], "server_error");

    let resp = post(&server, &chat("mock-error-context", "hi")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "context_length_exceeded"
    );
    // Failing requests are recorded too.
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn bad_requests() {
    let server = start().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.url()))
        .body("{oops")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_of(resp).await["error"]["type"],
        "invalid_request_error"
    );
    let resp = post(&server, &json!({ "model": "mock-gpt" })).await;
    assert_eq!(resp.status(), 400);
    let resp = post(&server, &json!({ "messages": [] })).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(server.requests()[0].body, Value::Null);
    assert_eq!(server.requests()[0].path, "/chat/completions");
}

#[tokio::test]
async fn require_key() {
    let server = MockServer::start(MockOptions {
        require_key: Some("sk-secret-key-123".into()),
        latency_ms: 0,
    })
    .await
    .expect("start");
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", server.url());
    let body = chat("mock-gpt", "hi").to_string();
    let resp = client
        .post(&url)
        .bearer_auth("sk-wrong-key-456")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .starts_with("Incorrect API key provided: ")
    );
    let resp = client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let resp = client
        .post(&url)
        .bearer_auth("sk-secret-key-123")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn tool_calls() {
    let server = start().await;
    let mut body = chat("mock-gpt", "please use tool now");
    body["tools"] = json!([{ "type": "function", "function": {
        "name": "search", "parameters": { "type": "object" } } }]);
    let v = json_of(post(&server, &body).await).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["tool_calls"][0]["id"], "call_mock_1");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "search"
    );
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"q":"mock"}"#
    );

    let events = stream_events(&server, body.clone()).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["tool_calls"][0]["function"]["name"], "search");
    assert_eq!(first["tool_calls"][0]["function"]["arguments"], "");
    let arg_chunks: Vec<&str> = chunks[1..]
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(arg_chunks.len() >= 3);
    assert_eq!(arg_chunks.concat(), r#"{"q":"mock"}"#);
    assert_eq!(
        chunks.last().expect("last")["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // tool_choice none: plain answer.
    body["tool_choice"] = json!("none");
    let v = json_of(post(&server, &body).await).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn malformed_and_disconnect() {
    let server = start().await;
    let resp = post(&server, &chat("mock-malformed", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("text"), r#"{"id": "broken"#);

    let events = stream_events(&server, chat("mock-malformed", "hi")).await;
    assert_eq!(events.len(), 3);
    assert!(serde_json::from_str::<Value>(&events[0]).is_ok());
    assert_eq!(events[1], "{not json}");
    assert_eq!(events[2], "[DONE]");

    let mut body = chat("mock-disconnect", "a b c d");
    body["stream"] = json!(true);
    let resp = post(&server, &body).await;
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut received = Vec::new();
    let err = loop {
        match resp.chunk().await {
            Ok(Some(b)) => received.extend_from_slice(&b),
            Ok(None) => panic!("stream ended cleanly"),
            Err(e) => break e,
        }
    };
    let text = String::from_utf8(received).expect("utf8");
    assert_eq!(sse_data(&text).len(), 3, "{err}: {text}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn slow_and_hang() {
    let server = start().await;
    let t = std::time::Instant::now();
    let resp = post(&server, &chat("mock-slow-200", "hi")).await;
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= std::time::Duration::from_millis(200));

    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .expect("client");
    let err = client
        .post(format!("{}/v1/chat/completions", server.url()))
        .body(chat("mock-hang", "hi").to_string())
        .send()
        .await
        .expect_err("hang must time out");
    assert!(err.is_timeout());
}

mod anthropic;
mod azure;
mod bedrock;
mod gemini;
mod images;

/// POST `body` (raw) to `path` with these extra headers.
async fn post_raw(
    server: &MockServer,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(body).send().await.expect("send")
}

/// Read a body until the server aborts it; returns what arrived. Panics on a clean end.
async fn read_until_abort(mut resp: reqwest::Response) -> Vec<u8> {
    let mut received = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => received.extend_from_slice(&b),
            Ok(None) => panic!("stream ended cleanly"),
            Err(_) => return received,
        }
    }
}

async fn start_with_key(key: &str) -> MockServer {
    MockServer::start(MockOptions {
        require_key: Some(key.into()),
        latency_ms: 0,
    })
    .await
    .expect("start")
}
