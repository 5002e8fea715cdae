//! Helpers shared by the provider modules: latency, token counting, tool-answer selection and
//! streamed bodies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;

use crate::MockState;
use crate::behaviour::Behaviour;

/// How long a `hang` request waits.
pub(crate) const HANG: Duration = Duration::from_secs(3600);

/// Sleep for the server-wide latency option.
pub(crate) async fn global_latency(state: &MockState) {
    if state.opts.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(state.opts.latency_ms)).await;
    }
}

/// Apply `hang`, and `slow-NNN` when the answer is not streamed (streams wait before their
/// first chunk instead, see [`stream_body`]).
pub(crate) async fn before_answer(behaviour: &Behaviour, stream: bool) {
    if behaviour.hang {
        tokio::time::sleep(HANG).await;
    }
    if behaviour.slow_headers_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.slow_headers_ms)).await;
    }
    if (behaviour.error.is_some() || !stream) && behaviour.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.slow_ms)).await;
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Number of whitespace-separated words, the mock's output-token count.
pub(crate) fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The mock's input-token count of a request body: its length in bytes / 4, at least 1.
pub(crate) fn prompt_tokens(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4).max(1)
}

/// Split `s` into `n` (or fewer if `s` is shorter) non-empty pieces that concatenate to `s`.
pub(crate) fn split_in(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The value of a header as text, if present and valid.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The raw (not percent-decoded) value of `name` in a query string.
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The tool the mock calls: `None` unless tools were declared and the user text contains
/// `use tool`; then the forced tool if any, else the first declared one.
pub(crate) fn pick_tool(
    first_declared: Option<&str>,
    forced: Option<&str>,
    disabled: bool,
    user_text: &str,
) -> Option<String> {
    let first = first_declared?;
    if disabled || !user_text.contains("use tool") {
        return None;
    }
    Some(forced.unwrap_or(first).to_owned())
}

/// Whether `key` appears as an object key anywhere in `v`.
pub(crate) fn contains_key(v: &serde_json::Value, key: &str) -> bool {
    match v {
        serde_json::Value::Object(map) => {
            map.contains_key(key) || map.values().any(|x| contains_key(x, key))
        }
        serde_json::Value::Array(items) => items.iter().any(|x| contains_key(x, key)),
        _ => false,
    }
}

/// How a streamed body ends after its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The body ends normally.
    Clean,
    /// The body is aborted with an I/O error (the connection is dropped).
    Abort,
}

/// A streamed body: waits `slow_ms` before the first event, sends `events`, then ends as asked.
pub(crate) fn stream_body(events: Vec<Bytes>, slow_ms: u64, end: StreamEnd) -> Body {
    let slow = Duration::from_millis(slow_ms);
    let body = async_stream::stream! {
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        for event in events {
            yield Ok::<Bytes, std::io::Error>(event);
        }
        if end == StreamEnd::Abort {
            // Give the server a moment to flush what was sent before aborting the body.
            tokio::time::sleep(Duration::from_millis(50)).await;
            yield Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "mock upstream disconnected",
            ));
        }
    };
    Body::from_stream(body)
}

/// A streamed body that never ends: `first`, then `next(n)` for n = 0, 1, ... every `every`
/// (until the client goes away).
pub(crate) fn endless_body(
    first: Vec<Bytes>,
    every: Duration,
    next: impl Fn(u64) -> Bytes + Send + 'static,
) -> Body {
    let body = async_stream::stream! {
        for event in first {
            yield Ok::<Bytes, std::io::Error>(event);
        }
        let mut n = 0;
        loop {
            tokio::time::sleep(every).await;
            yield Ok(next(n));
            n += 1;
        }
    };
    Body::from_stream(body)
}

/// A body that sends `head` and then drops the connection.
pub(crate) fn reset_body(head: Bytes) -> Body {
    stream_body(vec![head], 0, StreamEnd::Abort)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(split_in(r#"{"q":"mock"}"#, 3).concat(), r#"{"q":"mock"}"#);
        assert_eq!(split_in(r#"{"q":"mock"}"#, 3).len(), 3);
        assert_eq!(query_param(Some("alt=sse&key=k1"), "key"), Some("k1"));
        assert_eq!(query_param(Some("alt=sse&key=k1"), "x"), None);
        assert_eq!(query_param(None, "x"), None);
        assert!(contains_key(
            &serde_json::json!({"a": [{"b": {"cache_control": 1}}]}),
            "cache_control"
        ));
    }
}
