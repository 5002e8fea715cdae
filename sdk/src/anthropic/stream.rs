//! Streams: OpenAI chat completion chunks to Anthropic Messages SSE events and back.
//!
//! Both converters are fed one upstream event at a time and return the client events to
//! emit, then are asked to [`finish`](ChatStreamToMessages::finish) when the upstream stream
//! ends, which closes the client stream if needed and reports the usage.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    AnthropicErrorDetailIn, AnthropicUsageIn, AnthropicUsageOut, ChatUsageIn, ChatUsageOut,
    SseEvent, Usage, anthropic_error_json, chat_id, finish_reason_for, gen_id, message_id,
    now_secs, stop_reason_for, to_json,
};
use crate::GatewayError;

// =======================================================================================
// OpenAI chunks -> Anthropic events.

#[derive(Deserialize)]
struct ChunkIn {
    id: Option<String>,
    choices: Option<Vec<ChunkChoiceIn>>,
    usage: Option<ChatUsageIn>,
    error: Option<ChunkErrorIn>,
}

#[derive(Deserialize)]
struct ChunkErrorIn {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ChunkChoiceIn {
    index: Option<u64>,
    delta: Option<DeltaIn>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct DeltaIn {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ToolCallDeltaIn>>,
}

#[derive(Deserialize)]
struct ToolCallDeltaIn {
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionDeltaIn>,
}

#[derive(Deserialize)]
struct FunctionDeltaIn {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Serialize)]
struct MessageStartOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessageOut<'a>,
}

#[derive(Serialize)]
struct StartMessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<()>,
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: AnthropicUsageOut,
}

#[derive(Serialize)]
struct BlockStartOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: StartBlockOut<'a>,
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlockOut<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

