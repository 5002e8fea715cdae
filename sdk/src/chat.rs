//! The OpenAI chat completions request, typed: what the converters to other APIs
//! (Anthropic Messages, Gemini `generateContent`, Bedrock Converse) read, parsed once.
//!
//! The model is shaped for conversion, not for validation: every field a converter reads
//! is typed, fields are optional where some client leaves them out (each converter says
//! which ones it needs, in its own words), and members no field names are kept in
//! [`ChatRequest::extra`]. Numbers that are forwarded as they came (`temperature`: `1`
//! stays `1`, not `1.0`) are [`Number`]s; tool schemas and call arguments are raw JSON, so
//! their key order survives.
//!
//! [`ChatRequest::from_slice`] and [`ChatRequest::from_value`] name the offending field
//! when a body does not fit (`messages[2].content: invalid type: ...`), and
//! [`DataUrl::parse`] reads the `data:` URLs that carry inline images and files.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::GatewayError;

/// An OpenAI `/v1/chat/completions` request body.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// The answer's token limit (wins over `max_tokens`).
    pub max_completion_tokens: Option<u64>,
    /// The answer's token limit (legacy name).
    pub max_tokens: Option<u64>,
    /// Sampling temperature.
    pub temperature: Option<Number>,
    /// Nucleus sampling.
    pub top_p: Option<Number>,
    /// Top-k sampling (not OpenAI's; Gemini and Claude take it).
    pub top_k: Option<Number>,
    /// Presence penalty.
    pub presence_penalty: Option<Number>,
    /// Frequency penalty.
    pub frequency_penalty: Option<Number>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Number of choices.
    pub n: Option<u64>,
    /// Stop sequences.
    pub stop: Option<Stop>,
    /// Whether the answer is streamed.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// The end user's id.
    pub user: Option<String>,
    /// Tools the model may call.
    pub tools: Option<Vec<Tool>>,
    /// Which tool the model must call, if any.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools at once.
    pub parallel_tool_calls: Option<bool>,
    /// Text, JSON or JSON-schema answers.
    pub response_format: Option<ResponseFormat>,
    /// `none`, `minimal`, `low`, `medium` or `high`.
    pub reasoning_effort: Option<String>,
    /// An Anthropic-style `thinking` setting (`{"type":"enabled","budget_tokens":N}`), as
    /// LiteLLM clients send it.
    pub thinking: Option<Value>,
    /// Every other member, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn invalid(e: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = e.path().to_string();
    GatewayError::bad_request(if path == "." {
        format!("invalid chat completions request: {}", e.inner())
    } else {
        format!("invalid chat completions request: {path}: {}", e.inner())
    })
}

fn not_an_object() -> GatewayError {
    GatewayError::bad_request("the request body must be a JSON object")
}

