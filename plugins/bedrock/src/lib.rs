//! llmgate provider plugin for AWS Bedrock, through the Bedrock Runtime Converse API.
//!
//! - `/v1/chat/completions` is translated to `POST /model/{modelId}/converse` (or
//!   `/converse-stream`) and the answer back ([`request`], [`response`], [`stream`]).
//! - `/v1/messages` (Anthropic clients) is chained through chat by the SDK's [`ViaChat`]:
//!   Messages -> chat -> Converse, and Converse -> chat -> Messages, with conversion steps
//!   that keep thinking settings and signatures ([`messages`]).
//!
//! The host signs every request with SigV4 for the `bedrock` service (credentials from
//! `aws_access_key_id`/`aws_secret_access_key`/`aws_session_token` or the AWS environment)
//! and decodes the binary event-stream framing of streamed answers into one event per
//! frame. The endpoint is the deployment's `api_base`, else the regional endpoint of
//! `aws_region_name` (see [`endpoint::base_url`] for why other regions need `api_base`).

pub mod endpoint;
pub mod errors;
pub mod messages;
pub mod request;
pub mod response;
pub mod stream;

use llmgate_sdk::prelude::*;
use llmgate_sdk::via_chat::ViaChat;
use llmgate_sdk::{now_nanos, now_secs};

use crate::messages::KeepThinking;
use crate::stream::ConverseStreamToChat;

/// The plugin.
pub struct Bedrock;

impl Provider for Bedrock {
    const DESCRIPTION: Description = Description {
        name: "bedrock",
        version: env!("CARGO_PKG_VERSION"),
        // The host reads AWS credentials itself (params or AWS_* variables).
        prefixes: &[Prefix::new(
            "bedrock",
            Some(endpoint::DEFAULT_API_BASE),
            &[],
        )],
        apis: &[Api::ChatCompletions, Api::Messages],
        native_apis: &[],
    };
    type Exchange = ViaChat<Converse, KeepThinking>;
}

/// One chat completions attempt.
pub struct Converse {
    req: Request,
    /// Converse stream -> chat chunks (every streamed attempt).
    to_chat: Option<ConverseStreamToChat>,
}

/// `chatcmpl-<AWS request id>`, or a time-based id when the header is missing.
fn completion_id(headers: &[(String, String)]) -> String {
    match llmgate_sdk::header(headers, "x-amzn-requestid") {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-bedrock-{:x}", now_nanos()),
    }
}

impl Exchange for Converse {
    const UPSTREAM: &'static str = "Bedrock";

    fn new(req: Request) -> Self {
        Self { req, to_chat: None }
    }

    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError> {
        let req = &self.req;
        let dep = &req.deployment;
        if req.api != Api::ChatCompletions {
            return Err(GatewayError::bad_request(
                "the bedrock plugin serves /v1/chat/completions and /v1/messages",
            ));
        }
        let model_id = endpoint::model_id(&dep.model);
        let converted = request::chat_to_converse(&req.body, model_id, &req.params)?;
        let base = endpoint::base_url(dep.api_base.as_deref(), req.param_str("aws_region_name"))
            .map_err(GatewayError::bad_request)?;
        let url = endpoint::converse_url(&base, model_id, req.stream)?;
        let (accept, framing) = if req.stream {
            // A Messages client's usage comes from the usage chunk: always produce it.
            let usage = converted.include_usage || req.translated_from == Some(Api::Messages);
            let conv =
                ConverseStreamToChat::new(&req.model, &completion_id(&[]), now_secs(), usage);
            self.to_chat = Some(conv);
            (
                "application/vnd.amazon.eventstream",
                Framing::AwsEventstream,
            )
        } else {
            ("application/json", Framing::None)
        };
        let auth = Auth::AwsSigv4("bedrock".into());
        let plan = Plan::post(req, url, auth, converted.body).header("accept", accept);
        Ok(plan.framing(framing).build())
    }

    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError> {
        let (id, model) = (completion_id(&answer.headers), &self.req.model);
        let (body, usage) = response::converse_to_chat(&answer.body, model, &id, now_secs())?;
        Ok(json_response(answer.status, body, Some(usage), None))
    }

    fn on_error(&self, answer: &Answer) -> GatewayError {
        errors::parse_error(answer.status, &answer.headers, &answer.body)
    }

    fn on_stream_start(
        &mut self,
        _status: u16,
        headers: &Headers,
    ) -> Result<Headers, GatewayError> {
        if let Some(conv) = self.to_chat.as_mut() {
            conv.set_id(&completion_id(headers));
        }
        Ok(Vec::new())
    }

    fn on_event(&mut self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        let Some(conv) = self.to_chat.as_mut() else {
            return Err(GatewayError::upstream(
                "Bedrock streamed an answer to a request that was not streamed",
            ));
        };
        let chunks = conv.on_event(event.event.as_deref(), &event.data)?;
        Ok(chunks.into_iter().map(SseEvent::data).collect())
    }

    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        let Some(conv) = self.to_chat.as_mut() else {
            return Ok((Vec::new(), None));
        };
        Ok((Vec::new(), conv.finish()?))
    }
}

export_provider!(Bedrock);