#[derive(Serialize)]
struct BlockDeltaOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: BlockDelta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockStopOut {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct MessageDeltaOut {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: MessageDeltaBody,
    usage: AnthropicUsageOut,
}

#[derive(Serialize)]
struct MessageDeltaBody {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct MessageStopOut {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Thinking,
    Tool,
}

struct ToolSlot {
    /// OpenAI `tool_calls[].index`.
    openai_index: u64,
    id: String,
    /// Anthropic content block index.
    block: usize,
}

fn anthropic_event<T: Serialize>(name: &str, data: &T) -> Result<SseEvent, GatewayError> {
    Ok(SseEvent {
        event: Some(name.to_owned()),
        data: to_json(data)?,
    })
}

/// Turns an OpenAI chat completions stream into an Anthropic Messages stream.
///
/// Feed each upstream `data:` payload to [`on_chunk`](Self::on_chunk) (including the final
/// `[DONE]`) and emit the returned events; call [`finish`](Self::finish) when the upstream
/// stream ends. The events are `message_start`, then per content block (thinking, text, one
/// per tool call) `content_block_start`, `content_block_delta`s and `content_block_stop`,
/// then `message_delta` (stop reason and final usage) and `message_stop`. The closing
/// `message_delta` waits for `[DONE]` (or [`finish`](Self::finish)) because OpenAI sends the
/// usage in a chunk of its own after the one with the finish reason.
pub struct ChatStreamToMessages {
    model: String,
    started: bool,
    closed: bool,
    error: Option<String>,
    open: Option<(OpenBlock, usize)>,
    next_block: usize,
    tools: Vec<ToolSlot>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl ChatStreamToMessages {
    /// A converter whose events report `requested_model`.
    pub fn new(requested_model: &str) -> Self {
        Self {
            model: requested_model.to_owned(),
            started: false,
            closed: false,
            error: None,
            open: None,
            next_block: 0,
            tools: Vec::new(),
            finish_reason: None,
            usage: None,
        }
    }

    /// Convert one upstream `data:` payload (a chunk's JSON, or `[DONE]`) into the Anthropic
    /// events to emit. An upstream error payload becomes an Anthropic `error` event and ends
    /// the stream.
    pub fn on_chunk(&mut self, data: &str) -> Result<Vec<SseEvent>, GatewayError> {
        let data = data.trim();
        let mut out = Vec::new();
        if self.closed || data.is_empty() {
            return Ok(out);
        }
        if data == "[DONE]" {
            if self.started {
                self.close_message(&mut out)?;
            }
            return Ok(out);
        }
        let chunk: ChunkIn = serde_json::from_str(data)
            .map_err(|e| GatewayError::upstream(format!("invalid chat completion chunk: {e}")))?;
        if let Some(error) = chunk.error {
            let message = error
                .message
                .unwrap_or_else(|| "upstream stream failed".to_owned());
            let code = error
                .code
                .as_ref()
                .map(|c| c.get().trim_matches('"').to_owned());
            let kind = stream_error_type(error.kind.as_deref(), code.as_deref());
            out.push(SseEvent {
                event: Some("error".to_owned()),
                data: anthropic_error_json(kind, &message),
            });
            self.error = Some(message);
            self.closed = true;
            return Ok(out);
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.to_usage());
        }
        if !self.started {
            self.started = true;
            let id = message_id(chunk.id.as_deref());
            let usage = self.usage.unwrap_or_default();
            out.push(anthropic_event(
                "message_start",
                &MessageStartOut {
                    kind: "message_start",
                    message: StartMessageOut {
                        id: &id,
                        kind: "message",
                        role: "assistant",
                        model: &self.model,
                        content: Vec::new(),
                        stop_reason: None,
                        stop_sequence: None,
                        usage: AnthropicUsageOut {
                            output_tokens: 0,
                            ..AnthropicUsageOut::from(&usage)
                        },
                    },
                },
            )?);
        }
        let choices = chunk.choices.unwrap_or_default();
        let Some(choice) = choices.into_iter().find(|c| c.index.unwrap_or(0) == 0) else {
            return Ok(out);
        };
        if let Some(delta) = choice.delta {
            if let Some(t) = delta
                .reasoning_content
                .or(delta.reasoning)
                .filter(|t| !t.is_empty())
            {
                let index = self.ensure_block(OpenBlock::Thinking, &mut out)?;
                out.push(self.delta(index, BlockDelta::Thinking { thinking: &t })?);
            }
            for text in [delta.content, delta.refusal].into_iter().flatten() {
                if !text.is_empty() {
                    let index = self.ensure_block(OpenBlock::Text, &mut out)?;
                    out.push(self.delta(index, BlockDelta::Text { text: &text })?);
                }
            }
            for (position, call) in delta.tool_calls.into_iter().flatten().enumerate() {
                self.on_tool_call(position, call, &mut out)?;
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason);
            self.close_block(&mut out)?;
        }
        Ok(out)
    }

    /// End of the upstream stream: the closing events if `[DONE]` did not already produce
    /// them, and the usage (if upstream reported any). An error if the upstream sent nothing
    /// at all, failed, or was cut off: neither a `finish_reason` nor `[DONE]` arrived, so the
    /// answer is incomplete and must not be closed as if it were (the caller reports the
    /// break to the client and bills what was streamed).
    pub fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        if let Some(message) = &self.error {
            return Err(GatewayError::upstream(format!(
                "upstream stream failed: {message}"
            )));
        }
        if !self.started {
            return Err(GatewayError::upstream(
                "upstream stream ended before sending any chunk",
            ));
        }
        if !self.closed && self.finish_reason.is_none() {
            return Err(GatewayError::upstream(
                "upstream stream ended before the response was complete (no finish_reason or [DONE])",
            ));
        }
        let mut out = Vec::new();
        if !self.closed {
            self.close_message(&mut out)?;
        }
        Ok((out, self.usage))
    }

