//! Request bodies: Anthropic `/v1/messages` to OpenAI `/v1/chat/completions` and back.

use serde::{Deserialize, Serialize};
use serde_json::Number;
use serde_json::value::RawValue;

use crate::chat::{
    ChatRequest, Content as ChatContent, DataUrl, Message, Part, Role, Stop, ToolChoice,
};

use super::{
    BlockOut, ChatFunctionCallOut, ChatToolCallOut, Content, ContentOut, SourceOut,
    arguments_to_input, content, parse_body, to_json_bytes,
};
use crate::GatewayError;

// =======================================================================================
// Anthropic -> OpenAI.

#[derive(Deserialize)]
struct MessagesRequestIn {
    system: Option<Box<RawValue>>,
    messages: Vec<MessageIn>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop_sequences: Option<Vec<String>>,
    stream: Option<bool>,
    metadata: Option<MetadataIn>,
    tools: Option<Vec<ToolIn>>,
    tool_choice: Option<ToolChoiceIn>,
    thinking: Option<ThinkingIn>,
}

#[derive(Deserialize)]
struct MessageIn {
    role: String,
    content: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct MetadataIn {
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    description: Option<String>,
    input_schema: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ToolChoiceIn {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize)]
struct ThinkingIn {
    #[serde(rename = "type")]
    kind: String,
    budget_tokens: Option<u64>,
}

/// An Anthropic content block as read by this module (all kinds in one shape).
#[derive(Deserialize)]
struct BlockIn {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    source: Option<SourceIn>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Box<RawValue>>,
    tool_use_id: Option<String>,
    content: Option<Box<RawValue>>,
    is_error: Option<bool>,
    title: Option<String>,
}

#[derive(Deserialize)]
struct SourceIn {
    #[serde(rename = "type")]
    kind: String,
    media_type: Option<String>,
    data: Option<String>,
    url: Option<String>,
}

#[derive(Serialize)]
struct ChatRequestOut<'a> {
    model: &'a str,
    messages: Vec<ChatMessageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptionsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ChatToolOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ChatToolChoiceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
}

#[derive(Serialize)]
struct StreamOptionsOut {
    include_usage: bool,
}

#[derive(Serialize)]
struct ChatMessageOut {
    role: &'static str,
    content: ChatContentOut,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatToolCallOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
}

impl ChatMessageOut {
    fn new(role: &'static str, content: ChatContentOut) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChatContentOut {
    Text(String),
    Parts(Vec<ChatPartOut>),
    Null,
}

impl ChatContentOut {
    /// Parts, or a plain string when they are a single text part.
    fn from_parts(mut parts: Vec<ChatPartOut>) -> Self {
        if parts.len() == 1
            && matches!(parts[0], ChatPartOut::Text { .. })
            && let Some(ChatPartOut::Text { text }) = parts.pop()
        {
            return Self::Text(text);
        }
        Self::Parts(parts)
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatPartOut {
    Text { text: String },
    ImageUrl { image_url: ImageUrlOut },
    File { file: FileOut },
}

#[derive(Serialize)]
struct ImageUrlOut {
    url: String,
}

#[derive(Serialize)]
struct FileOut {
    filename: String,
    file_data: String,
}

#[derive(Serialize)]
struct ChatToolOut {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ChatFunctionOut,
}

#[derive(Serialize)]
struct ChatFunctionOut {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    parameters: Box<RawValue>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ChatToolChoiceOut {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: ChatNamedFunctionOut,
    },
}

#[derive(Serialize)]
struct ChatNamedFunctionOut {
    name: String,
}

/// Convert an Anthropic `/v1/messages` request body into an OpenAI chat completions request
/// body for `upstream_model`.
///
/// `system` becomes a leading system message; `tool_use` blocks become `tool_calls`;
/// `tool_result` blocks become `role: "tool"` messages (placed before the rest of their user
/// message); thinking blocks and `cache_control` are dropped; `thinking.budget_tokens`
/// becomes `reasoning_effort`; a streamed request asks for usage in the stream.
pub fn messages_to_chat_request(
    body: &[u8],
    upstream_model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let req: MessagesRequestIn = parse_body(
        body,
        "Anthropic Messages request",
        GatewayError::bad_request,
    )?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(ChatMessageOut::new("system", ChatContentOut::Text(text)));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "user" => user_to_chat(m.content.as_deref(), &at, &mut messages)?,
            "assistant" => assistant_to_chat(m.content.as_deref(), &at, &mut messages)?,
            other => {
                return Err(GatewayError::bad_request(format!(
                    "{at}.role: unsupported role {other:?} (expected \"user\" or \"assistant\")"
                )));
            }
        }
    }

    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
            return Err(GatewayError::bad_request(format!(
                "tools[{i}]: tool type {kind:?} ({}) is not supported by this upstream",
                t.name
            )));
        }
        let parameters = match &t.input_schema {
            Some(schema) => schema.clone(),
            None => RawValue::from_string(r#"{"type":"object","properties":{}}"#.to_owned())
                .map_err(|e| GatewayError::bad_request(e.to_string()))?,
        };
        tools.push(ChatToolOut {
            kind: "function",
            function: ChatFunctionOut {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters,
            },
        });
    }

