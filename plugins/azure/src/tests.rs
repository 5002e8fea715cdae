//! The plugin driven as the host drives it.

use llmgate_sdk::openai_compat::Operation;
use llmgate_sdk::plugin::{Deployment, ExchangeCell, GuestExchange, Inbound};
use llmgate_sdk::{Api, Auth, ErrorClass, SseEvent};
use serde_json::{Value, json};

use super::{Azure, azure_url};

type Exchange = ExchangeCell<Azure>;

fn inbound(api: Api, stream: bool, body: &[u8], content_type: &str) -> Inbound {
    let mut dep = Deployment::new("az-1", "azure", "gpt-4o-prod");
    dep.api_base = Some("https://myres.openai.azure.com/".into());
    dep.params_json = r#"{"temperature":0.3}"#.into();
    let mut inbound = Inbound::json(api, "my-gpt", stream, body, dep);
    inbound.content_type = content_type.into();
    inbound.headers = vec![("openai-beta".into(), "x".into())];
    inbound
}

/// A JSON request.
fn json_req(api: Api, stream: bool, body: &[u8]) -> Inbound {
    inbound(api, stream, body, "application/json")
}

#[test]
fn urls() {
    assert_eq!(
        azure_url(
            "https://myres.openai.azure.com/",
            "gpt-4o",
            Operation::ChatCompletions,
            "2024-10-21"
        )
        .unwrap(),
        "https://myres.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        azure_url(
            "https://myres.openai.azure.com/openai",
            "my dep",
            Operation::ImagesEdits,
            "2025-04-01-preview"
        )
        .unwrap(),
        "https://myres.openai.azure.com/openai/deployments/my%20dep/images/edits?api-version=2025-04-01-preview"
    );
    assert_eq!(
        azure_url("http://127.0.0.1:9/", "e", Operation::Embeddings, "v").unwrap(),
        "http://127.0.0.1:9/openai/deployments/e/embeddings?api-version=v"
    );
    for bad in ["..", ".", "../../v1/chat/completions"] {
        assert!(azure_url("http://x", bad, Operation::ChatCompletions, "v").is_err());
    }
}

