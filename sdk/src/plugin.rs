//! Writing a provider plugin: a [`Provider`] describes the plugin declaratively, an
//! [`Exchange`] translates one attempt, and the [`Adapter`] (exported with
//! [`export_provider!`](crate::export_provider)) turns them into the WIT component: it
//! builds `describe()` from the [`Description`], parses the inbound request once into a
//! [`Request`], and keeps the exchange's state across the WIT calls.
//!
//! ```ignore
//! use llmgate_sdk::plugin::{Description, Exchange, Prefix, Provider, Request};
//! struct Mine;
//! impl Provider for Mine {
//!     const DESCRIPTION: Description = Description { name: "mine", ... };
//!     type Exchange = MyExchange;
//! }
//! impl Exchange for MyExchange { ... }
//! llmgate_sdk::export_provider!(Mine);
//! ```

use std::cell::RefCell;
use std::marker::PhantomData;

use serde_json::{Map, Value};

use crate::json::{self, TopLevel};
use crate::provider::exports::llmgate::plugin::provider::{self as wit};
pub use crate::provider::exports::llmgate::plugin::provider::{
    ClientResponse, Deployment, Guest, GuestExchange, Inbound, Info, UpstreamRequest,
};
use crate::{Api, GatewayError, Headers, SseEvent, Usage};

/// One provider prefix a plugin serves: one row of its table.
#[derive(Debug, Clone, Copy)]
pub struct Prefix {
    /// The LiteLLM provider prefix without the slash (`openai`, `groq`, ...).
    pub name: &'static str,
    /// Base URL used when the deployment sets no `api_base` (none: `api_base` is required).
    pub default_api_base: Option<&'static str>,
    /// Environment variables the host reads the key from, in order of preference.
    pub api_key_env: &'static [&'static str],
}

impl Prefix {
    /// A row: `prefix`, its default base, its key variables.
    pub const fn new(
        name: &'static str,
        default_api_base: Option<&'static str>,
        api_key_env: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            default_api_base,
            api_key_env,
        }
    }
}

/// What a plugin is and serves; `describe()` is generated from it.
#[derive(Debug, Clone, Copy)]
pub struct Description {
    /// Unique plugin name, e.g. `openai`.
    pub name: &'static str,
    /// The plugin's own version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// Provider prefixes served.
    pub prefixes: &'static [Prefix],
    /// Inbound APIs served (translating where needed).
    pub apis: &'static [Api],
    /// Inbound APIs the upstream speaks natively (passed through).
    pub native_apis: &'static [Api],
}

impl Description {
    /// The WIT `info` record.
    pub fn info(&self) -> Info {
        Info {
            name: self.name.into(),
            version: self.version.into(),
            prefixes: self
                .prefixes
                .iter()
                .map(|p| wit::Prefix {
                    name: p.name.into(),
                    default_api_base: p.default_api_base.map(Into::into),
                    api_key_env: p.api_key_env.iter().map(|e| (*e).into()).collect(),
                })
                .collect(),
            apis: self.apis.to_vec(),
            native_apis: self.native_apis.to_vec(),
        }
    }

    /// The default base of `prefix`, if the table has one.
    pub fn default_api_base(&self, prefix: &str) -> Option<&'static str> {
        self.prefixes
            .iter()
            .find(|p| p.name == prefix)
            .and_then(|p| p.default_api_base)
    }
}

/// A provider plugin: its description and the exchange that serves one attempt.
pub trait Provider: 'static {
    /// What the plugin is and serves.
    const DESCRIPTION: Description;
    /// One attempt.
    type Exchange: Exchange;
}

/// One attempt: plan the upstream request, then translate the answer back. The adapter
/// calls these in the WIT order (`build_request`, then `on_answer` or `on_error`, or
/// `on_stream_start`, `on_event`s and `finish`).
pub trait Exchange: Sized + 'static {
    /// How error messages name the upstream (`upstream`, `Gemini`, ...).
    const UPSTREAM: &'static str = "upstream";

    /// An exchange for `req`.
    fn new(req: Request) -> Self;

    /// Plan the upstream request. An error fails the attempt without sending anything.
    fn build_request(&mut self) -> Result<UpstreamRequest, GatewayError>;

    /// A whole 2xx answer (framing `none`). Error answers never get here: the adapter
    /// hands them to [`Exchange::on_error`].
    fn on_answer(&mut self, answer: Answer) -> Result<ClientResponse, GatewayError>;

    /// A non-2xx answer as the attempt's error: [`GatewayError::from_status`] unless the
    /// upstream's errors read otherwise. The adapter fills in `retry_after_ms` from the
    /// answer's `Retry-After` when the error has none.
    fn on_error(&self, answer: &Answer) -> GatewayError {
        GatewayError::from_status(answer.status, &answer.headers, &answer.body)
    }

    /// A 2xx stream starts: the headers to add for the client (none by default).
    fn on_stream_start(
        &mut self,
        _status: u16,
        _headers: &Headers,
    ) -> Result<Headers, GatewayError> {
        Ok(Vec::new())
    }

    /// One upstream event in; zero or more client events out.
    fn on_event(&mut self, _event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        Err(GatewayError::upstream(format!(
            "{} streamed an answer to a request that was not streamed",
            Self::UPSTREAM
        )))
    }

    /// The upstream stream ended: the last client events and the usage of the call.
    fn finish(&mut self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        Ok((Vec::new(), None))
    }
}