    fn on_tool_call(
        &mut self,
        position: usize,
        call: ToolCallDeltaIn,
        out: &mut Vec<SseEvent>,
    ) -> Result<(), GatewayError> {
        let openai_index = call.index.unwrap_or(position as u64);
        let id = call.id.filter(|id| !id.is_empty());
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        let existing = self
            .tools
            .iter()
            .rposition(|s| s.openai_index == openai_index)
            .filter(|&k| id.as_ref().is_none_or(|id| *id == self.tools[k].id));
        let block = match existing {
            Some(k) => self.tools[k].block,
            None => {
                // A new tool call (some servers reuse index 0 with a new id for each call).
                self.close_block(out)?;
                let block = self.next_block;
                self.next_block += 1;
                let id = id.unwrap_or_else(|| gen_id("toolu_"));
                out.push(anthropic_event(
                    "content_block_start",
                    &BlockStartOut {
                        kind: "content_block_start",
                        index: block,
                        content_block: StartBlockOut::ToolUse {
                            id: &id,
                            name: name.as_deref().unwrap_or(""),
                            input: EmptyObject {},
                        },
                    },
                )?);
                self.tools.push(ToolSlot {
                    openai_index,
                    id,
                    block,
                });
                self.open = Some((OpenBlock::Tool, block));
                block
            }
        };
        if let Some(args) = arguments.filter(|a| !a.is_empty()) {
            out.push(self.delta(
                block,
                BlockDelta::InputJson {
                    partial_json: &args,
                },
            )?);
        }
        Ok(())
    }

    /// The index of an open block of `kind`, opening one (and closing any other) if needed.
    fn ensure_block(
        &mut self,
        kind: OpenBlock,
        out: &mut Vec<SseEvent>,
    ) -> Result<usize, GatewayError> {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return Ok(index);
        }
        self.close_block(out)?;
        let index = self.next_block;
        self.next_block += 1;
        let content_block = match kind {
            OpenBlock::Thinking => StartBlockOut::Thinking {
                thinking: "",
                signature: "",
            },
            OpenBlock::Text | OpenBlock::Tool => StartBlockOut::Text { text: "" },
        };
        out.push(anthropic_event(
            "content_block_start",
            &BlockStartOut {
                kind: "content_block_start",
                index,
                content_block,
            },
        )?);
        self.open = Some((kind, index));
        Ok(index)
    }

    fn delta(&self, index: usize, delta: BlockDelta<'_>) -> Result<SseEvent, GatewayError> {
        anthropic_event(
            "content_block_delta",
            &BlockDeltaOut {
                kind: "content_block_delta",
                index,
                delta,
            },
        )
    }

    fn close_block(&mut self, out: &mut Vec<SseEvent>) -> Result<(), GatewayError> {
        if let Some((_, index)) = self.open.take() {
            out.push(anthropic_event(
                "content_block_stop",
                &BlockStopOut {
                    kind: "content_block_stop",
                    index,
                },
            )?);
        }
        Ok(())
    }

    fn close_message(&mut self, out: &mut Vec<SseEvent>) -> Result<(), GatewayError> {
        self.close_block(out)?;
        let usage = self.usage.unwrap_or_default();
        out.push(anthropic_event(
            "message_delta",
            &MessageDeltaOut {
                kind: "message_delta",
                delta: MessageDeltaBody {
                    stop_reason: stop_reason_for(
                        self.finish_reason.as_deref(),
                        !self.tools.is_empty(),
                    ),
                    stop_sequence: None,
                },
                usage: AnthropicUsageOut::from(&usage),
            },
        )?);
        out.push(anthropic_event(
            "message_stop",
            &MessageStopOut {
                kind: "message_stop",
            },
        )?);
        self.closed = true;
        Ok(())
    }
}

/// The Anthropic error type for an OpenAI mid-stream error.
fn stream_error_type(kind: Option<&str>, code: Option<&str>) -> &'static str {
    let has = |s: &str| kind.is_some_and(|k| k.contains(s)) || code.is_some_and(|c| c.contains(s));
    if has("rate_limit") || has("insufficient_quota") {
        "rate_limit_error"
    } else if has("overloaded") {
        "overloaded_error"
    } else if has("invalid_request") || has("context_length") {
        "invalid_request_error"
    } else {
        "api_error"
    }
}

// =======================================================================================
// Anthropic events -> OpenAI chunks.

#[derive(Deserialize)]
struct EventIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<StartMessageIn>,
    index: Option<usize>,
    content_block: Option<StartBlockIn>,
    delta: Option<EventDeltaIn>,
    usage: Option<AnthropicUsageIn>,
    error: Option<AnthropicErrorDetailIn>,
}

#[derive(Deserialize)]
struct StartMessageIn {
    id: Option<String>,
    usage: Option<AnthropicUsageIn>,
}

