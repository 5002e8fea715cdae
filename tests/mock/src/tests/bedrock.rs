//! Bedrock Converse mock.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{json_of, post_raw, start, start_with_key};
use crate::MockServer;
use crate::bedrock::{EventFrame, decode_event_frames, encode_event_frame};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1%3A0";

fn request(text: &str) -> Value {
    json!({
        "system": [{ "text": "be nice" }],
        "messages": [
            { "role": "user", "content": [{ "text": "earlier" }] },
            { "role": "assistant", "content": [{ "text": "ok" }] },
            { "role": "user", "content": [
                { "text": text },
                { "image": { "format": "png", "source": { "bytes": "AAAA" } } },
            ]},
        ],
        "inferenceConfig": { "maxTokens": 100, "temperature": 0.5 },
    })
}

fn sigv4_headers(key: &str, body: &[u8]) -> Vec<(String, String)> {
    let hash = hex::encode(Sha256::digest(body));
    vec![
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={key}/20240101/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc"
            ),
        ),
        ("x-amz-date".into(), "20240101T000000Z".into()),
        ("x-amz-content-sha256".into(), hash),
    ]
}

async fn converse(
    server: &MockServer,
    model: &str,
    stream: bool,
    body: &Value,
) -> reqwest::Response {
    let suffix = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    post_raw(
        server,
        &format!("/model/{model}/{suffix}"),
        &[],
        body.to_string(),
    )
    .await
}

async fn frames(resp: reqwest::Response) -> Vec<EventFrame> {
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let bytes = resp.bytes().await.expect("body");
    decode_event_frames(&bytes).expect("valid frames and CRCs")
}

fn payload(frame: &EventFrame) -> Value {
    serde_json::from_slice(&frame.payload).expect("json payload")
}

#[test]
fn frame_codec() {
    // The AWS event-stream test vector "empty_message".
    assert_eq!(
        encode_event_frame(&[], b""),
        [
            0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff
        ]
    );
    let mut two = encode_event_frame(&[(":event-type", "x"), ("k", "v")], b"{}");
    two.extend(encode_event_frame(&[], b"payload"));
    let decoded = decode_event_frames(&two).expect("decode");
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].header(":event-type"), Some("x"));
    assert_eq!(decoded[0].header("k"), Some("v"));
    assert_eq!(decoded[0].payload, b"{}");
    assert_eq!(decoded[1].payload, b"payload");
    let last = two.len() - 1;
    two[last] ^= 1;
    assert!(decode_event_frames(&two).is_err());
}

#[tokio::test]
async fn plain_answer_and_auth() {
    let server = start_with_key("AKIDMOCK").await;
    let body = request("hello there");
    let raw = body.to_string();
    let path = format!("/model/{MODEL}/converse");

    let resp = post_raw(&server, &path, &[], raw.clone()).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "UnrecognizedClientException"
    );
    assert_eq!(
        json_of(resp).await,
        json!({ "message": "The security token included in the request is invalid." })
    );
    let wrong = sigv4_headers("AKIDWRONG", raw.as_bytes());
    let wrong: Vec<(&str, &str)> = wrong
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        post_raw(&server, &path, &wrong, raw.clone()).await.status(),
        403
    );
    let bad_hash = sigv4_headers("AKIDMOCK", b"other body");
    let bad_hash: Vec<(&str, &str)> = bad_hash
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        post_raw(&server, &path, &bad_hash, raw.clone())
            .await
            .status(),
        403
    );

    let good = sigv4_headers("AKIDMOCK", raw.as_bytes());
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = post_raw(&server, &path, &good, raw.clone()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-amzn-requestid"));
    let v = json_of(resp).await;
    let prompt = (raw.len() as u64).div_ceil(4);
    assert_eq!(
        v,
        json!({
            "output": { "message": { "role": "assistant", "content": [{ "text": "echo: hello there[image]" }] } },
            "stopReason": "end_turn",
            "usage": { "inputTokens": prompt, "outputTokens": 3, "totalTokens": prompt + 3 },
            "metrics": { "latencyMs": 1 },
        })
    );
    let rec = server.requests().pop().expect("recorded");
    assert_eq!(rec.path, path);
    assert_eq!(rec.body, body);
}

