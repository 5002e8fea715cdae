//! The template plugin (`plugins/template`) serves chat completions through the binary:
//! plain and streamed, usage read, errors classified.

use llmgate_mock::{MockOptions, MockServer};
use serde_json::{Value, json};

use crate::support::{Gateway, Spec, chunk_content, openai_chunks};

fn gateway(mock_url: &str) -> Gateway {
    let config = format!(
        "model_list:\n  - model_name: tpl\n    litellm_params:\n      model: template/mock-gpt\n      api_base: {mock_url}/v1\n      api_key: sk-upstream\n  - model_name: tpl-429\n    litellm_params:\n      model: template/error-429\n      api_base: {mock_url}/v1\n      api_key: sk-upstream\n"
    );
    Gateway::start_spec(Spec {
        config: &config,
        plugins: &["template", "policy-ordered"],
        ..Spec::default()
    })
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

#[tokio::test]
async fn template_serves_chat_plain_streamed_and_errors() {
    let m = MockServer::start(MockOptions {
        require_key: Some("sk-upstream".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = gateway(&m.url());

    let r = gw.post("/v1/chat/completions", &chat("tpl", false)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello");
    let reqs = m.requests();
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].body["model"], "mock-gpt");

    let r = gw.post("/v1/chat/completions", &chat("tpl", true)).await;
    assert_eq!(r.status(), 200);
    let chunks = openai_chunks(&r.text().await.unwrap());
    assert_eq!(chunk_content(&chunks), "echo: hello");
    assert!(
        chunks.iter().any(|c| c["usage"]["prompt_tokens"].is_u64()),
        "the usage chunk was asked for: {chunks:?}"
    );
    assert_eq!(
        m.requests()[1].body["stream_options"],
        json!({"include_usage": true})
    );

    let r = gw
        .post("/v1/chat/completions", &chat("tpl-429", false))
        .await;
    assert_eq!(r.status(), 429);
}