#[derive(Deserialize)]
struct StartBlockIn {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    name: Option<String>,
    input: Option<Box<RawValue>>,
    text: Option<String>,
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct EventDeltaIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    partial_json: Option<String>,
    stop_reason: Option<String>,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoiceOut<'a>>,
    /// Absent without `include_usage`; `null` on every chunk but the usage chunk with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<ChatUsageOut>>,
}

#[derive(Serialize)]
struct ChunkChoiceOut<'a> {
    index: u32,
    delta: ChunkDeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct ChunkDeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDeltaOut<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDeltaOut<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDeltaOut<'a>,
}

#[derive(Serialize)]
struct FunctionDeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct OpenAiErrorOut<'a> {
    error: OpenAiErrorDetailOut<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorDetailOut<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<()>,
}

enum BlockKind {
    Text,
    Thinking,
    Tool { call: usize, has_arguments: bool },
    Other,
}

/// Turns an Anthropic Messages stream into an OpenAI chat completions stream.
///
/// Feed each upstream SSE event to [`on_event`](Self::on_event) and emit the returned
/// `data:` payloads (they carry no event name); call [`finish`](Self::finish) when the
/// upstream stream ends. The chunks are: one with `role: "assistant"` at `message_start`;
/// `content`, `reasoning_content` and `tool_calls` deltas; one with the `finish_reason` at
/// `message_delta`; at `message_stop` the usage chunk (with `include_usage`) and `[DONE]`.
pub struct MessagesStreamToChat {
    model: String,
    include_usage: bool,
    created: u64,
    id: Option<String>,
    blocks: Vec<(usize, BlockKind)>,
    tool_calls: usize,
    usage: Usage,
    finish_sent: bool,
    stopped: bool,
    error: Option<String>,
}

impl MessagesStreamToChat {
    /// A converter whose chunks report `requested_model`; `include_usage` adds OpenAI's
    /// usage chunk (the client's `stream_options.include_usage`).
    pub fn new(requested_model: &str, include_usage: bool) -> Self {
        Self {
            model: requested_model.to_owned(),
            include_usage,
            created: now_secs(),
            id: None,
            blocks: Vec::new(),
            tool_calls: 0,
            usage: Usage::default(),
            finish_sent: false,
            stopped: false,
            error: None,
        }
    }

