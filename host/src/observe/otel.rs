//! OpenTelemetry traces over OTLP: a [`Sink`] that turns each request's [`Record`] into
//! spans after the fact and hands them to a batch span processor.
//!
//! Per request: a SERVER span (`chat {model}`, the GenAI semantic conventions'
//! attributes), a CLIENT child span per attempt (its span id is the one the upstream got in
//! `traceparent`), and an INTERNAL child span per plugin call (policy `route`, provider
//! `plan`, `parse`, `stream_start`: under their attempt). The request's task only queues
//! the ended request (bounded; a full queue drops, never blocks); a thread of the
//! exporter's own builds the spans and exports them in batches over HTTP/protobuf or gRPC,
//! off the event loops.
//!
//! Configuration is the standard OpenTelemetry environment (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_BSP_*`) and LiteLLM's (`OTEL_EXPORTER` = `otlp_http` | `otlp_grpc`,
//! `OTEL_ENDPOINT`, `OTEL_HEADERS`); see [`Settings::from_env`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Context as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks, SpanProcessor as _};

use super::tracecontext::{Sampler, TraceContext, new_span_id, new_trace_id};
use super::{AttemptFacts, Facts, PluginCall, Record, Sink};
use crate::store::SpendLog;

/// The exporter, once tracing is on (set by [`Otel::install`]).
static INSTALLED: OnceLock<Arc<Otel>> = OnceLock::new();

/// The sampler when traces are exported, `None` when tracing is off (the request path
/// asks, to start a trace for requests that came without one and decide on sampling).
pub fn sampler() -> Option<Sampler> {
    INSTALLED.get().map(|otel| otel.sampler)
}

/// How spans are exported, from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `grpc`, else HTTP/protobuf.
    pub grpc: bool,
    /// An endpoint named by LiteLLM's `OTEL_ENDPOINT` (the standard variables are read by
    /// the exporter itself).
    pub endpoint: Option<String>,
    /// Headers from LiteLLM's `OTEL_HEADERS` (`k=v,k2=v2`; the standard
    /// `OTEL_EXPORTER_OTLP_HEADERS` is read by the exporter itself).
    pub headers: HashMap<String, String>,
    /// `OTEL_SERVICE_NAME`, default `llmgate`.
    pub service_name: String,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: Sampler,
}