    let (tool_choice, parallel_tool_calls) = match (&req.tool_choice, tools.is_empty()) {
        (Some(tc), false) => {
            let choice = match tc.kind.as_str() {
                "auto" => ChatToolChoiceOut::Mode("auto"),
                "any" => ChatToolChoiceOut::Mode("required"),
                "none" => ChatToolChoiceOut::Mode("none"),
                "tool" => {
                    let name = tc.name.clone().ok_or_else(|| {
                        GatewayError::bad_request("tool_choice: type \"tool\" requires a name")
                    })?;
                    ChatToolChoiceOut::Function {
                        kind: "function",
                        function: ChatNamedFunctionOut { name },
                    }
                }
                other => {
                    return Err(GatewayError::bad_request(format!(
                        "tool_choice: unsupported type {other:?}"
                    )));
                }
            };
            let parallel = (tc.disable_parallel_tool_use == Some(true)).then_some(false);
            (Some(choice), parallel)
        }
        _ => (None, None),
    };

    let reasoning_effort = match &req.thinking {
        Some(t) if t.kind == "enabled" => Some(match t.budget_tokens.unwrap_or(0) {
            0..4096 => "low",
            4096..16384 => "medium",
            _ => "high",
        }),
        _ => None,
    };

    let stream = req.stream.filter(|s| *s);
    let out = ChatRequestOut {
        model: upstream_model,
        messages,
        max_completion_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req.stop_sequences.filter(|s| !s.is_empty()),
        stream,
        stream_options: stream.map(|_| StreamOptionsOut {
            include_usage: true,
        }),
        user: req.metadata.and_then(|m| m.user_id),
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning_effort,
    };
    to_json_bytes(&out, GatewayError::bad_request)
}

/// `system` (a string or text blocks) as one string.
fn system_text(raw: &RawValue) -> Result<String, GatewayError> {
    match content::<BlockIn>(Some(raw), "system")? {
        Content::Text(s) => Ok(s),
        Content::Null => Ok(String::new()),
        Content::Parts(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.into_iter().enumerate() {
                if b.kind != "text" {
                    return Err(GatewayError::bad_request(format!(
                        "system[{i}]: unsupported block type {:?} (only text)",
                        b.kind
                    )));
                }
                texts.push(required_text(b.text, &format!("system[{i}]"))?);
            }
            Ok(texts.join("\n\n"))
        }
    }
}

fn required_text(text: Option<String>, at: &str) -> Result<String, GatewayError> {
    text.ok_or_else(|| GatewayError::bad_request(format!("{at}: text block without \"text\"")))
}

