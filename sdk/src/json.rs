//! Fast structural JSON scanning and top-level patching.
//!
//! Agent requests are large (a ~50 KB system prompt, 14 tools) but a gateway only needs a
//! handful of top-level fields (`model`, `stream`, `max_tokens`, ...). Parsing the whole body
//! into a tree and serialising it again costs far more than the rest of the request path, so
//! this module scans the structure once (strings are skipped with `memchr`), returns the byte
//! spans of the top-level members, and splices changes into the original bytes.
//!
//! The scanner checks structure (balanced brackets, commas, colons, string termination,
//! literals, number characters, nesting depth) and rejects trailing garbage. It does not
//! decode escapes or validate UTF-8 inside strings; callers decode the few values they need
//! with `serde_json`.

use std::ops::Range;

/// Deepest nesting accepted, to bound the work and stack of downstream parsers.
pub const MAX_DEPTH: usize = 128;

/// Why a body is not a JSON object we can work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset where the problem was found.
    pub offset: usize,
    /// What was expected or found.
    pub message: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// One member of the top-level object: the key's raw bytes (without quotes, escapes not
/// decoded) and the spans of the key and value in the original body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Span of the key's contents, quotes excluded.
    pub key: Range<usize>,
    /// Span of the value (for strings, quotes included).
    pub value: Range<usize>,
    /// The key decoded, when it is written with escapes (`"mod\u0065l"` is `model`).
    /// Lookups and patches match on the decoded key, as every JSON parser downstream does,
    /// so an escaped duplicate cannot hide a member from the host.
    pub decoded_key: Option<Box<str>>,
}

impl Member {
    /// The key as a JSON parser reads it.
    pub fn name<'b>(&'b self, body: &'b [u8]) -> &'b [u8] {
        match &self.decoded_key {
            Some(k) => k.as_bytes(),
            None => &body[self.key.clone()],
        }
    }
}

/// The top-level members of a JSON object body, in order.
#[derive(Debug, Clone)]
pub struct TopLevel<'a> {
    body: &'a [u8],
    /// Members in document order.
    pub members: Vec<Member>,
    /// Span of the whole object (`{` to `}` inclusive).
    pub object: Range<usize>,
}

impl<'a> TopLevel<'a> {
    /// Scan `body`, which must be a single JSON object (surrounding whitespace allowed).
    pub fn parse(body: &'a [u8]) -> Result<Self, JsonError> {
        let mut s = Scanner { b: body, i: 0 };
        s.ws();
        if s.peek() != Some(b'{') {
            return Err(s.err("expected a JSON object"));
        }
        let start = s.i;
        s.i += 1;
        let mut members = Vec::with_capacity(16);
        s.ws();
        if s.peek() == Some(b'}') {
            s.i += 1;
        } else {
            loop {
                s.ws();
                if s.peek() != Some(b'"') {
                    return Err(s.err("expected a string key"));
                }
                let k0 = s.i + 1;
                s.string()?;
                let key = k0..s.i - 1;
                let decoded_key = if memchr::memchr(b'\\', &body[key.clone()]).is_some() {
                    let k: String = serde_json::from_slice(&body[k0 - 1..s.i])
                        .map_err(|_| s.err("invalid escape in a key"))?;
                    Some(k.into_boxed_str())
                } else {
                    None
                };
                s.ws();
                if s.peek() != Some(b':') {
                    return Err(s.err("expected ':'"));
                }
                s.i += 1;
                s.ws();
                let v0 = s.i;
                s.value(1)?;
                members.push(Member {
                    key,
                    value: v0..s.i,
                    decoded_key,
                });
                s.ws();
                match s.peek() {
                    Some(b',') => s.i += 1,
                    Some(b'}') => {
                        s.i += 1;
                        break;
                    }
                    _ => return Err(s.err("expected ',' or '}'")),
                }
            }
        }
        let object = start..s.i;
        s.ws();
        if s.i != body.len() {
            return Err(s.err("unexpected data after the JSON object"));
        }
        Ok(Self {
            body,
            members,
            object,
        })
    }

