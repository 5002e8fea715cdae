//! Image generation and editing in OpenAI's `images` API shape (gpt-image style `usage`):
//! `POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart with one `image`
//! or several `image[]` file parts, an optional `mask` and text fields), also served under the
//! Azure OpenAI paths (see [`crate::azure`]).
//!
//! Every image is the same tiny valid 1x1 PNG ([`PNG_1X1_BASE64`]). An edit's
//! `revised_prompt` is `edited N image(s): <prompt>`, so tests can check every part arrived.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart};
use axum::http::{HeaderMap, Method, Request, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::MockState;
use crate::behaviour::Behaviour;
use crate::common::{before_answer, global_latency, header_str, unix_now, word_count};
use crate::openai::{self, Flavor, invalid_request};
use crate::record::RecordedRequest;

/// Base64 of a valid 1x1 grey-and-alpha PNG, the content of every generated image.
pub const PNG_1X1_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
/// Output tokens reported per generated image (gpt-image-1, 1024x1024, low quality).
pub const OUTPUT_TOKENS_PER_IMAGE: u64 = 272;
/// Input tokens reported per received input image.
pub const INPUT_TOKENS_PER_IMAGE: u64 = 85;
/// The model assumed when a request names none (OpenAI's default).
const DEFAULT_MODEL: &str = "dall-e-2";

/// One part of a multipart body.
#[derive(Debug)]
pub(crate) struct Part {
    /// The form field name.
    pub name: String,
    /// The file name, for file parts.
    pub filename: Option<String>,
    /// The part's content type, if given.
    pub content_type: Option<String>,
    /// The part's content.
    pub data: Bytes,
}

/// Parse a `multipart/form-data` body.
pub(crate) async fn parse_multipart(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<Part>, String> {
    let content_type = header_str(headers, "content-type").unwrap_or_default();
    let req = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.clone()))
        .map_err(|e| e.to_string())?;
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| e.body_text())?;
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| e.body_text())?;
        parts.push(Part {
            name,
            filename,
            content_type,
            data,
        });
    }
    Ok(parts)
}

/// The recorded summary of a multipart body.
pub(crate) fn multipart_summary(parts: &[Part]) -> Value {
    let list: Vec<Value> = parts
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "filename": p.filename,
                "content_type": p.content_type,
                "len": p.data.len(),
            })
        })
        .collect();
    let fields: serde_json::Map<String, Value> = parts
        .iter()
        .filter(|p| p.filename.is_none())
        .map(|p| {
            (
                p.name.clone(),
                Value::String(String::from_utf8_lossy(&p.data).into_owned()),
            )
        })
        .collect();
    json!({ "multipart": list, "fields": fields })
}

fn check_auth(
    state: &MockState,
    uri: &Uri,
    headers: &HeaderMap,
    deployment: Option<&str>,
    flavor: Flavor,
) -> Option<Response> {
    match flavor {
        Flavor::OpenAi => openai::check_auth(state, headers),
        Flavor::Azure => crate::azure::gate(state, uri, headers, deployment.is_some()),
    }
}

/// What an images request asks for, whatever its encoding.
struct ImageRequest {
    fields: BTreeMap<String, String>,
    /// Number of input image parts (edits).
    images: usize,
}