#[test]
fn plans_chat_with_azure_url_auth_and_usage() {
    let body = br#"{"model":"my-gpt","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let ex = Exchange::new(json_req(Api::ChatCompletions, true, body));
    let plan = ex.build_request().unwrap();
    assert_eq!(
        plan.url,
        "https://myres.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert!(matches!(&plan.auth, Auth::Header(h) if h == "api-key"));
    let v: Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(v["model"], "gpt-4o-prod");
    assert_eq!(v["temperature"], 0.3);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    assert!(plan.headers.contains(&("openai-beta".into(), "x".into())));

    // Azure's prompt-filter chunk passes; the injected usage chunk is hidden but read.
    let ev = SseEvent::data;
    let out = ex
        .on_event(ev(r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#))
        .unwrap();
    assert_eq!(out.len(), 1);
    ex.on_event(ev(r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#)).unwrap();
    let hidden = ex
        .on_event(ev(r#"{"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#))
        .unwrap();
    assert!(hidden.is_empty());
    assert_eq!(ex.on_event(ev("[DONE]")).unwrap().len(), 1);
    let (_, usage) = ex.finish().unwrap();
    assert_eq!(usage.map(|u| (u.input, u.output)), Some((9, 1)));
}

#[test]
fn api_version_and_required_base() {
    let mut req = json_req(Api::Embeddings, false, br#"{"model":"e","input":"x"}"#);
    req.deployment.api_version = Some("2023-05-15".into());
    let plan = Exchange::new(req.clone()).build_request().unwrap();
    assert!(
        plan.url.ends_with("/embeddings?api-version=2023-05-15"),
        "{}",
        plan.url
    );
    req.deployment.api_version = None;
    req.deployment.params_json = r#"{"api_version":"2024-06-01"}"#.into();
    let plan = Exchange::new(req.clone()).build_request().unwrap();
    assert!(
        plan.url.ends_with("?api-version=2024-06-01"),
        "{}",
        plan.url
    );
    req.deployment.api_base = None;
    let e = Exchange::new(req).build_request().unwrap_err();
    assert_eq!(e.class, ErrorClass::BadRequest);
    assert!(e.message.contains("api_base"));
}

#[test]
fn images_pass_through() {
    let body = br#"{"model":"my-gpt","prompt":"a red fox","size":"1024x1024","response_format":"b64_json"}"#;
    let plan = Exchange::new(json_req(Api::ImagesGenerations, false, body))
        .build_request()
        .unwrap();
    assert!(
        plan.url
            .contains("/deployments/gpt-4o-prod/images/generations?api-version=")
    );
    let v: Value = serde_json::from_slice(&plan.body).unwrap();
    // The model is rewritten; chat defaults (temperature) are not added to images.
    assert_eq!(
        v,
        json!({"model":"gpt-4o-prod","prompt":"a red fox","size":"1024x1024","response_format":"b64_json"})
    );

    let ct = "multipart/form-data; boundary=----abc";
    let body = b"------abc\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nmy-gpt\r\n------abc\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n------abc--\r\n";
    let ex = Exchange::new(inbound(Api::ImagesEdits, false, body, ct));
    let plan = ex.build_request().unwrap();
    assert!(plan.url.contains("/images/edits?api-version="));
    assert!(plan.headers.contains(&("content-type".into(), ct.into())));
    let want =
        String::from_utf8_lossy(body).replace("\r\n\r\nmy-gpt\r\n", "\r\n\r\ngpt-4o-prod\r\n");
    assert_eq!(String::from_utf8_lossy(&plan.body), want);

    let answer = br#"{"created":1713833628,"data":[{"b64_json":"iVBORw0KGgoAAAANSUhEUgAA"}],"usage":{"input_tokens":20,"output_tokens":272,"total_tokens":292}}"#;
    let resp = ex.on_body(200, Vec::new(), answer.to_vec()).unwrap();
    assert_eq!(resp.body, answer.to_vec());
    assert_eq!(resp.usage.map(|u| (u.input, u.output)), Some((20, 272)));
}

#[test]
fn errors() {
    let ex = Exchange::new(json_req(Api::ChatCompletions, false, b"{}"));
    let e = ex
        .on_body(
            429,
            vec![("retry-after".into(), "7".into())],
            br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 7 seconds."}}"#.to_vec(),
        )
        .unwrap_err();
    assert_eq!((e.class, e.status), (ErrorClass::RateLimited, 429));
    assert_eq!(e.code.as_deref(), Some("429"));
    assert_eq!(e.retry_after_ms, Some(7000));
    let e = ex
        .on_body(
            400,
            Vec::new(),
            br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}"#.to_vec(),
        )
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::ContentFilter);
    let e = ex
        .on_body(
            404,
            Vec::new(),
            br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#.to_vec(),
        )
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::NotFound);
    let e = ex
        .on_body(
            401,
            Vec::new(),
            br#"{"statusCode":401,"message":"Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired."}"#.to_vec(),
        )
        .unwrap_err();
    assert_eq!((e.class, e.status), (ErrorClass::Auth, 401));
    assert!(e.message.starts_with("Unauthorized."));
}

#[test]
fn messages_inbound_is_translated() {
    let body =
        br#"{"model":"my-gpt","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
    let ex = Exchange::new(json_req(Api::Messages, false, body));
    let plan = ex.build_request().unwrap();
    assert!(plan.url.contains("/chat/completions?"));
    let v: Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(v["messages"][0]["content"], "hi");
    let answer = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
    let resp = ex.on_body(200, Vec::new(), answer.to_vec()).unwrap();
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "Hello!");
    assert_eq!(v["model"], "my-gpt");
}
