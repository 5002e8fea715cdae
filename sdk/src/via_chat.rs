//! [`ViaChat`]: serve Anthropic `/v1/messages` through any exchange that speaks chat
//! completions, with the SDK's Anthropic <-> chat conversion ([`crate::anthropic`]).
//!
//! A Messages request is translated to a chat completions request before the inner
//! exchange sees it; its answer (a chat completion, or chat chunks) is translated back.
//! Every other API goes to the inner exchange untouched (`count_tokens` included: the inner
//! exchange refuses what it does not serve).
//!
//! The translation steps are a [`Conversion`]: the SDK's ([`ChatStreamToMessages`]) by
//! default; a plugin whose upstream needs more of the Messages request than the chat form
//! carries (Bedrock: thinking settings and signatures) supplies its own steps, and the
//! chaining stays here.

use crate::anthropic::{self, ChatStreamToMessages};
use crate::errors::unreadable;
use crate::plugin::{Answer, ClientResponse, Exchange, Request, UpstreamRequest};
use crate::{Api, GatewayError, Headers, SseEvent, Usage};

/// The steps that carry Messages over chat completions: the request there, the answer back,
/// and (the value itself) the converter of a streamed answer's chat chunks.
pub trait Conversion: Sized + 'static {
    /// When a stream ends broken on both sides, whose account is reported: the converter's
    /// (`true`, the default) or the chat exchange's.
    const CONVERTER_ERROR_WINS: bool = true;

    /// The chat completions body for the Messages request `req`.
    fn request(req: &Request) -> Result<Vec<u8>, GatewayError>;

    /// The Messages answer, and its usage, for a chat completion.
    fn response(chat: &[u8], requested_model: &str) -> Result<(Vec<u8>, Usage), GatewayError>;

    /// A stream converter whose events report `requested_model`.
    fn stream(requested_model: &str) -> Self;

    /// One chat chunk payload (or `[DONE]`) in; Messages events out.
    fn on_chunk(&mut self, data: &str) -> Result<Vec<SseEvent>, GatewayError>;

    /// The chat stream ended: the closing events and the usage.
    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError>;
}

/// The SDK's conversion ([`crate::anthropic`]), the deployment's model in the chat request.
impl Conversion for ChatStreamToMessages {
    fn request(req: &Request) -> Result<Vec<u8>, GatewayError> {
        anthropic::messages_to_chat_request(&req.body, &req.deployment.model)
    }

    fn response(chat: &[u8], requested_model: &str) -> Result<(Vec<u8>, Usage), GatewayError> {
        anthropic::chat_response_to_messages(chat, requested_model)
    }

    fn stream(requested_model: &str) -> Self {
        Self::new(requested_model)
    }

    fn on_chunk(&mut self, data: &str) -> Result<Vec<SseEvent>, GatewayError> {
        ChatStreamToMessages::on_chunk(self, data)
    }

    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        ChatStreamToMessages::finish(self)
    }
}

/// An exchange serving Messages clients through the chat-speaking exchange `E`, with the
/// conversion `C`.
pub struct ViaChat<E, C = ChatStreamToMessages> {
    inner: Result<E, GatewayError>,
    /// The client's model and, when it streams, the chunk converter (Messages only).
    messages: Option<(String, Option<C>)>,
}

impl<E: Exchange, C: Conversion> ViaChat<E, C> {
    /// The inner exchange (an error when the Messages request could not be translated).
    pub fn inner(&mut self) -> Result<&mut E, GatewayError> {
        self.inner.as_mut().map_err(|e| e.clone())
    }

    /// Feed chat chunks to the converter.
    fn convert(conv: &mut C, chunks: Vec<SseEvent>) -> Result<Vec<SseEvent>, GatewayError> {
        let what = format!("unreadable {} stream", E::UPSTREAM);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(conv.on_chunk(&chunk.data).map_err(unreadable(&what))?);
        }
        Ok(out)
    }
}

impl<E: Exchange, C: Conversion> Exchange for ViaChat<E, C> {
    const UPSTREAM: &'static str = E::UPSTREAM;

    fn new(req: Request) -> Self {
        if req.api != Api::Messages {
            return Self {
                inner: Ok(E::new(req)),
                messages: None,
            };
        }
        let conv = req.stream.then(|| C::stream(&req.model));
        let messages = Some((req.model.clone(), conv));
        let inner = C::request(&req).map(|chat| E::new(req.with_body(Api::ChatCompletions, chat)));
        Self { inner, messages }
    }

    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError> {
        self.inner()?.build_request()
    }

    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError> {
        let resp = self.inner()?.on_answer(answer)?;
        let Some((model, _)) = &self.messages else {
            return Ok(resp);
        };
        let what = format!("unreadable {} response", E::UPSTREAM);
        let (body, usage) = C::response(&resp.body, model).map_err(unreadable(&what))?;
        Ok(ClientResponse {
            body,
            usage: resp.usage.or(Some(usage)),
            ..resp
        })
    }

    fn on_error(&self, answer: &Answer) -> GatewayError {
        match &self.inner {
            Ok(inner) => inner.on_error(answer),
            Err(e) => e.clone(),
        }
    }

    fn on_stream_start(&mut self, status: u16, headers: &Headers) -> Result<Headers, GatewayError> {
        self.inner()?.on_stream_start(status, headers)
    }

    fn on_event(&mut self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let chunks = self.inner()?.on_event(event)?;
        match &mut self.messages {
            Some((_, Some(conv))) => Self::convert(conv, chunks),
            _ => Ok(chunks),
        }
    }

    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let inner = self.inner()?.finish();
        let Some((_, Some(conv))) = &mut self.messages else {
            return inner;
        };
        let what = format!("{} stream ended early", E::UPSTREAM);
        let ended = unreadable(&what);
        // When both fail, the converter's account of the broken stream is reported, unless
        // the conversion prefers the exchange's.
        let (chunks, usage) = match inner {
            Ok(done) => done,
            Err(e) if !C::CONVERTER_ERROR_WINS => return Err(e),
            Err(e) => return Err(conv.finish().err().map_or(e, ended)),
        };
        let mut out = Self::convert(conv, chunks)?;
        let (events, conv_usage) = conv.finish().map_err(ended)?;
        out.extend(events);
        Ok((out, usage.or(conv_usage)))
    }
}
