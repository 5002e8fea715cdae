//! OpenAI chat completions request -> Bedrock Converse request.
//!
//! - `system`/`developer` messages -> `system: [{text}]`.
//! - user and assistant content -> `content: [{text} | {image} | {document}]`; images must
//!   be base64 data URLs (Converse takes bytes, and a plugin cannot fetch URLs).
//! - assistant `tool_calls` -> `{toolUse: {toolUseId, name, input}}`; LiteLLM-style
//!   `thinking_blocks` -> `{reasoningContent: {reasoningText: {text, signature}}}`.
//! - `tool` messages -> a user message of `{toolResult: {toolUseId, content, status}}`.
//! - Consecutive messages of one role are merged: Converse requires user and assistant turns
//!   to alternate.
//! - `cache_control` on a content part or a tool (as Anthropic clients send it) becomes a
//!   `{cachePoint: {type: default}}` block after it.
//! - `tools`/`tool_choice` -> `toolConfig`; `max_tokens`, `temperature`, `top_p`, `stop` ->
//!   `inferenceConfig`; `reasoning_effort` (or an Anthropic-style `thinking`) and `top_k` ->
//!   `additionalModelRequestFields` for Anthropic models.

use llmgate_sdk::GatewayError;
use llmgate_sdk::chat::{
    ChatRequest, Content, DataUrl, File, Message, Role, Stop, Tool, ToolChoice,
};
use serde_json::{Map, Value, json};

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request(message)
}

/// `litellm_params` that are request defaults when the client did not set them.
const DEFAULT_PARAMS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "reasoning_effort",
    "thinking",
];

