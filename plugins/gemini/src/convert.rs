//! OpenAI chat completions <-> Google Gemini `generateContent`, as pure functions over
//! [`serde_json::Value`] (no WIT types: everything here is unit-tested natively).
//!
//! - [`chat_to_gemini`]: an OpenAI `/v1/chat/completions` request body to a Gemini
//!   `GenerateContentRequest`.
//! - [`gemini_to_chat`]: a `GenerateContentResponse` to an OpenAI chat completion, with usage.
//! - [`StreamToChat`]: `streamGenerateContent?alt=sse` chunks to OpenAI `chat.completion.chunk`
//!   payloads, ending with the usage chunk (when asked for) and `[DONE]`.
//! - [`parse_error`]: Google's `{"error":{"code","message","status"}}` to a [`GatewayError`].
//!
//! `created` is the response's `createTime` (Vertex sends it; AI Studio does not) in Unix
//! seconds, else 0: a plugin has no clock it may rely on, and a fake time is worse than none.

use std::collections::HashMap;

use llmgate_sdk::Usage;
use llmgate_sdk::chat::{
    ChatRequest, Content, DataUrl, FunctionCall, Part, Role, Tool, ToolChoice,
};
use llmgate_sdk::errors;
use llmgate_sdk::url::{NotASegment, path_segment};
use llmgate_sdk::{ErrorClass, GatewayError};
use serde_json::{Map, Value, json};

/// Google's documented placeholder for a `thoughtSignature` the client did not keep. Gemini 3
/// models reject a history whose function calls carry no signature; OpenAI clients have no
/// field to keep one in, so the first function call of each model turn gets this one.
pub const DUMMY_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request(message)
}

// ---------------------------------------------------------------------------------------
// URL.

/// The `generateContent` (or streaming) URL for `model` under `base`.
///
/// `base` may already end in an API version (`.../v1beta`); otherwise `api_version` (default
/// `v1beta`) is appended. `model` may be a bare name, `models/<name>` or `tunedModels/<name>`;
/// the name is one path segment ([`path_segment`]), so a model can never reach another
/// path, a query or a fragment.
pub fn endpoint_url(
    base: &str,
    api_version: Option<&str>,
    model: &str,
    stream: bool,
) -> Result<String, NotASegment> {
    let base = base.trim_end_matches('/');
    let last = base.rsplit('/').next().unwrap_or("");
    let versioned = matches!(last, "v1" | "v1beta" | "v1alpha");
    let mut url = base.to_string();
    if !versioned {
        url.push('/');
        url.push_str(api_version.filter(|v| !v.is_empty()).unwrap_or("v1beta"));
    }
    let model = model.trim_start_matches('/');
    let (collection, name) = match model.split_once('/') {
        Some((c @ ("models" | "tunedModels"), name)) => (c, name),
        _ => ("models", model),
    };
    url.push('/');
    url.push_str(collection);
    url.push('/');
    url.push_str(&path_segment(name)?);
    url.push_str(if stream {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    });
    Ok(url)
}

// ---------------------------------------------------------------------------------------
// Request: OpenAI chat completions -> Gemini.

/// Convert an OpenAI chat completions request to a Gemini `GenerateContentRequest`.
/// `upstream_model` is the Gemini model the request goes to (it decides model quirks).
pub fn chat_to_gemini(req: &Value, upstream_model: &str) -> Result<Value, GatewayError> {
    from_chat(&ChatRequest::from_value(req)?, upstream_model)
}

