//! Talking to a gateway over HTTP: the client, requests with or without a key in either
//! dialect's header, and [`Resp`], a finished response with checks of the error shapes.

use std::time::Duration;

use serde_json::Value;

use super::gateway::Gateway;

/// A shared HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A client for many requests at once: a generous timeout, and a connection of its own for
/// every request.
pub fn storm_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `POST {url}/v1/chat/completions` on `c` with `key` as a bearer token.
pub async fn chat_on(c: &reqwest::Client, url: &str, key: &str, body: &Value) -> Resp {
    send(
        c.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(body),
    )
    .await
}

/// Send `rb` and read the whole answer.
pub async fn send(rb: reqwest::RequestBuilder) -> Resp {
    Resp::read(rb.send().await.unwrap()).await
}

/// `rb` with `key` as `Authorization: Bearer`, when there is one.
pub fn auth(rb: reqwest::RequestBuilder, key: Option<&str>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => rb.header("authorization", format!("Bearer {k}")),
        None => rb,
    }
}

/// `GET {gateway}{path}` with `key` as a bearer token.
pub async fn get(gw: &Gateway, path: &str, key: Option<&str>) -> Resp {
    send(auth(client().get(format!("{}{path}", gw.url)), key)).await
}

/// `POST {gateway}{path}` with a JSON body and `key` as a bearer token.
pub async fn post(gw: &Gateway, path: &str, key: Option<&str>, body: &Value) -> Resp {
    send(auth(client().post(format!("{}{path}", gw.url)), key).json(body)).await
}

/// `POST {gateway}{path}` with `body` sent as it is, labelled JSON.
pub async fn post_raw(gw: &Gateway, path: &str, key: Option<&str>, body: &str) -> Resp {
    send(
        auth(client().post(format!("{}{path}", gw.url)), key)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

/// `POST /v1/messages` with the key in `x-api-key`, as the Anthropic SDK sends it.
pub async fn messages(gw: &Gateway, key: Option<&str>, body: &Value) -> Resp {
    let mut rb = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(body);
    if let Some(k) = key {
        rb = rb.header("x-api-key", k);
    }
    send(rb).await
}

/// A `POST /v1/messages` as an Anthropic client without a gateway key sends it (its
/// `x-api-key` is one the gateway ignores), ready to send or to add headers to.
pub fn messages_call(gw: &Gateway, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", "client-key-ignored")
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

/// Send [`messages_call`].
pub async fn post_messages(gw: &Gateway, body: &Value) -> reqwest::Response {
    messages_call(gw, body).send().await.unwrap()
}

/// Read an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The JSON chunks of an OpenAI stream that ended with `[DONE]`.
pub fn openai_chunks(text: &str) -> Vec<Value> {
    let data = sse_data(text);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "stream does not end with [DONE]: {text}"
    );
    assert_eq!(
        data.iter().filter(|d| *d == "[DONE]").count(),
        1,
        "more than one [DONE]: {text}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk {d:?}: {e}")))
        .collect()
}

/// The text of streamed chat chunks: every `choices[0].delta.content`, joined.
pub fn chunk_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// The `usage` of a streamed chat completion (its last chunk with usage); checks that the
/// stream ended with `[DONE]`.
pub fn stream_usage(text: &str) -> Value {
    let data = sse_data(text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    data.iter()
        .filter(|d| d.as_str() != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .rfind(|c| c["usage"].is_object())
        .unwrap_or_else(|| panic!("no usage chunk: {text}"))["usage"]
        .clone()
}

/// A finished response: status, headers and body text, with checks of the error shapes.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    /// Read the whole of `r`.
    pub async fn read(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Self {
            status,
            headers,
            text,
        }
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text))
    }

    /// A header as text.
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }

    /// A header that must be there, as a number.
    pub fn header_f64(&self, k: &str) -> f64 {
        self.header(k)
            .unwrap_or_else(|| panic!("no {k} header; headers: {:?}", self.headers))
            .parse()
            .unwrap()
    }

    /// The OpenAI-shaped error of this status, checked for shape; returns `error`.
    pub fn openai_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        openai_error_shape(&v)
    }

    /// The Anthropic-shaped error of this status, checked for shape; returns `error`.
    pub fn anthropic_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        let v = self.json();
        anthropic_error_shape(&v)
    }
}

/// Check that `v` is an error in OpenAI's shape (`error.message` not empty, `error.type`);
/// returns `error`.
pub fn openai_error_shape(v: &Value) -> Value {
    let e = v["error"].clone();
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "OpenAI error shape expected: {v}"
    );
    assert!(e["type"].is_string(), "{v}");
    e
}

/// Check that `v` is an error in Anthropic's shape (`type: error`, `error.message`);
/// returns `error`.
pub fn anthropic_error_shape(v: &Value) -> Value {
    assert_eq!(v["type"], "error", "Anthropic error shape expected: {v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    v["error"].clone()
}