fn user_to_chat(
    raw: Option<&RawValue>,
    at: &str,
    out: &mut Vec<ChatMessageOut>,
) -> Result<(), GatewayError> {
    let blocks = match content::<BlockIn>(raw, &format!("{at}.content"))? {
        Content::Text(s) => {
            out.push(ChatMessageOut::new("user", ChatContentOut::Text(s)));
            return Ok(());
        }
        Content::Null => {
            return Err(GatewayError::bad_request(format!(
                "{at}: missing \"content\""
            )));
        }
        Content::Parts(blocks) => blocks,
    };
    let mut parts = Vec::new();
    // Images returned by tools: OpenAI tool messages carry text only, so they go into the
    // user message that follows the tool messages.
    let mut tool_images = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match b.kind.as_str() {
            "text" => parts.push(ChatPartOut::Text {
                text: required_text(b.text, &at)?,
            }),
            "image" => parts.push(image_part(b.source.as_ref(), &at)?),
            "document" => parts.push(document_part(&b, &at)?),
            "tool_result" => out.push(tool_message(b, &at, &mut tool_images)?),
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(GatewayError::bad_request(format!(
                    "{at}: unsupported content block type {other:?} in a user message"
                )));
            }
        }
    }
    if !tool_images.is_empty() {
        tool_images.append(&mut parts);
        parts = tool_images;
    }
    if !parts.is_empty() {
        out.push(ChatMessageOut::new(
            "user",
            ChatContentOut::from_parts(parts),
        ));
    }
    Ok(())
}

fn image_part(source: Option<&SourceIn>, at: &str) -> Result<ChatPartOut, GatewayError> {
    let source = source.ok_or_else(|| {
        GatewayError::bad_request(format!("{at}: image block without \"source\""))
    })?;
    let url = match source.kind.as_str() {
        "base64" => data_url(source, at)?,
        "url" => source.url.clone().ok_or_else(|| {
            GatewayError::bad_request(format!("{at}: url image source without \"url\""))
        })?,
        other => {
            return Err(GatewayError::bad_request(format!(
                "{at}: unsupported image source type {other:?}"
            )));
        }
    };
    Ok(ChatPartOut::ImageUrl {
        image_url: ImageUrlOut { url },
    })
}

fn data_url(source: &SourceIn, at: &str) -> Result<String, GatewayError> {
    let (Some(media_type), Some(data)) = (&source.media_type, &source.data) else {
        return Err(GatewayError::bad_request(format!(
            "{at}: base64 source needs \"media_type\" and \"data\""
        )));
    };
    Ok(format!("data:{media_type};base64,{data}"))
}

fn document_part(b: &BlockIn, at: &str) -> Result<ChatPartOut, GatewayError> {
    let source = b.source.as_ref().ok_or_else(|| {
        GatewayError::bad_request(format!("{at}: document block without \"source\""))
    })?;
    match source.kind.as_str() {
        "base64" => {
            let filename = b.title.clone().unwrap_or_else(|| {
                match source.media_type.as_deref() {
                    Some("application/pdf") | None => "document.pdf",
                    Some(_) => "document",
                }
                .to_owned()
            });
            Ok(ChatPartOut::File {
                file: FileOut {
                    filename,
                    file_data: data_url(source, at)?,
                },
            })
        }
        "text" => {
            let data = source.data.clone().ok_or_else(|| {
                GatewayError::bad_request(format!("{at}: text document source without \"data\""))
            })?;
            let text = match &b.title {
                Some(title) => format!("{title}\n\n{data}"),
                None => data,
            };
            Ok(ChatPartOut::Text { text })
        }
        other => Err(GatewayError::bad_request(format!(
            "{at}: unsupported document source type {other:?} (base64 and text are supported)"
        ))),
    }
}

fn tool_message(
    b: BlockIn,
    at: &str,
    images: &mut Vec<ChatPartOut>,
) -> Result<ChatMessageOut, GatewayError> {
    let id = b.tool_use_id.ok_or_else(|| {
        GatewayError::bad_request(format!("{at}: tool_result without \"tool_use_id\""))
    })?;
    let mut text = match content::<BlockIn>(b.content.as_deref(), &format!("{at}.content"))? {
        Content::Text(s) => s,
        Content::Null => String::new(),
        Content::Parts(blocks) => {
            let mut texts = Vec::new();
            for (k, inner) in blocks.into_iter().enumerate() {
                let at = format!("{at}.content[{k}]");
                match inner.kind.as_str() {
                    "text" => texts.push(required_text(inner.text, &at)?),
                    "image" => images.push(image_part(inner.source.as_ref(), &at)?),
                    "document" => match document_part(&inner, &at)? {
                        ChatPartOut::Text { text } => texts.push(text),
                        other => images.push(other),
                    },
                    other => {
                        return Err(GatewayError::bad_request(format!(
                            "{at}: unsupported block type {other:?} in a tool_result"
                        )));
                    }
                }
            }
            texts.join("\n")
        }
    };
    if b.is_error == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(ChatMessageOut {
        role: "tool",
        content: ChatContentOut::Text(text),
        tool_calls: Vec::new(),
        tool_call_id: Some(id),
    })
}