/// [`chat_to_gemini`] for a request already read.
pub fn from_chat(req: &ChatRequest, upstream_model: &str) -> Result<Value, GatewayError> {
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Tool call id -> function name, from the assistant messages seen so far.
    let mut call_names: HashMap<&str, &str> = HashMap::new();

    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let what = format!("{at}.content");
        let content = m.content.as_ref();
        match m.role(&at)? {
            Role::System | Role::Developer => {
                for t in texts(content, &what, false)? {
                    if !t.is_empty() {
                        system.push(json!({ "text": t }));
                    }
                }
            }
            Role::User => push_content(&mut contents, "user", user_parts(content, &what)?),
            Role::Assistant => {
                let mut parts = Vec::new();
                let text = texts(content, &what, true)?.concat();
                if !text.is_empty() {
                    parts.push(json!({ "text": text }));
                }
                let mut calls = Vec::new();
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let (name, args) =
                        function_call(call.function.as_ref(), &format!("{at}.tool_calls[{j}]"))?;
                    if let Some(id) = &call.id {
                        call_names.insert(id, name);
                    }
                    calls.push((name, args));
                }
                // Legacy `function_call`.
                if let Some(fc) = &m.function_call {
                    calls.push(function_call(Some(fc), &format!("{at}.function_call"))?);
                }
                for (n, (name, args)) in calls.into_iter().enumerate() {
                    let mut part = json!({ "functionCall": { "name": name, "args": args } });
                    if n == 0 && needs_thought_signature(upstream_model) {
                        part["thoughtSignature"] = json!(DUMMY_THOUGHT_SIGNATURE);
                    }
                    parts.push(part);
                }
                push_content(&mut contents, "model", parts);
            }
            role @ (Role::Tool | Role::Function) => {
                let name = if *role == Role::Tool {
                    let id = m.tool_call_id.as_deref().unwrap_or("");
                    call_names.get(id).copied().or(m.name.as_deref()).ok_or_else(|| {
                        bad(format!(
                            "{at}: tool_call_id {id:?} does not match a tool call of an earlier assistant message"
                        ))
                    })?
                } else {
                    m.name
                        .as_deref()
                        .ok_or_else(|| bad(format!("{at}.name is required")))?
                };
                let (text, media) = tool_content(content, &what)?;
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => Value::String(text),
                };
                let mut parts = vec![json!({
                    "functionResponse": { "name": name, "response": { "content": response } }
                })];
                parts.extend(media);
                push_content(&mut contents, "user", parts);
            }
            Role::Other(other) => {
                return Err(bad(format!(
                    "{at}.role {other:?} is not supported (system, developer, user, assistant, tool)"
                )));
            }
        }
    }
    if contents.is_empty() {
        return Err(bad(
            "`messages` needs at least one user or assistant message with content",
        ));
    }

    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if let Some(tools) = tools(req.tools.as_deref().unwrap_or(&[]))? {
        out.insert("tools".into(), tools);
    }
    if let Some(tc) = &req.tool_choice {
        out.insert("toolConfig".into(), tool_config(tc)?);
    }
    let gc = generation_config(req)?;
    if !gc.is_empty() {
        out.insert("generationConfig".into(), Value::Object(gc));
    }
    Ok(Value::Object(out))
}

/// Gemini 3 models validate thought signatures on function calls in the history.
fn needs_thought_signature(model: &str) -> bool {
    model.trim_start_matches("models/").starts_with("gemini-3")
}

/// Append a content, merging it into the previous one when the role is the same.
/// Contents without parts are dropped (Gemini rejects them).
fn push_content(contents: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = contents.last_mut()
        && last["role"] == role
        && let Some(existing) = last["parts"].as_array_mut()
    {
        existing.extend(parts);
        return;
    }
    contents.push(json!({ "role": role, "parts": parts }));
}

fn not_parts(what: &str) -> GatewayError {
    bad(format!("{what} must be a string or an array of parts"))
}

/// The texts of a content that may only hold text: a string, or an array of `text` parts
/// (and `refusal` parts when `refusal` is set).
fn texts<'a>(
    content: Option<&'a Content>,
    what: &str,
    refusal: bool,
) -> Result<Vec<&'a str>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(vec![s]),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (k, p) in parts.iter().enumerate() {
                let kind = p.kind.as_deref().unwrap_or("");
                let (field, value) = match kind {
                    "text" => ("text", &p.text),
                    "refusal" if refusal => ("refusal", &p.refusal),
                    _ => {
                        return Err(bad(format!(
                            "{what}[{k}]: part type {kind:?} is not supported here (text only)"
                        )));
                    }
                };
                let t = value
                    .as_deref()
                    .ok_or_else(|| bad(format!("{what}[{k}].{field} must be a string")))?;
                out.push(t);
            }
            Ok(out)
        }
        Some(Content::Other(_)) => Err(not_parts(what)),
    }
}

/// Gemini parts of a user message.
fn user_parts(content: Option<&Content>, what: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(vec![json!({ "text": s })]),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (k, p) in parts.iter().enumerate() {
                if let Some(part) = content_part(p, &format!("{what}[{k}]"))? {
                    out.push(part);
                }
            }
            Ok(out)
        }
        Some(Content::Other(_)) => Err(not_parts(what)),
    }
}