    /// Convert one upstream event (its `event:` name, if any, and `data:` payload) into the
    /// OpenAI `data:` payloads to emit. `ping` and unknown events produce nothing; an
    /// `error` event becomes an OpenAI error payload and ends the stream.
    pub fn on_event(
        &mut self,
        event_name: Option<&str>,
        data: &str,
    ) -> Result<Vec<SseEvent>, GatewayError> {
        let mut out = Vec::new();
        if self.stopped || self.error.is_some() {
            return Ok(out);
        }
        if data.trim().is_empty() {
            return match event_name {
                None | Some("ping") => Ok(out),
                Some(name) => Err(GatewayError::upstream(format!(
                    "Anthropic event {name:?} without data"
                ))),
            };
        }
        let ev: EventIn = serde_json::from_str(data).map_err(|e| {
            GatewayError::upstream(format!(
                "invalid Anthropic event {:?}: {e}",
                event_name.unwrap_or("")
            ))
        })?;
        let kind = ev
            .kind
            .as_deref()
            .or(event_name)
            .ok_or_else(|| GatewayError::upstream("Anthropic event without a type"))?;
        match kind {
            "message_start" => {
                let message = ev.message.ok_or_else(missing(kind, "message"))?;
                if let Some(u) = &message.usage {
                    self.usage = u.to_usage();
                }
                if self.id.is_none() {
                    self.id = Some(chat_id(message.id.as_deref()));
                    out.push(self.chunk(
                        ChunkDeltaOut {
                            role: Some("assistant"),
                            content: Some(""),
                            ..ChunkDeltaOut::default()
                        },
                        None,
                    )?);
                }
            }
            "content_block_start" => {
                let index = ev.index.ok_or_else(missing(kind, "index"))?;
                let block = ev
                    .content_block
                    .ok_or_else(missing(kind, "content_block"))?;
                self.on_block_start(index, block, &mut out)?;
            }
            "content_block_delta" => {
                let index = ev.index.ok_or_else(missing(kind, "index"))?;
                let delta = ev.delta.ok_or_else(missing(kind, "delta"))?;
                self.on_block_delta(index, delta, &mut out)?;
            }
            "content_block_stop" => {
                let index = ev.index.ok_or_else(missing(kind, "index"))?;
                let pending =
                    self.blocks
                        .iter_mut()
                        .find(|(i, _)| *i == index)
                        .and_then(|(_, kind)| match kind {
                            BlockKind::Tool {
                                call,
                                has_arguments,
                            } if !*has_arguments => {
                                *has_arguments = true;
                                Some(*call)
                            }
                            _ => None,
                        });
                // A call without arguments still needs valid JSON arguments for clients.
                if let Some(call) = pending {
                    out.push(self.tool_chunk(call, None, None, "{}")?);
                }
            }
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.merge_usage(u);
                }
                if let Some(reason) = ev.delta.and_then(|d| d.stop_reason)
                    && !self.finish_sent
                {
                    self.finish_sent = true;
                    out.push(self.chunk(
                        ChunkDeltaOut::default(),
                        Some(finish_reason_for(Some(&reason))),
                    )?);
                }
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    out.push(self.chunk(ChunkDeltaOut::default(), Some("stop"))?);
                }
                if self.include_usage {
                    let chunk = ChunkOut {
                        id: self.id()?,
                        object: "chat.completion.chunk",
                        created: self.created,
                        model: &self.model,
                        choices: Vec::new(),
                        usage: Some(Some(ChatUsageOut::from(&self.usage))),
                    };
                    out.push(SseEvent {
                        event: None,
                        data: to_json(&chunk)?,
                    });
                }
                out.push(SseEvent {
                    event: None,
                    data: "[DONE]".to_owned(),
                });
                self.stopped = true;
            }
            "error" => {
                let (kind, message) = match ev.error {
                    Some(e) => (e.kind, e.message),
                    None => (None, None),
                };
                let kind = kind.unwrap_or_else(|| "api_error".to_owned());
                let message = message.unwrap_or_else(|| "upstream stream failed".to_owned());
                out.push(SseEvent {
                    event: None,
                    data: to_json(&OpenAiErrorOut {
                        error: OpenAiErrorDetailOut {
                            message: &message,
                            kind: &kind,
                            param: None,
                            code: None,
                        },
                    })?,
                });
                self.error = Some(format!("{kind}: {message}"));
            }
            // `ping` and events added to the protocol later.
            _ => {}
        }
        Ok(out)
    }

    /// End of the upstream stream: no further events, and the usage. An error if the
    /// stream failed or was cut short (no `message_stop`).
    pub fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        if let Some(message) = &self.error {
            return Err(GatewayError::upstream(format!(
                "upstream stream failed: {message}"
            )));
        }
        if !self.stopped {
            return Err(GatewayError::upstream(
                "upstream stream ended before message_stop",
            ));
        }
        Ok((Vec::new(), Some(self.usage)))
    }

    fn merge_usage(&mut self, u: &AnthropicUsageIn) {
        // `message_delta` usage is cumulative; earlier servers only send `output_tokens`.
        if let Some(n) = u.output_tokens {
            self.usage.output = n;
        }
        self.usage.input = self.usage.input.max(u.input_tokens.unwrap_or(0));
        self.usage.cache_read = self
            .usage
            .cache_read
            .max(u.cache_read_input_tokens.unwrap_or(0));
        self.usage.cache_write = self
            .usage
            .cache_write
            .max(u.cache_creation_input_tokens.unwrap_or(0));
    }

    fn on_block_start(
        &mut self,
        index: usize,
        block: StartBlockIn,
        out: &mut Vec<SseEvent>,
    ) -> Result<(), GatewayError> {
        let kind = match block.kind.as_str() {
            "text" => {
                if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    out.push(self.chunk(
                        ChunkDeltaOut {
                            content: Some(text),
                            ..ChunkDeltaOut::default()
                        },
                        None,
                    )?);
                }
                BlockKind::Text
            }
            "thinking" => {
                if let Some(t) = block.thinking.as_deref().filter(|t| !t.is_empty()) {
                    out.push(self.chunk(
                        ChunkDeltaOut {
                            reasoning_content: Some(t),
                            ..ChunkDeltaOut::default()
                        },
                        None,
                    )?);
                }
                BlockKind::Thinking
            }
            "tool_use" => {
                let call = self.tool_calls;
                self.tool_calls += 1;
                let id = block.id.unwrap_or_else(|| gen_id("call_"));
                let name = block.name.unwrap_or_default();
                // The input normally arrives as deltas; a non-empty start input is kept.
                let initial = block
                    .input
                    .as_ref()
                    .map(|i| i.get())
                    .filter(|i| i.trim_start_matches('{').trim_start() != "}")
                    .unwrap_or("");
                out.push(self.tool_chunk(call, Some(&id), Some(&name), initial)?);
                BlockKind::Tool {
                    call,
                    has_arguments: !initial.is_empty(),
                }
            }
            _ => BlockKind::Other,
        };
        match self.blocks.iter_mut().find(|(i, _)| *i == index) {
            Some(slot) => slot.1 = kind,
            None => self.blocks.push((index, kind)),
        }
        Ok(())
    }

    fn on_block_delta(
        &mut self,
        index: usize,
        delta: EventDeltaIn,
        out: &mut Vec<SseEvent>,
    ) -> Result<(), GatewayError> {
        let tool = match self.blocks.iter().find(|(i, _)| *i == index) {
            Some((_, BlockKind::Tool { call, .. })) => Some(*call),
            Some((_, BlockKind::Other)) => return Ok(()),
            _ => None,
        };
        match delta.kind.as_deref() {
            Some("text_delta") => {
                if let Some(text) = delta.text.as_deref().filter(|t| !t.is_empty()) {
                    out.push(self.chunk(
                        ChunkDeltaOut {
                            content: Some(text),
                            ..ChunkDeltaOut::default()
                        },
                        None,
                    )?);
                }
            }
            Some("thinking_delta") => {
                if let Some(t) = delta.thinking.as_deref().filter(|t| !t.is_empty()) {
                    out.push(self.chunk(
                        ChunkDeltaOut {
                            reasoning_content: Some(t),
                            ..ChunkDeltaOut::default()
                        },
                        None,
                    )?);
                }
            }
            Some("input_json_delta") => {
                let partial = delta.partial_json.as_deref().unwrap_or("");
                if let (Some(call), false) = (tool, partial.is_empty()) {
                    for (i, kind) in &mut self.blocks {
                        if let (true, BlockKind::Tool { has_arguments, .. }) = (*i == index, kind) {
                            *has_arguments = true;
                        }
                    }
                    out.push(self.tool_chunk(call, None, None, partial)?);
                }
            }
            // signature_delta, citations_delta and later additions carry nothing for OpenAI.
            _ => {}
        }
        Ok(())
    }

    fn id(&self) -> Result<&str, GatewayError> {
        self.id.as_deref().ok_or_else(|| {
            GatewayError::upstream("Anthropic stream did not start with message_start")
        })
    }

    fn chunk(
        &self,
        delta: ChunkDeltaOut<'_>,
        finish_reason: Option<&'static str>,
    ) -> Result<SseEvent, GatewayError> {
        let chunk = ChunkOut {
            id: self.id()?,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: vec![ChunkChoiceOut {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: self.include_usage.then_some(None),
        };
        Ok(SseEvent {
            event: None,
            data: to_json(&chunk)?,
        })
    }

    fn tool_chunk(
        &self,
        call: usize,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> Result<SseEvent, GatewayError> {
        self.chunk(
            ChunkDeltaOut {
                tool_calls: Some([ToolCallDeltaOut {
                    index: call,
                    id,
                    kind: id.map(|_| "function"),
                    function: FunctionDeltaOut { name, arguments },
                }]),
                ..ChunkDeltaOut::default()
            },
            None,
        )
    }
}

/// The error for an Anthropic stream event without a member it needs, for `ok_or_else`.
fn missing<'a>(event: &'a str, member: &'a str) -> impl FnOnce() -> GatewayError + 'a {
    move || GatewayError::upstream(format!("{event} without \"{member}\""))
}