impl Deployment {
    /// Deployment `id` of `provider/model`, with no `api_base`, `api_version` or params
    /// (set the fields that matter): for driving an exchange in tests and tools.
    pub fn new(id: &str, provider: &str, model: &str) -> Self {
        Self {
            id: id.into(),
            provider: provider.into(),
            model: model.into(),
            api_base: None,
            api_version: None,
            params_json: "{}".into(),
        }
    }
}

impl Inbound {
    /// A JSON request of `api` for the model group `model`, streamed or not, without client
    /// headers, served by `deployment`: for driving an exchange in tests and tools.
    pub fn json(api: Api, model: &str, stream: bool, body: &[u8], deployment: Deployment) -> Self {
        Self {
            api,
            model: model.into(),
            stream,
            body: body.to_vec(),
            content_type: "application/json".into(),
            headers: Vec::new(),
            deployment,
        }
    }
}

/// A whole upstream answer, as the WIT `on-body` gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: Headers,
    /// The response body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header(&self.headers, name)
    }
}

/// `litellm_params` that become chat request defaults when the client did not set them.
pub const DEFAULT_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "reasoning_effort",
    "response_format",
    "user",
    "n",
];

/// A client request as an exchange gets it: the WIT `inbound` with the deployment's
/// `params_json` parsed once.
#[derive(Debug, Clone)]
pub struct Request {
    /// The plugin's name, for error messages.
    pub plugin: &'static str,
    /// The API the client used.
    pub api: Api,
    /// The model name the client asked for (a model group or alias).
    pub model: String,
    /// Whether the client asked for a streamed response.
    pub stream: bool,
    /// The request body, untouched.
    pub body: Vec<u8>,
    /// The request's `content-type`.
    pub content_type: String,
    /// Client headers the plugin may forward.
    pub headers: Headers,
    /// The deployment (`params_json` as sent; read [`Request::params`]).
    pub deployment: Deployment,
    /// `params_json` parsed (an empty map when it is not a JSON object).
    pub params: Map<String, Value>,
    /// `params.extra_headers` (string values, names lower-cased): [`Plan`](crate::plan::Plan)
    /// adds them to every upstream request.
    pub extra_headers: Headers,
    /// The deployment's `api_base`, else its prefix's default base.
    pub api_base: Option<String>,
    /// The client asked for `stream_options.include_usage: true`.
    pub wants_usage: bool,
    /// The API the client used, when the request was translated to [`Request::api`]
    /// (Messages served through chat completions by [`ViaChat`](crate::via_chat::ViaChat)).
    pub translated_from: Option<Api>,
}

impl Request {
    /// Parse `inbound` for a plugin described by `desc`.
    pub fn new(inbound: Inbound, desc: &Description) -> Self {
        let params: Map<String, Value> =
            serde_json::from_str(&inbound.deployment.params_json).unwrap_or_default();
        let extra_headers = params
            .get("extra_headers")
            .and_then(Value::as_object)
            .map(|extra| {
                extra
                    .iter()
                    .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let api_base = inbound.deployment.api_base.clone().or_else(|| {
            desc.default_api_base(&inbound.deployment.provider)
                .map(str::to_string)
        });
        Self {
            plugin: desc.name,
            api: inbound.api,
            model: inbound.model,
            stream: inbound.stream,
            wants_usage: wants_usage(&inbound.body),
            translated_from: None,
            body: inbound.body,
            content_type: inbound.content_type,
            headers: inbound.headers,
            deployment: inbound.deployment,
            params,
            extra_headers,
            api_base,
        }
    }

    /// The same request with another API and body (e.g. a Messages request translated to
    /// chat completions); `wants_usage` is read again from the new body.
    pub fn with_body(mut self, api: Api, body: Vec<u8>) -> Self {
        self.translated_from = Some(self.api);
        self.api = api;
        self.wants_usage = wants_usage(&body);
        self.body = body;
        self
    }

    /// The API base, or a 400 naming the deployment when it has none.
    pub fn base(&self) -> Result<&str, GatewayError> {
        self.api_base.as_deref().ok_or_else(|| {
            GatewayError::bad_request(format!(
                "deployment {} needs api_base for provider {}",
                self.deployment.id, self.deployment.provider
            ))
        })
    }

    /// A client header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header(&self.headers, name)
    }

    /// A string param.
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }

    /// The body's top-level members, or a 400 when it is not a JSON object.
    pub fn top_level(&self) -> Result<TopLevel<'_>, GatewayError> {
        TopLevel::parse(&self.body)
            .map_err(|e| GatewayError::bad_request(format!("request body is not valid JSON: {e}")))
    }

    /// The [`DEFAULT_PARAMS`] the deployment sets and the client did not (`is_set` says
    /// whether the client's body has a key), as `(key, value)`.
    pub fn param_defaults(&self, is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, &Value)> {
        DEFAULT_PARAMS
            .iter()
            .filter_map(|key| Some((*key, self.params.get(*key)?)))
            .filter(|(key, _)| !is_set(key))
            .collect()
    }

    /// The body with `model` set to the deployment's model and `edits` applied (each a
    /// top-level member and its raw JSON), without parsing it whole.
    pub fn patched_body(&self, edits: &[(&str, Vec<u8>)]) -> Result<Vec<u8>, GatewayError> {
        let top = self.top_level()?;
        let model = json::quote(&self.deployment.model);
        let mut all: Vec<(&str, Option<&[u8]>)> = vec![("model", Some(&model))];
        all.extend(edits.iter().map(|(k, v)| (*k, Some(v.as_slice()))));
        Ok(top.patch(&all))
    }
}

/// Whether a JSON body asks for `stream_options.include_usage: true`.
pub fn wants_usage(body: &[u8]) -> bool {
    TopLevel::parse(body)
        .ok()
        .and_then(|t| t.get("stream_options").map(<[u8]>::to_vec))
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .and_then(|v| v.get("include_usage").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// The WIT `provider` interface of a [`Provider`]: `describe()` from its description, one
/// [`ExchangeCell`] per attempt. Exported by [`export_provider!`](crate::export_provider).
pub struct Adapter<P>(PhantomData<P>);

/// The WIT `exchange` resource of a [`Provider`]: the exchange behind a `RefCell` (the WIT
/// methods take `&self`). Unit tests drive plugins through it as the host would.
pub struct ExchangeCell<P: Provider>(RefCell<P::Exchange>);

impl<P: Provider> Guest for Adapter<P> {
    type Exchange = ExchangeCell<P>;

    fn describe() -> Info {
        P::DESCRIPTION.info()
    }
}

impl<P: Provider> GuestExchange for ExchangeCell<P> {
    fn new(req: Inbound) -> Self {
        Self(RefCell::new(P::Exchange::new(Request::new(
            req,
            &P::DESCRIPTION,
        ))))
    }

    fn build_request(&self) -> Result<UpstreamRequest, GatewayError> {
        self.0.borrow_mut().build_request()
    }

    fn on_body(
        &self,
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    ) -> Result<ClientResponse, GatewayError> {
        let answer = Answer {
            status,
            headers,
            body,
        };
        if is_success(status) {
            return self.0.borrow_mut().on_answer(answer);
        }
        let mut e = self.0.borrow().on_error(&answer);
        if e.retry_after_ms.is_none() {
            e.retry_after_ms = crate::retry_after_ms(&answer.headers);
        }
        Err(e)
    }

    fn on_stream_start(&self, status: u16, headers: Headers) -> Result<Headers, GatewayError> {
        self.0.borrow_mut().on_stream_start(status, &headers)
    }

    fn on_event(&self, event: SseEvent) -> Result<Vec<SseEvent>, GatewayError> {
        self.0.borrow_mut().on_event(event)
    }

    fn finish(&self) -> Result<(Vec<SseEvent>, Option<Usage>), GatewayError> {
        self.0.borrow_mut().finish()
    }
}

/// A JSON client response: `content-type: application/json`, `body`, `usage`, `model`.
pub fn json_response(
    status: u16,
    body: Vec<u8>,
    usage: Option<Usage>,
    model: Option<String>,
) -> ClientResponse {
    ClientResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        usage,
        model,
    }
}

/// Whether `status` is a 2xx.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}