/// One OpenAI content part as a Gemini part (`None` for an empty text).
fn content_part(p: &Part, what: &str) -> Result<Option<Value>, GatewayError> {
    match p.kind.as_deref().unwrap_or("") {
        "text" => {
            let t = p
                .text
                .as_deref()
                .ok_or_else(|| bad(format!("{what}.text must be a string")))?;
            Ok((!t.is_empty()).then(|| json!({ "text": t })))
        }
        "image_url" => {
            let url = p.image_url.as_ref().and_then(|u| u.url.as_deref());
            let Some(url) = url.filter(|u| !u.is_empty()) else {
                return Err(bad(format!(
                    "{what}.image_url.url must be a non-empty string"
                )));
            };
            media_part(url, None, &format!("{what}.image_url.url")).map(Some)
        }
        "input_audio" => {
            let a = p.input_audio.as_ref();
            let (Some(data), Some(format)) = (
                a.and_then(|a| a.data.as_deref()),
                a.and_then(|a| a.format.as_deref()),
            ) else {
                return Err(bad(format!(
                    "{what}.input_audio needs `data` (base64) and `format`"
                )));
            };
            Ok(Some(
                json!({ "inlineData": { "mimeType": format!("audio/{format}"), "data": data } }),
            ))
        }
        "file" => {
            let f = p.file.as_ref();
            let filename = f.and_then(|f| f.filename.as_deref());
            let mime = filename.map(guess_mime).unwrap_or("application/pdf");
            if let Some(data) = f.and_then(|f| f.file_data.as_deref()) {
                if DataUrl::parse(data).is_some() {
                    return media_part(data, None, &format!("{what}.file.file_data")).map(Some);
                }
                return Ok(Some(
                    json!({ "inlineData": { "mimeType": mime, "data": data } }),
                ));
            }
            if let Some(id) = f.and_then(|f| f.file_id.as_deref()) {
                return media_part(id, Some(mime), &format!("{what}.file.file_id")).map(Some);
            }
            Err(bad(format!("{what}.file needs `file_data` or `file_id`")))
        }
        other => Err(bad(format!(
            "{what}: content part type {other:?} is not supported (text, image_url, input_audio, file)"
        ))),
    }
}

/// A data URL as `inlineData`, an http(s) or gs:// URL as `fileData`.
fn media_part(url: &str, mime: Option<&str>, what: &str) -> Result<Value, GatewayError> {
    if let Some(parsed) = DataUrl::parse(url) {
        let d = parsed.map_err(|e| bad(format!("{what}: {e}")))?;
        return Ok(json!({ "inlineData": { "mimeType": d.media_type, "data": d.data } }));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("gs://") {
        let mime_type = mime.unwrap_or_else(|| guess_mime(url));
        return Ok(json!({ "fileData": { "mimeType": mime_type, "fileUri": url } }));
    }
    Err(bad(format!(
        "{what}: expected a base64 data URL or an http(s) URL"
    )))
}

/// A MIME type from a URL's or file name's extension; `image/jpeg` when unknown.
fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => "image/jpeg",
    }
}

/// `(name, args)` of an OpenAI function call (`{name, arguments}`).
fn function_call<'a>(
    f: Option<&'a FunctionCall>,
    what: &str,
) -> Result<(&'a str, Value), GatewayError> {
    let f = f.ok_or_else(|| bad(format!("{what}.function is missing")))?;
    let name = f
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad(format!("{what}: function name is missing")))?;
    let args = f
        .arguments_json()
        .map_err(|e| bad(format!("{what}: arguments are not valid JSON: {e}")))?;
    if !args.is_object() {
        return Err(bad(format!("{what}: arguments must be a JSON object")));
    }
    Ok((name, args))
}

/// A tool message's content: its text, and any media parts it carries (sent alongside).
fn tool_content(
    content: Option<&Content>,
    what: &str,
) -> Result<(String, Vec<Value>), GatewayError> {
    match content {
        None => Ok((String::new(), Vec::new())),
        Some(Content::Text(s)) => Ok((s.clone(), Vec::new())),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            let mut media = Vec::new();
            for (k, p) in parts.iter().enumerate() {
                if p.kind.as_deref() == Some("text") {
                    text.push_str(p.text.as_deref().unwrap_or(""));
                } else if let Some(part) = content_part(p, &format!("{what}[{k}]"))? {
                    media.push(part);
                }
            }
            Ok((text, media))
        }
        Some(Content::Other(v)) => Ok((v.to_string(), Vec::new())),
    }
}

/// `tools` -> `[{functionDeclarations: [...]}]` (`None` when there are none).
fn tools(tools: &[Tool]) -> Result<Option<Value>, GatewayError> {
    let mut decls = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let kind = t.kind.as_deref().unwrap_or("function");
        if kind != "function" {
            return Err(bad(format!(
                "tools[{i}]: tool type {kind:?} is not supported by Gemini (function only)"
            )));
        }
        let f = t
            .function
            .as_ref()
            .ok_or_else(|| bad(format!("tools[{i}].function is missing")))?;
        let name = f
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(format!("tools[{i}].function.name is missing")))?;
        let mut decl = Map::new();
        decl.insert("name".into(), json!(name));
        if let Some(d) = &f.description {
            decl.insert("description".into(), json!(d));
        }
        if let Some(raw) = &f.parameters {
            let params: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            if !params.is_object() {
                return Err(bad(format!(
                    "tools[{i}].function.parameters must be a JSON schema object"
                )));
            }
            let cleaned = clean_root_schema(&params);
            if !is_empty_object_schema(&cleaned) {
                decl.insert("parameters".into(), cleaned);
            }
        }
        decls.push(Value::Object(decl));
    }
    if decls.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!([{ "functionDeclarations": decls }])))
}

