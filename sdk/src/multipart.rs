//! `multipart/form-data` bodies (RFC 7578) held in memory, as image edits send them: the
//! boundary read from the content type with `mime`, parts found by their delimiters (which
//! a multipart body guarantees do not occur inside a part, so file contents are never looked
//! into), and each part's headers read with `httparse`. The host reads an edit's form fields
//! with it; a plugin rewrites one ([`rewrite_field`]).
//!
//! Why not `multer`: it is asynchronous (a stream of chunks) and hands out owned field
//! contents, while both users here hold the whole body and need byte offsets into it (a
//! rewrite copies everything but one field verbatim).

use std::fmt;

use memchr::memmem;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The form field's name (`Content-Disposition: form-data; name="..."`), empty if none.
    pub name: String,
    /// The file name, for a file part (`filename="..."`).
    pub filename: Option<String>,
    /// The part's content.
    pub content: &'a [u8],
    /// Where [`Part::content`] starts in the body.
    pub offset: usize,
}

impl Part<'_> {
    /// Whether this is a file part.
    pub fn is_file(&self) -> bool {
        self.filename.is_some()
    }
}

/// Why a multipart body could not be split into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The body never contains the boundary.
    NoBoundary,
    /// The body ends before the closing delimiter.
    NoClosingBoundary,
    /// A part's headers do not end with a blank line.
    NoHeaderEnd,
    /// A part's headers are not `Name: value` lines.
    BadHeaders,
    /// A part has no `Content-Disposition` header.
    NoDisposition,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoBoundary => "no boundary found",
            Self::NoClosingBoundary => "the closing boundary is missing",
            Self::NoHeaderEnd => "a part has no header end",
            Self::BadHeaders => "a part has malformed headers",
            Self::NoDisposition => "a part has no Content-Disposition",
        })
    }
}

impl std::error::Error for Malformed {}

/// The boundary of a `multipart/form-data` content type (unquoted), if it is one and names
/// a non-empty boundary.
pub fn boundary(content_type: &str) -> Option<String> {
    let ct: mime::Mime = content_type.trim().parse().ok()?;
    if ct.type_() != mime::MULTIPART || ct.subtype() != mime::FORM_DATA {
        return None;
    }
    let boundary = ct.get_param(mime::BOUNDARY)?.as_str();
    (!boundary.is_empty()).then(|| boundary.to_string())
}

/// Most headers a part may have (form parts have one to three).
const MAX_PART_HEADERS: usize = 16;

/// The parts of `body`, delimited by `boundary`, up to the closing delimiter.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, Malformed> {
    let first = format!("--{boundary}");
    // After the first, every delimiter starts on its own line.
    let delim = format!("\r\n--{boundary}");
    let start = memmem::find(body, first.as_bytes()).ok_or(Malformed::NoBoundary)?;
    let finder = memmem::Finder::new(delim.as_bytes());
    let mut out = Vec::new();
    let mut pos = start + first.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(out);
        }
        let next = pos
            + finder
                .find(&body[pos..])
                .ok_or(Malformed::NoClosingBoundary)?;
        // A part: CRLF, headers, blank line, content; then the next delimiter.
        let at = if body[pos..next].starts_with(b"\r\n") {
            pos + 2
        } else {
            pos
        };
        out.push(part(body, at, next)?);
        pos = next + delim.len();
    }
}

/// The part whose headers start at `at` and whose content ends at `end`.
fn part(body: &[u8], at: usize, end: usize) -> Result<Part<'_>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    let (head_len, headers) = match httparse::parse_headers(&body[at..end], &mut headers) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => return Err(Malformed::NoHeaderEnd),
        Err(_) => return Err(Malformed::BadHeaders),
    };
    let disposition = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-disposition"))
        .map(|h| String::from_utf8_lossy(h.value))
        .ok_or(Malformed::NoDisposition)?;
    let param = |key: &str| {
        disposition.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let offset = at + head_len;
    Ok(Part {
        name: param("name").unwrap_or_default(),
        filename: param("filename"),
        content: &body[offset..end],
        offset,
    })
}