fn assistant_to_chat(
    raw: Option<&RawValue>,
    at: &str,
    out: &mut Vec<ChatMessageOut>,
) -> Result<(), GatewayError> {
    let blocks = match content::<BlockIn>(raw, &format!("{at}.content"))? {
        Content::Text(s) => {
            out.push(ChatMessageOut::new("assistant", ChatContentOut::Text(s)));
            return Ok(());
        }
        Content::Null => {
            return Err(GatewayError::bad_request(format!(
                "{at}: missing \"content\""
            )));
        }
        Content::Parts(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match b.kind.as_str() {
            "text" => text.push_str(&required_text(b.text, &at)?),
            "tool_use" => {
                let (Some(id), Some(name)) = (b.id, b.name) else {
                    return Err(GatewayError::bad_request(format!(
                        "{at}: tool_use needs \"id\" and \"name\""
                    )));
                };
                let arguments = match &b.input {
                    Some(input) => input.get().to_owned(),
                    None => "{}".to_owned(),
                };
                calls.push(ChatToolCallOut {
                    id,
                    kind: "function",
                    function: ChatFunctionCallOut { name, arguments },
                });
            }
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(GatewayError::bad_request(format!(
                    "{at}: unsupported content block type {other:?} in an assistant message"
                )));
            }
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let content = if text.is_empty() {
        ChatContentOut::Null
    } else {
        ChatContentOut::Text(text)
    };
    out.push(ChatMessageOut {
        role: "assistant",
        content,
        tool_calls: calls,
        tool_call_id: None,
    });
    Ok(())
}

// =======================================================================================
// OpenAI -> Anthropic.

#[derive(Serialize)]
struct MessagesRequestOut<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<MessageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<MetadataOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<ThinkingOut>,
}

#[derive(Serialize)]
struct MessageOut {
    role: &'static str,
    content: ContentOut,
}

#[derive(Serialize)]
struct MetadataOut {
    user_id: String,
}

#[derive(Serialize)]
struct ToolOut {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    input_schema: Box<RawValue>,
}

#[derive(Serialize)]
struct ToolChoiceOut {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Serialize)]
struct ThinkingOut {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u64,
}