/// An object schema without properties: Gemini rejects it (`properties: should be
/// non-empty for OBJECT type`), and omitting it means the same (no arguments).
fn is_empty_object_schema(s: &Value) -> bool {
    let props_empty = s
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let object_type = s
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("object"));
    props_empty && object_type && s.get("anyOf").is_none()
}

fn tool_config(tc: &ToolChoice) -> Result<Value, GatewayError> {
    let mode = |m: &str| json!({ "functionCallingConfig": { "mode": m } });
    match tc {
        ToolChoice::Mode(s) => match s.as_str() {
            "auto" => Ok(mode("AUTO")),
            "none" => Ok(mode("NONE")),
            "required" => Ok(mode("ANY")),
            other => Err(bad(format!(
                "tool_choice {other:?} is not supported (auto, none, required, or a function)"
            ))),
        },
        ToolChoice::Named(n) => {
            let name = n
                .function
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .ok_or_else(|| bad("tool_choice must name a function: {\"type\":\"function\",\"function\":{\"name\":...}}"))?;
            Ok(
                json!({ "functionCallingConfig": { "mode": "ANY", "allowedFunctionNames": [name] } }),
            )
        }
    }
}

fn generation_config(req: &ChatRequest) -> Result<Map<String, Value>, GatewayError> {
    let mut gc = Map::new();
    for (value, to) in [
        (&req.temperature, "temperature"),
        (&req.top_p, "topP"),
        (&req.top_k, "topK"),
        (&req.presence_penalty, "presencePenalty"),
        (&req.frequency_penalty, "frequencyPenalty"),
    ] {
        if let Some(n) = value {
            gc.insert(to.into(), Value::Number(n.clone()));
        }
    }
    if let Some(max) = req.max_output_tokens() {
        gc.insert("maxOutputTokens".into(), max.into());
    }
    if let Some(n) = req.n {
        gc.insert("candidateCount".into(), n.into());
    }
    if let Some(seed) = req.seed {
        gc.insert("seed".into(), seed.into());
    }
    if let Some(stop) = &req.stop {
        let list = stop.to_vec();
        if !list.is_empty() {
            gc.insert("stopSequences".into(), list.into());
        }
    }
    if let Some(rf) = &req.response_format {
        match rf.kind.as_deref().unwrap_or("") {
            "text" => {}
            "json_object" => {
                gc.insert("responseMimeType".into(), json!("application/json"));
            }
            "json_schema" => {
                gc.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = rf
                    .json_schema
                    .as_ref()
                    .and_then(|j| j.schema.as_ref())
                    .filter(|s| s.is_object())
                {
                    let cleaned = clean_root_schema(schema);
                    if !is_empty_object_schema(&cleaned) {
                        gc.insert("responseSchema".into(), cleaned);
                    }
                }
            }
            other => {
                return Err(bad(format!(
                    "response_format.type {other:?} is not supported (text, json_object, json_schema)"
                )));
            }
        }
    }
    if let Some(effort) = &req.reasoning_effort {
        let budget = match effort.as_str() {
            "none" => 0,
            "minimal" => 128,
            "low" => 1024,
            "medium" => 8192,
            "high" => 24576,
            _ => {
                return Err(bad(
                    "reasoning_effort must be one of none, minimal, low, medium, high",
                ));
            }
        };
        let thinking = if budget == 0 {
            json!({ "thinkingBudget": 0 })
        } else {
            json!({ "thinkingBudget": budget, "includeThoughts": true })
        };
        gc.insert("thinkingConfig".into(), thinking);
    }
    Ok(gc)
}

// ---------------------------------------------------------------------------------------
// JSON schema -> Gemini's OpenAPI-subset Schema.

/// The keys Gemini's `Schema` accepts; anything else (`additionalProperties`, `$schema`,
/// `strict`, `$defs`, `exclusiveMinimum`, ...) is a 400 `Unknown name` there.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// Deepest schema nesting (and `$ref` expansion) followed.
const MAX_SCHEMA_DEPTH: usize = 32;

/// Clean a JSON schema for Gemini: unknown keys dropped, `$ref`s into `$defs` /
/// `definitions` inlined, `type: [t, "null"]` and `anyOf` with `null` turned into
/// `nullable`, `const` into `enum`, `oneOf` into `anyOf`, `allOf` merged, unsupported
/// `format`s and non-string `enum`s dropped, `required` limited to declared properties.
pub fn clean_root_schema(schema: &Value) -> Value {
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    clean_schema(schema, defs, 0)
}

