//! Gemini, Bedrock and Azure OpenAI through the real binary, each from both client APIs
//! (`/v1/chat/completions` and Anthropic's `/v1/messages`): plain and streamed answers, tool
//! calls, upstream errors and broken streams, with what went upstream checked on the mock
//! (path, authentication, translated body). Then image generations and multipart edits
//! through the `openai` and `azure` plugins.
//!
//! Each test function starts one mock upstream and one gateway and shares them across its
//! cases.

use std::future::Future;
use std::time::Duration;

use llmgate_mock::images::PNG_1X1_BASE64;
use llmgate_mock::{MockServer, RecordedRequest};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::http::post_messages;
use crate::support::mock::{UPSTREAM_KEY, keyed_mock, mock_requiring};
use crate::support::{
    Config, Deployment, Gateway, Spec, chunk_content, client, openai_chunks, sse_data,
};

/// The model groups every provider test configures, and the mock behaviour of each.
const CHAT: &str = "chat";
const BUSY: &str = "busy";
const BROKEN: &str = "broken";
const CUT: &str = "cut";
const GROUPS: &[(&str, Option<&str>)] = &[
    (CHAT, None),
    (BUSY, Some("error-429")),
    (BROKEN, Some("stream-error")),
    (CUT, Some("disconnect")),
];

const SYSTEM: &str = "be brief";
const USER: &str = "hello there";
const ECHO: &str = "echo: hello there";
const TOOL_TEXT: &str = "please use tool now";

/// Longest a request (stream included) may take before the test calls it a hang: generous,
/// so that only a hang fails, never a slow machine.
const HANG: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Gemini,
    Bedrock,
    Azure,
}

