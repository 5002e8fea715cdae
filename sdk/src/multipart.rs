//! `multipart/form-data` bodies: rewriting one form field without looking into files.

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<&str> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// A copy of a `multipart/form-data` body with the value of the (non-file) form field
/// `name` replaced by `value`; `None` when the body is not multipart or has no such field
/// (the caller then forwards it unchanged). File contents are never looked into: parts are
/// found by their delimiters, which multipart bodies guarantee do not occur inside parts.
pub fn rewrite_multipart_field(
    content_type: &str,
    body: &[u8],
    name: &str,
    value: &str,
) -> Option<Vec<u8>> {
    let boundary = multipart_boundary(content_type)?;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let first = format!("--{boundary}");
    // After the first, every delimiter starts on its own line.
    let delim = format!("\r\n--{boundary}");
    let mut pos = find(body, first.as_bytes())? + first.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return None;
        }
        // A part: CRLF, headers, blank line, content; then CRLF and the next delimiter.
        let next = pos + find(&body[pos..], delim.as_bytes())?;
        let start = if body[pos..next].starts_with(b"\r\n") {
            pos + 2
        } else {
            pos
        };
        let head_end = start + find(&body[start..next], b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&body[start..head_end]).to_ascii_lowercase();
        let disposition = head
            .lines()
            .find(|l| l.starts_with("content-disposition:"))
            .unwrap_or("");
        let param = |key: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if param("name").as_deref() == Some(name) && param("filename").is_none() {
            let mut out = Vec::with_capacity(body.len() + value.len());
            out.extend_from_slice(&body[..head_end + 4]);
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(&body[next..]);
            return Some(out);
        }
        pos = next + delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDIT: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"model.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG--XyZ-ish name=\"model\"\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nmy-image-alias\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it blue\r\n--XyZ--\r\n";

    #[test]
    fn rewrites_the_model_form_field_only() {
        let out = rewrite_multipart_field(
            "multipart/form-data; boundary=XyZ",
            EDIT,
            "model",
            "gpt-image-1",
        )
        .unwrap();
        let want = String::from_utf8_lossy(EDIT).replace("my-image-alias", "gpt-image-1");
        assert_eq!(String::from_utf8_lossy(&out), want);
        // Quoted boundary, upper-case header names.
        let body = b"--b\r\nCONTENT-DISPOSITION: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n";
        let out = rewrite_multipart_field(
            "multipart/form-data; boundary=\"b\"",
            body,
            "model",
            "dall-e-2",
        )
        .unwrap();
        assert_eq!(
            out,
            b"--b\r\nCONTENT-DISPOSITION: form-data; name=\"model\"\r\n\r\ndall-e-2\r\n--b--\r\n"
        );
    }

    #[test]
    fn leaves_other_bodies_alone() {
        assert!(rewrite_multipart_field("application/json", b"{}", "model", "m").is_none());
        let no_model =
            b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--b--\r\n";
        assert!(
            rewrite_multipart_field("multipart/form-data; boundary=b", no_model, "model", "m")
                .is_none()
        );
        assert!(
            rewrite_multipart_field(
                "multipart/form-data; boundary=b",
                b"--b\r\ngarbage",
                "model",
                "m"
            )
            .is_none()
        );
    }
}