impl ChatRequest {
    /// Parse a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, GatewayError> {
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(not_an_object());
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let req = serde_path_to_error::deserialize(&mut de).map_err(invalid)?;
        de.end().map_err(|e| {
            GatewayError::bad_request(format!("invalid chat completions request: {e}"))
        })?;
        Ok(req)
    }

    /// Read a request already parsed as JSON.
    pub fn from_value(body: &Value) -> Result<Self, GatewayError> {
        if !body.is_object() {
            return Err(not_an_object());
        }
        serde_path_to_error::deserialize(body).map_err(invalid)
    }

    /// Fill the fields named in `keys` that the client left out (or sent as `null`) from
    /// `params`, a deployment's `litellm_params`. Keys that name no field are skipped.
    pub fn fill_defaults(
        &mut self,
        params: &Map<String, Value>,
        keys: &[&str],
    ) -> Result<(), GatewayError> {
        for key in keys {
            let Some(v) = params.get(*key).filter(|v| !v.is_null()) else {
                continue;
            };
            match *key {
                "max_completion_tokens" => fill(&mut self.max_completion_tokens, key, v)?,
                "max_tokens" => fill(&mut self.max_tokens, key, v)?,
                "temperature" => fill(&mut self.temperature, key, v)?,
                "top_p" => fill(&mut self.top_p, key, v)?,
                "top_k" => fill(&mut self.top_k, key, v)?,
                "presence_penalty" => fill(&mut self.presence_penalty, key, v)?,
                "frequency_penalty" => fill(&mut self.frequency_penalty, key, v)?,
                "seed" => fill(&mut self.seed, key, v)?,
                "n" => fill(&mut self.n, key, v)?,
                "stop" => fill(&mut self.stop, key, v)?,
                "response_format" => fill(&mut self.response_format, key, v)?,
                "reasoning_effort" => fill(&mut self.reasoning_effort, key, v)?,
                "thinking" => fill(&mut self.thinking, key, v)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether the client asked for `stream_options.include_usage`.
    pub fn wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// Set `slot` from the parameter `key` unless the client set it.
fn fill<T: DeserializeOwned>(
    slot: &mut Option<T>,
    key: &str,
    value: &Value,
) -> Result<(), GatewayError> {
    if slot.is_none() {
        let v = T::deserialize(value)
            .map_err(|e| GatewayError::bad_request(format!("litellm_params.{key}: {e}")))?;
        *slot = Some(v);
    }
    Ok(())
}

/// One message of the conversation. Which fields mean something depends on the role.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// Who speaks (missing only in a malformed request; see [`Message::role`]).
    #[serde(rename = "role")]
    pub role_field: Option<Role>,
    /// Text or parts; `None` when absent or `null`.
    pub content: Option<Content>,
    /// The function's name (`function` messages), or a participant's name.
    pub name: Option<String>,
    /// An assistant's tool calls.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
    /// An assistant's legacy function call.
    pub function_call: Option<FunctionCall>,
    /// An assistant's thinking blocks, as LiteLLM carries them (with signatures).
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
}

impl Message {
    /// The role, or an error naming `at` (`messages[i]`) when there is none.
    pub fn role(&self, at: &str) -> Result<&Role, GatewayError> {
        self.role_field
            .as_ref()
            .ok_or_else(|| GatewayError::bad_request(format!("{at}.role is missing")))
    }
}

/// A message's role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum Role {
    /// `system`.
    System,
    /// `developer` (a system message for reasoning models).
    Developer,
    /// `user`.
    User,
    /// `assistant`.
    Assistant,
    /// `tool`: a tool call's result.
    Tool,
    /// `function`: a legacy function call's result.
    Function,
    /// Any other role, as sent.
    Other(String),
}

impl From<String> for Role {
    fn from(s: String) -> Self {
        match s.as_str() {
            "system" => Self::System,
            "developer" => Self::Developer,
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "tool" => Self::Tool,
            "function" => Self::Function,
            _ => Self::Other(s),
        }
    }
}

impl Role {
    /// The role as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::System => "system",
            Self::Developer => "developer",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::Function => "function",
            Self::Other(s) => s,
        }
    }
}

