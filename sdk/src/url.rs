//! Upstream URL building: a model name (or any other text a client can influence) as
//! exactly one URL path segment, so it can neither climb out of the `api_base` path nor add
//! a query or fragment. The host refuses planned URLs that do (see `dot_segment`), whatever
//! the plugin.

use std::fmt;

/// Text that cannot be one path segment: empty, or with a `.` or `..` part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotASegment(pub String);

impl fmt::Display for NotASegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` cannot be a model in an upstream URL: it is empty or has a `.` or `..` path segment",
            self.0
        )
    }
}

impl std::error::Error for NotASegment {}

/// `text` percent-encoded as exactly one URL path segment: RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) stay, every other byte becomes `%XX`, so `/`, `\`, `?`, `#` and
/// `%` never survive. Text that is empty, or that has a `.` or `..` part between slashes
/// (`..`, `a/../b`, `./x`), is refused: once encoded it would still read as a dot segment
/// to a server that decodes `%2F` before resolving the path.
pub fn path_segment(text: &str) -> Result<String, NotASegment> {
    if text.is_empty() || dot_segment(text) {
        return Err(NotASegment(text.to_string()));
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `path`, read the way any server might (percent escapes decoded, repeatedly; `\`
/// taken as `/`; tabs and newlines dropped, as URL parsers do), has a `.` or `..` segment.
pub fn dot_segment(path: &str) -> bool {
    let mut text = path.to_string();
    // Decode until nothing changes (bounded: `%252e` is `%2e` is `.`).
    for _ in 0..4 {
        let decoded = percent_decode(&text);
        if decoded == text {
            break;
        }
        text = decoded;
    }
    text.retain(|c| !matches!(c, '\t' | '\n' | '\r'));
    text.split(['/', '\\']).any(|s| s == "." || s == "..")
}

/// `%XX` escapes decoded (invalid ones kept as they are), lossy for non-UTF-8 bytes.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_one_segment() {
        assert_eq!(
            path_segment("gemini-2.5-flash").unwrap(),
            "gemini-2.5-flash"
        );
        assert_eq!(
            path_segment("anthropic.claude-3-5-sonnet-20240620-v1:0").unwrap(),
            "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        );
        assert_eq!(
            path_segment("arn:aws:bedrock:us-east-1:1:inference-profile/us.x-v1:0").unwrap(),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x-v1%3A0"
        );
        assert_eq!(path_segment("a b~é").unwrap(), "a%20b~%C3%A9");
        assert_eq!(path_segment("x?y=1#").unwrap(), "x%3Fy%3D1%23");
        assert_eq!(path_segment("100%").unwrap(), "100%25");
        assert_eq!(path_segment("...").unwrap(), "...");
    }

    #[test]
    fn refuses_dot_segments() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/../b",
            "./a",
            "a/..",
            "a\\..\\b",
            "%2e%2e",
            "%2E.",
            "%252e%252e/x",
        ] {
            assert!(path_segment(bad).is_err(), "{bad}");
        }
        assert!(dot_segment("/v1/.%0a./x"));
        assert!(!dot_segment("/v1/models/gemini-2.5-flash:generateContent"));
    }
}
