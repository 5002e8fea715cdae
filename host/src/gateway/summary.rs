//! What the gateway reads from a request body: the few fields it routes and limits on.
//! JSON bodies are scanned, not parsed; multipart bodies (image edits) are split into parts
//! by the SDK's [`multipart`] module, just enough to read the `model` form field and check
//! the image and prompt parts.

use llmgate_sdk::json::TopLevel;
use llmgate_sdk::multipart;

use crate::error::Error;
use crate::wit::types::Api;

/// The routing-relevant fields of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `model`.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// `max_completion_tokens` or `max_tokens`, 0 if absent.
    pub max_output: u64,
    /// `user` (OpenAI) or `metadata.user_id` (Anthropic), for spend logs.
    pub user: Option<String>,
    /// `metadata` object, when present (LiteLLM: `tags`, free-form fields).
    pub metadata: Option<serde_json::Value>,
}

/// Read and check the fields `api` needs from `body`.
pub fn summarize(api: Api, content_type: &str, body: &[u8]) -> Result<Summary, Error> {
    if api == Api::ImagesEdits {
        return multipart_summary(content_type, body);
    }
    // JSON text is UTF-8 (RFC 8259 §8.1); the scanner below does not look inside strings.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(Error::BadRequest(format!(
            "request body is not valid JSON: invalid UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    let top = TopLevel::parse(body)
        .map_err(|e| Error::BadRequest(format!("request body is not valid JSON: {e}")))?;
    let model = match top.get("model") {
        None => return Err(Error::BadRequest("missing required field `model`".into())),
        Some(raw) if raw.first() == Some(&b'"') => {
            top.get_str("model")
                .filter(|m| !m.is_empty())
                .ok_or_else(|| Error::BadRequest("`model` must be a non-empty string".into()))?
        }
        Some(_) => return Err(Error::BadRequest("`model` must be a string".into())),
    };
    let stream = match top.get("stream") {
        None | Some(b"null") | Some(b"false") => false,
        Some(b"true") => true,
        Some(_) => return Err(Error::BadRequest("`stream` must be true or false".into())),
    };
    required_fields(api, &top)?;
    let max_output = match output_cap(&top, "max_completion_tokens")? {
        Some(n) => n,
        None => output_cap(&top, "max_tokens")?.unwrap_or(0),
    };
    let metadata = top
        .get("metadata")
        .filter(|raw| raw.first() == Some(&b'{'))
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok());
    let user = top.get_str("user").or_else(|| {
        metadata
            .as_ref()?
            .get("user_id")?
            .as_str()
            .map(str::to_string)
    });
    Ok(Summary {
        model,
        stream,
        max_output,
        user,
        metadata,
    })
}

/// The fields each API cannot do without: a non-empty `messages` array, an `input`, a
/// `prompt`.
fn required_fields(api: Api, top: &TopLevel<'_>) -> Result<(), Error> {
    match api {
        Api::ChatCompletions | Api::Messages | Api::CountTokens => match top.get("messages") {
            None => {
                return Err(Error::BadRequest(
                    "missing required field `messages`".into(),
                ));
            }
            Some(raw) if raw.first() != Some(&b'[') => {
                return Err(Error::BadRequest("`messages` must be an array".into()));
            }
            Some(raw) if raw[1..raw.len() - 1].iter().all(u8::is_ascii_whitespace) => {
                return Err(Error::BadRequest("`messages` must not be empty".into()));
            }
            Some(_) => {}
        },
        Api::Embeddings if !top.has("input") => {
            return Err(Error::BadRequest("missing required field `input`".into()));
        }
        Api::ImagesGenerations if top.get_str("prompt").is_none_or(|p| p.is_empty()) => {
            return Err(Error::BadRequest("missing required field `prompt`".into()));
        }
        _ => {}
    }
    Ok(())
}

/// An output-token cap (`max_tokens`, `max_completion_tokens`): absent or `null`, else a
/// non-negative integer; anything else (`"100"`, `-1`, `1.5`) is the client's error, not
/// something to forward (it would also escape the budget reservation).
fn output_cap(top: &TopLevel<'_>, key: &str) -> Result<Option<u64>, Error> {
    match top.get(key) {
        None | Some(b"null") => Ok(None),
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "`{key}` must be a non-negative integer, got {}",
                    String::from_utf8_lossy(&raw[..raw.len().min(40)])
                ))
            }),
    }
}