/// `max_tokens` when the OpenAI request sets none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Convert an OpenAI chat completions request body into an Anthropic `/v1/messages` request
/// body for `upstream_model`.
///
/// System and developer messages are joined into `system`; tool calls become `tool_use`
/// blocks and tool messages `tool_result` blocks in a user message; consecutive messages of
/// the same role are merged (Anthropic requires alternation); `max_tokens` defaults to
/// [`DEFAULT_MAX_TOKENS`]; `reasoning_effort` enables extended thinking.
pub fn chat_to_messages_request(
    body: &[u8],
    upstream_model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let req = ChatRequest::from_slice(body)?;
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::bad_request(
            "n: only one choice per request is supported by the Anthropic Messages API",
        ));
    }

    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<BlockOut>)> = Vec::new();
    for (i, m) in req.messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.role(&at)?;
        match role {
            Role::System | Role::Developer => {
                let text = parts_text(m.content.as_ref(), &at)?;
                if !text.trim().is_empty() {
                    system.push(text);
                }
            }
            Role::User => {
                let blocks = user_blocks(m.content, &at)?;
                push_turn(&mut turns, "user", blocks);
            }
            Role::Assistant => {
                let blocks = assistant_blocks(m, &at)?;
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => {
                let block = tool_result_block(m, &at)?;
                push_turn(&mut turns, "user", vec![block]);
            }
            other @ (Role::Function | Role::Other(_)) => {
                return Err(GatewayError::bad_request(format!(
                    "{at}.role: unsupported role {:?}",
                    other.as_str()
                )));
            }
        }
    }
    if turns.is_empty() {
        return Err(GatewayError::bad_request(
            "messages: no user or assistant message with content",
        ));
    }
    for (role, blocks) in &mut turns {
        if *role == "user" {
            // Anthropic wants tool results first in a user message.
            let (mut results, rest): (Vec<_>, Vec<_>) = std::mem::take(blocks)
                .into_iter()
                .partition(|b| matches!(b, BlockOut::ToolResult { .. }));
            results.extend(rest);
            *blocks = results;
        }
    }
    // A final assistant message (a prefill) may not end in whitespace.
    if let Some(("assistant", blocks)) = turns.last_mut()
        && let Some(BlockOut::Text { text }) = blocks.last_mut()
    {
        let len = text.trim_end().len();
        text.truncate(len);
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            let content = if blocks.len() == 1 && matches!(blocks[0], BlockOut::Text { .. }) {
                match blocks.pop() {
                    Some(BlockOut::Text { text }) => ContentOut::Text(text),
                    _ => ContentOut::Blocks(blocks),
                }
            } else {
                ContentOut::Blocks(blocks)
            };
            MessageOut { role, content }
        })
        .collect();

    let mut tools = Vec::new();
    for (i, t) in req.tools.into_iter().flatten().enumerate() {
        let (Some("function"), Some(f)) = (t.kind.as_deref(), t.function) else {
            return Err(GatewayError::bad_request(format!(
                "tools[{i}]: only function tools are supported"
            )));
        };
        let Some(name) = f.name else {
            return Err(GatewayError::bad_request(format!(
                "tools[{i}].function: missing \"name\""
            )));
        };
        let input_schema = match f.parameters {
            Some(p) => p,
            None => RawValue::from_string(r#"{"type":"object","properties":{}}"#.to_owned())
                .map_err(|e| GatewayError::bad_request(e.to_string()))?,
        };
        tools.push(ToolOut {
            name,
            description: f.description,
            input_schema,
        });
    }

    let mut tool_choice = match &req.tool_choice {
        Some(raw) if !tools.is_empty() => tool_choice_out(raw)?,
        _ => None,
    };
    if req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let choice = tool_choice.get_or_insert(ToolChoiceOut {
            kind: "auto",
            name: None,
            disable_parallel_tool_use: None,
        });
        if choice.kind != "none" {
            choice.disable_parallel_tool_use = Some(true);
        }
    }
    let forced_tool = tool_choice
        .as_ref()
        .is_some_and(|c| c.kind == "any" || c.kind == "tool");

    let budget = match req.reasoning_effort.as_deref() {
        None | Some("none" | "minimal") => None,
        Some("low") => Some(1024),
        Some("medium") => Some(8192),
        Some("high") => Some(24576),
        Some(other) => {
            return Err(GatewayError::bad_request(format!(
                "reasoning_effort: unsupported value {other:?} (expected low, medium or high)"
            )));
        }
    };
    // Anthropic refuses thinking together with a forced tool choice; the tool choice wins.
    let budget = budget.filter(|_| !forced_tool);

    let mut max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let temperature = req.temperature.as_ref().and_then(Number::as_f64);
    let (mut temperature, mut top_p) = (
        temperature.map(|t| t.clamp(0.0, 1.0)),
        req.top_p.as_ref().and_then(Number::as_f64),
    );
    if top_p == Some(1.0) && temperature.is_some() {
        // A no-op, and some Anthropic models refuse temperature and top_p together.
        top_p = None;
    }
    let thinking = budget.map(|budget_tokens| {
        if max_tokens <= budget_tokens {
            max_tokens = budget_tokens + 4096;
        }
        // Thinking is incompatible with sampling changes.
        temperature = None;
        top_p = None;
        ThinkingOut {
            kind: "enabled",
            budget_tokens,
        }
    });

    let out = MessagesRequestOut {
        model: upstream_model,
        max_tokens,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        metadata: req.user.map(|user_id| MetadataOut { user_id }),
        stop_sequences: stop_sequences(req.stop.as_ref()),
        stream: req.stream.filter(|s| *s),
        temperature,
        top_p,
        tools,
        tool_choice,
        thinking,
    };
    to_json_bytes(&out, GatewayError::bad_request)
}