impl Provider {
    fn plugin(self) -> &'static str {
        match self {
            Self::Gemini => "gemini",
            Self::Bedrock => "bedrock",
            Self::Azure => "azure",
        }
    }

    /// The key the mock requires, in this provider's way.
    fn key(self) -> &'static str {
        match self {
            Self::Bedrock => "AKIDMOCK",
            Self::Gemini | Self::Azure => "sk-upstream",
        }
    }

    /// The deployment's `model`: the normal one, or one carrying a mock behaviour marker
    /// where the mock reads it (Gemini: URL model; Bedrock: URL model id; Azure: deployment).
    fn model(self, marker: Option<&str>) -> String {
        match (self, marker) {
            (Self::Gemini, None) => "gemini/gemini-2.5-flash".into(),
            (Self::Gemini, Some(m)) => format!("gemini/gemini-{m}"),
            (Self::Bedrock, None) => "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            (Self::Bedrock, Some(m)) => format!("bedrock/anthropic.claude-{m}-v1:0"),
            (Self::Azure, None) => "azure/my-gpt4o-deployment".into(),
            (Self::Azure, Some(m)) => format!("azure/mock-{m}"),
        }
    }

    /// A deployment of `model` named `name` at the mock, with this provider's credentials.
    fn deployment(self, name: &str, mock_url: &str, model: &str) -> Deployment {
        let d = Deployment::new(name, model).api_base(mock_url);
        match self {
            Self::Gemini => d.api_key(UPSTREAM_KEY),
            Self::Bedrock => d
                .param("aws_access_key_id", "AKIDMOCK")
                .param("aws_secret_access_key", "secret")
                .param("aws_region_name", "us-east-1"),
            Self::Azure => d.api_key(UPSTREAM_KEY).param("api_version", "2024-10-21"),
        }
    }

    /// The upstream path the normal deployment's request must reach.
    fn path(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Self::Gemini, false) => "/v1beta/models/gemini-2.5-flash:generateContent",
            (Self::Gemini, true) => "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            (Self::Bedrock, false) => "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            (Self::Bedrock, true) => {
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
            }
            (Self::Azure, _) => "/openai/deployments/my-gpt4o-deployment/chat/completions",
        }
    }

    /// Path, query and authentication of a request to the normal deployment.
    fn assert_reached(self, up: &RecordedRequest, stream: bool) {
        let at = format!("{self:?} upstream request {}", up.path_and_query());
        assert_eq!(up.method, "POST", "{at}");
        assert_eq!(up.path, self.path(stream), "{at}");
        match self {
            Self::Gemini => {
                assert_eq!(up.header("x-goog-api-key"), Some("sk-upstream"), "{at}");
                let want_query = stream.then_some("alt=sse");
                assert_eq!(
                    up.query.as_deref(),
                    want_query,
                    "{at}: key leaked into the URL?"
                );
                assert_eq!(up.header("authorization"), None, "{at}");
            }
            Self::Bedrock => {
                let auth = up.header("authorization").unwrap_or_default();
                assert!(
                    auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDMOCK/"),
                    "{at}: {auth}"
                );
                assert!(
                    auth.contains("/us-east-1/bedrock/aws4_request"),
                    "{at}: {auth}"
                );
                assert!(auth.contains("SignedHeaders="), "{at}: {auth}");
                assert!(auth.contains("Signature="), "{at}: {auth}");
                let date = up.header("x-amz-date").unwrap_or_default();
                assert_eq!(date.len(), 16, "{at}: x-amz-date {date:?}");
                assert!(date.ends_with('Z') && date.as_bytes()[8] == b'T', "{date}");
                let sha = up.header("x-amz-content-sha256").unwrap_or_default();
                assert_eq!(sha.len(), 64, "{at}: x-amz-content-sha256 {sha:?}");
                assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()), "{sha}");
                assert!(up.query.is_none(), "{at}");
            }
            Self::Azure => {
                assert_eq!(up.header("api-key"), Some("sk-upstream"), "{at}");
                assert_eq!(up.header("authorization"), None, "{at}");
                assert_eq!(up.query.as_deref(), Some("api-version=2024-10-21"), "{at}");
            }
        }
    }

    /// The translated body of [`chat_request`] / [`messages_request`]: system prompt, user
    /// text and output cap, in the provider's shape.
    fn assert_translated(self, up: &RecordedRequest) {
        let b = &up.body;
        match self {
            Self::Gemini => {
                assert_eq!(
                    b.pointer("/systemInstruction/parts/0/text"),
                    Some(&json!(SYSTEM)),
                    "{b}"
                );
                let contents = b["contents"].as_array().expect("contents");
                assert_eq!(contents.len(), 1, "{b}");
                assert_eq!(contents[0]["role"], "user", "{b}");
                assert_eq!(contents[0]["parts"], json!([{"text": USER}]), "{b}");
                assert_eq!(b["generationConfig"]["maxOutputTokens"], 100, "{b}");
            }
            Self::Bedrock => {
                assert_eq!(b["system"], json!([{"text": SYSTEM}]), "{b}");
                assert_eq!(
                    b["messages"],
                    json!([{"role": "user", "content": [{"text": USER}]}]),
                    "{b}"
                );
                assert_eq!(b["inferenceConfig"]["maxTokens"], 100, "{b}");
                assert!(
                    b.get("modelId").is_none() && b.get("model").is_none(),
                    "{b}"
                );
            }
            Self::Azure => {
                assert_eq!(b["model"], "my-gpt4o-deployment", "{b}");
                let msgs = b["messages"].as_array().expect("messages");
                assert_eq!(msgs.len(), 2, "{b}");
                assert_eq!(msgs[0]["role"], "system", "{b}");
                assert_eq!(text_of(&msgs[0]["content"]), SYSTEM, "{b}");
                assert_eq!(msgs[1]["role"], "user", "{b}");
                assert_eq!(text_of(&msgs[1]["content"]), USER, "{b}");
                let cap = b
                    .get("max_completion_tokens")
                    .or_else(|| b.get("max_tokens"));
                assert_eq!(cap, Some(&json!(100)), "{b}");
            }
        }
    }

    /// The names of the tools declared upstream, in the provider's shape.
    fn upstream_tools(self, body: &Value) -> Vec<String> {
        let names: Vec<&Value> = match self {
            Self::Gemini => body["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
                .map(|f| &f["name"])
                .collect(),
            Self::Bedrock => body["toolConfig"]["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| &t["toolSpec"]["name"])
                .collect(),
            Self::Azure => body["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| &t["function"]["name"])
                .collect(),
        };
        names
            .into_iter()
            .map(|n| n.as_str().unwrap_or("?").to_string())
            .collect()
    }
}

/// Text of an OpenAI or Anthropic message `content` (a string or a list of text blocks).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// A mock speaking `p` (and requiring its key), and a gateway with the [`GROUPS`] on it.
async fn setup(p: Provider) -> (MockServer, Gateway) {
    let mock = mock_requiring(p.key()).await;
    let config = GROUPS.iter().fold(Config::new(), |c, (group, marker)| {
        c.deployment(p.deployment(group, &mock.url(), &p.model(*marker)))
    });
    let gw = Gateway::start_spec(Spec {
        config: &config.yaml(),
        plugins: &[p.plugin(), "policy-ordered"],
        ..Spec::default()
    });
    (mock, gw)
}

/// Run `f`, failing (instead of hanging) if it takes longer than [`HANG`].
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no complete answer within {HANG:?}: the stream hangs"),
    }
}

