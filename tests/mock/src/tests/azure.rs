//! Azure OpenAI mock.

use serde_json::{Value, json};

use super::{json_of, post_raw, start, start_with_key};

const CHAT: &str = "/openai/deployments/gpt4o-mock/chat/completions?api-version=2024-10-21";

fn chat(text: &str) -> Value {
    json!({ "messages": [{ "role": "user", "content": text }] })
}

#[tokio::test]
async fn deployment_chat_and_auth() {
    let server = start_with_key("azure-key").await;
    let key = ("api-key", "azure-key");
    let resp = post_raw(
        &server,
        CHAT,
        &[("api-key", "nope")],
        chat("hi").to_string(),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "401");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .starts_with("Access denied due to invalid subscription key")
    );
    let resp = post_raw(
        &server,
        "/openai/deployments/gpt4o-mock/chat/completions",
        &[key],
        chat("hi").to_string(),
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        json_of(resp).await,
        json!({ "error": { "code": "404", "message": "Resource not found" } })
    );

    let resp = post_raw(&server, CHAT, &[key], chat("hello there").to_string()).await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt4o-mock-2024-08-06");
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(
        v["choices"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
    let rec = server.requests().pop().expect("recorded");
    assert_eq!(rec.path, "/openai/deployments/gpt4o-mock/chat/completions");
    assert_eq!(rec.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(rec.header("api-key"), Some("azure-key"));

    // The v1 path: model from the body, no api-version needed.
    let mut body = chat("hi");
    body["model"] = json!("gpt-mock");
    let resp = post_raw(
        &server,
        "/openai/v1/chat/completions",
        &[key],
        body.to_string(),
    )
    .await;
    assert_eq!(json_of(resp).await["model"], "gpt-mock-2024-08-06");
}

#[tokio::test]
async fn stream_and_errors() {
    let server = start().await;
    let mut body = chat("one two");
    body["stream"] = json!(true);
    let resp = post_raw(&server, CHAT, &[], body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("text");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data"))
        .collect();
    let first: Value = serde_json::from_str(events[0]).expect("json");
    assert_eq!(first["choices"], json!([]));
    assert!(first["prompt_filter_results"].is_array());
    assert_eq!(events.last().copied(), Some("[DONE]"));
    let content: String = events[1..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).expect("json"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "echo: one two");

    let resp = post_raw(
        &server,
        "/openai/deployments/mock-error-429/chat/completions?api-version=2024-10-21",
        &[],
        chat("hi").to_string(),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "429");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("rate limit")
    );

    let resp = post_raw(
        &server,
        "/openai/deployments/mock-error-context/chat/completions?api-version=2024-10-21",
        &[],
        chat("hi").to_string(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "context_length_exceeded"
    );

    let resp = post_raw(
        &server,
        "/openai/deployments/embed-mock/embeddings?api-version=2024-10-21",
        &[],
        json!({ "input": ["a", "b"] }).to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    assert_eq!(v["model"], "embed-mock");
    assert_eq!(v["data"].as_array().expect("data").len(), 2);
}