/// Longest last-user-text handed to a routing policy, in bytes.
const LAST_USER_TEXT_CAP: usize = 4096;

/// The text of the last user message (chat completions or messages), truncated; for
/// policies that route on the task. Parses only the `messages` array.
pub fn last_user_text(api: Api, body: &[u8]) -> Option<String> {
    if !matches!(api, Api::ChatCompletions | Api::Messages) {
        return None;
    }
    let top = TopLevel::parse(body).ok()?;
    let messages: Vec<serde_json::Value> = serde_json::from_slice(top.get("messages")?).ok()?;
    let last = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))?;
    let mut text = match last.get("content")? {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("text"))
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    };
    if text.len() > LAST_USER_TEXT_CAP {
        let mut cut = LAST_USER_TEXT_CAP;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Some(text)
}

fn multipart_summary(content_type: &str, body: &[u8]) -> Result<Summary, Error> {
    let Some(boundary) = multipart::boundary(content_type) else {
        return Err(Error::BadRequest(
            "image edits take multipart/form-data with a boundary".into(),
        ));
    };
    let parts = multipart::parts(body, &boundary)
        .map_err(|m| Error::BadRequest(format!("malformed multipart body: {m}")))?;
    let model = parts
        .iter()
        .find(|p| p.name == "model" && !p.is_file())
        .map(|p| String::from_utf8_lossy(p.content).trim().to_string())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::BadRequest("missing required form field `model`".into()))?;
    if !parts
        .iter()
        .any(|p| p.is_file() && (p.name == "image" || p.name == "image[]"))
    {
        return Err(Error::BadRequest(
            "missing required file part `image` (or `image[]`)".into(),
        ));
    }
    if !parts.iter().any(|p| p.name == "prompt" && !p.is_file()) {
        return Err(Error::BadRequest(
            "missing required form field `prompt`".into(),
        ));
    }
    Ok(Summary {
        model,
        stream: false,
        max_output: 0,
        user: None,
        metadata: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_user_text_reads_strings_and_text_parts() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]}]}"#;
        assert_eq!(
            last_user_text(Api::ChatCompletions, body).as_deref(),
            Some("a\nb")
        );
        assert_eq!(last_user_text(Api::Embeddings, body), None);
    }

    #[test]
    fn json_fields() {
        let s = summarize(
            Api::ChatCompletions,
            "application/json",
            br#"{"messages":[{"role":"user","content":"x"}],"model":"m","stream":true,"max_tokens":9,"user":"u1","metadata":{"tags":["a"]}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            Summary {
                model: "m".into(),
                stream: true,
                max_output: 9,
                user: Some("u1".into()),
                metadata: Some(serde_json::json!({"tags": ["a"]})),
            }
        );
        assert!(summarize(Api::ImagesGenerations, "", br#"{"model":"m"}"#).is_err());
    }

    #[test]
    fn wrong_types_and_bytes_are_refused() {
        let ok = |extra: &str| {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#);
            summarize(Api::ChatCompletions, "application/json", body.as_bytes())
        };
        assert_eq!(ok(r#","max_tokens":null"#).unwrap().max_output, 0);
        assert_eq!(
            ok(r#","max_completion_tokens":7,"max_tokens":9"#)
                .unwrap()
                .max_output,
            7
        );
        for bad in [
            r#","max_tokens":"100""#,
            r#","max_tokens":-1"#,
            r#","max_tokens":1.5"#,
            r#","max_tokens":1e3"#,
            r#","max_tokens":true"#,
            r#","max_completion_tokens":"5""#,
            r#","max_tokens":99999999999999999999999"#,
            r#","stream":"yes""#,
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        let mut body = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#.to_vec();
        body[51] = 0xff; // the `x` of the content: still well-formed JSON structure
        assert!(summarize(Api::Messages, "application/json", &body).is_err());
    }

    #[test]
    fn multipart_edits() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-image-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it blue\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG--XyZ-ish\r\n--XyZ--\r\n";
        let s = summarize(Api::ImagesEdits, "multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(s.model, "gpt-image-1");
        let no_image =
            b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n";
        assert!(
            summarize(
                Api::ImagesEdits,
                "multipart/form-data; boundary=b",
                no_image
            )
            .is_err()
        );
        assert!(summarize(Api::ImagesEdits, "application/json", b"{}").is_err());
    }
}
