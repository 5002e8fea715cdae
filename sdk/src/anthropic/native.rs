//! Reading usage from native Messages answers passed through untouched.

use serde_json::Value;

use crate::Usage;

/// `usage` of an Anthropic `usage` object (`input_tokens`, `cache_read_input_tokens`, ...).
pub fn usage_from(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input: n("input_tokens"),
        output: n("output_tokens"),
        cache_read: n("cache_read_input_tokens"),
        cache_write: n("cache_creation_input_tokens"),
        reasoning: 0,
    }
}

/// `usage` and `model` of a whole Messages response, or `None` when it is not JSON.
pub fn response_usage(body: &[u8]) -> Option<(Option<Usage>, Option<String>)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let model = v.get("model").and_then(Value::as_str).map(str::to_string);
    Some((v.get("usage").map(usage_from), model))
}

/// The bookkeeping of a native Messages stream passed through event by event: the usage
/// (from `message_start`, updated by `message_delta`) and whether it ended properly.
#[derive(Debug, Clone, Default)]
pub struct MessagesStreamUsage {
    usage: Usage,
    saw_stop: bool,
    saw_error: bool,
}

impl MessagesStreamUsage {
    /// Read one event's `data`; an error when it is not JSON.
    pub fn on_event(&mut self, data: &str) -> Result<(), serde_json::Error> {
        let v: Value = serde_json::from_str(data)?;
        let st = &mut self.usage;
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(u) = v.pointer("/message/usage") {
                    *st = usage_from(u);
                }
            }
            Some("message_delta") => {
                if let Some(d) = v.get("usage").map(usage_from) {
                    st.output = d.output.max(st.output);
                    for (field, new) in [
                        (&mut st.input, d.input),
                        (&mut st.cache_read, d.cache_read),
                        (&mut st.cache_write, d.cache_write),
                    ] {
                        if new > 0 {
                            *field = new;
                        }
                    }
                }
            }
            Some("message_stop") => self.saw_stop = true,
            Some("error") => self.saw_error = true,
            _ => {}
        }
        Ok(())
    }

    /// The usage of the whole stream; `None` when it ended before `message_stop` without an
    /// `error` event (after one, the provider's own error already reached the client).
    pub fn finish(&self) -> Option<Usage> {
        (self.saw_stop || self.saw_error).then_some(self.usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_usage_accumulates_and_needs_a_stop() {
        let mut s = MessagesStreamUsage::default();
        s.on_event(r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":4,"output_tokens":1}}}"#).unwrap();
        s.on_event(r#"{"type":"content_block_delta","delta":{"text":"x"}}"#)
            .unwrap();
        assert_eq!(s.finish(), None);
        s.on_event(
            r#"{"type":"message_delta","usage":{"output_tokens":7,"cache_read_input_tokens":0}}"#,
        )
        .unwrap();
        s.on_event(r#"{"type":"message_stop"}"#).unwrap();
        let u = s.finish().unwrap();
        assert_eq!((u.input, u.output, u.cache_read), (10, 7, 4));
        assert!(s.on_event("not json").is_err());
        let mut e = MessagesStreamUsage::default();
        e.on_event(r#"{"type":"error","error":{"type":"overloaded_error"}}"#)
            .unwrap();
        assert!(e.finish().is_some());
    }
}