    /// The body this was scanned from.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The raw value of the last member named `key` (JSON semantics: the last one wins).
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.members
            .iter()
            .rev()
            .find(|m| m.name(self.body) == key.as_bytes())
            .map(|m| &self.body[m.value.clone()])
    }

    /// The value of `key` if it is a JSON string, decoded.
    pub fn get_str(&self, key: &str) -> Option<String> {
        let raw = self.get(key)?;
        if raw.first() != Some(&b'"') {
            return None;
        }
        // Fast path: no escapes.
        let inner = &raw[1..raw.len() - 1];
        if memchr::memchr(b'\\', inner).is_none() {
            return std::str::from_utf8(inner).ok().map(str::to_owned);
        }
        serde_json::from_slice(raw).ok()
    }

    /// The value of `key` if it is `true` or `false`.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// The value of `key` if it is a non-negative integer that fits in a u64.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        std::str::from_utf8(self.get(key)?).ok()?.parse().ok()
    }

    /// Whether the member `key` is present (with any value, `null` included).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A copy of the body with members replaced, removed or appended. Each edit is
    /// `(key, Some(raw_json_value))` to set or `(key, None)` to remove; values must be valid
    /// JSON. Every existing member with that key is affected; an unknown key is appended.
    pub fn patch(&self, edits: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let extra: usize = edits
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 4)
            .sum();
        let mut out = Vec::with_capacity(self.body.len() + extra);
        out.extend_from_slice(&self.body[..self.object.start]);
        out.push(b'{');
        let mut first = true;
        let mut done = vec![false; edits.len()];
        for m in &self.members {
            let key = &self.body[m.key.clone()];
            let name = m.name(self.body);
            let edit = edits.iter().position(|(k, _)| k.as_bytes() == name);
            let value: &[u8] = match edit {
                Some(idx) => {
                    let Some(v) = edits[idx].1 else { continue };
                    if done[idx] {
                        continue;
                    }
                    done[idx] = true;
                    v
                }
                None => &self.body[m.value.clone()],
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value);
        }
        for (idx, (k, v)) in edits.iter().enumerate() {
            let (false, Some(v)) = (done[idx], v) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(v);
        }
        out.push(b'}');
        out.extend_from_slice(&self.body[self.object.end..]);
        out
    }
}

/// Check that `raw` is one structurally valid JSON value and nothing else.
pub fn validate(raw: &[u8]) -> Result<(), JsonError> {
    let mut s = Scanner { b: raw, i: 0 };
    s.ws();
    s.value(0)?;
    s.ws();
    if s.i != raw.len() {
        return Err(s.err("unexpected data after the JSON value"));
    }
    Ok(())
}