/// A message's `content`.
#[derive(Debug)]
pub enum Content {
    /// A string.
    Text(String),
    /// An array of parts.
    Parts(Vec<Part>),
    /// Anything else (a number, an object): most converters refuse it.
    Other(Value),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of parts")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content::Text(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(p) = seq.next_element()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Content::Other)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Content, E> {
                Ok(Content::Other(Value::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Content, E> {
                Ok(Content::Other(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Content, E> {
                Ok(Content::Other(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Content, E> {
                Ok(Content::Other(n.into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One content part. `kind` says which of the other fields carries it.
#[derive(Debug, Deserialize)]
pub struct Part {
    /// `text`, `image_url`, `input_audio`, `file`, `refusal`, ...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A `text` part's text.
    pub text: Option<String>,
    /// A `refusal` part's text.
    pub refusal: Option<String>,
    /// An `image_url` part's image.
    pub image_url: Option<ImageUrl>,
    /// An `input_audio` part's audio.
    pub input_audio: Option<InputAudio>,
    /// A `file` part's file.
    pub file: Option<File>,
    /// An Anthropic-style cache breakpoint after this part.
    pub cache_control: Option<Value>,
}

impl Part {
    /// Whether the part carries a (non-null) `cache_control`.
    pub fn has_cache_control(&self) -> bool {
        self.cache_control.as_ref().is_some_and(|c| !c.is_null())
    }
}

/// An `image_url` part's image: `{"url": ..., "detail": ...}`, or the URL alone as some
/// clients send it.
#[derive(Debug, Default)]
pub struct ImageUrl {
    /// An http(s) URL or a base64 `data:` URL (see [`DataUrl::parse`]).
    pub url: Option<String>,
    /// `low`, `high` or `auto`.
    pub detail: Option<String>,
}

impl<'de> Deserialize<'de> for ImageUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Object {
            url: Option<String>,
            detail: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImageUrl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with a url, or a URL")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ImageUrl, E> {
                Ok(ImageUrl {
                    url: Some(s.to_owned()),
                    detail: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ImageUrl, A::Error> {
                let o = Object::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ImageUrl {
                    url: o.url,
                    detail: o.detail,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An `input_audio` part's audio.
#[derive(Debug, Deserialize)]
pub struct InputAudio {
    /// Base64 audio.
    pub data: Option<String>,
    /// `wav`, `mp3`, ...
    pub format: Option<String>,
}

/// A `file` part's file.
#[derive(Debug, Deserialize)]
pub struct File {
    /// The file inline: a base64 `data:` URL, or bare base64.
    pub file_data: Option<String>,
    /// An uploaded file's id.
    pub file_id: Option<String>,
    /// The file's name.
    pub filename: Option<String>,
}

/// An assistant's tool call.
#[derive(Debug, Deserialize)]
pub struct ToolCall {
    /// The call's id, which the `tool` message answering it names.
    pub id: Option<String>,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The function called.
    pub function: Option<FunctionCall>,
}

/// A function call: a name and its arguments.
#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: Option<String>,
    /// A JSON string (as OpenAI sends it), or the arguments object some servers send.
    pub arguments: Option<Box<RawValue>>,
}

impl FunctionCall {
    /// The arguments as JSON: `{}` when absent, `null` or blank; a string is parsed.
    pub fn arguments_json(&self) -> Result<Value, serde_json::Error> {
        let Some(raw) = &self.arguments else {
            return Ok(Value::Object(Map::new()));
        };
        match serde_json::from_str::<Value>(raw.get())? {
            Value::Null => Ok(Value::Object(Map::new())),
            Value::String(s) if s.trim().is_empty() => Ok(Value::Object(Map::new())),
            Value::String(s) => serde_json::from_str(&s),
            other => Ok(other),
        }
    }
}

/// A thinking block of an assistant message, as LiteLLM carries it.
#[derive(Debug, Deserialize)]
pub struct ThinkingBlock {
    /// `thinking` or `redacted_thinking`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A `thinking` block's text.
    pub thinking: Option<String>,
    /// A `thinking` block's signature.
    pub signature: Option<String>,
    /// A `redacted_thinking` block's data.
    pub data: Option<String>,
}

/// A tool the model may call.
#[derive(Debug, Deserialize)]
pub struct Tool {
    /// `function` (the only kind the converters serve).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The function.
    pub function: Option<FunctionDef>,
    /// An Anthropic-style cache breakpoint after this tool.
    pub cache_control: Option<Value>,
}

/// A function the model may call.
#[derive(Debug, Deserialize)]
pub struct FunctionDef {
    /// The function's name.
    pub name: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// Its arguments' JSON schema, verbatim.
    pub parameters: Option<Box<RawValue>>,
}

/// `tool_choice`: a mode (`auto`, `none`, `required`) or a named function.
#[derive(Debug)]
pub enum ToolChoice {
    /// `"auto"`, `"none"`, `"required"` (or any other string, as sent).
    Mode(String),
    /// `{"type": "function", "function": {"name": ...}}`.
    Named(NamedToolChoice),
}

/// A `tool_choice` object.
#[derive(Debug, Deserialize)]
pub struct NamedToolChoice {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The function the model must call.
    pub function: Option<NamedFunction>,
    /// The tool's name at the top level (Anthropic's `{"type":"tool","name":...}`).
    pub name: Option<String>,
}

/// A function named by `tool_choice`.
#[derive(Debug, Deserialize)]
pub struct NamedFunction {
    /// The function's name.
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ToolChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ToolChoice, E> {
                Ok(ToolChoice::Mode(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ToolChoice, A::Error> {
                NamedToolChoice::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ToolChoice::Named)
            }
        }
        d.deserialize_any(V)
    }
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A string.
    One(String),
    /// An array of strings.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(list) => list.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stop;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Stop, E> {
                Ok(Stop::One(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                let mut list = Vec::new();
                while let Some(s) = seq.next_element()? {
                    list.push(s);
                }
                Ok(Stop::Many(list))
            }
        }
        d.deserialize_any(V)
    }
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// A final chunk with the usage.
    pub include_usage: Option<bool>,
}

/// `response_format`.
#[derive(Debug, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The schema of a `json_schema` format.
    pub json_schema: Option<JsonSchema>,
}

/// A `json_schema` response format.
#[derive(Debug, Deserialize)]
pub struct JsonSchema {
    /// The schema's name.
    pub name: Option<String>,
    /// The JSON schema.
    pub schema: Option<Value>,
    /// Whether the answer must follow it exactly.
    pub strict: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Data URLs.

/// A base64 `data:` URL (RFC 2397): `data:<media type>[;<parameter>]*;base64,<data>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUrl<'a> {
    /// The media type, lowercased, without parameters (`image/png`).
    pub media_type: String,
    /// The base64 data, as sent.
    pub data: &'a str,
}

/// Why a `data:` URL cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataUrlError {
    /// No `,` between the header and the data.
    NoComma,
    /// Not base64 (`;base64` is not the header's last parameter).
    NotBase64,
    /// No media type before the parameters.
    NoMediaType,
}

impl fmt::Display for DataUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoComma => "malformed data URL (no comma)",
            Self::NotBase64 => "data URLs must be base64-encoded",
            Self::NoMediaType => "data URL without a media type",
        })
    }
}

impl std::error::Error for DataUrlError {}

impl<'a> DataUrl<'a> {
    /// Read `url`: `None` when it is not a `data:` URL (the scheme in any case), else the
    /// media type and data, or why they cannot be used. A data URL without a media type is
    /// refused rather than guessed (RFC 2397's default, `text/plain`, is never what an image
    /// or a file part means).
    pub fn parse(url: &'a str) -> Option<Result<Self, DataUrlError>> {
        let scheme = url.get(..5)?;
        if !scheme.eq_ignore_ascii_case("data:") {
            return None;
        }
        Some(Self::parse_after_scheme(&url[5..]))
    }

    fn parse_after_scheme(rest: &'a str) -> Result<Self, DataUrlError> {
        let (header, data) = rest.split_once(',').ok_or(DataUrlError::NoComma)?;
        let (params, last) = header.rsplit_once(';').ok_or(DataUrlError::NotBase64)?;
        if !last.trim().eq_ignore_ascii_case("base64") {
            return Err(DataUrlError::NotBase64);
        }
        let media_type = params.split(';').next().unwrap_or(params).trim();
        if media_type.is_empty() {
            return Err(DataUrlError::NoMediaType);
        }
        Ok(Self {
            media_type: media_type.to_ascii_lowercase(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        fn ok(url: &str) -> Option<Result<(String, &str), DataUrlError>> {
            DataUrl::parse(url).map(|r| r.map(|d| (d.media_type, d.data)))
        }
        assert_eq!(
            ok("data:image/png;base64,iVBOR"),
            Some(Ok(("image/png".into(), "iVBOR")))
        );
        // Parameters before `;base64` are dropped; the media type is lowercased and the
        // scheme and the base64 marker are read in any case.
        assert_eq!(
            ok("DATA:Image/PNG;name=x.png;BASE64,iVBOR"),
            Some(Ok(("image/png".into(), "iVBOR")))
        );
        assert_eq!(ok("https://example.com/x.png"), None);
        assert_eq!(ok("dat"), None);
        assert_eq!(
            ok("data:image/png;base64"),
            Some(Err(DataUrlError::NoComma))
        );
        assert_eq!(ok("data:image/png,abc"), Some(Err(DataUrlError::NotBase64)));
        // RFC 2397: `;base64` is the last parameter.
        assert_eq!(
            ok("data:image/png;base64;x=y,abc"),
            Some(Err(DataUrlError::NotBase64))
        );
        // No media type: refused, not guessed.
        assert_eq!(ok("data:;base64,abc"), Some(Err(DataUrlError::NoMediaType)));
    }

    #[test]
    fn errors_name_the_field() {
        let e = ChatRequest::from_slice(
            br#"{"messages":[{"role":"user","content":5}],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("temperature"), "{e}");
        let e = ChatRequest::from_slice(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":1}]}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("messages[0].content[0].text"), "{e}");
        let e = ChatRequest::from_slice(b"[]").unwrap_err();
        assert!(e.message.contains("JSON object"), "{e}");
        let e = ChatRequest::from_slice(b"{}").unwrap_err();
        assert!(e.message.contains("messages"), "{e}");
        let e =
            ChatRequest::from_value(&serde_json::json!({"messages": [], "stop": 5})).unwrap_err();
        assert!(e.message.contains("stop"), "{e}");
    }

    #[test]
    fn reads_requests() {
        let v = serde_json::json!({
            "messages": [
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": "https://x/y.png"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
                ]},
                {"role": "wizard", "content": {"a": 1}},
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{\"b\":1,\"a\":2}"}}]},
            ],
            "temperature": 1,
            "stop": ["a"],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "guardrailConfig": {"x": 1},
        });
        for req in [
            ChatRequest::from_value(&v).unwrap(),
            ChatRequest::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap(),
        ] {
            assert_eq!(
                req.temperature.as_ref().map(ToString::to_string).as_deref(),
                Some("1")
            );
            assert_eq!(req.stop, Some(Stop::Many(vec!["a".into()])));
            assert!(
                matches!(&req.tool_choice, Some(ToolChoice::Named(n)) if n.function.as_ref().and_then(|f| f.name.as_deref()) == Some("f"))
            );
            assert_eq!(req.extra["guardrailConfig"], serde_json::json!({"x": 1}));
            let Some(Content::Parts(parts)) = &req.messages[0].content else {
                panic!("parts");
            };
            assert_eq!(
                parts[0].image_url.as_ref().and_then(|u| u.url.as_deref()),
                Some("https://x/y.png")
            );
            assert_eq!(
                parts[1]
                    .image_url
                    .as_ref()
                    .and_then(|u| u.detail.as_deref()),
                Some("low")
            );
            assert_eq!(
                req.messages[1].role("m").unwrap(),
                &Role::Other("wizard".into())
            );
            assert!(matches!(req.messages[1].content, Some(Content::Other(_))));
            let call = req.messages[2].tool_calls.as_ref().unwrap()[0]
                .function
                .as_ref()
                .unwrap();
            assert_eq!(
                call.arguments_json().unwrap(),
                serde_json::json!({"a": 2, "b": 1})
            );
        }
    }
}
