//! Billing: the one value that owns a request's ledger ticket, from admission to settlement.
//!
//! [`admit`] reserves the request's worst case against its key and opens a [`Billing`];
//! every path then ends it exactly once, by value:
//! - [`Billing::settle`] / [`Billing::settle_answer`]: the request was served; the real cost
//!   (usage x price) is charged;
//! - [`Billing::refund`]: no attempt answered; nothing is charged;
//! - [`Billing::abandon`], or dropping it (the client went away mid-stream, an upstream
//!   broke without usage, a plugin trapped while closing): the estimate so far is charged.
//!
//! Either way the reservation and the tpm hold are released ([`Ticket`]'s job).

use std::sync::Arc;

use crate::config::{Config, Deployment};
use crate::error::Error;
use crate::ledger::{Admission, Admit, Caller, Ledger, Outcome, Seen, Ticket, unix_now_ms};
use crate::observe::tracecontext::{TraceContext, new_span_id};
use crate::observe::{AttemptFacts, Facts, PluginCall, exception_class, route};
use crate::plugins::Usage;
use crate::pricing::{Prices, input_tokens_upper_bound};
use crate::store::SpendLog;
use crate::wit::types::Api;

use super::Call;
use super::windows::Windows;

/// A request's bill: its ledger ticket (reservation, parallel slot, spend log row) and what
/// the charge-on-abandon estimate is made from.
pub(super) struct Billing {
    ticket: Ticket,
    /// Upper bound of the request's input tokens.
    input_bound: u64,
    /// Where the serving deployment's tpm window counts the tokens.
    windows: Arc<Windows>,
}

/// What the spend log takes from the request body beside the model.
pub(super) struct LogFields {
    /// `user` (OpenAI) or `metadata.user_id` (Anthropic).
    pub user: Option<String>,
    /// The client's `metadata` object (LiteLLM: `tags`, free-form fields).
    pub metadata: Option<serde_json::Value>,
}

/// Admission: the key's checks and the reservation (cost and tokens), in memory (on a
/// shared database, against this instance's lease, topped up when short).
pub(super) async fn admit(
    ledger: &Arc<Ledger>,
    call: &Call,
    fields: LogFields,
    (seen, windows): (Option<Seen>, &Arc<Windows>),
) -> Result<Billing, Error> {
    let input_bound = input_tokens_upper_bound(call.body.len());
    let (reserve, tokens) = reservation(ledger, call, input_bound);
    let facts = Facts {
        api: route(call.api),
        requested_model: call.model.clone(),
        caller: call.caller.kind(),
        stream: call.stream,
        trace: call.trace.clone(),
        ..Facts::default()
    };
    let ticket = ledger
        .admit(
            &call.caller,
            Admit {
                group: &call.group,
                reserve,
                tokens,
                log: spend_log(ledger, call, fields),
                facts,
                seen,
            },
        )
        .await
        .inspect_err(|e| {
            let asked = Asked {
                api: call.api,
                caller: Some(&call.caller),
                model: &call.model,
                group: &call.group,
                stream: call.stream,
            };
            refused(ledger, &asked, e);
        })?;
    Ok(Billing {
        ticket,
        input_bound,
        windows: windows.clone(),
    })
}

/// `(USD, tokens)` to reserve: the dearest candidate sets the amount. Without `max_tokens`:
/// the bounded default output, or the whole cap under strict admission (the rule is in
/// [`crate::pricing`]).
fn reservation(ledger: &Ledger, call: &Call, input_bound: u64) -> (f64, u64) {
    let config: &Config = &call.config;
    let unset_output = match ledger.settings().admission {
        Admission::Reserve => config.default_reserved_output_tokens,
        Admission::Strict => u64::MAX,
    };
    call.deployments
        .iter()
        .map(|&i| {
            let prices = &config.deployments[i].prices;
            let output = prices.output_reservation(call.max_output, unset_output);
            (
                prices.reservation(input_bound, output),
                input_bound.saturating_add(output),
            )
        })
        .fold((0.0, 0), |(c, t), (c2, t2)| (f64::max(c, c2), t.max(t2)))
}

/// The spend log row as admission knows it; the attempt and settlement fill in the rest.
fn spend_log(ledger: &Ledger, call: &Call, fields: LogFields) -> SpendLog {
    let mut log_meta = serde_json::Map::new();
    let mut tags = Vec::new();
    if let Some(m) = fields.metadata {
        if let Some(t) = m.get("tags").and_then(|t| t.as_array()) {
            tags = t
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
        }
        log_meta.insert("requester_metadata".into(), m);
    }
    SpendLog {
        request_id: call.id.clone(),
        call_type: call_type(call.api).to_string(),
        start_time_ms: unix_now_ms(),
        model_group: call.group.clone(),
        user: fields.user.unwrap_or_default(),
        metadata: serde_json::Value::Object(log_meta),
        request_tags: tags,
        messages: (ledger.settings().store_prompts && call.api != Api::ImagesEdits)
            .then(|| serde_json::from_slice(&call.body).ok())
            .flatten(),
        requester_ip_address: call
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string()),
        ..SpendLog::default()
    }
}

