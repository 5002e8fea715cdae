//! Anthropic Messages mock.

use serde_json::{Value, json};

use super::{json_of, post_raw, read_until_abort, start, start_with_key};
use crate::MockServer;

const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");

async fn post(server: &MockServer, body: &Value) -> reqwest::Response {
    post_raw(server, "/v1/messages", &[VERSION], body.to_string()).await
}

fn messages(model: &str, text: &str) -> Value {
    json!({ "model": model, "max_tokens": 100, "system": "be nice", "messages": [
        { "role": "user", "content": "earlier" },
        { "role": "assistant", "content": "ok" },
        { "role": "user", "content": text },
    ]})
}

/// `(event name, data)` of an Anthropic SSE body.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (event, data) = e.split_once('\n').expect("two lines");
            let name = event.strip_prefix("event: ").expect("event line");
            let data = data.strip_prefix("data: ").expect("data line");
            let v: Value = serde_json::from_str(data).expect("json data");
            assert_eq!(v["type"], name, "data type matches the event name");
            (name.to_owned(), v)
        })
        .collect()
}

async fn stream(server: &MockServer, mut body: Value) -> Vec<(String, Value)> {
    body["stream"] = json!(true);
    let resp = post(server, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    events(&resp.text().await.expect("text"))
}

#[tokio::test]
async fn plain_answer() {
    let server = start().await;
    let body = json!({ "model": "claude-mock", "max_tokens": 10, "messages": [
        { "role": "user", "content": [
            { "type": "text", "text": "what is" },
            { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "AAAA" } },
            { "type": "text", "text": " this" },
        ]},
    ]});
    let resp = post(&server, &body).await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert!(v["id"].as_str().expect("id").starts_with("msg_mock_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-mock");
    assert_eq!(
        v["content"],
        json!([{ "type": "text", "text": "echo: what is this[image]" }])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    assert_eq!(
        v["usage"],
        json!({ "input_tokens": prompt, "output_tokens": 4,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 })
    );
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.body, body);
}

#[tokio::test]
async fn validation_and_auth() {
    let server = start_with_key("sk-ant-secret").await;
    let body = messages("claude-mock", "hi").to_string();
    let resp = post_raw(&server, "/v1/messages", &[VERSION], body.clone()).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        json_of(resp).await,
        json!({ "type": "error", "error": { "type": "authentication_error", "message": "invalid x-api-key" } })
    );
    let key = ("x-api-key", "sk-ant-secret");
    let resp = post_raw(&server, "/v1/messages", &[key], body.clone()).await;
    assert_eq!(resp.status(), 400);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("anthropic-version")
    );
    let mut no_max = messages("claude-mock", "hi");
    no_max.as_object_mut().expect("obj").remove("max_tokens");
    let resp = post_raw(&server, "/v1/messages", &[key, VERSION], no_max.to_string()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_of(resp).await["error"]["message"],
        "max_tokens: Field required"
    );
    let resp = post_raw(&server, "/v1/messages", &[key, VERSION], body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn thinking_cache_and_count_tokens() {
    let server = start().await;
    let mut body = messages("claude-mock", "hello there");
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 1024 });
    body["system"] = json!([{ "type": "text", "text": "long system", "cache_control": { "type": "ephemeral" } }]);
    let v = json_of(post(&server, &body).await).await;
    assert_eq!(
        v["content"][0],
        json!({ "type": "thinking", "thinking": "mock thinking", "signature": "sig_mock" })
    );
    assert_eq!(v["content"][1]["text"], "echo: hello there");
    assert_eq!(v["usage"]["output_tokens"], 5);
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    assert_eq!(v["usage"]["cache_creation_input_tokens"], prompt / 2);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(v["usage"]["input_tokens"], prompt - prompt / 2);
    // Same system text again: a cache read.
    let v = json_of(post(&server, &body).await).await;
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(v["usage"]["cache_read_input_tokens"], prompt / 2);

    let count =
        json!({ "model": "claude-mock", "messages": [{ "role": "user", "content": "hi" }] });
    let resp = post_raw(
        &server,
        "/v1/messages/count_tokens",
        &[VERSION],
        count.to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_of(resp).await,
        json!({ "input_tokens": (count.to_string().len() as u64).div_ceil(4) })
    );
}

