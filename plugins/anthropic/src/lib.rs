//! llmgate provider plugin for Anthropic.
//!
//! - `/v1/messages` and `/v1/messages/count_tokens` pass through untouched but for `model`:
//!   `cache_control`, `thinking`, tool use, images, and the `anthropic-version` and
//!   `anthropic-beta` headers survive, and the cache usage fields are read for costing.
//! - `/v1/chat/completions` is translated to Messages and back (streams included) with the
//!   SDK's shared conversion.

use llmgate_sdk::anthropic::{self as conv, MessagesStreamToChat, MessagesStreamUsage};
use llmgate_sdk::errors::unreadable;
use llmgate_sdk::prelude::*;

/// The plugin.
pub struct Anthropic;

const DEFAULT_VERSION: &str = "2023-06-01";

impl Provider for Anthropic {
    const DESCRIPTION: Description = Description {
        name: "anthropic",
        version: env!("CARGO_PKG_VERSION"),
        prefixes: &[Prefix::new(
            "anthropic",
            Some("https://api.anthropic.com"),
            &["ANTHROPIC_API_KEY"],
        )],
        apis: &[Api::Messages, Api::CountTokens, Api::ChatCompletions],
        native_apis: &[Api::Messages, Api::CountTokens],
    };
    type Exchange = Messages;
}

/// One attempt.
pub struct Messages {
    req: Request,
    /// Native stream bookkeeping.
    native: MessagesStreamUsage,
    /// Translating stream (chat completions inbound).
    to_chat: Option<MessagesStreamToChat>,
}

/// `{api_base}/v1/<path>`, whether or not `api_base` already ends in `/v1`.
fn url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

impl Exchange for Messages {
    fn new(req: Request) -> Self {
        Self {
            req,
            native: MessagesStreamUsage::default(),
            to_chat: None,
        }
    }

    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let (path, body) = match req.api {
            Api::Messages => ("messages", req.patched_body(&[])?),
            Api::CountTokens => ("messages/count_tokens", req.patched_body(&[])?),
            Api::ChatCompletions => {
                let body = conv::chat_to_messages_request(&req.body, &req.deployment.model)?;
                if req.stream {
                    self.to_chat = Some(MessagesStreamToChat::new(&req.model, req.wants_usage));
                }
                ("messages", body)
            }
            _ => {
                return Err(GatewayError::bad_request(
                    "the anthropic plugin serves messages and chat completions",
                ));
            }
        };
        let version = req.header("anthropic-version").unwrap_or(DEFAULT_VERSION);
        let auth = Auth::Header("x-api-key".into());
        let mut plan = Plan::post(req, url(req.base()?, path), auth, body);
        plan = plan.header("anthropic-version", version);
        if let Some(beta) = req.header("anthropic-beta") {
            plan = plan.header("anthropic-beta", beta);
        }
        Ok(plan.build())
    }

    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError> {
        let Answer { status, body, .. } = answer;
        if self.req.api == Api::ChatCompletions {
            let (body, usage) = conv::messages_response_to_chat(&body, &self.req.model)
                .map_err(unreadable("unreadable Anthropic response"))?;
            return Ok(json_response(status, body, Some(usage), None));
        }
        let (usage, model) = conv::response_usage(&body).ok_or_else(|| {
            GatewayError::upstream("Anthropic answered with a body that is not JSON")
        })?;
        Ok(json_response(status, body, usage, model))
    }

    fn on_event(&mut self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        if let Some(conv) = self.to_chat.as_mut() {
            return conv
                .on_event(event.event.as_deref(), &event.data)
                .map_err(unreadable("unreadable Anthropic stream"));
        }
        // Native: pass through, reading usage as it goes.
        self.native.on_event(&event.data).map_err(|_| {
            GatewayError::upstream(format!(
                "Anthropic sent a stream event that is not JSON (deployment {})",
                self.req.deployment.id
            ))
        })?;
        Ok(vec![event])
    }

    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        if let Some(conv) = self.to_chat.as_mut() {
            return conv
                .finish()
                .map_err(unreadable("Anthropic stream ended early"));
        }
        let usage = self.native.finish();
        let usage = usage
            .ok_or_else(|| GatewayError::upstream("upstream stream ended before message_stop"))?;
        Ok((Vec::new(), Some(usage)))
    }
}

export_provider!(Anthropic);

#[cfg(test)]
mod tests;