/// A copy of a `multipart/form-data` body with the content of the (non-file) form field
/// `name` replaced by `value`, every other byte kept; `None` when the body is not a
/// well-formed form or has no such field (the caller then forwards it unchanged).
pub fn rewrite_field(content_type: &str, body: &[u8], name: &str, value: &str) -> Option<Vec<u8>> {
    let boundary = boundary(content_type)?;
    let parts = parts(body, &boundary).ok()?;
    let field = parts.iter().find(|p| p.name == name && !p.is_file())?;
    let end = field.offset + field.content.len();
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..field.offset]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDIT: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"model.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG--XyZ-ish name=\"model\"\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nmy-image-alias\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it blue\r\n--XyZ--\r\n";

    #[test]
    fn boundaries() {
        let b = |ct: &str| boundary(ct);
        assert_eq!(
            b("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            b("Multipart/Form-Data; charset=utf-8; Boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(
            b("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk").as_deref(),
            Some("----WebKitFormBoundary7MA4YWxk")
        );
        assert_eq!(b("multipart/form-data; boundary=\"\""), None);
        assert_eq!(b("multipart/form-data"), None);
        assert_eq!(b("multipart/mixed; boundary=x"), None);
        assert_eq!(b("application/json"), None);
    }

    #[test]
    fn splits_parts_without_looking_into_files() {
        let parts = parts(EDIT, "XyZ").unwrap();
        let names: Vec<_> = parts
            .iter()
            .map(|p| (p.name.as_str(), p.is_file()))
            .collect();
        assert_eq!(
            names,
            [("image[]", true), ("model", false), ("prompt", false)]
        );
        assert_eq!(parts[0].filename.as_deref(), Some("model.png"));
        assert_eq!(
            parts[0].content,
            b"\x89PNG--XyZ-ish name=\"model\"\r\n\r\nx"
        );
        assert_eq!(parts[1].content, b"my-image-alias");
        assert_eq!(&EDIT[parts[2].offset..][..12], b"make it blue");
    }

    #[test]
    fn malformed_bodies() {
        let cases: [(&[u8], Malformed); 5] = [
            (b"no delimiter", Malformed::NoBoundary),
            (b"--b\r\ngarbage", Malformed::NoClosingBoundary),
            (
                b"--b\r\nContent-Disposition: form-data\r\n--b--",
                Malformed::NoHeaderEnd,
            ),
            (
                b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
                Malformed::NoDisposition,
            ),
            (
                b"--b\r\nnot a header\r\n\r\nx\r\n--b--",
                Malformed::BadHeaders,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parts(body, "b"),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(parts(b"--b--\r\n", "b"), Ok(vec![]));
    }

    #[test]
    fn rewrites_the_named_form_field_only() {
        let ct = "multipart/form-data; boundary=XyZ";
        let out = rewrite_field(ct, EDIT, "model", "gpt-image-1").unwrap();
        let want = String::from_utf8_lossy(EDIT).replace("my-image-alias", "gpt-image-1");
        assert_eq!(String::from_utf8_lossy(&out), want);
        // A quoted boundary, header names in any case, a preamble and an epilogue kept.
        let body: &[u8] =
            b"preamble\r\n--b\r\ncontent-DISPOSITION: form-data; NAME=\"model\"\r\n\r\nm\r\n--b--\r\nend";
        let out = rewrite_field("multipart/form-data; boundary=\"b\"", body, "model", "x");
        let want: &[u8] =
            b"preamble\r\n--b\r\ncontent-DISPOSITION: form-data; NAME=\"model\"\r\n\r\nx\r\n--b--\r\nend";
        assert_eq!(out.as_deref(), Some(want));
    }

    #[test]
    fn leaves_other_bodies_alone() {
        assert!(rewrite_field("application/json", b"{}", "model", "m").is_none());
        let ct = "multipart/form-data; boundary=b";
        let no_model =
            b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--b--\r\n";
        assert!(rewrite_field(ct, no_model, "model", "m").is_none());
        let file = b"--b\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m\"\r\n\r\nx\r\n--b--\r\n";
        assert!(rewrite_field(ct, file, "model", "m").is_none());
        assert!(rewrite_field(ct, b"--b\r\ngarbage", "model", "m").is_none());
    }
}
