//! The plugin driven as the host drives it.

use llmgate_sdk::plugin::{Deployment, ExchangeCell, GuestExchange, Inbound};
use llmgate_sdk::{Api, Auth, SseEvent};
use serde_json::{Value, json};

use super::OpenAi;

type Exchange = ExchangeCell<OpenAi>;

fn inbound(api: Api, stream: bool, body: &[u8], content_type: &str) -> Inbound {
    let mut dep = Deployment::new("d1", "openai", "gpt-image-1");
    dep.params_json = r#"{"temperature":0.1}"#.into();
    let mut inbound = Inbound::json(api, "alias", stream, body, dep);
    inbound.content_type = content_type.into();
    inbound
}

/// A JSON request.
fn json_req(api: Api, stream: bool, body: &[u8]) -> Inbound {
    inbound(api, stream, body, "application/json")
}

#[test]
fn chat_streams_ask_for_usage_and_hide_it() {
    let body = br#"{"model":"alias","messages":[{"role":"user","content":"x"}],"stream":true}"#;
    let ex = Exchange::new(json_req(Api::ChatCompletions, true, body));
    let plan = ex.build_request().unwrap();
    assert_eq!(plan.url, "https://api.openai.com/v1/chat/completions");
    assert!(matches!(plan.auth, Auth::Bearer));
    let v: Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(v["model"], "gpt-image-1");
    assert_eq!(v["temperature"], 0.1);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    let ev = SseEvent::data;
    let usage = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    assert!(ex.on_event(ev(usage)).unwrap().is_empty());
    assert_eq!(ex.on_event(ev("[DONE]")).unwrap().len(), 1);
    assert_eq!(
        ex.finish().unwrap().1.map(|u| (u.input, u.output)),
        Some((3, 2))
    );
}

#[test]
fn images() {
    let body = br#"{"model":"alias","prompt":"a cat","n":1}"#;
    let plan = Exchange::new(json_req(Api::ImagesGenerations, false, body))
        .build_request()
        .unwrap();
    assert_eq!(plan.url, "https://api.openai.com/v1/images/generations");
    let v: Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(v, json!({"model":"gpt-image-1","prompt":"a cat","n":1}));

    let ct = "multipart/form-data; boundary=X";
    let body = b"--X\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nalias\r\n--X\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n\x89PNG\r\n--X--\r\n";
    let ex = Exchange::new(inbound(Api::ImagesEdits, false, body, ct));
    let plan = ex.build_request().unwrap();
    assert_eq!(plan.url, "https://api.openai.com/v1/images/edits");
    assert_eq!(plan.headers[0], ("content-type".into(), ct.into()));
    assert!(
        plan.body
            .windows(b"\r\n\r\ngpt-image-1\r\n".len())
            .any(|w| w == b"\r\n\r\ngpt-image-1\r\n")
    );
    let answer = br#"{"created":1,"data":[{"b64_json":"iVBORw0KGgo="}]}"#;
    let resp = ex.on_body(200, Vec::new(), answer.to_vec()).unwrap();
    assert_eq!(resp.body, answer.to_vec());
    assert!(resp.usage.is_none());

    // A streamed image generation ends with its `completed` event.
    let ex = Exchange::new(json_req(
        Api::ImagesGenerations,
        true,
        br#"{"model":"alias","prompt":"x","stream":true}"#,
    ));
    let plan = ex.build_request().unwrap();
    assert!(!String::from_utf8_lossy(&plan.body).contains("stream_options"));
    ex.on_event(SseEvent {
        event: Some("image_generation.completed".into()),
        data: r#"{"type":"image_generation.completed","b64_json":"x","usage":{"input_tokens":5,"output_tokens":100}}"#.into(),
    })
    .unwrap();
    assert_eq!(
        ex.finish().unwrap().1.map(|u| (u.input, u.output)),
        Some((5, 100))
    );
}
