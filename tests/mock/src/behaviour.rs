//! Selection of the mock's behaviour from substrings of the requested `model`.
//!
//! Markers (they can be combined, e.g. `mock-slow-200-cached`):
//! - `error-NNN`: answer with HTTP status NNN and an OpenAI error body.
//! - `error-context`: answer 400 `context_length_exceeded`.
//! - `slow-NNN`: wait NNN ms before answering (streams: before the first chunk).
//! - `malformed`: answer with a body that is not valid JSON / a broken SSE event.
//! - `disconnect`: streams only; drop the connection after a few chunks.
//! - `hang`: never answer.
//! - `cached`: report half of the prompt tokens as cached.
//! - `stream-error`: streams only; send a few chunks, then the provider's in-stream error event.
//! - `content-filter` (OpenAI flavour): answer 400 `content_policy_violation`.
//!
//! Faults for the fault-injection suite (OpenAI flavour):
//! - `truncate`: streams end cleanly after a few chunks, with no `finish_reason` and no
//!   `[DONE]`; non-streamed bodies end cleanly in the middle of the JSON.
//! - `reset-body`: non-streamed: the headers and half the body, then the connection drops.
//! - `comments-only`: streams: the headers, then an SSE comment every 100 ms, forever.
//! - `endless`: streams: a content chunk every 50 ms, forever.
//! - `oversize`: non-streamed: a valid answer of 2 MiB; streamed: one 17 MiB event.
//! - `slowheaders-NNN`: wait NNN ms before the response headers (streams too).
//!
//! Every provider module applies them, each with its own error body shapes and statuses.

/// An error the mock has been asked to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockError {
    /// Answer with this HTTP status.
    Status(u16),
    /// Answer 400 with `code: context_length_exceeded`.
    ContextLength,
}

/// What the mock does for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Never answer.
    pub hang: bool,
    /// Delay in milliseconds before answering (streams: before the first chunk).
    pub slow_ms: u64,
    /// Answer with an error instead of a completion.
    pub error: Option<MockError>,
    /// Answer with malformed JSON.
    pub malformed: bool,
    /// Drop the connection in the middle of a stream.
    pub disconnect: bool,
    /// Report half of the prompt tokens as cached.
    pub cached: bool,
    /// Streams only: end with the provider's in-stream error event after a few chunks.
    pub stream_error: bool,
    /// End the body cleanly before the answer is complete.
    pub truncate: bool,
    /// Non-streamed: drop the connection in the middle of the body.
    pub reset_body: bool,
    /// Streams: send only SSE comments, forever.
    pub comments_only: bool,
    /// Streams: never end.
    pub endless: bool,
    /// An answer larger than any sane limit.
    pub oversize: bool,
    /// Delay in milliseconds before the response headers, streams included.
    pub slow_headers_ms: u64,
}

/// The leading decimal digits of `s`, parsed, if there are any.
fn leading_number(s: &str) -> Option<u64> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// The number that directly follows the first occurrence of `marker` followed by digits.
fn number_after(model: &str, marker: &str) -> Option<u64> {
    model
        .match_indices(marker)
        .find_map(|(i, m)| leading_number(&model[i + m.len()..]))
}

impl Behaviour {
    /// Derive the behaviour from the requested model name.
    pub fn from_model(model: &str) -> Self {
        let error = if model.contains("error-context") {
            Some(MockError::ContextLength)
        } else {
            number_after(model, "error-")
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=999).contains(n))
                .map(MockError::Status)
        };
        Self {
            hang: model.contains("hang"),
            slow_ms: number_after(model, "slow-").unwrap_or(0),
            error,
            malformed: model.contains("malformed"),
            disconnect: model.contains("disconnect"),
            cached: model.contains("cached"),
            stream_error: model.contains("stream-error"),
            truncate: model.contains("truncate"),
            reset_body: model.contains("reset-body"),
            comments_only: model.contains("comments-only"),
            endless: model.contains("endless"),
            oversize: model.contains("oversize"),
            slow_headers_ms: number_after(model, "slowheaders-").unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers() {
        assert_eq!(Behaviour::from_model("mock-gpt"), Behaviour::default());
        assert_eq!(
            Behaviour::from_model("mock-error-429").error,
            Some(MockError::Status(429))
        );
        assert_eq!(
            Behaviour::from_model("mock-error-context").error,
            Some(MockError::ContextLength)
        );
        let b = Behaviour::from_model("mock-slow-300-cached");
        assert_eq!(b.slow_ms, 300);
        assert!(b.cached);
        assert!(Behaviour::from_model("mock-hang").hang);
        assert!(Behaviour::from_model("mock-disconnect").disconnect);
        assert!(Behaviour::from_model("mock-malformed").malformed);
        assert_eq!(Behaviour::from_model("mock-error-x").error, None);
        let b = Behaviour::from_model("mock-stream-error");
        assert!(b.stream_error);
        assert_eq!(b.error, None);
        let b = Behaviour::from_model("mock-slowheaders-700-truncate");
        assert_eq!((b.slow_headers_ms, b.slow_ms), (700, 0));
        assert!(b.truncate && !b.endless);
    }
}
