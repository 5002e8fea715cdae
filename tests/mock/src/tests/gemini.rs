//! Gemini mock.

use serde_json::{Value, json};

use super::{json_of, post_raw, read_until_abort, start, start_with_key};
use crate::MockServer;

fn request(text: &str) -> Value {
    json!({
        "systemInstruction": { "parts": [{ "text": "be nice" }] },
        "contents": [
            { "role": "user", "parts": [{ "text": "earlier" }] },
            { "role": "model", "parts": [{ "text": "ok" }] },
            { "role": "user", "parts": [
                { "text": text },
                { "inlineData": { "mimeType": "image/png", "data": "AAAA" } },
            ]},
        ],
        "generationConfig": { "maxOutputTokens": 100 },
    })
}

async fn call(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    post_raw(server, path, &[], body.to_string()).await
}

#[tokio::test]
async fn plain_answer_and_auth() {
    let server = start_with_key("AIza-secret").await;
    let body = request("hello there");
    let path = "/v1beta/models/gemini-mock:generateContent";
    let resp = call(&server, path, &body).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(json_of(resp).await["error"]["status"], "PERMISSION_DENIED");
    let resp = call(&server, &format!("{path}?key=wrong"), &body).await;
    assert_eq!(resp.status(), 400);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], 400);
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");

    let resp = post_raw(
        &server,
        path,
        &[("x-goog-api-key", "AIza-secret")],
        body.to_string(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v = json_of(resp).await;
    let prompt = (body.to_string().len() as u64).div_ceil(4);
    assert_eq!(
        v["candidates"],
        json!([{
            "content": { "role": "model", "parts": [{ "text": "echo: hello there[image]" }] },
            "finishReason": "STOP",
            "index": 0,
        }])
    );
    assert_eq!(
        v["usageMetadata"],
        json!({ "promptTokenCount": prompt, "candidatesTokenCount": 3,
                "totalTokenCount": prompt + 3, "cachedContentTokenCount": 0,
                "thoughtsTokenCount": 0 })
    );
    assert_eq!(v["modelVersion"], "gemini-mock");
    assert!(v["responseId"].is_string());
    // The key in the query works too; the query is recorded.
    let resp = call(&server, &format!("{path}?key=AIza-secret"), &body).await;
    assert_eq!(resp.status(), 200);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[3].path, path);
    assert_eq!(reqs[3].query.as_deref(), Some("key=AIza-secret"));
    assert_eq!(reqs[3].path_and_query(), format!("{path}?key=AIza-secret"));
}

#[tokio::test]
async fn thinking_and_function_call() {
    let server = start().await;
    let mut body = request("please use tool");
    body["tools"] = json!([
        { "googleSearch": {} },
        { "functionDeclarations": [{ "name": "search", "parameters": { "type": "object" } }] },
    ]);
    body["generationConfig"]["thinkingConfig"] = json!({ "includeThoughts": true });
    let v = json_of(call(&server, "/v1beta/models/gemini-mock:generateContent", &body).await).await;
    assert_eq!(
        v["candidates"][0]["content"]["parts"],
        json!([
            { "text": "mock thinking", "thought": true },
            { "functionCall": { "name": "search", "args": { "q": "mock" } } },
        ])
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    let usage = &v["usageMetadata"];
    assert_eq!(usage["thoughtsTokenCount"], 2);
    assert_eq!(
        usage["totalTokenCount"],
        usage["promptTokenCount"].as_u64().expect("p") + 1 + 2
    );

    body["toolConfig"] = json!({ "functionCallingConfig": { "mode": "NONE" } });
    let v = json_of(call(&server, "/v1beta/models/gemini-mock:generateContent", &body).await).await;
    assert!(v["candidates"][0]["content"]["parts"][1]["text"].is_string());
}

#[tokio::test]
async fn sse_stream() {
    let server = start().await;
    let body = request("one two");
    let resp = call(
        &server,
        "/v1beta/models/gemini-mock:streamGenerateContent?alt=sse",
        &body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.expect("text");
    assert!(text.ends_with("\r\n\r\n"));
    let chunks: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data")).expect("json"))
        .collect();
    // "echo:", " one", " two[image]"
    assert_eq!(chunks.len(), 3);
    let mut streamed = String::new();
    for (n, c) in chunks.iter().enumerate() {
        let cand = &c["candidates"][0];
        assert_eq!(cand["content"]["role"], "model");
        streamed.push_str(cand["content"]["parts"][0]["text"].as_str().expect("text"));
        assert_eq!(c["usageMetadata"]["candidatesTokenCount"], n + 1);
        assert_eq!(c["modelVersion"], "gemini-mock");
        assert_eq!(c["responseId"], chunks[0]["responseId"]);
        let last = n == chunks.len() - 1;
        assert_eq!(cand.get("finishReason").is_some(), last);
    }
    assert_eq!(streamed, "echo: one two[image]");
    assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");

    // Without alt=sse: a JSON array.
    let resp = call(
        &server,
        "/v1/models/gemini-mock:streamGenerateContent",
        &body,
    )
    .await;
    let arr: Value = serde_json::from_str(&resp.text().await.expect("text")).expect("array");
    assert_eq!(arr.as_array().expect("array").len(), 3);
}

#[tokio::test]
async fn errors_and_broken_streams() {
    let server = start().await;
    let body = request("a b c d");
    let resp = call(
        &server,
        "/v1beta/models/gemini-error-429:generateContent",
        &body,
    )
    .await;
    assert_eq!(resp.status(), 429);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        v["error"]["message"],
        "Resource has been exhausted (e.g. check quota)."
    );
    let resp = call(
        &server,
        "/v1beta/models/gemini-error-context:generateContent",
        &body,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_of(resp).await["error"]["status"], "INVALID_ARGUMENT");
    let resp = call(
        &server,
        "/v1beta/models/gemini-mock:generateContent",
        &json!({}),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let resp = call(
        &server,
        "/v1beta/models/gemini-stream-error:streamGenerateContent?alt=sse",
        &body,
    )
    .await;
    let text = resp.text().await.expect("text");
    let events: Vec<&str> = text.split("\r\n\r\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3);
    let err: Value =
        serde_json::from_str(events[2].strip_prefix("data: ").expect("data")).expect("json");
    assert_eq!(err["error"]["status"], "UNAVAILABLE");

    let resp = call(
        &server,
        "/v1beta/models/gemini-disconnect:streamGenerateContent?alt=sse",
        &body,
    )
    .await;
    let received = String::from_utf8(read_until_abort(resp).await).expect("utf8");
    assert_eq!(received.matches("data: ").count(), 2);

    let resp = call(
        &server,
        "/v1beta/models/gemini-mock:countTokens",
        &json!({ "contents": [] }),
    )
    .await;
    assert_eq!(json_of(resp).await["totalTokens"], 4);
}