#[tokio::test]
async fn tool_use() {
    let server = start().await;
    let mut body = messages("claude-mock", "please use tool now");
    body["tools"] =
        json!([{ "name": "search", "description": "s", "input_schema": { "type": "object" } }]);
    let v = json_of(post(&server, &body).await).await;
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"],
        json!([{ "type": "tool_use", "id": "toolu_mock_1", "name": "search", "input": { "q": "mock" } }])
    );

    let events = stream(&server, body.clone()).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        events[1].1["content_block"],
        json!({ "type": "tool_use", "id": "toolu_mock_1", "name": "search", "input": {} })
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, v)| {
            assert_eq!(v["delta"]["type"], "input_json_delta");
            v["delta"]["partial_json"].as_str().expect("partial")
        })
        .collect();
    assert!(pieces.iter().filter(|p| !p.is_empty()).count() >= 3);
    assert_eq!(pieces.concat(), r#"{"q":"mock"}"#);
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    body["tool_choice"] = json!({ "type": "none" });
    let v = json_of(post(&server, &body).await).await;
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn stream_sequence() {
    let server = start().await;
    let mut body = messages("claude-mock", "one two three");
    let plain = json_of(post(&server, &body).await).await;
    body["thinking"] = json!({ "type": "enabled", "budget_tokens": 1024 });
    let events = stream(&server, body).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert!(start["usage"]["input_tokens"].as_u64().expect("input") > 0);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(
        events[1].1["content_block"],
        json!({ "type": "thinking", "thinking": "", "signature": "" })
    );
    assert_eq!(events[3].1["delta"]["type"], "thinking_delta");
    assert_eq!(
        events[5].1["delta"],
        json!({ "type": "signature_delta", "signature": "sig_mock" })
    );
    let text: String = events
        .iter()
        .filter(|(n, v)| n == "content_block_delta" && v["index"] == 1)
        .map(|(_, v)| v["delta"]["text"].as_str().expect("text_delta"))
        .collect();
    assert_eq!(text, plain["content"][0]["text"]);
    assert_eq!(
        events[13].1,
        json!({ "type": "message_delta",
                "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                "usage": { "output_tokens": 6 } })
    );
}

#[tokio::test]
async fn errors() {
    let server = start().await;
    let resp = post(&server, &messages("claude-error-429", "hi")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v = json_of(resp).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");

    let resp = post(&server, &messages("claude-error-529", "hi")).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(
        json_of(resp).await["error"],
        json!({ "type": "overloaded_error", "message": "Overloaded" })
    );
    let resp = post(&server, &messages("claude-error-context", "hi")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_of(resp).await["error"]["message"],
        "prompt is too long: 250000 tokens > 200000 maximum"
    );
    let resp = post(&server, &messages("claude-error-403", "hi")).await;
    assert_eq!(json_of(resp).await["error"]["type"], "permission_error");
}

#[tokio::test]
async fn broken_streams() {
    let server = start().await;
    let events = stream(&server, messages("claude-stream-error", "a b c d")).await;
    let (name, last) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(
        last["error"],
        json!({ "type": "overloaded_error", "message": "Overloaded" })
    );
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));

    let mut body = messages("claude-disconnect", "a b c d");
    body["stream"] = json!(true);
    let received = read_until_abort(post(&server, &body).await).await;
    let text = String::from_utf8(received).expect("utf8");
    let got = events_lenient(&text);
    assert_eq!(got[0], "message_start");
    assert_eq!(
        got.iter().filter(|n| *n == "content_block_delta").count(),
        2
    );

    let mut body = messages("claude-malformed", "a b");
    body["stream"] = json!(true);
    let text = post(&server, &body).await.text().await.expect("text");
    assert!(text.starts_with("event: message_start\n"));
    assert!(text.contains("data: {not json\n\n"));
    assert!(!text.contains("message_stop"));
}

fn events_lenient(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}