fn clean_schema(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else {
        return json!({});
    };
    if depth > MAX_SCHEMA_DEPTH {
        return json!({ "type": "object" });
    }
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"));
        let mut target = match name.and_then(|n| defs.get(n)) {
            Some(t) => clean_schema(t, defs, depth + 1),
            None => json!({}),
        };
        if let (Some(d), Some(t)) = (obj.get("description"), target.as_object_mut()) {
            t.insert("description".into(), d.clone());
        }
        return target;
    }

    let mut out = Map::new();
    let mut nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // `type`: a string, or a list possibly naming "null".
    match obj.get("type") {
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(Value::String(t)) => {
            out.insert("type".into(), json!(t));
        }
        Some(Value::Array(ts)) => {
            let non_null: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            nullable |= non_null.len() < ts.len();
            match non_null.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), json!(one));
                }
                many => {
                    let alts: Vec<Value> = many.iter().map(|t| json!({ "type": t })).collect();
                    out.insert("anyOf".into(), Value::Array(alts));
                }
            }
        }
        _ => {}
    }

    for (k, v) in obj {
        match k.as_str() {
            "type" | "nullable" | "format" | "enum" | "required" => {}
            "properties" => {
                if let Some(props) = v.as_object() {
                    let cleaned: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), clean_schema(s, defs, depth + 1)))
                        .collect();
                    if !cleaned.is_empty() {
                        out.insert("properties".into(), Value::Object(cleaned));
                    }
                }
            }
            "items" => {
                let item = match v {
                    Value::Array(a) => a.first().cloned().unwrap_or_else(|| json!({})),
                    other => other.clone(),
                };
                out.insert("items".into(), clean_schema(&item, defs, depth + 1));
            }
            "anyOf" | "oneOf" => {
                if let Some(alts) = v.as_array() {
                    let mut kept = Vec::with_capacity(alts.len());
                    for a in alts {
                        if a.get("type").and_then(Value::as_str) == Some("null") {
                            nullable = true;
                        } else {
                            kept.push(clean_schema(a, defs, depth + 1));
                        }
                    }
                    if kept.len() == 1 {
                        if let Some(Value::Object(only)) = kept.pop() {
                            for (ok, ov) in only {
                                out.entry(ok).or_insert(ov);
                            }
                        }
                    } else if !kept.is_empty() {
                        out.insert("anyOf".into(), Value::Array(kept));
                    }
                }
            }
            "allOf" => {
                if let Some(parts) = v.as_array() {
                    for p in parts {
                        if let Value::Object(part) = clean_schema(p, defs, depth + 1) {
                            merge_schema(&mut out, part);
                        }
                    }
                }
            }
            "const" => {
                if let Some(s) = v.as_str() {
                    out.insert("enum".into(), json!([s]));
                    out.entry("type").or_insert_with(|| json!("string"));
                }
            }
            _ if SCHEMA_KEYS.contains(&k.as_str()) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }

    if let Some(Value::Array(values)) = obj.get("enum") {
        let strings: Vec<&Value> = values.iter().filter(|v| v.is_string()).collect();
        if strings.len() == values.len() && !strings.is_empty() {
            out.insert("enum".into(), Value::Array(values.clone()));
            out.entry("type").or_insert_with(|| json!("string"));
        }
    }
    if let Some(f) = obj.get("format").and_then(Value::as_str) {
        let ty = out.get("type").and_then(Value::as_str).unwrap_or("");
        let ok = match ty {
            "string" => matches!(f, "enum" | "date-time"),
            "integer" => matches!(f, "int32" | "int64"),
            "number" => matches!(f, "float" | "double"),
            _ => false,
        };
        if ok {
            out.insert("format".into(), json!(f));
        }
    }
    if let Some(Value::Array(req)) = obj.get("required") {
        let declared = out.get("properties").and_then(Value::as_object);
        let kept: Vec<Value> = req
            .iter()
            .filter(|r| {
                r.as_str()
                    .is_some_and(|name| declared.is_some_and(|p| p.contains_key(name)))
            })
            .cloned()
            .collect();
        if !kept.is_empty() {
            out.insert("required".into(), Value::Array(kept));
        }
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Value::Object(out)
}