fn openai_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "lookup", "description": "Look a word up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
        {"type": "function", "function": {"name": "search", "description": "Search the web",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
    ])
}

fn anthropic_tools() -> Value {
    json!([
        {"name": "lookup", "description": "Look a word up",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
        {"name": "search", "description": "Search the web",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
    ])
}

/// A chat completions request: system prompt, one user message, output cap 100.
fn chat_request(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
    })
}

/// A Messages request: system prompt, one user message, output cap 100.
fn messages_request(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": text}],
    })
}

/// `(event name, data)` of every event of an SSE body; data that is not JSON is a string.
fn named_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|ev| !ev.trim().is_empty())
        .map(|ev| {
            let name = ev
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_string();
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            let data = data.join("\n");
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, data)
        })
        .collect()
}

/// The event names of a complete Anthropic stream, checked for its frame.
fn assert_anthropic_frame(events: &[(String, Value)], text: &str) {
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert!(!names.contains(&"error"), "{text}");
    for (name, data) in events {
        if name != "ping" {
            assert_eq!(
                data["type"],
                name.as_str(),
                "event name and type differ: {text}"
            );
        }
    }
}

async fn chat_completions_suite(p: Provider) {
    let (m, gw) = setup(p).await;

    // Plain answer.
    let r = gw
        .post("/v1/chat/completions", &chat_request(CHAT, USER))
        .await;
    assert_eq!(r.status(), 200, "{p:?}");
    assert_eq!(r.headers()["x-litellm-model-id"], "chat-0");
    assert_eq!(
        r.headers()["x-llmgate-plugin"]
            .to_str()
            .unwrap()
            .split('@')
            .next(),
        Some(p.plugin())
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], ECHO, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    p.assert_reached(&reqs[0], false);
    p.assert_translated(&reqs[0]);
    m.clear();

    // Streamed, without and then with usage.
    let mut body = chat_request(CHAT, USER);
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = within("stream", r.text()).await.unwrap();
    let chunks = openai_chunks(&text);
    assert_eq!(chunk_content(&chunks), ECHO, "{text}");
    // Azure's first chunk (prompt filter results, no choices) passes as Azure sends it.
    assert!(
        chunks
            .iter()
            .filter(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty()))
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{text}"
    );
    assert!(
        chunks.iter().all(|c| c["usage"].is_null()),
        "usage chunk without include_usage: {text}"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"),
        "{text}"
    );
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    p.assert_reached(&reqs[0], true);
    p.assert_translated(&reqs[0]);

    body["stream_options"] = json!({"include_usage": true});
    let r = gw.post("/v1/chat/completions", &body).await;
    let text = within("stream with usage", r.text()).await.unwrap();
    let chunks = openai_chunks(&text);
    assert_eq!(chunk_content(&chunks), ECHO, "{text}");
    let usage = chunks.last().unwrap();
    assert_eq!(
        usage["choices"],
        json!([]),
        "last chunk is not the usage chunk: {text}"
    );
    assert!(
        usage["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    assert!(
        usage["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    m.clear();

    // Tool call, whole and streamed.
    let mut body = chat_request(CHAT, TOOL_TEXT);
    body["tools"] = openai_tools();
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let calls = msg["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["type"], "function", "{v}");
    assert!(!calls[0]["id"].as_str().unwrap_or("").is_empty(), "{v}");
    assert_eq!(calls[0]["function"]["name"], "lookup", "{v}");
    let args: Value = serde_json::from_str(
        calls[0]["function"]["arguments"]
            .as_str()
            .expect("arguments"),
    )
    .unwrap();
    assert_eq!(args, json!({"q": "mock"}), "{v}");
    let up = &m.requests()[0];
    assert_eq!(
        p.upstream_tools(&up.body),
        ["lookup", "search"],
        "{}",
        up.body
    );

    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let text = within("tool stream", r.text()).await.unwrap();
    let chunks = openai_chunks(&text);
    let mut name = String::new();
    let mut arguments = String::new();
    let mut ids = Vec::new();
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(tc["index"], 0, "{text}");
            if let Some(id) = tc["id"].as_str() {
                ids.push(id.to_string());
            }
            name.push_str(tc["function"]["name"].as_str().unwrap_or(""));
            arguments.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(name, "lookup", "{text}");
    assert_eq!(ids.len(), 1, "the call id must come once: {text}");
    let args: Value = serde_json::from_str(&arguments)
        .unwrap_or_else(|e| panic!("arguments {arguments:?}: {e}; {text}"));
    assert_eq!(args, json!({"q": "mock"}), "{text}");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"),
        "{text}"
    );
}

async fn messages_suite(p: Provider) {
    let (m, gw) = setup(p).await;

    // Plain answer.
    let r = post_messages(&gw, &messages_request(CHAT, USER)).await;
    assert_eq!(r.status(), 200, "{p:?}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant", "{v}");
    assert_eq!(v["content"], json!([{"type": "text", "text": ECHO}]), "{v}");
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    p.assert_reached(&reqs[0], false);
    p.assert_translated(&reqs[0]);
    m.clear();

    // Streamed.
    let mut body = messages_request(CHAT, USER);
    body["stream"] = json!(true);
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = within("messages stream", r.text()).await.unwrap();
    let events = named_events(&text);
    assert_anthropic_frame(&events, &text);
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(deltas, ECHO, "{text}");
    let (_, delta) = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .unwrap_or_else(|| panic!("no message_delta: {text}"));
    assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{text}");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0,
        "{text}"
    );
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    p.assert_reached(&reqs[0], true);
    p.assert_translated(&reqs[0]);
    m.clear();

    // Tool use, whole and streamed.
    let mut body = messages_request(CHAT, TOOL_TEXT);
    body["tools"] = anthropic_tools();
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let tool_uses: Vec<&Value> = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(tool_uses.len(), 1, "{v}");
    assert_eq!(tool_uses[0]["name"], "lookup", "{v}");
    assert_eq!(tool_uses[0]["input"], json!({"q": "mock"}), "{v}");
    assert!(!tool_uses[0]["id"].as_str().unwrap_or("").is_empty(), "{v}");
    let up = &m.requests()[0];
    assert_eq!(
        p.upstream_tools(&up.body),
        ["lookup", "search"],
        "{}",
        up.body
    );

    body["stream"] = json!(true);
    let r = post_messages(&gw, &body).await;
    assert_eq!(r.status(), 200);
    let text = within("messages tool stream", r.text()).await.unwrap();
    let events = named_events(&text);
    assert_anthropic_frame(&events, &text);
    let (_, start) = events
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use block: {text}"));
    assert_eq!(start["content_block"]["name"], "lookup", "{text}");
    let index = &start["index"];
    let partial: String = events
        .iter()
        .filter(|(n, d)| n == "content_block_delta" && &d["index"] == index)
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    let input: Value = serde_json::from_str(&partial)
        .unwrap_or_else(|e| panic!("partial_json {partial:?}: {e}; {text}"));
    assert_eq!(input, json!({"q": "mock"}), "{text}");
    assert!(
        events
            .iter()
            .any(|(n, d)| n == "message_delta" && d["delta"]["stop_reason"] == "tool_use"),
        "{text}"
    );
}

async fn errors_suite(p: Provider) {
    let (m, gw) = setup(p).await;

    // Upstream 429, whole and streamed (the error comes before the stream starts).
    for stream in [false, true] {
        let mut body = chat_request(BUSY, USER);
        body["stream"] = json!(stream);
        let r = gw.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 429, "{p:?} stream={stream}");
        if p == Provider::Azure {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
        assert!(
            !v["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{v}"
        );

        let mut body = messages_request(BUSY, USER);
        body["stream"] = json!(stream);
        let r = post_messages(&gw, &body).await;
        assert_eq!(r.status(), 429, "{p:?} stream={stream}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
        assert!(
            !v["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{v}"
        );
    }
    assert_eq!(m.count(), 4, "one attempt per request");

    // A provider error in the middle of the stream, and a dropped connection: the client's
    // stream ends with an error event, never hangs.
    for group in [BROKEN, CUT] {
        let mut body = chat_request(group, USER);
        body["stream"] = json!(true);
        let r = within(group, gw.post("/v1/chat/completions", &body)).await;
        assert_eq!(r.status(), 200, "{p:?} {group}");
        let text = within(group, r.text()).await.unwrap();
        let data = sse_data(&text);
        assert!(!data.iter().any(|d| d == "[DONE]"), "{p:?} {group}: {text}");
        let last: Value = serde_json::from_str(data.last().expect("events"))
            .unwrap_or_else(|e| panic!("{p:?} {group}: last event is not JSON ({e}): {text}"));
        assert!(
            !last["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{p:?} {group}: last event is not an error: {text}"
        );
        let partial = chunk_content(
            &data[..data.len() - 1]
                .iter()
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect::<Vec<_>>(),
        );
        assert!(
            !partial.is_empty() && ECHO.starts_with(&partial),
            "{p:?} {group}: the text before the break ({partial:?}) was not passed on: {text}"
        );
        assert!(
            !data
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .any(|c| c["choices"][0]["finish_reason"].is_string()),
            "{p:?} {group}: a broken stream was reported as finished: {text}"
        );

        let mut body = messages_request(group, USER);
        body["stream"] = json!(true);
        let r = within(group, post_messages(&gw, &body)).await;
        assert_eq!(r.status(), 200, "{p:?} {group}");
        let text = within(group, r.text()).await.unwrap();
        let events = named_events(&text);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names.first(),
            Some(&"message_start"),
            "{p:?} {group}: {text}"
        );
        assert_eq!(names.last(), Some(&"error"), "{p:?} {group}: {text}");
        let partial: String = events
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert!(
            !partial.is_empty() && ECHO.starts_with(&partial),
            "{p:?} {group}: the text before the break ({partial:?}) was not passed on: {text}"
        );
        let (_, err) = events.last().unwrap();
        assert_eq!(err["type"], "error", "{p:?} {group}: {text}");
        assert!(
            !err["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{p:?} {group}: {text}"
        );
        assert!(err["error"]["type"].is_string(), "{p:?} {group}: {text}");
        // A cut-off answer must not be closed as complete (`message_delta` with a stop
        // reason, `message_stop`) before the error.
        assert!(
            !names.contains(&"message_stop")
                && !events
                    .iter()
                    .any(|(n, d)| n == "message_delta" && d["delta"]["stop_reason"].is_string()),
            "{p:?} {group}: the broken stream was closed as a complete message before its error: {text}"
        );
    }
}

#[tokio::test]
async fn gemini_chat_completions_plain_streamed_and_tools() {
    chat_completions_suite(Provider::Gemini).await;
}

#[tokio::test]
async fn gemini_messages_plain_streamed_and_tools() {
    messages_suite(Provider::Gemini).await;
}

#[tokio::test]
async fn gemini_errors_keep_status_and_broken_streams_end_with_an_error() {
    errors_suite(Provider::Gemini).await;
}

#[tokio::test]
async fn bedrock_chat_completions_plain_streamed_and_tools() {
    chat_completions_suite(Provider::Bedrock).await;
}

#[tokio::test]
async fn bedrock_messages_plain_streamed_and_tools() {
    messages_suite(Provider::Bedrock).await;
}

#[tokio::test]
async fn bedrock_errors_keep_status_and_broken_streams_end_with_an_error() {
    errors_suite(Provider::Bedrock).await;
}

#[tokio::test]
async fn azure_chat_completions_plain_streamed_and_tools() {
    chat_completions_suite(Provider::Azure).await;
}

#[tokio::test]
async fn azure_messages_plain_streamed_and_tools() {
    messages_suite(Provider::Azure).await;
}

#[tokio::test]
async fn azure_errors_keep_status_and_broken_streams_end_with_an_error() {
    errors_suite(Provider::Azure).await;
}

// Images.

/// Standard base64 (with padding) to bytes.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?} in {s}"),
        }
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// A mock (key `sk-upstream`) and a gateway with an OpenAI and an Azure `gpt-image-1`.
async fn images_setup() -> (MockServer, Gateway) {
    let m = keyed_mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(Deployment::openai("img-openai", "gpt-image-1", &u))
        .deployment(
            Deployment::new("img-azure", "azure/gpt-image-1")
                .api_base(&u)
                .api_key(UPSTREAM_KEY)
                .param("api_version", "2025-04-01-preview"),
        );
    let gw = Gateway::start_spec(Spec {
        config: &cfg.yaml(),
        plugins: &["openai", "azure", "policy-ordered"],
        ..Spec::default()
    });
    (m, gw)
}

/// Path, query and key of an images request to the `img-openai` or `img-azure` deployment.
fn assert_image_upstream(group: &str, up: &RecordedRequest, op: &str) {
    if group == "img-openai" {
        assert_eq!(up.path, format!("/v1/images/{op}"));
        assert_eq!(up.query, None);
        assert_eq!(up.header("authorization"), Some("Bearer sk-upstream"));
    } else {
        assert_eq!(
            up.path,
            format!("/openai/deployments/gpt-image-1/images/{op}")
        );
        assert_eq!(up.query.as_deref(), Some("api-version=2025-04-01-preview"));
        assert_eq!(up.header("api-key"), Some("sk-upstream"));
        assert_eq!(up.header("authorization"), None);
    }
}

#[tokio::test]
async fn image_generations_answer_a_png_through_openai_and_azure() {
    let (m, gw) = images_setup().await;
    for (group, id) in [("img-openai", "img-openai-0"), ("img-azure", "img-azure-1")] {
        m.clear();
        let r = gw
            .post(
                "/v1/images/generations",
                &json!({"model": group, "prompt": "a red fox", "size": "1024x1024", "quality": "low"}),
            )
            .await;
        assert_eq!(r.status(), 200, "{group}");
        assert_eq!(r.headers()["x-litellm-model-id"], id);
        let v: Value = r.json().await.unwrap();
        let data = v["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "{v}");
        let png = base64_decode(data[0]["b64_json"].as_str().expect("b64_json"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{group}: not a PNG: {v}"
        );
        assert_eq!(data[0]["b64_json"], PNG_1X1_BASE64);
        assert!(v["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0, "{v}");

        let reqs = m.requests();
        assert_eq!(reqs.len(), 1, "{group}");
        assert_image_upstream(group, &reqs[0], "generations");
        assert_eq!(reqs[0].body["model"], "gpt-image-1", "{group}");
        assert_eq!(reqs[0].body["prompt"], "a red fox", "{group}");
        assert_eq!(reqs[0].body["size"], "1024x1024", "{group}");
    }
    let r = gw
        .post("/v1/images/generations", &json!({"model": "img-openai"}))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[tokio::test]
async fn image_edits_carry_every_image_part_through_openai_and_azure() {
    let (m, gw) = images_setup().await;
    let png = base64_decode(PNG_1X1_BASE64);
    let mut second = png.clone();
    second.extend_from_slice(b"-second");
    let url = format!("{}/v1/images/edits", gw.url);
    for group in ["img-openai", "img-azure"] {
        m.clear();
        let form = Form::new()
            .text("model", group)
            .text("prompt", "make it blue")
            .part(
                "image[]",
                Part::bytes(png.clone())
                    .file_name("a.png")
                    .mime_str("image/png")
                    .unwrap(),
            )
            .part(
                "image[]",
                Part::bytes(second.clone())
                    .file_name("b.png")
                    .mime_str("image/png")
                    .unwrap(),
            );
        let r = within("edit", client().post(&url).multipart(form).send())
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{group}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["data"][0]["revised_prompt"], "edited 2 images: make it blue",
            "{group}: {v}"
        );
        let out = base64_decode(v["data"][0]["b64_json"].as_str().expect("b64_json"));
        assert!(out.starts_with(b"\x89PNG"), "{v}");

        let reqs = m.requests();
        assert_eq!(reqs.len(), 1, "{group}");
        let up = &reqs[0];
        assert_image_upstream(group, up, "edits");
        assert!(
            up.header("content-type")
                .unwrap_or_default()
                .starts_with("multipart/form-data; boundary="),
            "{group}: {:?}",
            up.header("content-type")
        );
        assert_eq!(
            up.body["fields"]["model"], "gpt-image-1",
            "{group}: {}",
            up.body
        );
        assert_eq!(
            up.body["fields"]["prompt"], "make it blue",
            "{group}: {}",
            up.body
        );
        let images: Vec<&Value> = up.body["multipart"]
            .as_array()
            .expect("multipart summary")
            .iter()
            .filter(|p| p["name"] == "image[]")
            .collect();
        assert_eq!(images.len(), 2, "{group}: {}", up.body);
        assert_eq!(images[0]["filename"], "a.png");
        assert_eq!(images[0]["content_type"], "image/png");
        assert_eq!(images[0]["len"], png.len());
        assert_eq!(images[1]["filename"], "b.png");
        assert_eq!(images[1]["len"], second.len());
    }

    // No image part: refused before any upstream request, in OpenAI's error shape.
    m.clear();
    let form = Form::new()
        .text("model", "img-openai")
        .text("prompt", "make it blue");
    let r = client().post(&url).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("image"),
        "{v}"
    );
    assert_eq!(m.count(), 0, "an edit without an image went upstream");
}