/// What is known of a request refused before admission.
pub(super) struct Asked<'a> {
    pub api: Api,
    /// `None`: refused before authentication.
    pub caller: Option<&'a Caller>,
    /// The model asked (empty if the body could not be read).
    pub model: &'a str,
    /// The model group it resolved to (empty if none).
    pub group: &'a str,
    pub stream: bool,
}

/// Record a request refused before admission (it gets no spend log row: an unauthenticated
/// client must not be able to fill the database).
pub(super) fn refused(ledger: &Ledger, asked: &Asked<'_>, err: &Error) {
    let log = SpendLog {
        request_id: uuid::Uuid::new_v4().to_string(),
        call_type: call_type(asked.api).to_string(),
        start_time_ms: unix_now_ms(),
        model_group: asked.group.to_string(),
        metadata: serde_json::Value::Object(serde_json::Map::new()),
        ..SpendLog::default()
    };
    let facts = Facts {
        api: route(asked.api),
        requested_model: asked.model.to_string(),
        caller: asked.caller.map_or("none", Caller::kind),
        stream: asked.stream,
        status: err.status().as_u16(),
        error_class: Some(exception_class(err)),
        ..Facts::default()
    };
    ledger.refused(asked.caller, log, facts);
}

/// The host of a URL (never its user info), for span attributes.
fn host_of(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
}

/// LiteLLM's `call_type` for an API.
fn call_type(api: Api) -> &'static str {
    match api {
        Api::ChatCompletions => "acompletion",
        Api::Messages => "anthropic_messages",
        Api::CountTokens => "count_tokens",
        Api::Embeddings => "aembedding",
        Api::ImagesGenerations => "aimage_generation",
        Api::ImagesEdits => "aimage_edit",
    }
}

impl Billing {
    /// Whether full request/response logging is on.
    pub fn stores_prompts(&self) -> bool {
        self.ticket.ledger_store_prompts()
    }

    /// An attempt goes to `dep` as `model`: the spend log names it.
    pub fn route_to(&mut self, dep: &Deployment, model: &str) {
        let traced = self.ticket.facts.trace.as_ref().is_some_and(|t| t.exported);
        self.ticket.facts.attempts.push(AttemptFacts {
            deployment: dep.id.clone(),
            model_group: dep.model_name.clone(),
            start_ms: unix_now_ms(),
            provider: dep.provider.clone(),
            server_address: traced
                .then(|| dep.api_base.as_deref().and_then(host_of))
                .flatten(),
            span_id: if traced { new_span_id() } else { [0; 8] },
            ..AttemptFacts::default()
        });
        let log = &mut self.ticket.log;
        model.clone_into(&mut log.model);
        log.model_id.clone_from(&dep.id);
        log.custom_llm_provider.clone_from(&dep.provider);
        log.api_base = dep.api_base.clone().unwrap_or_default();
    }

    /// The `traceparent` (and `tracestate`) the current attempt sends upstream, if any.
    pub fn upstream_trace(&self) -> Option<(String, Option<String>)> {
        let facts = &self.ticket.facts;
        let trace = facts.trace.as_ref()?;
        let span = facts.attempts.last().map_or([0; 8], |a| a.span_id);
        Some((trace.upstream_traceparent(span)?, trace.state.clone()))
    }

    /// Record a plugin call made for the request (for the current attempt if `attempt`),
    /// when its trace is exported (sampled; only spans read them).
    pub fn plugin_call(&mut self, mut call: PluginCall, attempt: bool) {
        if !self
            .ticket
            .facts
            .trace
            .as_ref()
            .is_some_and(TraceContext::recorded)
        {
            return;
        }
        if attempt {
            call.attempt = self.ticket.facts.attempts.len().checked_sub(1);
        }
        self.ticket.facts.plugin_calls.push(call);
    }

    /// The attempt [`Billing::route_to`] started ended, with `err` if it failed.
    pub fn attempt_ended(&mut self, err: Option<&Error>) {
        if let Some(a) = self.ticket.facts.attempts.last_mut() {
            a.duration_ms = (unix_now_ms() - a.start_ms).max(0) as f64;
            if let Some(err) = err {
                a.error_class = Some(exception_class(err));
                a.status = err.status().as_u16();
            }
        }
    }

    /// A 2xx stream starts: from now on, if the client goes away, the prompt (estimated) is
    /// still billed. Returns the response's rate-limit and key-spend headers.
    pub fn start_stream(&mut self, prices: &Prices) -> Vec<(&'static str, String)> {
        let t = &mut self.ticket;
        t.facts.status = 200;
        t.fallback_cost = (self.input_bound * 3 / 4) as f64 * prices.input;
        let mut headers = t.rate_headers.clone();
        if let Some((spend, budget)) = t.key_spend() {
            headers.push(("x-litellm-key-spend", spend.to_string()));
            if let Some(b) = budget {
                headers.push(("x-litellm-key-max-budget", b.to_string()));
            }
        }
        headers
    }

