//! W3C Trace Context: the `traceparent` (and `tracestate`) a client sends, and the one the
//! host sends upstream for each attempt.
//!
//! A malformed header is ignored, never an error: a client's tracing must not break its
//! request.

use http::HeaderMap;

/// A request's place in a distributed trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id: the client's, or a new one when the gateway traces and the client
    /// sent none.
    pub trace_id: [u8; 16],
    /// The client's span (the request span's parent), if the client sent a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the trace is sampled (the client's flag; a new trace is).
    pub sampled: bool,
    /// The client's `tracestate`, passed on unchanged.
    pub state: Option<String>,
    /// Whether this gateway exports the request's spans (tracing is on): upstream requests
    /// then carry the attempt's span id, else the client's `traceparent` unchanged.
    pub exported: bool,
}

impl TraceContext {
    /// The request's trace context from the client's headers: `None` when the client
    /// sent no valid `traceparent` and `exported` (tracing) is off; a new trace when it is
    /// on and the client sent none.
    pub fn from_headers(headers: &HeaderMap, exported: bool) -> Option<Self> {
        let parsed = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let state = || {
            headers
                .get("tracestate")
                .and_then(|v| v.to_str().ok())
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_string)
        };
        match parsed {
            Some((trace_id, parent, sampled)) => Some(Self {
                trace_id,
                parent_span_id: Some(parent),
                sampled,
                state: state(),
                exported,
            }),
            None if exported => Some(Self {
                trace_id: new_trace_id(),
                parent_span_id: None,
                sampled: true,
                state: None,
                exported,
            }),
            None => None,
        }
    }

    /// The `traceparent` to send upstream: naming `span` (the attempt's span) when the
    /// gateway exports spans, else the client's own, unchanged.
    pub fn upstream_traceparent(&self, span: [u8; 8]) -> Option<String> {
        let parent = if self.exported {
            span
        } else {
            self.parent_span_id?
        };
        let flags = if self.sampled { "01" } else { "00" };
        Some(format!(
            "00-{}-{}-{flags}",
            hex::encode(self.trace_id),
            hex::encode(parent)
        ))
    }
}

/// `(trace id, parent span id, sampled)` of a `traceparent` header, `None` if malformed
/// (including the all-zero ids the spec forbids and version `ff`).
pub fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], bool)> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    let rest_ok = match version {
        "00" => parts.next().is_none(),
        _ => true,
    };
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || !rest_ok || flags.len() != 2 {
        return None;
    }
    u8::from_str_radix(version, 16).ok()?;
    let trace_id: [u8; 16] = decode_lower_hex(trace)?;
    let span_id: [u8; 8] = decode_lower_hex(span)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags & 1 == 1))
}

/// `N` bytes from exactly `2N` lower-case hex digits.
fn decode_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A new random trace id.
pub fn new_trace_id() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// A new random span id (never all zero).
pub fn new_span_id() -> [u8; 8] {
    let b = uuid::Uuid::new_v4().into_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_ignores_malformed() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, s, sampled) = parse_traceparent(ok).unwrap_or_default();
        assert_eq!(hex::encode(t), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(s), "00f067aa0ba902b7");
        assert!(sampled);
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
