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
    /// Whether the trace is sampled: when the gateway traces, its [`Sampler`]'s decision
    /// (its spans are exported only then), else the client's flag.
    pub sampled: bool,
    /// The client's `tracestate`, passed on unchanged.
    pub state: Option<String>,
    /// Whether this gateway traces (tracing is on): upstream requests then carry the
    /// attempt's span id (and the sampling decision), else the client's `traceparent`
    /// unchanged. The spans are exported when it is on and the trace is `sampled`.
    pub exported: bool,
}

impl TraceContext {
    /// The request's trace context from the client's headers: `None` when the client
    /// sent no valid `traceparent` and tracing is off (`sampler` is `None`); a new trace
    /// when it is on and the client sent none. With tracing on, `sampler` decides
    /// [`TraceContext::sampled`].
    pub fn from_headers(headers: &HeaderMap, sampler: Option<Sampler>) -> Option<Self> {
        let exported = sampler.is_some();
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
            Some((trace_id, parent, flag)) => Some(Self {
                trace_id,
                parent_span_id: Some(parent),
                sampled: sampler.map_or(flag, |s| s.sample(&trace_id, Some(flag))),
                state: state(),
                exported,
            }),
            None => {
                let sampler = sampler?;
                let trace_id = new_trace_id();
                Some(Self {
                    trace_id,
                    parent_span_id: None,
                    sampled: sampler.sample(&trace_id, None),
                    state: None,
                    exported,
                })
            }
        }
    }

    /// Whether the gateway exports this request's spans: it traces and the trace is
    /// sampled.
    pub fn recorded(&self) -> bool {
        self.exported && self.sampled
    }

    /// The `traceparent` to send upstream: naming `span` (the attempt's span) when the
    /// gateway exports spans, else the client's own, unchanged.
    pub fn upstream_traceparent(&self, span: [u8; 8]) -> Option<String> {
        let parent = if self.exported {
            span
        } else {
            self.parent_span_id?
        };
        // `00-{32 hex}-{16 hex}-{2 hex}`, written in place: one allocation (a format!
        // with two hex Strings cost ten times as many instructions, on every attempt).
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex::encode_to_slice(self.trace_id, &mut out[3..35]).ok()?;
        hex::encode_to_slice(parent, &mut out[36..52]).ok()?;
        if self.sampled {
            out[54] = b'1';
        }
        String::from_utf8(out.to_vec()).ok()
    }
}

/// Which traces the gateway exports: OpenTelemetry's `OTEL_TRACES_SAMPLER`
/// (`always_on`, `always_off`, `traceidratio`, and `parentbased_` each, the default
/// `parentbased_always_on`) with `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// Share of new traces kept, 0 to 1 (by trace id, as the spec's `TraceIdRatioBased`).
    pub ratio: f64,
    /// A client's `traceparent` flag decides for its trace.
    pub parent_based: bool,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            ratio: 1.0,
            parent_based: true,
        }
    }
}

impl Sampler {
    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` as `var` reads them;
    /// unknown samplers and bad ratios are warned about and the default used.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let name = var("OTEL_TRACES_SAMPLER").map(|v| v.trim().to_ascii_lowercase());
        let arg = || {
            let raw = var("OTEL_TRACES_SAMPLER_ARG")?;
            match raw.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Some(r),
                _ => {
                    tracing::warn!(
                        "OTEL_TRACES_SAMPLER_ARG={raw} is not a ratio from 0 to 1; 1 is used"
                    );
                    None
                }
            }
        };
        let (parent_based, ratio) = match name.as_deref() {
            None | Some("parentbased_always_on") => (true, 1.0),
            Some("always_on") => (false, 1.0),
            Some("always_off") => (false, 0.0),
            Some("parentbased_always_off") => (true, 0.0),
            Some("traceidratio") => (false, arg().unwrap_or(1.0)),
            Some("parentbased_traceidratio") => (true, arg().unwrap_or(1.0)),
            Some(other) => {
                tracing::warn!(
                    "OTEL_TRACES_SAMPLER={other} is not served (always_on, always_off, traceidratio, parentbased_*); parentbased_always_on is used"
                );
                (true, 1.0)
            }
        };
        Self {
            ratio,
            parent_based,
        }
    }

    /// Whether to keep the trace `trace_id`, whose client flag is `parent` (if it came
    /// with a `traceparent`).
    pub fn sample(&self, trace_id: &[u8; 16], parent: Option<bool>) -> bool {
        match parent {
            Some(flag) if self.parent_based => flag,
            _ => by_ratio(trace_id, self.ratio),
        }
    }
}

/// The spec's `TraceIdRatioBased` rule: the trace id's low 8 bytes (as a number, its top
/// bit dropped) under `ratio` of their range, so every gateway keeps the same traces.
fn by_ratio(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let n = u64::from_be_bytes(low) >> 1;
    (n as f64) < ratio * (1u64 << 63) as f64
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
    fn the_upstream_traceparent_names_the_attempt_and_the_decision() {
        let mut t = TraceContext {
            trace_id: [0xab; 16],
            parent_span_id: Some([1; 8]),
            sampled: true,
            state: None,
            exported: true,
        };
        let sent = t.upstream_traceparent([0x0f; 8]).unwrap_or_default();
        assert_eq!(
            sent,
            "00-abababababababababababababababab-0f0f0f0f0f0f0f0f-01"
        );
        assert_eq!(
            parse_traceparent(&sent),
            Some(([0xab; 16], [0x0f; 8], true))
        );
        t.sampled = false;
        t.exported = false;
        let sent = t.upstream_traceparent([0x0f; 8]).unwrap_or_default();
        assert_eq!(
            sent,
            "00-abababababababababababababababab-0101010101010101-00"
        );
    }

    #[test]
    fn samplers_follow_the_otel_variables() {
        let vars = |name: &'static str, arg: &'static str| {
            move |k: &str| match k {
                "OTEL_TRACES_SAMPLER" => Some(name.to_string()),
                "OTEL_TRACES_SAMPLER_ARG" => Some(arg.to_string()),
                _ => None,
            }
        };
        assert_eq!(Sampler::from_vars(|_| None), Sampler::default());
        let off = Sampler::from_vars(vars("always_off", ""));
        assert!(!off.sample(&[7; 16], None) && !off.sample(&[7; 16], Some(true)));
        let parent = Sampler::from_vars(vars("parentbased_always_on", ""));
        assert!(parent.sample(&[7; 16], None));
        assert!(!parent.sample(&[7; 16], Some(false)));
        let ratio = Sampler::from_vars(vars("traceidratio", "0.25"));
        assert_eq!(ratio.ratio, 0.25);
        let kept = (0u32..4000)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
                ratio.sample(&id, Some(true))
            })
            .count();
        assert!((800..1200).contains(&kept), "kept {kept} of 4000 at 0.25");
        assert_eq!(Sampler::from_vars(vars("traceidratio", "7")).ratio, 1.0);
        assert_eq!(Sampler::from_vars(vars("nonsense", "")), Sampler::default());
    }

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
