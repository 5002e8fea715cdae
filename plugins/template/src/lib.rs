//! A complete provider plugin, to copy: `/v1/chat/completions`, plain and streamed, for an
//! OpenAI-compatible upstream (`model: template/<model>`, key from `TEMPLATE_API_KEY`). The
//! SDK parses the request ([`Request`]), plans the upstream one ([`Plan`]), reads errors
//! ([`GatewayError::from_status`], the default [`Exchange::on_error`]) and exports the
//! component ([`export_provider!`]).

use llmgate_sdk::json;
use llmgate_sdk::openai::usage_and_model;
use llmgate_sdk::prelude::*;

/// The plugin: what it serves.
pub struct Template;

const BASE: &str = "http://localhost:8000/v1";

impl Provider for Template {
    const DESCRIPTION: Description = Description {
        name: "template",
        version: env!("CARGO_PKG_VERSION"),
        prefixes: &[Prefix::new("template", Some(BASE), &["TEMPLATE_API_KEY"])],
        // The host sends this plugin only the APIs listed here.
        apis: &[Api::ChatCompletions],
        native_apis: &[Api::ChatCompletions],
    };
    type Exchange = Chat;
}

/// One attempt: the request, and what the stream has told us so far.
pub struct Chat {
    req: Request,
    usage: Option<Usage>,
    done: bool,
}

impl Exchange for Chat {
    fn new(req: Request) -> Self {
        Self {
            req,
            usage: None,
            done: false,
        }
    }

    /// `POST {api_base}/chat/completions` with `model` rewritten (and the usage chunk asked
    /// for when streaming, so the gateway can cost the stream); the key as a bearer token.
    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError> {
        let usage = ("stream_options", br#"{"include_usage":true}"#.to_vec());
        let edits: Vec<_> = self.req.stream.then_some(usage).into_iter().collect();
        let body = self.req.patched_body(&edits)?;
        let url = format!(
            "{}/chat/completions",
            self.req.base()?.trim_end_matches('/')
        );
        Ok(Plan::post(&self.req, url, Auth::Bearer, body).build())
    }

    /// A whole 2xx answer: the completion as is, with its usage. (Error answers go to
    /// `on_error`, whose default reads OpenAI- and Anthropic-shaped errors.)
    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError> {
        if json::validate(&answer.body).is_err() {
            return Err(GatewayError::upstream("the answer is not JSON"));
        }
        let (usage, model) = usage_and_model(&answer.body);
        Ok(json_response(answer.status, answer.body, usage, model))
    }

    /// Stream chunks pass through; the usage chunk is read on the way.
    fn on_event(&mut self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        if event.data.trim() == "[DONE]" {
            self.done = true;
        } else if let (Some(usage), _) = usage_and_model(event.data.as_bytes()) {
            self.usage = Some(usage);
        }
        Ok(vec![event])
    }

    /// The stream ended: complete only after `[DONE]`.
    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        if !self.done {
            return Err(GatewayError::upstream("stream ended before [DONE]"));
        }
        Ok((Vec::new(), self.usage))
    }
}

export_provider!(Template);

#[cfg(test)]
mod tests;