impl ImageRequest {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Validate, apply the behaviour and answer.
async fn answer(
    req: &ImageRequest,
    deployment: Option<&str>,
    flavor: Flavor,
    edit: bool,
) -> Response {
    let Some(prompt) = req.field("prompt") else {
        return invalid_request(
            "Missing required parameter: 'prompt'.",
            Some("prompt"),
            Some("missing_required_parameter"),
        );
    };
    if edit && req.images == 0 {
        return invalid_request(
            "Missing required parameter: 'image'.",
            Some("image"),
            Some("missing_required_parameter"),
        );
    }
    let model = deployment.or(req.field("model")).unwrap_or(DEFAULT_MODEL);
    let behaviour = Behaviour::from_model(model);
    before_answer(&behaviour, false).await;
    if let Some(err) = behaviour.error {
        return openai::mock_error_response(err, flavor);
    }
    if behaviour.malformed {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"created": "#,
        )
            .into_response();
    }
    let n: u64 = match req.field("n").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n @ 1..=10)) => n,
        Some(_) => {
            return invalid_request(
                &format!(
                    "Invalid 'n': expected an integer between 1 and 10, got {}.",
                    req.field("n").unwrap_or_default()
                ),
                Some("n"),
                Some("invalid_value"),
            );
        }
    };
    let revised = if edit {
        let plural = if req.images == 1 { "" } else { "s" };
        format!("edited {} image{plural}: {prompt}", req.images)
    } else {
        prompt.to_owned()
    };
    let url = req.field("response_format") == Some("url");
    let item = if url {
        json!({ "url": format!("data:image/png;base64,{PNG_1X1_BASE64}"), "revised_prompt": revised })
    } else {
        json!({ "b64_json": PNG_1X1_BASE64, "revised_prompt": revised })
    };
    let text_tokens = word_count(prompt).max(1);
    let image_tokens = req.images as u64 * INPUT_TOKENS_PER_IMAGE;
    let output_tokens = n * OUTPUT_TOKENS_PER_IMAGE;
    Json(json!({
        "created": unix_now(),
        "data": vec![item; usize::try_from(n).unwrap_or(1)],
        "usage": {
            "input_tokens": text_tokens + image_tokens,
            "output_tokens": output_tokens,
            "total_tokens": text_tokens + image_tokens + output_tokens,
            "input_tokens_details": { "text_tokens": text_tokens, "image_tokens": image_tokens },
        },
    }))
    .into_response()
}

/// Text of a JSON scalar, as a form field would carry it.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Handle a generation request (JSON body).
pub(crate) async fn generations(
    state: &MockState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    deployment: Option<&str>,
    flavor: Flavor,
) -> Response {
    state
        .recorder
        .push(RecordedRequest::new(method, uri, headers, body));
    global_latency(state).await;
    if let Some(resp) = check_auth(state, uri, headers, deployment, flavor) {
        return resp;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return invalid_request(
            "We could not parse the JSON body of your request.",
            None,
            None,
        );
    };
    let fields = map
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
        .collect();
    answer(
        &ImageRequest { fields, images: 0 },
        deployment,
        flavor,
        false,
    )
    .await
}

/// Whether a multipart part is an input image (`image`, `image[]`, `image[0]`...).
fn is_image_part(name: &str) -> bool {
    name == "image" || name.starts_with("image[")
}

/// Handle an edit request: multipart (or gpt-image's JSON form with an `images` array).
pub(crate) async fn edits(
    state: &MockState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    deployment: Option<&str>,
    flavor: Flavor,
) -> Response {
    let multipart = header_str(headers, "content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/"));
    let parsed = if multipart {
        let parsed = parse_multipart(headers, body).await;
        let summary = parsed
            .as_ref()
            .map_or(Value::Null, |p| multipart_summary(p));
        state
            .recorder
            .push(RecordedRequest::with_body(method, uri, headers, summary));
        parsed.map(|parts| ImageRequest {
            fields: parts
                .iter()
                .filter(|p| p.filename.is_none())
                .map(|p| {
                    (
                        p.name.clone(),
                        String::from_utf8_lossy(&p.data).into_owned(),
                    )
                })
                .collect(),
            images: parts
                .iter()
                .filter(|p| is_image_part(&p.name) && p.filename.is_some())
                .count(),
        })
    } else {
        state
            .recorder
            .push(RecordedRequest::new(method, uri, headers, body));
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(ImageRequest {
                fields: map
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
                    .collect(),
                images: map
                    .get("images")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
            }),
            _ => Err("expected a multipart/form-data body".to_owned()),
        }
    };
    global_latency(state).await;
    if let Some(resp) = check_auth(state, uri, headers, deployment, flavor) {
        return resp;
    }
    match parsed {
        Ok(req) => answer(&req, deployment, flavor, true).await,
        Err(e) => invalid_request(&format!("Invalid request body: {e}"), None, None),
    }
}

/// `POST /v1/images/generations`.
pub async fn openai_generations(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generations(&state, &method, &uri, &headers, &body, None, Flavor::OpenAi).await
}

/// `POST /v1/images/edits` (multipart).
pub async fn openai_edits(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    edits(&state, &method, &uri, &headers, &body, None, Flavor::OpenAi).await
}
