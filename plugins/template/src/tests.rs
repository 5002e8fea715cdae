//! The template driven as the host drives it.

use llmgate_sdk::plugin::{Deployment, ExchangeCell, GuestExchange, Inbound};
use llmgate_sdk::{Api, Auth, ErrorClass, SseEvent};
use serde_json::{Value, json};

use super::Template;

type Exchange = ExchangeCell<Template>;

fn exchange(stream: bool) -> Exchange {
    let body = json!({"model": "alias", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let mut dep = Deployment::new("t1", "template", "upstream-model");
    dep.params_json = r#"{"extra_headers":{"X-Team":"a"}}"#.into();
    let body = serde_json::to_vec(&body).unwrap();
    Exchange::new(Inbound::json(
        Api::ChatCompletions,
        "alias",
        stream,
        &body,
        dep,
    ))
}

#[test]
fn plans_the_request() {
    let plan = exchange(true).build_request().unwrap();
    assert_eq!(plan.url, "http://localhost:8000/v1/chat/completions");
    assert!(matches!(plan.auth, Auth::Bearer));
    assert!(plan.headers.contains(&("x-team".into(), "a".into())));
    let v: Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(v["model"], "upstream-model");
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    let plain: Value =
        serde_json::from_slice(&exchange(false).build_request().unwrap().body).unwrap();
    assert!(plain.get("stream_options").is_none());
}

#[test]
fn reads_answers_streams_and_errors() {
    let ex = exchange(false);
    let answer =
        br#"{"model":"m-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let resp = ex.on_body(200, Vec::new(), answer.to_vec()).unwrap();
    assert_eq!(resp.body, answer.to_vec());
    assert_eq!(resp.usage.map(|u| (u.input, u.output)), Some((3, 2)));
    assert_eq!(resp.model.as_deref(), Some("m-1"));
    let e = ex
        .on_body(
            429,
            vec![("retry-after".into(), "1".into())],
            br#"{"error":{"message":"slow","code":"rate_limit_exceeded"}}"#.to_vec(),
        )
        .unwrap_err();
    assert_eq!(
        (e.class, e.status, e.retry_after_ms),
        (ErrorClass::RateLimited, 429, Some(1000))
    );
    assert_eq!(
        ex.on_body(200, Vec::new(), b"<html>".to_vec())
            .unwrap_err()
            .status,
        502
    );

    let ex = exchange(true);
    let usage = r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
    assert_eq!(ex.on_event(SseEvent::data(usage)).unwrap().len(), 1);
    assert!(
        ex.finish().is_err(),
        "a stream without [DONE] is incomplete"
    );
    ex.on_event(SseEvent::data("[DONE]")).unwrap();
    assert_eq!(
        ex.finish().unwrap().1.map(|u| (u.input, u.output)),
        Some((5, 1))
    );
}