impl Settings {
    /// The settings if tracing is on: an OTLP endpoint variable is set
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_ENDPOINT`),
    /// LiteLLM's `OTEL_EXPORTER` names an OTLP exporter, or `callback` (the config lists the
    /// `otel` callback). Unknown protocols or exporters are warned about.
    pub fn from_env(callback: bool) -> Option<Self> {
        Self::from_vars(callback, |k| {
            std::env::var(k).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// [`Settings::from_env`] over any source of variables.
    pub fn from_vars(callback: bool, var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let exporter = var("OTEL_EXPORTER");
        let litellm_otlp = matches!(
            exporter.as_deref(),
            Some("otlp_http" | "otlp_grpc" | "otlp")
        );
        if let Some(other) = exporter.as_deref().filter(|_| !litellm_otlp) {
            tracing::warn!(
                "OTEL_EXPORTER={other} is not served by llmgate (otlp_http, otlp_grpc); OTLP is used"
            );
        }
        let on = callback
            || litellm_otlp
            || [
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_ENDPOINT",
            ]
            .iter()
            .any(|k| var(k).is_some());
        if !on {
            return None;
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let grpc = match (protocol.as_deref(), exporter.as_deref()) {
            (Some("grpc"), _) => true,
            (Some("http/protobuf"), _) => false,
            (Some(other), _) => {
                tracing::warn!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not served (grpc, http/protobuf); http/protobuf is used"
                );
                false
            }
            (None, Some("otlp_grpc")) => true,
            (None, _) => false,
        };
        let endpoint = var("OTEL_ENDPOINT").map(|e| {
            let e = e.trim().trim_end_matches('/').to_string();
            if grpc || e.ends_with("/v1/traces") {
                e
            } else {
                format!("{e}/v1/traces")
            }
        });
        Some(Self {
            grpc,
            endpoint,
            headers: var("OTEL_HEADERS")
                .map(|h| parse_headers(&h))
                .unwrap_or_default(),
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "llmgate".into()),
            sampler: Sampler::from_vars(&var),
        })
    }
}

/// `k=v,k2=v2` (values percent-decoded, as the OTLP exporter spec says).
fn parse_headers(text: &str) -> HashMap<String, String> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            (!k.is_empty()).then(|| (k.to_string(), percent_decode(v)))
        })
        .collect()
}

/// `%XX` escapes decoded (others kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Requests whose spans wait to be built, at most; more are dropped (and counted).
const QUEUE: usize = 8192;
/// How often the exporter thread takes up the queued requests.
const TAKE_EVERY: Duration = Duration::from_millis(100);

/// The trace exporter. The request path only queues each ended request (two `Arc` clones
/// under an uncontended lock, no wake-up); a thread of its own, with its own runtime,
/// takes them up every [`TAKE_EVERY`], builds their spans and runs the batch span
/// processor that encodes and sends them, so none of that work runs on the event loops.
pub struct Otel {
    /// Ended requests not yet taken up by the exporter thread.
    queue: Mutex<Vec<Ended>>,
    /// Requests dropped because the queue was full.
    dropped: AtomicU64,
    /// Asks the exporter thread to export what is left and stop.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>>>,
    scope: InstrumentationScope,
    /// Which requests' traces are exported.
    sampler: Sampler,
}

/// One ended request, as queued for its spans.
struct Ended {
    log: Arc<SpendLog>,
    facts: Arc<Facts>,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel").finish_non_exhaustive()
    }
}

impl Otel {
    /// Start the exporter thread (its runtime, the OTLP exporter and the batch processor)
    /// and mark tracing on. Call once, at start.
    pub fn install(settings: &Settings) -> anyhow::Result<Arc<Self>> {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let otel = Arc::new(Self {
            queue: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            stop: Mutex::new(Some(stop_tx)),
            scope: InstrumentationScope::builder("llmgate")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            sampler: settings.sampler,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (settings, me) = (settings.clone(), otel.clone());
        std::thread::Builder::new()
            .name("llmgate-otel".into())
            .spawn(move || me.export_thread(&settings, &ready_tx, stop_rx))
            .context("starting the trace exporter thread")?;
        ready_rx
            .recv()
            .context("the trace exporter thread stopped")??;
        let _ = INSTALLED.set(otel.clone());
        Ok(otel)
    }

    /// Export what is queued and stop (at shutdown; waits at most a few seconds).
    pub async fn shutdown() {
        let Some(otel) = INSTALLED.get().cloned() else {
            return;
        };
        let Some(stop) = otel
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if stop.send(done_tx).is_err() {
            return;
        }
        if tokio::time::timeout(Duration::from_secs(5), done_rx)
            .await
            .is_err()
        {
            tracing::warn!("exporting the last spans did not finish");
        }
    }

    /// The exporter thread: build the processor, report it ready (or why not), then take
    /// up the queue until asked to stop.
    fn export_thread(
        &self,
        settings: &Settings,
        ready: &std::sync::mpsc::Sender<anyhow::Result<()>>,
        stop: tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(anyhow::Error::new(e).context("the exporter's runtime")));
                return;
            }
        };
        runtime.block_on(async {
            // Built inside this runtime: the processor's export task runs here.
            let processor = match processor(settings) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            let done = self.take_up(&processor, stop).await;
            let p = processor.clone();
            match tokio::task::spawn_blocking(move || p.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("exporting the last spans failed: {e}"),
                Err(e) => tracing::warn!("exporting the last spans failed: {e}"),
            }
            if let Some(done) = done {
                let _ = done.send(());
            }
        });
    }

    /// Every [`TAKE_EVERY`], turn the queued requests into spans for `processor`; once
    /// `stop` fires, a last round. Returns whom to tell when the export is done.
    async fn take_up(
        &self,
        processor: &BatchSpanProcessor<Tokio>,
        mut stop: tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>,
    ) -> Option<tokio::sync::oneshot::Sender<()>> {
        let mut tick = tokio::time::interval(TAKE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                _ = tick.tick() => self.build(processor),
                done = &mut stop => break done.ok(),
            }
        };
        self.build(processor);
        done
    }

    /// Build the spans of every queued request and hand them to `processor`.
    fn build(&self, processor: &BatchSpanProcessor<Tokio>) {
        let ended = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        for e in &ended {
            let record = Record {
                log: &e.log,
                facts: &e.facts,
                key: None,
            };
            for span in self.spans(&record) {
                processor.on_end(span);
            }
        }
    }

    /// The spans of one request: the request's, its attempts', its plugin calls'.
    pub fn spans(&self, record: &Record<'_>) -> Vec<SpanData> {
        let (log, facts) = (record.log, record.facts);
        let trace = facts.trace.clone().unwrap_or_else(|| TraceContext {
            trace_id: new_trace_id(),
            sampled: true,
            exported: true,
            ..TraceContext::default()
        });
        let root = new_span_id();
        let mut spans = Vec::with_capacity(1 + facts.attempts.len() + facts.plugin_calls.len());
        spans.push(self.request_span(log, facts, &trace, root));
        let mut attempt_ids = Vec::with_capacity(facts.attempts.len());
        for a in &facts.attempts {
            let id = if a.span_id == [0; 8] {
                new_span_id()
            } else {
                a.span_id
            };
            attempt_ids.push(id);
            spans.push(self.attempt_span(facts, a, &trace, root, id));
        }
        for c in &facts.plugin_calls {
            let parent = c
                .attempt
                .and_then(|i| attempt_ids.get(i).copied())
                .unwrap_or(root);
            spans.push(self.plugin_span(c, &trace, parent));
        }
        spans
    }

    /// The request's SERVER span.
    fn request_span(
        &self,
        log: &SpendLog,
        facts: &Facts,
        trace: &TraceContext,
        id: [u8; 8],
    ) -> SpanData {
        let op = operation(facts.api);
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", op),
            KeyValue::new("gen_ai.request.model", facts.requested_model.clone()),
            KeyValue::new("http.route", facts.api),
            KeyValue::new("http.response.status_code", i64::from(facts.status)),
            KeyValue::new("llmgate.request_id", log.request_id.clone()),
            KeyValue::new("llmgate.caller", facts.caller),
            KeyValue::new("llmgate.stream", facts.stream),
            KeyValue::new("llmgate.attempts", facts.attempts.len() as i64),
        ];
        if !log.custom_llm_provider.is_empty() {
            attrs.push(KeyValue::new(
                "gen_ai.provider.name",
                log.custom_llm_provider.clone(),
            ));
            attrs.push(KeyValue::new(
                "gen_ai.system",
                log.custom_llm_provider.clone(),
            ));
        }
        if !log.model.is_empty() {
            attrs.push(KeyValue::new("gen_ai.response.model", log.model.clone()));
        }
        if !log.model_group.is_empty() {
            attrs.push(KeyValue::new(
                "llmgate.model_group",
                log.model_group.clone(),
            ));
        }
        if !log.model_id.is_empty() {
            attrs.push(KeyValue::new("llmgate.deployment", log.model_id.clone()));
        }
        if log.total_tokens > 0 {
            attrs.extend([
                KeyValue::new("gen_ai.usage.input_tokens", tokens(log.prompt_tokens)),
                KeyValue::new("gen_ai.usage.output_tokens", tokens(log.completion_tokens)),
                KeyValue::new("llm.usage.total_tokens", tokens(log.total_tokens)),
            ]);
        }
        attrs.push(KeyValue::new("llm.cost", log.spend));
        if let Some(ttft) = Facts::ttft_ms(log) {
            attrs.push(KeyValue::new("llmgate.time_to_first_token_ms", ttft));
        }
        metadata_attrs(log, &mut attrs);
        let (status, error) = status(facts.error_class, facts.status);
        if let Some(e) = error {
            attrs.push(e);
        }
        let name = if facts.requested_model.is_empty() {
            Cow::Borrowed(op)
        } else {
            Cow::Owned(format!("{op} {}", facts.requested_model))
        };
        SpanData {
            span_context: context(trace, id),
            parent_span_id: trace
                .parent_span_id
                .map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: trace.parent_span_id.is_some(),
            span_kind: SpanKind::Server,
            name,
            start_time: at_ms(log.start_time_ms),
            end_time: at_ms(log.end_time_ms.max(log.start_time_ms)),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// An attempt's CLIENT span.
    fn attempt_span(
        &self,
        facts: &Facts,
        a: &AttemptFacts,
        trace: &TraceContext,
        parent: [u8; 8],
        id: [u8; 8],
    ) -> SpanData {
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", operation(facts.api)),
            KeyValue::new("gen_ai.provider.name", a.provider.clone()),
            KeyValue::new("llmgate.deployment", a.deployment.clone()),
            KeyValue::new("llmgate.model_group", a.model_group.clone()),
        ];
        if let Some(host) = &a.server_address {
            attrs.push(KeyValue::new("server.address", host.clone()));
        }
        if a.status != 0 {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(a.status),
            ));
        }
        let (status, error) = status(a.error_class, a.status);
        if let Some(e) = error {
            attrs.push(e);
        }
        let start = at_ms(a.start_ms);
        SpanData {
            span_context: context(trace, id),
            parent_span_id: SpanId::from_bytes(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(format!("{} {}", operation(facts.api), a.deployment)),
            start_time: start,
            end_time: start + Duration::from_secs_f64(a.duration_ms.max(0.0) / 1000.0),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// A plugin call's INTERNAL span.
    fn plugin_span(&self, c: &PluginCall, trace: &TraceContext, parent: [u8; 8]) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_micros(u64::try_from(c.start_us).unwrap_or(0));
        let status = match c.outcome {
            "ok" => Status::Unset,
            other => Status::error(other),
        };
        SpanData {
            span_context: context(trace, new_span_id()),
            parent_span_id: SpanId::from_bytes(parent),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(format!("plugin {} {}", c.call, c.plugin)),
            start_time: start,
            end_time: start + Duration::from_micros(c.duration_us),
            attributes: vec![
                KeyValue::new("llmgate.plugin", c.plugin.to_string()),
                KeyValue::new("llmgate.plugin.call", c.call),
                KeyValue::new("llmgate.plugin.outcome", c.outcome),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

impl Sink for Otel {
    fn record(&self, record: &Record<'_>) {
        // An unsampled request is not exported. One without a trace context (refused
        // before its headers were read: no key, a bad body) gets a new trace in `spans`,
        // sampled as a new trace is.
        let kept = match &record.facts.trace {
            Some(trace) => trace.recorded(),
            None => self.sampler.sample(&new_trace_id(), None),
        };
        if !kept {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= QUEUE {
            drop(queue);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if (n + 1).is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "the trace exporter is behind: a request's spans were dropped"
                );
            }
            return;
        }
        queue.push(Ended {
            log: record.log.clone(),
            facts: record.facts.clone(),
        });
    }
}

/// The batch span processor over the OTLP exporter the settings name, with the resource
/// (`service.name`, `OTEL_RESOURCE_ATTRIBUTES`). Call inside the runtime it exports on.
fn processor(settings: &Settings) -> anyhow::Result<BatchSpanProcessor<Tokio>> {
    let mut processor = BatchSpanProcessor::builder(exporter(settings)?, Tokio).build();
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    processor.set_resource(&resource);
    Ok(processor)
}

/// The OTLP exporter the settings name.
fn exporter(settings: &Settings) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let exporter = if settings.grpc {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc);
        if let Some(e) = &settings.endpoint {
            b = b.with_endpoint(e.clone());
        }
        if !settings.headers.is_empty() {
            let mut headers = http::HeaderMap::new();
            for (k, v) in &settings.headers {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    http::HeaderValue::from_str(v),
                ) {
                    headers.insert(k, v);
                }
            }
            let map = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
            b = b.with_metadata(map);
        }
        b.build()?
    } else {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(e) = &settings.endpoint {
            b = b.with_endpoint(e.clone());
        }
        if !settings.headers.is_empty() {
            b = b.with_headers(settings.headers.clone());
        }
        b.build()?
    };
    Ok(exporter)
}

/// The GenAI operation name of an API route.
fn operation(api: &str) -> &'static str {
    match api {
        "/v1/embeddings" => "embeddings",
        "/v1/images/generations" | "/v1/images/edits" => "generate_content",
        "/v1/messages/count_tokens" => "count_tokens",
        _ => "chat",
    }
}

/// A span context in `trace` with span id `id`.
fn context(trace: &TraceContext, id: [u8; 8]) -> SpanContext {
    let flags = if trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = trace
        .state
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    SpanContext::new(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(id),
        flags,
        false,
        state,
    )
}

/// A span's status and `error.type` from a failure's class (else from an error status).
fn status(class: Option<&'static str>, http_status: u16) -> (Status, Option<KeyValue>) {
    match class {
        Some(c) => (Status::error(c), Some(KeyValue::new("error.type", c))),
        None if http_status >= 500 => {
            let code = http_status.to_string();
            (
                Status::error(code.clone()),
                Some(KeyValue::new("error.type", code)),
            )
        }
        None => (Status::Unset, None),
    }
}

/// LiteLLM's `metadata.*` attributes: the key by alias and hash (never the key), its user
/// and team, and the request's tags.
fn metadata_attrs(log: &SpendLog, attrs: &mut Vec<KeyValue>) {
    if !log.api_key.is_empty() {
        attrs.push(KeyValue::new(
            "metadata.user_api_key_hash",
            log.api_key.clone(),
        ));
    }
    for field in [
        "user_api_key_alias",
        "user_api_key_user_id",
        "user_api_key_team_id",
    ] {
        if let Some(v) = log.metadata.get(field).and_then(|v| v.as_str()) {
            attrs.push(KeyValue::new(format!("metadata.{field}"), v.to_string()));
        }
    }
    if !log.user.is_empty() {
        attrs.push(KeyValue::new("metadata.user", log.user.clone()));
    }
    if !log.request_tags.is_empty() {
        attrs.push(KeyValue::new("metadata.tags", log.request_tags.join(",")));
    }
}

/// A token count as an attribute value.
fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Unix ms as a time.
fn at_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_standard_and_litellm_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_string())
            }
        };
        assert_eq!(Settings::from_vars(false, vars(&[])), None);
        let s = Settings::from_vars(true, vars(&[])).unwrap_or_else(|| panic!("on"));
        assert!(!s.grpc);
        assert_eq!(s.service_name, "llmgate");
        let s = Settings::from_vars(
            false,
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        )
        .unwrap_or_else(|| panic!("on"));
        assert!(s.grpc);
        assert_eq!(s.endpoint, None);
        let s = Settings::from_vars(
            false,
            vars(&[
                ("OTEL_EXPORTER", "otlp_http"),
                ("OTEL_ENDPOINT", "http://collector:4318/"),
                ("OTEL_HEADERS", "api-key=a%3Db, x = y"),
                ("OTEL_SERVICE_NAME", "gw"),
            ]),
        )
        .unwrap_or_else(|| panic!("on"));
        assert!(!s.grpc);
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(s.headers.get("api-key").map(String::as_str), Some("a=b"));
        assert_eq!(s.headers.get("x").map(String::as_str), Some("y"));
        assert_eq!(s.service_name, "gw");
        let s = Settings::from_vars(false, vars(&[("OTEL_EXPORTER", "otlp_grpc")]))
            .unwrap_or_else(|| panic!("on"));
        assert!(s.grpc);
    }
}