/// A translated request.
#[derive(Debug, Clone)]
pub struct ConverseRequest {
    /// The Converse JSON body.
    pub body: Vec<u8>,
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Whether a Bedrock model id names an Anthropic model (they take `thinking`, `top_k`,
/// tool-result `status`).
pub fn is_anthropic(model_id: &str) -> bool {
    model_id.contains("anthropic.") || model_id.contains("claude")
}

/// The thinking budget LiteLLM uses for each `reasoning_effort`; `None` disables thinking.
fn thinking_budget(effort: &str) -> Result<Option<u64>, GatewayError> {
    match effort {
        "none" | "disable" | "disabled" => Ok(None),
        "minimal" | "low" => Ok(Some(1024)),
        "medium" => Ok(Some(2048)),
        "high" => Ok(Some(4096)),
        other => Err(bad(format!(
            "unsupported reasoning_effort `{other}` (use low, medium or high)"
        ))),
    }
}

/// Translate a chat completions body for the Bedrock model `model_id`. `params` are the
/// deployment's `litellm_params`; the ones in [`DEFAULT_PARAMS`] fill in what the client
/// did not set (a client's `max_tokens` wins over a parameter's `max_completion_tokens`).
pub fn chat_to_converse(
    body: &[u8],
    model_id: &str,
    params: &Map<String, Value>,
) -> Result<ConverseRequest, GatewayError> {
    let mut req = ChatRequest::from_slice(body)?;
    let client_max_tokens = req.max_output_tokens();
    req.fill_defaults(params, DEFAULT_PARAMS)?;
    let anthropic = is_anthropic(model_id);

    // Messages.
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut has_tool_blocks = false;
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let content = m.content.as_ref();
        match m.role(&at)? {
            Role::System | Role::Developer => {
                system.extend(content_blocks(content, &at, Allow::TextOnly)?);
            }
            Role::User => push(
                &mut messages,
                "user",
                content_blocks(content, &at, Allow::All)?,
            ),
            Role::Assistant => {
                let blocks = assistant_blocks(m, &at)?;
                has_tool_blocks |= blocks.iter().any(|b| b.get("toolUse").is_some());
                push(&mut messages, "assistant", blocks);
            }
            Role::Tool => {
                has_tool_blocks = true;
                push(&mut messages, "user", vec![tool_result(m, &at, anthropic)?]);
            }
            other => {
                return Err(bad(format!(
                    "{at} has role `{}`, which Bedrock does not support",
                    other.as_str()
                )));
            }
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();

    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }

    // Inference configuration.
    let mut inference = Map::new();
    if let Some(n) = client_max_tokens.or(req.max_output_tokens()) {
        inference.insert("maxTokens".into(), n.into());
    }
    for (value, to) in [(&req.temperature, "temperature"), (&req.top_p, "topP")] {
        if let Some(n) = value {
            inference.insert(to.into(), Value::Number(n.clone()));
        }
    }
    match &req.stop {
        None => {}
        Some(Stop::Many(list)) if list.is_empty() => {}
        Some(stop) => {
            inference.insert("stopSequences".into(), stop.to_vec().into());
        }
    }
    // Tools.
    let tools = req.tools.as_deref().filter(|t| !t.is_empty());
    let choice = req.tool_choice.as_ref();
    let choice_none = matches!(choice, Some(ToolChoice::Mode(m)) if m == "none");
    if let Some(tools) = tools {
        // `tool_choice: none` drops the tools, unless the conversation already holds tool
        // blocks: Bedrock refuses those without a `toolConfig`, so the tools stay (without a
        // `toolChoice`).
        if !choice_none || has_tool_blocks {
            let mut specs = Vec::with_capacity(tools.len());
            for (i, t) in tools.iter().enumerate() {
                specs.push(tool_spec(t, i)?);
                if t.cache_control.as_ref().is_some_and(|c| !c.is_null()) {
                    specs.push(cache_point());
                }
            }
            let mut config = Map::new();
            config.insert("tools".into(), Value::Array(specs));
            if !choice_none && let Some(c) = choice {
                config.insert("toolChoice".into(), tool_choice(c)?);
            }
            out.insert("toolConfig".into(), Value::Object(config));
        }
    }

    // Model-specific fields.
    let mut extra = Map::new();
    if anthropic {
        if let Some(t) = req.thinking.as_ref().filter(|t| t.is_object()) {
            extra.insert("thinking".into(), t.clone());
        } else if let Some(effort) = &req.reasoning_effort
            && let Some(budget) = thinking_budget(effort)?
        {
            extra.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
        }
        if let Some(k) = &req.top_k {
            extra.insert("top_k".into(), Value::Number(k.clone()));
        }
    }
    if let Some(Value::Object(fields)) = req.extra.get("additionalModelRequestFields") {
        for (k, v) in fields {
            extra.insert(k.clone(), v.clone());
        }
    }
    // Claude's max_tokens must exceed the thinking budget: without a client maximum, leave
    // 4096 tokens for the answer on top of it.
    let budget = extra
        .get("thinking")
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"))
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64);
    if let Some(budget) = budget
        && !inference.contains_key("maxTokens")
    {
        inference.insert("maxTokens".into(), (budget + 4096).into());
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !extra.is_empty() {
        out.insert("additionalModelRequestFields".into(), Value::Object(extra));
    }
    for key in ["guardrailConfig", "performanceConfig"] {
        if let Some(v) = req
            .extra
            .get(key)
            .filter(|v| !v.is_null())
            .or_else(|| params.get(key))
            .filter(|v| v.is_object())
        {
            out.insert(key.into(), v.clone());
        }
    }

    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| bad(format!("cannot encode the request: {e}")))?;
    Ok(ConverseRequest {
        body,
        include_usage: req.wants_usage(),
    })
}

/// Append a turn, merging it into the previous one when the role repeats.
fn push<'a>(messages: &mut Vec<(&'a str, Vec<Value>)>, role: &'a str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some((r, content)) if *r == role => content.extend(blocks),
        _ => messages.push((role, blocks)),
    }
}