fn push_turn(
    turns: &mut Vec<(&'static str, Vec<BlockOut>)>,
    role: &'static str,
    blocks: Vec<BlockOut>,
) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

/// A text block, unless the text is blank (Anthropic rejects blank text blocks).
fn push_text(blocks: &mut Vec<BlockOut>, text: String) {
    if !text.trim().is_empty() {
        blocks.push(BlockOut::Text { text });
    }
}

/// `content` that is not a string, parts or null.
fn not_content(at: &str) -> GatewayError {
    GatewayError::bad_request(format!(
        "invalid {at}.content: expected a string or an array"
    ))
}

/// The text of a `content` field that may only hold text (string or text parts).
fn parts_text(content: Option<&ChatContent>, at: &str) -> Result<String, GatewayError> {
    match content {
        Some(ChatContent::Text(s)) => Ok(s.clone()),
        None => Ok(String::new()),
        Some(ChatContent::Other(_)) => Err(not_content(at)),
        Some(ChatContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_deref().unwrap_or(""), &p.text) {
                    ("text", Some(text)) => texts.push(text.clone()),
                    (kind, _) => {
                        return Err(GatewayError::bad_request(format!(
                            "{at}.content[{j}]: unsupported part {kind:?} (only text)"
                        )));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

fn user_blocks(content: Option<ChatContent>, at: &str) -> Result<Vec<BlockOut>, GatewayError> {
    let mut blocks = Vec::new();
    match content {
        Some(ChatContent::Text(s)) => push_text(&mut blocks, s),
        None => {}
        Some(ChatContent::Other(_)) => return Err(not_content(at)),
        Some(ChatContent::Parts(parts)) => {
            for (j, p) in parts.into_iter().enumerate() {
                blocks.extend(part_block(p, &format!("{at}.content[{j}]"))?);
            }
        }
    }
    Ok(blocks)
}

/// One OpenAI content part as an Anthropic block (`None` for blank text).
fn part_block(p: Part, at: &str) -> Result<Option<BlockOut>, GatewayError> {
    match p.kind.as_deref().unwrap_or("") {
        "text" => {
            let text = p.text.ok_or_else(|| {
                GatewayError::bad_request(format!("{at}: text part without \"text\""))
            })?;
            Ok((!text.trim().is_empty()).then_some(BlockOut::Text { text }))
        }
        "image_url" => {
            let url = p.image_url.and_then(|u| u.url).ok_or_else(|| {
                GatewayError::bad_request(format!("{at}: image_url part without \"image_url\""))
            })?;
            Ok(Some(BlockOut::Image {
                source: url_source(url, at)?,
            }))
        }
        "file" => {
            let file = p.file.ok_or_else(|| {
                GatewayError::bad_request(format!("{at}: file part without \"file\""))
            })?;
            let Some(data) = file.file_data else {
                return Err(GatewayError::bad_request(format!(
                    "{at}: only inline files (file_data) are supported, not file ids"
                )));
            };
            let source = match DataUrl::parse(&data) {
                Some(_) => url_source(data, at)?,
                // Bare base64; OpenAI's file inputs are PDFs.
                None => SourceOut::Base64 {
                    media_type: "application/pdf".to_owned(),
                    data,
                },
            };
            Ok(Some(BlockOut::Document {
                source,
                title: file.filename,
            }))
        }
        "input_audio" => Err(GatewayError::bad_request(format!(
            "{at}: audio input is not supported by the Anthropic Messages API"
        ))),
        other => Err(GatewayError::bad_request(format!(
            "{at}: unsupported content part type {other:?}"
        ))),
    }
}

/// An image or file URL as an Anthropic source: base64 `data:` URLs inline, http(s) URLs
/// by reference.
fn url_source(url: String, at: &str) -> Result<SourceOut, GatewayError> {
    if let Some(parsed) = DataUrl::parse(&url) {
        let d = parsed.map_err(|e| GatewayError::bad_request(format!("{at}: {e}")))?;
        return Ok(SourceOut::Base64 {
            media_type: d.media_type,
            data: d.data.to_owned(),
        });
    }
    let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        Ok(SourceOut::Url { url })
    } else {
        Err(GatewayError::bad_request(format!(
            "{at}: unsupported URL (expected a data: or http(s): URL)"
        )))
    }
}

/// A tool call id in the alphabet Anthropic accepts (`[A-Za-z0-9_-]`).
fn anthropic_tool_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn assistant_blocks(m: Message, at: &str) -> Result<Vec<BlockOut>, GatewayError> {
    let mut blocks = Vec::new();
    match m.content {
        Some(ChatContent::Text(s)) => push_text(&mut blocks, s),
        None => {}
        Some(ChatContent::Other(_)) => return Err(not_content(at)),
        Some(ChatContent::Parts(parts)) => {
            for (j, p) in parts.into_iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match (p.kind.as_deref().unwrap_or(""), p.text, p.refusal) {
                    ("text", Some(text), _) | ("refusal", _, Some(text)) => {
                        push_text(&mut blocks, text);
                    }
                    (kind, _, _) => {
                        return Err(GatewayError::bad_request(format!(
                            "{at}: unsupported assistant content part {kind:?}"
                        )));
                    }
                }
            }
        }
    }
    for (j, call) in m.tool_calls.into_iter().flatten().enumerate() {
        let at = format!("{at}.tool_calls[{j}]");
        let id = call
            .id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| GatewayError::bad_request(format!("{at}: tool call without \"id\"")))?;
        let function = call.function.ok_or_else(|| {
            GatewayError::bad_request(format!("{at}: tool call without \"function\""))
        })?;
        let name = function
            .name
            .ok_or_else(|| GatewayError::bad_request(format!("{at}.function: missing \"name\"")))?;
        let input = arguments_to_input(
            function.arguments.as_deref(),
            true,
            &format!("{at}.function.arguments"),
        )?;
        blocks.push(BlockOut::ToolUse {
            id: anthropic_tool_id(&id),
            name,
            input,
        });
    }
    Ok(blocks)
}

fn tool_result_block(m: Message, at: &str) -> Result<BlockOut, GatewayError> {
    let id = m.tool_call_id.filter(|id| !id.is_empty()).ok_or_else(|| {
        GatewayError::bad_request(format!("{at}: tool message without \"tool_call_id\""))
    })?;
    let content = match m.content {
        Some(ChatContent::Text(s)) => (!s.is_empty()).then_some(ContentOut::Text(s)),
        None => None,
        Some(ChatContent::Other(_)) => return Err(not_content(at)),
        Some(ChatContent::Parts(parts)) => {
            let mut blocks = Vec::new();
            for (j, p) in parts.into_iter().enumerate() {
                blocks.extend(part_block(p, &format!("{at}.content[{j}]"))?);
            }
            if blocks.iter().all(|b| matches!(b, BlockOut::Text { .. })) {
                let texts: Vec<String> = blocks
                    .into_iter()
                    .filter_map(|b| match b {
                        BlockOut::Text { text } => Some(text),
                        _ => None,
                    })
                    .collect();
                (!texts.is_empty()).then(|| ContentOut::Text(texts.join("\n")))
            } else {
                Some(ContentOut::Blocks(blocks))
            }
        }
    };
    Ok(BlockOut::ToolResult {
        tool_use_id: anthropic_tool_id(&id),
        content,
        is_error: None,
    })
}

fn tool_choice_out(choice: &ToolChoice) -> Result<Option<ToolChoiceOut>, GatewayError> {
    let mode = |kind: &'static str| {
        Ok(Some(ToolChoiceOut {
            kind,
            name: None,
            disable_parallel_tool_use: None,
        }))
    };
    match choice {
        ToolChoice::Mode(m) => match m.as_str() {
            "auto" => mode("auto"),
            "required" => mode("any"),
            "none" => mode("none"),
            other => Err(GatewayError::bad_request(format!(
                "tool_choice: unsupported value {other:?}"
            ))),
        },
        ToolChoice::Named(named) => match (named.kind.as_deref(), &named.function) {
            (Some("function"), Some(f)) => {
                let name = f.name.clone().ok_or_else(|| {
                    GatewayError::bad_request("tool_choice.function: missing \"name\"")
                })?;
                Ok(Some(ToolChoiceOut {
                    kind: "tool",
                    name: Some(name),
                    disable_parallel_tool_use: None,
                }))
            }
            (kind, _) => Err(GatewayError::bad_request(format!(
                "tool_choice: unsupported type {:?} (expected a function)",
                kind.unwrap_or("")
            ))),
        },
    }
}

fn stop_sequences(stop: Option<&Stop>) -> Option<Vec<String>> {
    let stops: Vec<String> = stop?
        .to_vec()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    (!stops.is_empty()).then_some(stops)
}
