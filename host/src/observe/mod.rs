//! What the gateway tells about each request once it ends.
//!
//! Every request that reaches a model route ends in exactly one [`Record`]: a served or
//! failed request when its ledger ticket settles (`ledger::Ticket`, the client going away
//! included), and a request refused before admission (no key, a bad body, an unknown model,
//! a budget or rate limit) where it is refused. The record is the spend log row plus what
//! only the pipeline knows ([`Facts`]: the API, the model asked, the HTTP status, the
//! attempts and the error class).
//!
//! Consumers are [`Sink`]s: the access log line ([`access`]), and any other the process
//! adds at start ([`Observer::add`]). A sink runs on the request's task when the request
//! ends, so it must be cheap (counters, a log line, a queued span) and never block.

pub mod access;
pub mod alerts;
pub mod metrics;
pub mod otel;
pub mod tracecontext;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::error::Error;
use crate::store::SpendLog;
use crate::wit::types::{Api, ErrorClass};

/// How one request ended: its spend log row, the pipeline's facts and the key's totals.
pub struct Record<'a> {
    /// The spend log row: ids, times, model group, deployment, tokens, cost, key hash and
    /// alias (in `metadata`). Shared: a sink that works later (the trace exporter) keeps a
    /// clone of the `Arc` rather than copying the row.
    pub log: &'a Arc<SpendLog>,
    /// What the pipeline knows beside the row (shared likewise).
    pub facts: &'a Arc<Facts>,
    /// The key's spend and limits after this request, when a virtual key made it.
    pub key: Option<KeyTotals>,
}

/// What the pipeline records about a request, beside its spend log row.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The API's route (`/v1/chat/completions`, ...; see [`route`]).
    pub api: &'static str,
    /// The model the client asked for (before aliases and groups).
    pub requested_model: String,
    /// Who called: `key` (a virtual key), `master` or `open` (no authentication).
    pub caller: &'static str,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The HTTP status the client got (499: the client went away first).
    pub status: u16,
    /// LiteLLM's exception class of the failure (`RateLimitError`, ...), if it failed.
    pub error_class: Option<&'static str>,
    /// The attempts made, in order.
    pub attempts: Vec<AttemptFacts>,
    /// The plugin calls made (policy route, provider plan and parse), in order; only kept
    /// when the request's trace is exported.
    pub plugin_calls: Vec<PluginCall>,
    /// The request's W3C trace context (the client's `traceparent`, or a new trace when
    /// tracing is on); `None`: neither.
    pub trace: Option<tracecontext::TraceContext>,
}

/// One call into a plugin made for a request, timed.
#[derive(Debug, Clone)]
pub struct PluginCall {
    /// The plugin's id (`openai`, `policy-router`, ...).
    pub plugin: Arc<str>,
    /// Which call: `route` (policy), `plan` (provider: build the upstream request),
    /// `parse` (provider: read a whole upstream answer), `stream_start` (provider).
    pub call: &'static str,
    /// The attempt it was made for (an index into [`Facts::attempts`]); `None`: for the
    /// request as a whole (the policy's route).
    pub attempt: Option<usize>,
    /// Unix µs when it started.
    pub start_us: i64,
    /// How long it took, µs.
    pub duration_us: u64,
    /// How it ended: `ok`, `error` (the plugin returned an error) or `trap` (it failed:
    /// a trap, a deadline, a host-side fault).
    pub outcome: &'static str,
}

/// One attempt of a request at one deployment.
#[derive(Debug, Clone, Default)]
pub struct AttemptFacts {
    /// The deployment's id.
    pub deployment: String,
    /// The deployment's model group (differs from the request's on a fallback).
    pub model_group: String,
    /// Unix ms when it started.
    pub start_ms: i64,
    /// How long it took, ms: up to the answer, or for a started stream up to its end.
    pub duration_ms: f64,
    /// The failure's exception class; `None`: it answered.
    pub error_class: Option<&'static str>,
    /// The failure's HTTP status (0 when it answered).
    pub status: u16,
    /// The deployment's provider (`openai`, ...).
    pub provider: String,
    /// The host of the deployment's `api_base` (no credentials), if it has one.
    pub server_address: Option<String>,
    /// The attempt's span id, sent upstream in `traceparent` (zero when not traced).
    pub span_id: [u8; 8],
}