#[tokio::test]
async fn stream_sequence() {
    let server = start().await;
    let frames = frames(converse(&server, MODEL, true, &request("one two")).await).await;
    let types: Vec<&str> = frames
        .iter()
        .map(|f| {
            assert_eq!(f.header(":message-type"), Some("event"));
            assert_eq!(f.header(":content-type"), Some("application/json"));
            f.header(":event-type").expect("event type")
        })
        .collect();
    assert_eq!(
        types,
        [
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata",
        ]
    );
    assert_eq!(payload(&frames[0])["role"], "assistant");
    assert!(payload(&frames[0])["p"].is_string());
    let text: String = frames[1..4]
        .iter()
        .map(|f| {
            let p = payload(f);
            assert_eq!(p["contentBlockIndex"], 0);
            p["delta"]["text"].as_str().expect("text").to_owned()
        })
        .collect();
    assert_eq!(text, "echo: one two[image]");
    assert_eq!(payload(&frames[4])["contentBlockIndex"], 0);
    assert_eq!(payload(&frames[5])["stopReason"], "end_turn");
    let meta = payload(&frames[6]);
    assert_eq!(meta["usage"]["outputTokens"], 3);
    assert_eq!(
        meta["usage"]["totalTokens"],
        meta["usage"]["inputTokens"].as_u64().expect("input") + 3
    );
    assert_eq!(meta["metrics"]["latencyMs"], 1);
}

#[tokio::test]
async fn tool_use() {
    let server = start().await;
    let mut body = request("please use tool");
    body["toolConfig"] = json!({ "tools": [{ "toolSpec": {
        "name": "search", "description": "s", "inputSchema": { "json": { "type": "object" } } } }],
        "toolChoice": { "auto": {} } });
    let v = json_of(converse(&server, MODEL, false, &body).await).await;
    assert_eq!(v["stopReason"], "tool_use");
    assert_eq!(
        v["output"]["message"]["content"],
        json!([{ "toolUse": { "toolUseId": "tooluse_mock_1", "name": "search", "input": { "q": "mock" } } }])
    );

    let frames = frames(converse(&server, MODEL, true, &body).await).await;
    let types: Vec<&str> = frames
        .iter()
        .map(|f| f.header(":event-type").expect("type"))
        .collect();
    assert_eq!(types[..2], ["messageStart", "contentBlockStart"]);
    assert_eq!(
        payload(&frames[1])["start"],
        json!({ "toolUse": { "toolUseId": "tooluse_mock_1", "name": "search" } })
    );
    let input: Vec<String> = frames
        .iter()
        .filter(|f| f.header(":event-type") == Some("contentBlockDelta"))
        .map(|f| {
            payload(f)["delta"]["toolUse"]["input"]
                .as_str()
                .expect("input")
                .to_owned()
        })
        .collect();
    assert!(input.len() >= 3);
    assert_eq!(input.concat(), r#"{"q":"mock"}"#);
    let stop = frames
        .iter()
        .find(|f| f.header(":event-type") == Some("messageStop"))
        .expect("messageStop");
    assert_eq!(payload(stop)["stopReason"], "tool_use");
}

#[tokio::test]
async fn errors() {
    let server = start().await;
    let body = request("a b c d");
    let resp = converse(&server, "mock-error-429-v1%3A0", false, &body).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-amzn-errortype"], "ThrottlingException");
    assert_eq!(
        json_of(resp).await["message"],
        "Too many requests, please wait before trying again."
    );
    let resp = converse(&server, "mock-error-context", true, &body).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-amzn-errortype"], "ValidationException");
    assert_eq!(
        json_of(resp).await["message"],
        "Input is too long for requested model."
    );

    let frames = frames(converse(&server, "mock-stream-error", true, &body).await).await;
    let last = frames.last().expect("frames");
    assert_eq!(last.header(":message-type"), Some("exception"));
    assert_eq!(last.header(":exception-type"), Some("throttlingException"));
    assert!(payload(last)["message"].is_string());
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.header(":event-type") == Some("contentBlockDelta"))
            .count(),
        2
    );
}