    /// The stream's first upstream bytes arrived.
    pub fn first_byte(&mut self) {
        self.ticket.log.completion_start_time_ms = Some(unix_now_ms());
    }

    /// `events` more events reached the client: one event is about one output token, the
    /// charge if the client leaves.
    pub fn charge_events(&mut self, events: u64, prices: &Prices) {
        self.ticket.fallback_cost += events as f64 * prices.output;
    }

    /// Put `err` in the spend log row's metadata and the request's facts.
    fn note_error(&mut self, err: &Error) {
        self.ticket.facts.error_class = Some(exception_class(err));
        if let Some(m) = self.ticket.log.metadata.as_object_mut() {
            m.insert("error".into(), serde_json::json!(err.to_string()));
        }
    }

    /// No attempt answered: release everything and charge nothing.
    pub fn refund(mut self, err: &Error) {
        self.note_error(err);
        self.ticket.facts.status = err.status().as_u16();
        if let Some(m) = self.ticket.log.metadata.as_object_mut() {
            m.insert(
                "error_status".into(),
                serde_json::json!(err.status().as_u16()),
            );
        }
        self.ticket.settle(Outcome {
            cost: 0.0,
            success: false,
            tokens: 0,
        });
    }

    /// The request ended without usage to bill (the client went away, or the stream broke):
    /// charge the estimate so far, noting `err` if there is one.
    pub fn abandon(mut self, err: Option<&Error>) {
        if let Some(err) = err {
            self.note_error(err);
        }
        // The ticket settles on drop with `fallback_cost`.
    }

    /// Charge a served request: usage x `dep`'s prices (without usage: nothing if it
    /// succeeded, else the estimate so far). Returns (cost, key spend after it).
    pub fn settle(
        self,
        dep: &Deployment,
        usage: Option<&Usage>,
        response: Option<serde_json::Value>,
        success: bool,
    ) -> (f64, f64) {
        let mut ticket = self.ticket;
        let cost = match usage {
            Some(u) => dep.prices.cost(u),
            None if success => 0.0,
            None => ticket.fallback_cost,
        };
        let mut tokens = 0;
        if let Some(u) = usage {
            let log = &mut ticket.log;
            log.prompt_tokens = u.input + u.cache_read + u.cache_write;
            log.completion_tokens = u.output;
            log.total_tokens = log.prompt_tokens + log.completion_tokens;
            log.cache_read_input_tokens = u.cache_read;
            log.cache_creation_input_tokens = u.cache_write;
            log.reasoning_tokens = u.reasoning;
            tokens = log.total_tokens;
        }
        self.windows.tokens(dep, tokens);
        if ticket.ledger_store_prompts() {
            ticket.log.response = response;
        }
        let spend = ticket.settle(Outcome {
            cost,
            success,
            tokens,
        });
        (cost, spend)
    }

    /// Settle a whole (non-streamed) answer with `body`; returns the response's cost,
    /// key-spend and rate-limit headers.
    pub fn settle_answer(
        mut self,
        dep: &Deployment,
        status: u16,
        usage: Option<&Usage>,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        self.ticket.facts.status = status;
        let rate_headers = self.ticket.rate_headers.clone();
        let max_budget = self.ticket.key_spend().and_then(|(_, b)| b);
        let response = self
            .stores_prompts()
            .then(|| serde_json::from_slice(body).ok())
            .flatten();
        let (cost, spend) = self.settle(dep, usage, response, true);
        let mut headers = vec![
            ("x-litellm-response-cost", cost.to_string()),
            ("x-litellm-key-spend", spend.to_string()),
        ];
        if let Some(b) = max_budget {
            headers.push(("x-litellm-key-max-budget", b.to_string()));
        }
        headers.extend(rate_headers);
        headers
    }

    /// End a stream: `closed` is the plugin's usage if its `finish` succeeded, `failed` the
    /// break the client was told about, `logged` what was streamed (for full logging).
    /// Billed by usage when there is usage or the stream completed, else by the estimate.
    pub fn end_stream(
        mut self,
        dep: &Deployment,
        closed: Option<Option<Usage>>,
        failed: Option<&Error>,
        logged: &[u8],
    ) {
        // The winning attempt lasted as long as its stream.
        self.attempt_ended(None);
        match closed {
            Some(usage) if usage.is_some() || failed.is_none() => {
                if let Some(err) = failed {
                    self.note_error(err);
                }
                let response = self.stores_prompts().then(|| {
                    serde_json::Value::String(String::from_utf8_lossy(logged).into_owned())
                });
                self.settle(dep, usage.as_ref(), response, failed.is_none());
            }
            _ => self.abandon(failed),
        }
    }
}
