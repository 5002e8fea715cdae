//! Recording of the requests the mock receives, so tests can assert on what the gateway sent upstream.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::{HeaderMap, Method, Uri};
use serde::Serialize;

/// How many requests are kept; older ones are dropped first.
pub const MAX_RECORDED: usize = 1000;

/// One request as received by the mock.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body, or `Null` if the body was not valid JSON. Multipart bodies are
    /// summarised as `{"multipart": [{"name", "filename", "content_type", "len"}...],
    /// "fields": {name: text}}` (`fields` holds the parts without a file name).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// Build a record from the parts of an incoming request.
    pub fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        Self::with_body(
            method,
            uri,
            headers,
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Build a record whose body is already summarised as JSON (e.g. a multipart summary).
    pub fn with_body(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: serde_json::Value,
    ) -> Self {
        Self {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        }
    }

    /// The path followed by `?query` if there is a query, e.g. `/x:streamGenerateContent?alt=sse`.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The value of the first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A bounded, thread-safe log of recorded requests.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<VecDeque<RecordedRequest>>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedRequest>> {
        // A poisoned lock only means a panic happened while holding it; the data is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append a request, dropping the oldest if more than [`MAX_RECORDED`] are kept.
    pub fn push(&self, req: RecordedRequest) {
        let mut log = self.lock();
        while log.len() >= MAX_RECORDED {
            log.pop_front();
        }
        log.push_back(req);
    }

    /// All recorded requests, oldest first.
    pub fn all(&self) -> Vec<RecordedRequest> {
        self.lock().iter().cloned().collect()
    }

    /// Forget all recorded requests.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of recorded requests.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}