fn cache_point() -> Value {
    json!({"cachePoint": {"type": "default"}})
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Allow {
    TextOnly,
    All,
}

/// Message content (a string, or an array of parts) as Converse content blocks.
fn content_blocks(
    content: Option<&Content>,
    at: &str,
    allow: Allow,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    match content {
        None => {}
        Some(Content::Text(s)) if s.trim().is_empty() => {}
        Some(Content::Text(s)) => out.push(json!({"text": s})),
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match part.kind.as_deref().unwrap_or("text") {
                    "text" => {
                        let text = part
                            .text
                            .as_deref()
                            .ok_or_else(|| bad(format!("{at} has no text")))?;
                        if !text.trim().is_empty() {
                            out.push(json!({"text": text}));
                        }
                    }
                    "image_url" if allow == Allow::All => {
                        let url = part
                            .image_url
                            .as_ref()
                            .and_then(|u| u.url.as_deref())
                            .ok_or_else(|| bad(format!("{at} has no image_url.url")))?;
                        out.push(image_block(url, &at)?);
                    }
                    "file" if allow == Allow::All => {
                        out.push(file_block(part.file.as_ref(), &at, j)?);
                    }
                    other => {
                        return Err(bad(format!(
                            "{at}: content parts of type `{other}` are not supported here by Bedrock"
                        )));
                    }
                }
                if part.has_cache_control() && !out.is_empty() {
                    out.push(cache_point());
                }
            }
        }
        Some(Content::Other(_)) => {
            return Err(bad(format!(
                "{at}.content must be a string or an array of parts"
            )));
        }
    }
    Ok(out)
}

/// A base64 data URL's `(media type, data)`; Converse takes bytes, not links.
fn data_url<'a>(url: &'a str, at: &str) -> Result<(String, &'a str), GatewayError> {
    let parsed = DataUrl::parse(url).ok_or_else(|| {
        bad(format!(
            "{at}: Bedrock takes images and files as base64 data URLs (data:image/png;base64,...), not links"
        ))
    })?;
    let d = parsed.map_err(|e| bad(format!("{at}: {e}")))?;
    Ok((d.media_type, d.data))
}

fn image_format(mime: &str) -> Option<&'static str> {
    match mime {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn image_block(url: &str, at: &str) -> Result<Value, GatewayError> {
    let (mime, data) = data_url(url, at)?;
    let format = image_format(&mime).ok_or_else(|| {
        bad(format!(
            "{at}: image type `{mime}` is not supported by Bedrock (png, jpeg, gif, webp)"
        ))
    })?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// An OpenAI `file` part (`{file_data: <data URL>, filename}`) as a document (or image).
fn file_block(file: Option<&File>, at: &str, n: usize) -> Result<Value, GatewayError> {
    let data = file.and_then(|f| f.file_data.as_deref()).ok_or_else(|| {
        bad(format!(
            "{at}: Bedrock needs files inline as file.file_data (file ids are not supported)"
        ))
    })?;
    let (mime, bytes) = data_url(data, at)?;
    if image_format(&mime).is_some() {
        return image_block(data, at);
    }
    let format = match mime.as_str() {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        other => {
            return Err(bad(format!(
                "{at}: file type `{other}` is not supported by Bedrock"
            )));
        }
    };
    // Document names: alphanumerics, single spaces, hyphens, parentheses, square brackets.
    let stem = file
        .and_then(|f| f.filename.as_deref())
        .map(|f| f.rsplit_once('.').map_or(f, |(s, _)| s))
        .unwrap_or("");
    let mut name = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
            c
        } else {
            ' '
        };
        if !(c == ' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(c);
        }
    }
    let name = name.trim_end().to_string();
    let name = if name.is_empty() {
        format!("document-{}", n + 1)
    } else {
        name
    };
    Ok(json!({"document": {"format": format, "name": name, "source": {"bytes": bytes}}}))
}