/// A virtual key's spend and limits after a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyTotals {
    /// USD spent, all time (or this budget window).
    pub spend: f64,
    /// The key's budget, USD.
    pub max_budget: Option<f64>,
    /// The key's soft budget (an alert threshold), USD.
    pub soft_budget: Option<f64>,
    /// Requests left this minute under the key's rpm limit.
    pub remaining_requests: Option<u64>,
    /// Tokens left this minute under the key's tpm limit.
    pub remaining_tokens: Option<u64>,
}

impl Facts {
    /// The request's total latency in ms, from the row's times.
    pub fn latency_ms(log: &SpendLog) -> i64 {
        (log.end_time_ms - log.start_time_ms).max(0)
    }

    /// Time to the first streamed byte, ms, for a stream that started.
    pub fn ttft_ms(log: &SpendLog) -> Option<i64> {
        log.completion_start_time_ms
            .map(|t| (t - log.start_time_ms).max(0))
    }
}

/// A consumer of request records.
pub trait Sink: Send + Sync {
    /// A request ended.
    fn record(&self, record: &Record<'_>);
}

/// The sinks every request record goes to.
pub struct Observer {
    sinks: ArcSwap<Vec<Arc<dyn Sink>>>,
}

impl Default for Observer {
    fn default() -> Self {
        Self {
            sinks: ArcSwap::from_pointee(Vec::new()),
        }
    }
}

impl Observer {
    /// Send every later record to `sink` too.
    pub fn add(&self, sink: Arc<dyn Sink>) {
        self.sinks.rcu(|sinks| {
            let mut next = Vec::clone(sinks);
            next.push(sink.clone());
            next
        });
    }

    /// Hand `record` to every sink.
    pub fn record(&self, record: &Record<'_>) {
        for sink in self.sinks.load().iter() {
            sink.record(record);
        }
    }
}

/// LiteLLM's exception class of an error: the `exception_class` of its metrics and logs.
pub fn exception_class(err: &Error) -> &'static str {
    match (err.kind(), err.class()) {
        ("budget_exceeded" | "budget_too_small", _) => "BudgetExceededError",
        (_, ErrorClass::ContextLength) => "ContextWindowExceededError",
        (_, ErrorClass::ContentFilter) => "ContentPolicyViolationError",
        ("request_timeout", _) | (_, ErrorClass::Timeout) => "Timeout",
        (_, ErrorClass::BadRequest) => "BadRequestError",
        (_, ErrorClass::Auth) => "AuthenticationError",
        (_, ErrorClass::Permission) => "PermissionDeniedError",
        (_, ErrorClass::NotFound) => "NotFoundError",
        (_, ErrorClass::RateLimited) => "RateLimitError",
        (_, ErrorClass::Overloaded) => "ServiceUnavailableError",
        ("upstream", ErrorClass::Upstream) if err.status().as_u16() == 502 => "APIConnectionError",
        _ => "InternalServerError",
    }
}

/// The exception class of a client that went away before its answer ended (status 499).
pub const CLIENT_GONE: &str = "ClientDisconnected";

/// An API's route, as clients call it and LiteLLM labels it.
pub fn route(api: Api) -> &'static str {
    match api {
        Api::ChatCompletions => "/v1/chat/completions",
        Api::Messages => "/v1/messages",
        Api::CountTokens => "/v1/messages/count_tokens",
        Api::ImagesGenerations => "/v1/images/generations",
        Api::ImagesEdits => "/v1/images/edits",
        Api::Embeddings => "/v1/embeddings",
    }
}