#[cfg(test)]
mod tests {
    use llmgate_sdk::ErrorClass;
    use llmgate_sdk::plugin::{Deployment, ExchangeCell, GuestExchange, Inbound};

    use super::*;

    type Exchange = ExchangeCell<Bedrock>;

    fn inbound(api: Api, stream: bool, body: &[u8], api_base: Option<&str>) -> Inbound {
        let mut dep = Deployment::new(
            "br-1",
            "bedrock",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        );
        dep.api_base = api_base.map(Into::into);
        dep.params_json = r#"{"aws_region_name":"eu-west-1","max_tokens":256}"#.into();
        Inbound::json(api, "claude", stream, body, dep)
    }

    #[test]
    fn plans_signed_converse_requests() {
        let body =
            br#"{"model":"claude","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let ex = Exchange::new(inbound(
            Api::ChatCompletions,
            true,
            body,
            Some("https://bedrock-runtime.eu-west-1.amazonaws.com/"),
        ));
        let plan = ex.build_request().unwrap();
        assert_eq!(
            plan.url,
            "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        );
        assert!(matches!(&plan.auth, Auth::AwsSigv4(s) if s == "bedrock"));
        assert!(matches!(plan.framing, Framing::AwsEventstream));
        let v: serde_json::Value = serde_json::from_slice(&plan.body).unwrap();
        assert_eq!(v["inferenceConfig"]["maxTokens"], 256);

        // Without api_base the regional URL is still built (the host refuses it unless
        // api_base allows that origin).
        let ex = Exchange::new(inbound(Api::ChatCompletions, false, body, None));
        let plan = ex.build_request().unwrap();
        assert!(
            plan.url
                .starts_with("https://bedrock-runtime.eu-west-1.amazonaws.com/model/")
        );
        assert!(plan.url.ends_with("/converse"));
        assert!(matches!(plan.framing, Framing::None));

        // Errors keep their status and get Retry-After.
        let e = ex
            .on_body(
                429,
                vec![
                    (
                        "x-amzn-errortype".into(),
                        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
                            .into(),
                    ),
                    ("retry-after".into(), "2".into()),
                ],
                br#"{"message":"Too many requests, please wait before trying again."}"#.to_vec(),
            )
            .unwrap_err();
        assert_eq!((e.class, e.status), (ErrorClass::RateLimited, 429));
        assert_eq!(e.retry_after_ms, Some(2000));
        assert_eq!(e.code.as_deref(), Some("ThrottlingException"));
    }

    #[test]
    fn streams_end_with_usage_or_fail() {
        let body = br#"{"model":"claude","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let ex = Exchange::new(inbound(Api::Messages, true, body, Some("http://mock")));
        ex.build_request().unwrap();
        ex.on_stream_start(200, vec![("x-amzn-requestid".into(), "r1".into())])
            .unwrap();
        let ev = |e: &str, d: &str| SseEvent {
            event: Some(e.into()),
            data: d.into(),
        };
        let mut out = Vec::new();
        out.extend(
            ex.on_event(ev("messageStart", r#"{"role":"assistant"}"#))
                .unwrap(),
        );
        out.extend(
            ex.on_event(ev(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
            ))
            .unwrap(),
        );
        out.extend(
            ex.on_event(ev("messageStop", r#"{"stopReason":"end_turn"}"#))
                .unwrap(),
        );
        out.extend(
            ex.on_event(ev(
                "metadata",
                r#"{"usage":{"inputTokens":4,"outputTokens":1,"totalTokens":5}}"#,
            ))
            .unwrap(),
        );
        let names: Vec<&str> = out.iter().filter_map(|e| e.event.as_deref()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
        let (_, usage) = ex.finish().unwrap();
        assert_eq!(usage.map(|u| (u.input, u.output)), Some((4, 1)));

        let ex = Exchange::new(inbound(
            Api::ChatCompletions,
            true,
            body,
            Some("http://mock"),
        ));
        ex.build_request().unwrap();
        ex.on_event(ev("messageStart", r#"{"role":"assistant"}"#))
            .unwrap();
        let e = ex
            .on_event(ev(
                "exception:serviceUnavailableException",
                r#"{"message":"Bedrock is unable to process your request."}"#,
            ))
            .unwrap_err();
        assert_eq!((e.class, e.status), (ErrorClass::Overloaded, 503));
        assert!(ex.finish().is_err());
    }

    #[test]
    fn messages_streams_cut_short_report_what_converse_saw() {
        let body = br#"{"model":"claude","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let ex = Exchange::new(inbound(Api::Messages, true, body, Some("http://mock")));
        ex.build_request().unwrap();
        ex.on_event(SseEvent {
            event: Some("messageStart".into()),
            data: r#"{"role":"assistant"}"#.into(),
        })
        .unwrap();
        let e = ex.finish().unwrap_err();
        assert_eq!(e.status, 502);
        assert_eq!(e.message, "Bedrock stream ended before messageStop");
    }

    #[test]
    fn completion_ids() {
        assert_eq!(
            completion_id(&[("x-amzn-requestid".into(), "abc-123".into())]),
            "chatcmpl-abc-123"
        );
        assert!(completion_id(&[]).starts_with("chatcmpl-bedrock-"));
    }
}