fn assistant_blocks(m: &Message, at: &str) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for b in m.thinking_blocks.iter().flatten() {
        match b.kind.as_deref() {
            Some("thinking") => {
                let mut rt = json!({"text": b.thinking.as_deref().unwrap_or("")});
                if let Some(sig) = &b.signature {
                    rt["signature"] = sig.as_str().into();
                }
                out.push(json!({"reasoningContent": {"reasoningText": rt}}));
            }
            Some("redacted_thinking") => {
                if let Some(data) = &b.data {
                    out.push(json!({"reasoningContent": {"redactedContent": data}}));
                }
            }
            _ => {}
        }
    }
    out.extend(content_blocks(m.content.as_ref(), at, Allow::All)?);
    for (k, call) in m.tool_calls.iter().flatten().enumerate() {
        let at = format!("{at}.tool_calls[{k}]");
        let id = call
            .id
            .as_deref()
            .ok_or_else(|| bad(format!("{at} has no id")))?;
        let f = call.function.as_ref();
        let name = f
            .and_then(|f| f.name.as_deref())
            .ok_or_else(|| bad(format!("{at} has no function.name")))?;
        let input = f
            .map(|f| f.arguments_json())
            .transpose()
            .map_err(|e| bad(format!("{at}.function.arguments is not valid JSON: {e}")))?;
        out.push(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}));
    }
    Ok(out)
}