/// Encode `s` as a JSON string literal.
pub fn quote(s: &str) -> Vec<u8> {
    // serde_json never fails to serialise a str.
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn err(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.i,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// At an opening quote: move past the closing quote.
    fn string(&mut self) -> Result<(), JsonError> {
        self.i += 1;
        loop {
            let Some(off) = memchr::memchr3(b'"', b'\\', b'\n', &self.b[self.i..]) else {
                self.i = self.b.len();
                return Err(self.err("unterminated string"));
            };
            self.i += off;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => {
                    if self.i + 1 >= self.b.len() {
                        return Err(self.err("unterminated string"));
                    }
                    self.i += 2;
                }
                _ => return Err(self.err("control character in string")),
            }
        }
    }

    /// Skip one value; containers iteratively, with an explicit stack bound.
    fn value(&mut self, base_depth: usize) -> Result<(), JsonError> {
        // Stack of open containers: true = object, false = array.
        let mut stack: Vec<bool> = Vec::new();
        loop {
            // Expect a value.
            self.ws();
            match self.peek() {
                Some(b'"') => self.string()?,
                Some(c @ (b'{' | b'[')) => {
                    if base_depth + stack.len() >= MAX_DEPTH {
                        return Err(self.err("JSON nested too deeply"));
                    }
                    self.i += 1;
                    self.ws();
                    let is_obj = c == b'{';
                    let close = if is_obj { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                    } else {
                        stack.push(is_obj);
                        if is_obj {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(self.err("expected a JSON value")),
            }
            // After a value: close containers or continue with the next element.
            loop {
                let Some(&is_obj) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if is_obj {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if is_obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    Some(b']') if !is_obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    _ => {
                        return Err(self.err(if is_obj {
                            "expected ',' or '}'"
                        } else {
                            "expected ',' or ']'"
                        }));
                    }
                }
            }
        }
    }

    /// A `"key":` inside an object.
    fn key(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string key"));
        }
        self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err("expected ':'"));
        }
        self.i += 1;
        Ok(())
    }

    fn literal(&mut self, lit: &'static [u8]) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits == b"-" || !digits.iter().any(u8::is_ascii_digit) {
            return Err(JsonError {
                offset: start,
                message: "invalid number",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    /// A key written with escapes is the same key: the host must see what the upstream's
    /// parser sees, or `"mod\u0065l"` could route on one model and reach another.
    #[test]
    fn escaped_keys_are_matched_decoded() {
        let body = br#"{"model":"allowed","mod\u0065l":"other","stream":false}"#;
        let t = TopLevel::parse(body).expect("parses");
        assert_eq!(t.get_str("model").as_deref(), Some("other"));
        let patched = t.patch(&[("model", Some(br#""upstream-model""#))]);
        let v: serde_json::Value = serde_json::from_slice(&patched).expect("json");
        assert_eq!(
            v["model"],
            "upstream-model",
            "{}",
            String::from_utf8_lossy(&patched)
        );
        assert_eq!(v.as_object().map(|o| o.len()), Some(2));
        let removed = t.patch(&[("model", None)]);
        let v: serde_json::Value = serde_json::from_slice(&removed).expect("json");
        assert!(v.get("model").is_none(), "{v}");
    }

    use super::*;

    #[test]
    fn scans_members_and_reads_values() {
        let body = br#" {"messages":[{"role":"user","content":"hi \"there\" {["}],"model":"gpt-4o","stream":true,"max_tokens":64000} "#;
        let t = TopLevel::parse(body).unwrap();
        assert_eq!(t.members.len(), 4);
        assert_eq!(t.get_str("model").as_deref(), Some("gpt-4o"));
        assert_eq!(t.get_bool("stream"), Some(true));
        assert_eq!(t.get_u64("max_tokens"), Some(64000));
        assert!(t.get("nope").is_none());
    }

    #[test]
    fn patch_replaces_removes_and_appends() {
        let body = br#"{"model":"a","stream":true,"x":1}"#;
        let t = TopLevel::parse(body).unwrap();
        let out = t.patch(&[
            ("model", Some(b"\"b\"")),
            ("x", None),
            ("stream_options", Some(br#"{"include_usage":true}"#)),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"b","stream":true,"stream_options":{"include_usage":true}})
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"{\"a\":}",
            b"{\"a\" 1}",
            b"{\"a\":1,}",
            b"{\"a\":tru}",
            b"{\"a\":\"x}",
            b"{\"a\":1} x",
            b"{\"a\":[1,2}",
            b"{\"a\":{\"b\":1]}",
            b"{\"a\":-}",
            b"",
        ] {
            assert!(
                TopLevel::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn agrees_with_serde_on_valid_json() {
        let v = serde_json::json!({"a":[1,2.5e3,-3,{"b":null,"c":[true,false,"\u{1F600}\\\""]}],"d":{}, "e":[]});
        let raw = serde_json::to_vec(&v).unwrap();
        assert!(validate(&raw).is_ok());
        let t = TopLevel::parse(&raw).unwrap();
        assert_eq!(t.members.len(), 3);
    }

    #[test]
    fn bounds_depth() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(TopLevel::parse(deep.as_bytes()).is_err());
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(TopLevel::parse(ok.as_bytes()).is_ok());
    }
}
