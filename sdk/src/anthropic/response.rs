//! Non-streamed responses: an OpenAI chat completion to an Anthropic message and back.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    AnthropicUsageIn, AnthropicUsageOut, BlockOut, ChatFunctionCallOut, ChatToolCallIn,
    ChatToolCallOut, ChatUsageIn, ChatUsageOut, Content, Usage, arguments_to_input, chat_id,
    content, finish_reason_for, gen_id, message_id, now_secs, parse_body, stop_reason_for,
    to_json_bytes,
};
use crate::GatewayError;

// =======================================================================================
// OpenAI -> Anthropic.

#[derive(Deserialize)]
struct ChatResponseIn {
    id: Option<String>,
    choices: Option<Vec<ChoiceIn>>,
    usage: Option<ChatUsageIn>,
    error: Option<ErrorIn>,
}

#[derive(Deserialize)]
struct ErrorIn {
    message: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceIn {
    message: Option<ResponseMessageIn>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessageIn {
    content: Option<Box<RawValue>>,
    refusal: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<ChatToolCallIn>>,
}

#[derive(Deserialize)]
struct TextPartIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: AnthropicUsageOut,
}

/// Convert an OpenAI chat completion body into an Anthropic message body reporting
/// `requested_model`, with the call's usage.
///
/// `reasoning_content` becomes a leading `thinking` block (with an empty signature), the
/// text a `text` block, tool calls `tool_use` blocks (arguments that are not a JSON object
/// become `{}`).
pub fn chat_response_to_messages(
    body: &[u8],
    requested_model: &str,
) -> Result<(Vec<u8>, Usage), GatewayError> {
    let resp: ChatResponseIn = parse_body(body, "chat completion", GatewayError::upstream)?;
    if let Some(error) = resp.error {
        return Err(GatewayError::upstream(format!(
            "upstream returned an error: {}",
            error.message.as_deref().unwrap_or("(no message)")
        )));
    }
    let choice = resp
        .choices
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| GatewayError::upstream("chat completion has no choices"))?;
    let message = choice
        .message
        .ok_or_else(|| GatewayError::upstream("choices[0] has no \"message\""))?;

    let mut blocks = Vec::new();
    if let Some(thinking) = message
        .reasoning_content
        .or(message.reasoning)
        .filter(|t| !t.is_empty())
    {
        blocks.push(BlockOut::Thinking {
            thinking,
            signature: String::new(),
        });
    }
    let text =
        match content::<TextPartIn>(message.content.as_deref(), "choices[0].message.content")? {
            Content::Text(s) => s,
            Content::Null => String::new(),
            Content::Parts(parts) => parts
                .into_iter()
                .filter(|p| p.kind.as_deref().is_none_or(|k| k == "text"))
                .filter_map(|p| p.text)
                .collect(),
        };
    let refused = text.is_empty() && message.refusal.as_deref().is_some_and(|r| !r.is_empty());
    let text = if refused {
        message.refusal.unwrap_or_default()
    } else {
        text
    };
    if !text.is_empty() {
        blocks.push(BlockOut::Text { text });
    }
    let mut has_tool_calls = false;
    for (j, call) in message.tool_calls.into_iter().flatten().enumerate() {
        let at = format!("choices[0].message.tool_calls[{j}]");
        let function = call.function.ok_or_else(|| {
            GatewayError::upstream(format!("{at}: tool call without \"function\""))
        })?;
        let name = function
            .name
            .ok_or_else(|| GatewayError::upstream(format!("{at}.function: missing \"name\"")))?;
        let input = arguments_to_input(function.arguments.as_deref(), false, &at)?;
        blocks.push(BlockOut::ToolUse {
            id: call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| gen_id("toolu_")),
            name,
            input,
        });
        has_tool_calls = true;
    }

    let usage = resp.usage.unwrap_or_default().to_usage();
    let stop_reason = if refused {
        "refusal"
    } else {
        stop_reason_for(choice.finish_reason.as_deref(), has_tool_calls)
    };
    let out = MessageOut {
        id: message_id(resp.id.as_deref()),
        kind: "message",
        role: "assistant",
        model: requested_model,
        content: blocks,
        stop_reason,
        stop_sequence: None,
        usage: AnthropicUsageOut::from(&usage),
    };
    Ok((to_json_bytes(&out, GatewayError::upstream)?, usage))
}

// =======================================================================================
// Anthropic -> OpenAI.

#[derive(Deserialize)]
struct MessageIn {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    content: Option<Vec<BlockIn>>,
    stop_reason: Option<String>,
    usage: Option<AnthropicUsageIn>,
    error: Option<ErrorIn>,
}

#[derive(Deserialize)]
struct BlockIn {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    thinking: Option<String>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct CompletionOut<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut; 1],
    usage: ChatUsageOut,
}

#[derive(Serialize)]
struct ChoiceOut {
    index: u32,
    message: ResponseMessageOut,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ResponseMessageOut {
    role: &'static str,
    content: Option<String>,
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ChatToolCallOut>,
}

/// Convert an Anthropic message body into an OpenAI chat completion body reporting
/// `requested_model`, with the call's usage.
///
/// Text blocks are concatenated into `content`, thinking blocks into `reasoning_content`,
/// `tool_use` blocks become `tool_calls`; other blocks (redacted thinking, server tools)
/// are dropped.
pub fn messages_response_to_chat(
    body: &[u8],
    requested_model: &str,
) -> Result<(Vec<u8>, Usage), GatewayError> {
    let msg: MessageIn = parse_body(body, "Anthropic message", GatewayError::upstream)?;
    if msg.kind.as_deref() == Some("error") || msg.error.is_some() {
        return Err(GatewayError::upstream(format!(
            "upstream returned an error: {}",
            msg.error
                .and_then(|e| e.message)
                .as_deref()
                .unwrap_or("(no message)")
        )));
    }
    let blocks = msg
        .content
        .ok_or_else(|| GatewayError::upstream("Anthropic message has no \"content\""))?;
    let mut text = String::new();
    let mut thinking = String::new();
    let mut tool_calls = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        match b.kind.as_str() {
            "text" => text.push_str(b.text.as_deref().unwrap_or("")),
            "thinking" => thinking.push_str(b.thinking.as_deref().unwrap_or("")),
            "tool_use" => {
                let (Some(id), Some(name)) = (b.id, b.name) else {
                    return Err(GatewayError::upstream(format!(
                        "content[{j}]: tool_use needs \"id\" and \"name\""
                    )));
                };
                tool_calls.push(ChatToolCallOut {
                    id,
                    kind: "function",
                    function: ChatFunctionCallOut {
                        name,
                        arguments: b
                            .input
                            .map_or_else(|| "{}".to_owned(), |i| i.get().to_owned()),
                    },
                });
            }
            _ => {}
        }
    }
    let usage = msg.usage.unwrap_or_default().to_usage();
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(text)
    };
    let out = CompletionOut {
        id: chat_id(msg.id.as_deref()),
        object: "chat.completion",
        created: now_secs(),
        model: requested_model,
        choices: [ChoiceOut {
            index: 0,
            message: ResponseMessageOut {
                role: "assistant",
                content,
                refusal: None,
                reasoning_content: (!thinking.is_empty()).then_some(thinking),
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish_reason_for(msg.stop_reason.as_deref()),
        }],
        usage: ChatUsageOut::from(&usage),
    };
    Ok((to_json_bytes(&out, GatewayError::upstream)?, usage))
}