fn tool_result(m: &Message, at: &str, with_status: bool) -> Result<Value, GatewayError> {
    let id = m
        .tool_call_id
        .as_deref()
        .ok_or_else(|| bad(format!("{at} has no tool_call_id")))?;
    let mut blocks = match &m.content {
        Some(Content::Text(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => vec![json!({"json": v})],
            _ if s.trim().is_empty() => Vec::new(),
            _ => vec![json!({"text": s})],
        },
        other => content_blocks(other.as_ref(), at, Allow::All)?
            .into_iter()
            .filter(|b| b.get("cachePoint").is_none())
            .collect(),
    };
    if blocks.is_empty() {
        // Converse refuses blank text blocks; an empty tool output still needs content.
        blocks.push(json!({"text": "(empty)"}));
    }
    let mut result = json!({"toolUseId": id, "content": blocks});
    if with_status {
        result["status"] = "success".into();
    }
    Ok(json!({"toolResult": result}))
}

fn tool_spec(t: &Tool, i: usize) -> Result<Value, GatewayError> {
    let at = format!("tools[{i}]");
    let kind = t.kind.as_deref().unwrap_or("function");
    if kind != "function" {
        return Err(bad(format!(
            "{at}: tools of type `{kind}` are not supported by Bedrock"
        )));
    }
    let f = t
        .function
        .as_ref()
        .ok_or_else(|| bad(format!("{at} has no function")))?;
    let name = f
        .name
        .as_deref()
        .ok_or_else(|| bad(format!("{at} has no function.name")))?;
    let schema = f
        .parameters
        .as_ref()
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let mut spec = json!({"name": name, "inputSchema": {"json": schema}});
    if let Some(d) = f.description.as_deref().filter(|d| !d.is_empty()) {
        spec["description"] = d.into();
    }
    Ok(json!({"toolSpec": spec}))
}

fn tool_choice(c: &ToolChoice) -> Result<Value, GatewayError> {
    match c {
        ToolChoice::Mode(s) if s == "auto" => Ok(json!({"auto": {}})),
        ToolChoice::Mode(s) if s == "required" || s == "any" => Ok(json!({"any": {}})),
        ToolChoice::Named(n) => {
            let name = n
                .function
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .or(n.name.as_deref())
                .ok_or_else(|| {
                    bad("tool_choice must name a function: {\"type\":\"function\",\"function\":{\"name\":...}}")
                })?;
            Ok(json!({"tool": {"name": name}}))
        }
        ToolChoice::Mode(other) => Err(bad(format!("unsupported tool_choice {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

    fn convert(body: Value) -> Value {
        convert_with(body, CLAUDE, &Map::new())
    }

    fn convert_with(body: Value, model: &str, params: &Map<String, Value>) -> Value {
        let out = chat_to_converse(&serde_json::to_vec(&body).unwrap(), model, params).unwrap();
        serde_json::from_slice(&out.body).unwrap()
    }

    fn err(body: Value) -> GatewayError {
        chat_to_converse(&serde_json::to_vec(&body).unwrap(), CLAUDE, &Map::new()).unwrap_err()
    }

    #[test]
    fn agent_conversation_with_tools() {
        let body = json!({
            "model": "claude-sonnet",
            "messages": [
                {"role": "system", "content": "You are a coding agent."},
                {"role": "developer", "content": [{"type": "text", "text": "Be terse."}]},
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "tooluse_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "tooluse_def", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "tooluse_abc", "content": "{\"temp_c\": 18}"},
                {"role": "tool", "tool_call_id": "tooluse_def", "content": "14:02"},
                {"role": "user", "content": "Thanks, and tomorrow?"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time"}}
            ],
            "tool_choice": "auto",
            "max_tokens": 1024,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": "END",
            "stream": true,
            "stream_options": {"include_usage": true}
        });
        let out =
            chat_to_converse(&serde_json::to_vec(&body).unwrap(), CLAUDE, &Map::new()).unwrap();
        assert!(out.include_usage);
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            v,
            json!({
                "system": [{"text": "You are a coding agent."}, {"text": "Be terse."}],
                "messages": [
                    {"role": "user", "content": [{"text": "What's the weather in Paris?"}]},
                    {"role": "assistant", "content": [
                        {"text": "Let me check."},
                        {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}},
                        {"toolUse": {"toolUseId": "tooluse_def", "name": "get_time", "input": {}}}
                    ]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "tooluse_abc", "content": [{"json": {"temp_c": 18}}], "status": "success"}},
                        {"toolResult": {"toolUseId": "tooluse_def", "content": [{"text": "14:02"}], "status": "success"}},
                        {"text": "Thanks, and tomorrow?"}
                    ]}
                ],
                "inferenceConfig": {"maxTokens": 1024, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
                "toolConfig": {
                    "tools": [
                        {"toolSpec": {"name": "get_weather", "description": "Weather for a city", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}},
                        {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
                    ],
                    "toolChoice": {"auto": {}}
                }
            })
        );
    }

    #[test]
    fn tool_results_without_status_for_other_models() {
        let v = convert_with(
            json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": ""}
            ]}),
            "amazon.nova-pro-v1:0",
            &Map::new(),
        );
        assert_eq!(
            v["messages"][2],
            json!({"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "(empty)"}]}}]})
        );
    }

    #[test]
    fn images_and_documents() {
        let v = convert(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
            {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGR", "detail": "high"}},
            {"type": "file", "file": {"filename": "Q3 report.final.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}}
        ]}]}));
        assert_eq!(
            v["messages"][0]["content"],
            json!([
                {"text": "What is this?"},
                {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
                {"image": {"format": "webp", "source": {"bytes": "UklGR"}}},
                {"document": {"format": "pdf", "name": "Q3 report final", "source": {"bytes": "JVBERi0x"}}}
            ])
        );
    }

    #[test]
    fn rejects_untranslatable_requests() {
        let e = err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        ]}]}));
        assert_eq!(e.class, llmgate_sdk::ErrorClass::BadRequest);
        assert!(e.message.contains("data URL"), "{}", e.message);
        let e = err(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
        ]}]}));
        assert!(e.message.contains("image/bmp"));
        assert!(err(json!({"messages": "hi"})).message.contains("messages"));
        assert!(chat_to_converse(b"{nope", CLAUDE, &Map::new()).is_err());
        let e = err(json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{bad"}}]}
        ]}));
        assert!(e.message.contains("arguments"));
        let e = err(
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes", "tools": [{"type": "function", "function": {"name": "f"}}]}),
        );
        assert!(e.message.contains("tool_choice"));
    }

    #[test]
    fn data_urls() {
        let image = |url: &str| {
            let body = json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}
            ]}]});
            chat_to_converse(&serde_json::to_vec(&body).unwrap(), CLAUDE, &Map::new())
                .map(|out| serde_json::from_slice::<Value>(&out.body).unwrap())
        };
        // The scheme in any case (it was read as a link).
        let v = image("DATA:image/PNG;base64,iVBOR").unwrap();
        assert_eq!(
            v["messages"][0]["content"][0],
            json!({"image": {"format": "png", "source": {"bytes": "iVBOR"}}})
        );
        // `;base64` must be the last parameter (RFC 2397).
        let e = image("data:image/png;base64;x=y,iVBOR").unwrap_err();
        assert!(e.message.contains("base64"), "{}", e.message);
        // No media type: said so.
        let e = image("data:;base64,iVBOR").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("media type"), "{}", e.message);
    }

    #[test]
    fn tool_choice_variants() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let base = |choice: Value| {
            convert(
                json!({"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}),
            )
        };
        assert_eq!(
            base(json!("required"))["toolConfig"]["toolChoice"],
            json!({"any": {}})
        );
        assert_eq!(
            base(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert!(base(json!("none")).get("toolConfig").is_none());
        // `none` with tool history keeps the tools (Bedrock needs them) but no choice.
        let v = convert(json!({
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t", "content": "ok"}
            ],
            "tools": tools, "tool_choice": "none"
        }));
        assert!(v["toolConfig"]["tools"].is_array());
        assert!(v["toolConfig"].get("toolChoice").is_none());
        let v = convert(json!({"messages": [{"role": "user", "content": "x"}], "tools": tools}));
        assert!(v["toolConfig"].get("toolChoice").is_none());
    }

    #[test]
    fn merges_same_role_and_skips_blank_text() {
        let v = convert(json!({"messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "  "}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": null}
        ]}));
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                {"role": "assistant", "content": [{"text": "c"}]}
            ])
        );
        assert!(v.get("system").is_none());
        assert!(v.get("inferenceConfig").is_none());
    }

    #[test]
    fn cache_control_becomes_cache_points() {
        let v = convert(json!({
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Long system prompt", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]
        }));
        assert_eq!(
            v["system"],
            json!([{"text": "Long system prompt"}, {"cachePoint": {"type": "default"}}])
        );
        assert_eq!(
            v["messages"][0]["content"],
            json!([{"text": "hi"}, {"cachePoint": {"type": "default"}}])
        );
        assert_eq!(
            v["toolConfig"]["tools"][1],
            json!({"cachePoint": {"type": "default"}})
        );
    }

    #[test]
    fn reasoning_and_thinking_history() {
        let v = convert(json!({
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "thinking_blocks": [
                    {"type": "thinking", "thinking": "Simple sum.", "signature": "sig=="},
                    {"type": "redacted_thinking", "data": "abc"}
                ]},
                {"role": "user", "content": "3+3?"}
            ],
            "reasoning_effort": "medium",
            "max_completion_tokens": 8000,
            "max_tokens": 10
        }));
        assert_eq!(
            v["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
        );
        assert_eq!(v["inferenceConfig"]["maxTokens"], json!(8000));
        assert_eq!(
            v["messages"][1]["content"],
            json!([
                {"reasoningContent": {"reasoningText": {"text": "Simple sum.", "signature": "sig=="}}},
                {"reasoningContent": {"redactedContent": "abc"}},
                {"text": "4"}
            ])
        );
        // An explicit Anthropic-style `thinking` wins; other models get no thinking.
        let v = convert(json!({
            "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 5000},
            "reasoning_effort": "low",
            "top_k": 40
        }));
        assert_eq!(
            v["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 5000}, "top_k": 40})
        );
        assert_eq!(v["inferenceConfig"], json!({"maxTokens": 9096}));
        let v = convert_with(
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high"}),
            "meta.llama3-70b-instruct-v1:0",
            &Map::new(),
        );
        assert!(v.get("additionalModelRequestFields").is_none());
    }

    #[test]
    fn params_fill_defaults() {
        let mut params = Map::new();
        params.insert("max_tokens".into(), json!(4096));
        params.insert("temperature".into(), json!(0.5));
        params.insert("stop".into(), json!(["###"]));
        params.insert("aws_region_name".into(), json!("eu-west-1"));
        let v = convert_with(
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 1}),
            CLAUDE,
            &params,
        );
        assert_eq!(
            v["inferenceConfig"],
            json!({"maxTokens": 4096, "temperature": 1, "stopSequences": ["###"]})
        );
    }
}