/// Merge an `allOf` member into a schema: properties and `required` united, other keys
/// kept from whichever came first.
fn merge_schema(into: &mut Map<String, Value>, part: Map<String, Value>) {
    for (k, v) in part {
        match (k.as_str(), into.get_mut(&k)) {
            ("properties", Some(Value::Object(existing))) => {
                if let Value::Object(more) = v {
                    for (pk, pv) in more {
                        existing.entry(pk).or_insert(pv);
                    }
                }
            }
            ("required", Some(Value::Array(existing))) => {
                if let Value::Array(more) = v {
                    for r in more {
                        if !existing.contains(&r) {
                            existing.push(r);
                        }
                    }
                }
            }
            (_, Some(_)) => {}
            (_, None) => {
                into.insert(k, v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Response: Gemini -> OpenAI chat completion.

/// Usage of a Gemini `usageMetadata`: the OpenAI `usage` object and llmgate's [`Usage`].
pub fn usage_of(meta: Option<&Value>) -> (Value, Usage) {
    let n = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = n("promptTokenCount");
    let thoughts = n("thoughtsTokenCount");
    let cached = n("cachedContentTokenCount");
    let completion = n("candidatesTokenCount") + thoughts;
    let openai = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": cached },
        "completion_tokens_details": { "reasoning_tokens": thoughts },
    });
    let usage = Usage {
        input: prompt.saturating_sub(cached),
        output: completion,
        cache_read: cached,
        cache_write: 0,
        reasoning: thoughts,
    };
    (openai, usage)
}

/// OpenAI `finish_reason` for a Gemini `finishReason`.
pub fn finish_reason(reason: &str, had_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if had_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// `chatcmpl-<responseId>` (or a fixed id when the response has none).
fn completion_id(resp: &Value) -> String {
    match resp.get("responseId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => "chatcmpl-gemini".to_string(),
    }
}

/// The response's `createTime` in Unix seconds, else 0.
fn created_of(resp: &Value) -> i64 {
    resp.get("createTime")
        .and_then(Value::as_str)
        .and_then(rfc3339_seconds)
        .unwrap_or(0)
}

/// Unix seconds of an RFC 3339 timestamp (`2025-06-01T12:34:56.789Z`).
fn rfc3339_seconds(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339);
    t.ok().map(time::OffsetDateTime::unix_timestamp)
}

/// Tool call ids must be unique across a conversation (agents key results by them), so they
/// carry the response id: `call_<responseId>_<n>`, or `call_<n>` without one. A
/// `functionCall.id` sent by Gemini is used as is.
fn tool_call_id(call: &Value, response_id: Option<&str>, n: usize) -> String {
    if let Some(id) = call.get("id").and_then(Value::as_str)
        && !id.is_empty()
    {
        return id.to_string();
    }
    match response_id {
        Some(rid) => {
            let safe: String = rid
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if safe.is_empty() {
                format!("call_{n}")
            } else {
                format!("call_{safe}_{n}")
            }
        }
        None => format!("call_{n}"),
    }
}

fn response_id(resp: &Value) -> Option<&str> {
    resp.get("responseId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A prompt blocked before any candidate: a content-filter failure.
fn blocked(resp: &Value) -> Option<GatewayError> {
    let reason = resp
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)?;
    let detail = resp
        .get("promptFeedback")
        .and_then(|f| f.get("blockReasonMessage"))
        .and_then(Value::as_str);
    let message = match detail {
        Some(d) => format!("Gemini blocked the prompt ({reason}): {d}"),
        None => format!("Gemini blocked the prompt ({reason})"),
    };
    let mut e = GatewayError::new(ErrorClass::ContentFilter, 400, message);
    e.code = Some(reason.to_string());
    Some(e)
}

/// Convert a Gemini `GenerateContentResponse` to an OpenAI chat completion named `model`
/// (the model the client asked for), with the call's usage.
pub fn gemini_to_chat(resp: &Value, model: &str) -> Result<(Value, Usage), GatewayError> {
    if let Some(err) = resp.get("error").filter(|e| e.is_object()) {
        let status = error_status(err).unwrap_or(502);
        return Err(error_from_value(status, err));
    }
    if !resp.is_object() {
        return Err(GatewayError::upstream(
            "Gemini answered with a body that is not an object",
        ));
    }
    let candidates = resp
        .get("candidates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if candidates.is_empty() {
        return Err(blocked(resp)
            .unwrap_or_else(|| GatewayError::upstream("Gemini answered without any candidate")));
    }
    let rid = response_id(resp);
    let mut next_call = 0usize;
    let mut choices = Vec::with_capacity(candidates.len());
    for (pos, cand) in candidates.iter().enumerate() {
        let index = cand
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let mut content = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for part in parts_of(cand) {
            if let Some(fc) = part.get("functionCall") {
                let id = tool_call_id(fc, rid, next_call);
                next_call += 1;
                tool_calls.push(tool_call_json(fc, id, None));
            } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                if is_thought(part) {
                    reasoning.push_str(t);
                } else {
                    content.push_str(t);
                }
            }
        }
        let reason = cand
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert(
            "content".into(),
            if content.is_empty() {
                Value::Null
            } else {
                json!(content)
            },
        );
        if !reasoning.is_empty() {
            message.insert("reasoning_content".into(), json!(reasoning));
        }
        let had_calls = !tool_calls.is_empty();
        if had_calls {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        choices.push(json!({
            "index": index,
            "message": message,
            "finish_reason": finish_reason(reason, had_calls),
        }));
    }
    let (usage_json, usage) = usage_of(resp.get("usageMetadata"));
    let body = json!({
        "id": completion_id(resp),
        "object": "chat.completion",
        "created": created_of(resp),
        "model": model,
        "choices": choices,
        "usage": usage_json,
    });
    Ok((body, usage))
}

fn parts_of(cand: &Value) -> &[Value] {
    cand.get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_thought(part: &Value) -> bool {
    part.get("thought")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// An OpenAI tool call (`index` set for stream deltas).
fn tool_call_json(fc: &Value, id: String, index: Option<usize>) -> Value {
    let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
    let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
    let mut call = json!({
        "id": id,
        "type": "function",
        "function": { "name": name, "arguments": args.to_string() },
    });
    if let Some(i) = index {
        call["index"] = json!(i);
    }
    call
}

// ---------------------------------------------------------------------------------------
// Streams.

/// Per-candidate stream state.
#[derive(Debug, Default)]
struct ChoiceState {
    index: u64,
    tool_calls: usize,
    finished: bool,
}

/// Turns Gemini `streamGenerateContent?alt=sse` chunks into OpenAI `chat.completion.chunk`
/// payloads (the `data:` of each client event).
#[derive(Debug)]
pub struct StreamToChat {
    model: String,
    include_usage: bool,
    id: Option<String>,
    response_id: Option<String>,
    created: i64,
    choices: Vec<ChoiceState>,
    next_call: usize,
    usage_meta: Option<Value>,
    saw_finish: bool,
    done: bool,
    /// Put the usage known so far on the first chunk (see [`Self::with_early_usage`]).
    early_usage: bool,
}

impl StreamToChat {
    /// A converter naming `model` in its chunks; `include_usage`: the client asked for
    /// `stream_options.include_usage` (a final usage chunk with no choices).
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_string(),
            include_usage,
            id: None,
            response_id: None,
            created: 0,
            choices: Vec::new(),
            next_call: 0,
            usage_meta: None,
            saw_finish: false,
            done: false,
            early_usage: false,
        }
    }

    /// Also put the usage known so far (the prompt tokens) on the first chunk. Not OpenAI's
    /// shape: only for feeding the Anthropic converter, whose `message_start` reports the
    /// input tokens from the first chunk it sees.
    pub fn with_early_usage(mut self) -> Self {
        self.early_usage = true;
        self
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> String {
        let mut c = json!({
            "id": self.id.as_deref().unwrap_or("chatcmpl-gemini"),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        c.to_string()
    }

    fn delta(&self, index: u64, delta: Value, finish: Option<&str>) -> String {
        self.chunk(
            json!([{ "index": index, "delta": delta, "finish_reason": finish }]),
            None,
        )
    }

    /// One upstream event's data in; the client chunks out.
    pub fn on_chunk(&mut self, data: &str) -> Result<Vec<String>, GatewayError> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            GatewayError::upstream(format!("Gemini sent a stream chunk that is not JSON: {e}"))
        })?;
        // Errors mid-stream come as an error object (sometimes wrapped in an array).
        let err = v
            .get("error")
            .or_else(|| v.get(0).and_then(|f| f.get("error")))
            .filter(|e| e.is_object());
        if let Some(err) = err {
            let status = error_status(err).unwrap_or(502);
            return Err(error_from_value(status, err));
        }
        if !v.is_object() {
            return Err(GatewayError::upstream(
                "Gemini sent a stream chunk that is not an object",
            ));
        }
        if self.id.is_none() {
            self.id = Some(completion_id(&v));
            self.response_id = response_id(&v).map(str::to_string);
            self.created = created_of(&v);
        }
        if let Some(meta) = v.get("usageMetadata").filter(|m| m.is_object()) {
            self.usage_meta = Some(meta.clone());
        }
        let candidates = v
            .get("candidates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if candidates.is_empty()
            && let Some(f) = blocked(&v)
        {
            return Err(f);
        }
        let mut out = Vec::new();
        for (pos, cand) in candidates.iter().enumerate() {
            let index = cand
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(pos as u64);
            let slot = match self.choices.iter().position(|c| c.index == index) {
                Some(s) => s,
                None => {
                    self.choices.push(ChoiceState {
                        index,
                        ..ChoiceState::default()
                    });
                    let delta = json!({ "role": "assistant", "content": "" });
                    let first = json!([{ "index": index, "delta": delta, "finish_reason": null }]);
                    let usage = match &self.usage_meta {
                        Some(m)
                            if self.early_usage && out.is_empty() && self.choices.len() == 1 =>
                        {
                            Some(usage_of(Some(m)).0)
                        }
                        _ => None,
                    };
                    out.push(self.chunk(first, usage));
                    self.choices.len() - 1
                }
            };
            if self.choices[slot].finished {
                continue;
            }
            for part in parts_of(cand) {
                if let Some(fc) = part.get("functionCall") {
                    let id = tool_call_id(fc, self.response_id.as_deref(), self.next_call);
                    self.next_call += 1;
                    let n = self.choices[slot].tool_calls;
                    self.choices[slot].tool_calls += 1;
                    let call = tool_call_json(fc, id, Some(n));
                    out.push(self.delta(index, json!({ "tool_calls": [call] }), None));
                } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                    if t.is_empty() {
                        continue;
                    }
                    let delta = if is_thought(part) {
                        json!({ "reasoning_content": t })
                    } else {
                        json!({ "content": t })
                    };
                    out.push(self.delta(index, delta, None));
                }
            }
            if let Some(reason) = cand
                .get("finishReason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                let state = &mut self.choices[slot];
                state.finished = true;
                let fr = finish_reason(reason, state.tool_calls > 0);
                self.saw_finish = true;
                out.push(self.delta(index, json!({}), Some(fr)));
            }
        }
        Ok(out)
    }

    /// The upstream stream ended: the remaining chunks (finish chunks not yet sent, the usage
    /// chunk when asked for, `[DONE]`) and the call's usage. A stream that never sent a
    /// `finishReason` was cut short: an error.
    pub fn finish(&mut self) -> Result<(Vec<String>, Option<Usage>), GatewayError> {
        if !self.saw_finish {
            return Err(GatewayError::upstream(
                "Gemini stream ended before a finishReason (response incomplete)",
            ));
        }
        let mut out = Vec::new();
        if self.done {
            return Ok((out, self.usage_meta.as_ref().map(|m| usage_of(Some(m)).1)));
        }
        self.done = true;
        for i in 0..self.choices.len() {
            if !self.choices[i].finished {
                self.choices[i].finished = true;
                let fr = finish_reason("STOP", self.choices[i].tool_calls > 0);
                out.push(self.delta(self.choices[i].index, json!({}), Some(fr)));
            }
        }
        let (usage_json, usage) = usage_of(self.usage_meta.as_ref());
        if self.include_usage {
            out.push(self.chunk(json!([]), Some(usage_json)));
        }
        out.push("[DONE]".to_string());
        Ok((out, self.usage_meta.as_ref().map(|_| usage)))
    }
}

// ---------------------------------------------------------------------------------------
// Errors.

fn error_status(err: &Value) -> Option<u16> {
    err.get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
}

/// Read a Gemini error answer with HTTP `status`: `{"error":{"code","message","status"}}`,
/// or that wrapped in an array (as the streaming endpoint sends it), or anything else.
pub fn parse_error(status: u16, body: &[u8]) -> GatewayError {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let err = v
            .get("error")
            .or_else(|| v.get(0).and_then(|f| f.get("error")))
            .filter(|e| e.is_object());
        if let Some(err) = err {
            return error_from_value(status, err);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("Gemini answered {status} with an empty body")
    } else {
        let cut: String = text.chars().take(300).collect();
        format!("Gemini answered {status}: {cut}")
    };
    GatewayError::new(errors::class_for_status(status), status, message)
}

fn error_from_value(status: u16, err: &Value) -> GatewayError {
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("Gemini answered {status}"));
    let code = err
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string);
    let reasons: Vec<&str> = err
        .get("details")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d.get("reason").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    let base = errors::class_for_status(status);
    let class = match code.as_deref() {
        Some("RESOURCE_EXHAUSTED") => ErrorClass::RateLimited,
        Some("UNAVAILABLE") => ErrorClass::Overloaded,
        Some("PERMISSION_DENIED" | "UNAUTHENTICATED") => ErrorClass::Auth,
        Some("DEADLINE_EXCEEDED") => ErrorClass::Timeout,
        Some("NOT_FOUND") => ErrorClass::NotFound,
        Some("INVALID_ARGUMENT")
            if lower.contains("token count")
                || lower.contains("exceeds the maximum number of tokens") =>
        {
            ErrorClass::ContextLength
        }
        _ if reasons.contains(&"API_KEY_INVALID") || lower.contains("api key not valid") => {
            ErrorClass::Auth
        }
        _ => errors::refine(base, code.as_deref(), &message),
    };
    let mut e = GatewayError::new(class, status, message);
    e.code = code;
    e
}

#[cfg(test)]
mod tests;
