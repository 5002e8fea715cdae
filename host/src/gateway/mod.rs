//! The request pipeline: read the few fields needed, resolve the model group, ask the
//! routing policy for a plan, and run attempts through provider plugins until one answers.
//!
//! Fallback happens only before the first byte reaches the client: an attempt fails over
//! when sending fails, times out, or the upstream answers with an error; once a 2xx stream
//! has started, a break is reported to the client in-stream.
//!
//! [`Gateway::handle`] reads as the steps; each lives in a file of its own:
//! - read and resolve ([`Call`], here), admit ([`billing::admit`]), route (the policy, here);
//! - attempt ([`attempt`]: the plan's attempts with retries, fallbacks, Retry-After and
//!   cooldowns; [`upstream`]: one request checked, signed and sent);
//! - stream or answer ([`stream`] for a started stream, [`attempt::Answer`] for a whole one);
//! - settle ([`billing::Billing`]: owns the ledger ticket and ends it exactly once).

mod attempt;
pub mod aws;
mod billing;
mod config_swap;
pub mod probe;
pub mod sse;
mod stats;
mod stream;
pub(crate) mod summary;
mod upstream;
mod windows;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tracing::Instrument as _;

use crate::config::{Config, Deployment};
use crate::error::{Dialect, Error};
use crate::ledger::{Caller, Ledger};
use crate::observe::PluginCall;
use crate::observe::tracecontext::TraceContext;
use crate::plugins::{GatewayError, Registry, Runtime};
use crate::wit::policy_api::{Attempt, Candidate, RouteRequest};
use crate::wit::provider_api::Deployment as PluginDeployment;
use crate::wit::types::Api;
use billing::{Billing, LogFields};
pub use config_swap::ConfigReloadStats;
pub use probe::{Probe, Probes};
pub use stats::{Health, State, Stats};

/// Client headers never handed to plugins, besides every header a gateway key is accepted
/// from ([`crate::ledger::KEY_HEADERS`], see [`forwardable_headers`]).
const PRIVATE_HEADERS: &[&str] = &[
    "cookie",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "accept-encoding",
    // The host sets the upstream's trace context itself (W3C Trace Context).
    "traceparent",
    "tracestate",
];

/// The live gateway: configuration, plugins, upstream client and statistics.
pub struct Gateway {
    config: ArcSwap<Config>,
    registry: ArcSwap<Registry>,
    runtime: Arc<Runtime>,
    /// One upstream client (and so one connection pool) per event loop: a pooled connection
    /// is driven by a task on the loop that opened it, so sharing one pool between loops
    /// would hand each response from one thread to another.
    http: Box<[reqwest::Client]>,
    /// Open connections per event loop, once the loops are running.
    loop_connections: std::sync::OnceLock<Arc<[std::sync::atomic::AtomicUsize]>>,
    stats: Arc<Stats>,
    /// Deployment rpm/tpm windows, and the shared Redis when there is one.
    windows: Arc<windows::Windows>,
    /// The last health probe of each deployment.
    probes: Probes,
    ledger: Arc<Ledger>,
    started_at: u64,
    reload: ReloadStats,
    /// The Prometheus registry, when metrics are on.
    metrics: std::sync::OnceLock<Arc<crate::observe::metrics::Metrics>>,
    config_reloads: config_swap::ConfigReloads,
}

thread_local! {
    /// Index of the event loop this thread runs (0 unless [`set_event_loop`] said otherwise).
    static EVENT_LOOP: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark this thread as running event loop `index`: its requests use that loop's upstream
/// connection pool.
pub fn set_event_loop(index: usize) {
    EVENT_LOOP.set(index);
}

/// What hot reload has done, for `GET /plugins`.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Rescans of the plugins folder run since start (one per debounced change).
    pub scans: std::sync::atomic::AtomicU64,
}

/// A deployment as metrics label it.
pub fn metric_labels(d: &Deployment) -> crate::observe::metrics::DeploymentLabels {
    crate::observe::metrics::DeploymentLabels {
        model_id: d.id.clone(),
        model_group: d.model_name.clone(),
        litellm_model_name: format!("{}/{}", d.provider, d.model),
        api_base: d.api_base.clone().unwrap_or_default(),
        api_provider: d.provider.clone(),
    }
}

/// One client request, as the API layer hands it over.
pub struct Request {
    /// Which API it arrived on.
    pub api: Api,
    /// Which error and stream shape to answer in.
    pub dialect: Dialect,
    /// Client headers.
    pub headers: HeaderMap,
    /// The body, untouched.
    pub body: Bytes,
    /// Who sent it (from [`Ledger::authenticate`]).
    pub caller: Caller,
}

impl Gateway {
    /// Assemble a gateway from loaded parts.
    /// `event_loops`: how many event loops will serve it (see [`set_event_loop`]).
    pub fn new(
        config: Config,
        registry: Registry,
        runtime: Arc<Runtime>,
        ledger: Arc<Ledger>,
        event_loops: usize,
    ) -> anyhow::Result<Self> {
        let http = (0..event_loops.max(1))
            .map(|_| {
                reqwest::Client::builder()
                    .tcp_nodelay(true)
                    // A redirect would take the request (and its credentials) past the
                    // origin check of `api_base`; an upstream's 3xx is answered like any
                    // other non-2xx status.
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .pool_idle_timeout(std::time::Duration::from_secs(90))
                    .build()
            })
            .collect::<Result<Box<[_]>, _>>()?;
        let stats = Arc::new(Stats::new(&config.deployments));
        let started_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let config_reloads = config_swap::ConfigReloads::new(&config, started_at);
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            registry: ArcSwap::from_pointee(registry),
            runtime,
            http,
            loop_connections: std::sync::OnceLock::new(),
            stats,
            windows: Arc::default(),
            probes: Probes::default(),
            ledger,
            started_at,
            reload: ReloadStats::default(),
            metrics: std::sync::OnceLock::new(),
            config_reloads,
        })
    }

    /// The upstream client of the event loop running on this thread.
    pub(crate) fn http(&self) -> &reqwest::Client {
        let i = EVENT_LOOP.get();
        self.http.get(i).unwrap_or(&self.http[0])
    }

    /// How many event loops serve this gateway.
    pub fn event_loops(&self) -> usize {
        self.http.len()
    }

    /// Where the event loops' open-connection counts are kept (set once, when they start).
    pub fn set_loop_connections(&self, open: Arc<[std::sync::atomic::AtomicUsize]>) {
        let _ = self.loop_connections.set(open);
    }

    /// Open connections per event loop, once the loops are running.
    pub fn loop_connections(&self) -> Option<Vec<usize>> {
        self.loop_connections.get().map(|open| {
            open.iter()
                .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
                .collect()
        })
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The current plugins.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Swap in a new set of plugins; requests in flight keep the old one.
    pub fn set_registry(&self, registry: Registry) {
        self.registry.store(Arc::new(registry));
    }

    /// Keys, budgets and spend.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The plugin runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Every configured deployment with its live health, in config order.
    pub fn deployment_health(&self) -> Vec<(Arc<Deployment>, Health)> {
        self.config()
            .deployments
            .iter()
            .map(|d| (d.clone(), self.stats.health(&d.id)))
            .collect()
    }

    /// Count every request in `metrics` from now on, labelled with the deployments of the
    /// current config (set once, at start).
    pub fn set_metrics(&self, metrics: Arc<crate::observe::metrics::Metrics>) {
        metrics.set_deployments(
            self.config()
                .deployments
                .iter()
                .map(|d| metric_labels(d))
                .collect(),
        );
        self.ledger.observer().add(metrics.clone());
        let _ = self.metrics.set(metrics);
    }

    /// Share cooldowns and rpm/tpm windows with the other instances through `shared`
    /// from now on (set once, at start): cooldowns it announces land in this gateway's
    /// stats, and the ledger counts key tokens in the shared windows.
    pub fn set_shared(&self, shared: Arc<crate::shared::Shared>) {
        let stats = self.stats.clone();
        shared.on_cooldown(move |id, ms| stats.cool_down_for(id, ms));
        self.ledger.set_shared(shared.clone());
        self.windows.set_shared(shared);
    }

    /// The shared Redis, if one is configured.
    pub fn shared(&self) -> Option<&Arc<crate::shared::Shared>> {
        self.windows.shared()
    }

    /// The Prometheus registry, when metrics are on.
    pub fn metrics(&self) -> Option<&Arc<crate::observe::metrics::Metrics>> {
        self.metrics.get()
    }

    /// What `/metrics` reads at scrape time.
    pub fn scrape(&self) -> crate::observe::metrics::Scrape {
        use crate::observe::metrics::{DeploymentSample, PluginSample, Scrape};
        let deployments = self
            .deployment_health()
            .into_iter()
            .map(|(d, h)| DeploymentSample {
                labels: metric_labels(&d),
                state: h.state as i64,
                in_flight: h.in_flight,
                cooldowns: h.cooldowns,
            })
            .collect();
        let plugins = self
            .runtime
            .plugin_counters()
            .into_iter()
            .map(|(name, c)| PluginSample {
                plugin: name.to_string(),
                calls: c.calls.load(std::sync::atomic::Ordering::Relaxed),
                traps: c.traps.load(std::sync::atomic::Ordering::Relaxed),
                timeouts: c.timeouts.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        let registry = self.registry();
        Scrape {
            deployments,
            plugins,
            plugin_load_errors: registry
                .status
                .iter()
                .filter(|s| s.last_error.is_some())
                .count() as u64,
            plugin_rescans: self.reload.scans.load(std::sync::atomic::Ordering::Relaxed),
            pool_exhausted: self.runtime.pool_exhausted_total(),
            pool_max: u64::from(self.runtime.max_instances()),
            store_queue_depth: self.ledger.store().queue_depth(),
            loop_connections: self.loop_connections().unwrap_or_default(),
            extra_counters: self.extra_counters(),
        }
    }

    /// The counters other parts keep as totals: config reloads and alert deliveries.
    fn extra_counters(&self) -> Vec<crate::observe::metrics::ExtraCounter> {
        use crate::observe::metrics::ExtraCounter;
        let reloads = self.config_reloads();
        let alerts = crate::observe::alerts::counts();
        let counter = |name, help, label: &'static str, value: &str, total| ExtraCounter {
            name,
            help,
            labels: vec![(label, value.to_string())],
            total,
        };
        let reload = |result, total| {
            counter(
                "llmgate_config_reloads_total",
                "Config reloads, by result",
                "result",
                result,
                total,
            )
        };
        let alert = |result, total| {
            counter(
                "llmgate_alerts_total",
                "Alert deliveries, by result",
                "result",
                result,
                total,
            )
        };
        vec![
            reload("ok", reloads.ok),
            reload("failed", reloads.failed),
            alert("sent", alerts.sent),
            alert("failed", alerts.failed),
            alert("dropped", alerts.dropped),
        ]
    }

    /// Hot reload's counters.
    pub fn reload_stats(&self) -> &ReloadStats {
        &self.reload
    }

    /// Unix time the gateway started.
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// Serve one model request (chat completions, messages, ...), with fallback. The caller
    /// is already authenticated (the API layer's extractors); the steps:
    /// read and resolve, admit, route, attempt, then stream or answer (settling the bill),
    /// or refund it if no attempt answered.
    pub async fn handle(&self, req: Request) -> Result<Response, Error> {
        let (api, caller) = (req.api, req.caller.clone());
        let (call, fields) = Call::read(self, req).inspect_err(|e| {
            let model = match e {
                Error::ModelNotFound(m) => m.as_str(),
                _ => "",
            };
            self.refused(api, Some(&caller), model, e);
        })?;
        let span = tracing::info_span!("request", call_id = %call.id, model = %call.model, group = %call.group, stream = call.stream);
        let (seen, counted) = self.windows.key(&call.caller).await;
        let admitted = billing::admit(&self.ledger, &call, fields, (seen, &self.windows)).await;
        let mut billing = admitted.inspect_err(|_| counted.map_or((), |c| c.take_back()))?;
        async {
            let answer = match self.route_and_attempt(&call, &mut billing).await {
                Ok(answer) => answer,
                Err(e) => {
                    billing.refund(&e);
                    return Err(e);
                }
            };
            Ok(answer.respond(&call, billing))
        }
        .instrument(span)
        .await
    }

    /// Record a request to `api` refused before the pipeline could read it (`caller`
    /// `None`: before authentication): its access log line, metrics and trace.
    pub fn refused(&self, api: Api, caller: Option<&Caller>, model: &str, err: &Error) {
        let asked = billing::Asked {
            api,
            caller,
            model,
            group: "",
            stream: false,
        };
        billing::refused(&self.ledger, &asked, err);
    }

    /// Ask the routing policy for a plan, then run its attempts until one answers.
    async fn route_and_attempt(
        &self,
        call: &Call,
        billing: &mut Billing,
    ) -> Result<attempt::Answer, Error> {
        let plan = self.route(call, billing).await?;
        attempt::run_plan(self, call, &plan, billing).await
    }

    /// The routing policy's plan for `call`: an ordered list of attempts.
    async fn route(&self, call: &Call, billing: &mut Billing) -> Result<Vec<Attempt>, Error> {
        let config = &call.config;
        let candidates: Vec<Candidate> = call
            .deployments
            .iter()
            .map(|&i| self.stats.candidate(&config.deployments[i]))
            .collect();
        let choice = config.policy_for(&call.group);
        let policy = call.registry.policy(&choice.policy).ok_or_else(|| {
            Error::Internal(format!(
                "routing policy `{}` is not loaded (loaded: {})",
                choice.policy,
                call.registry.policy_names().join(", ")
            ))
        })?;
        let route_req = RouteRequest {
            api: call.api,
            model: call.model.clone(),
            model_group: call.group.clone(),
            stream: call.stream,
            est_input_tokens: u32::try_from(call.body.len() / 4).unwrap_or(u32::MAX),
            max_output_tokens: u32::try_from(call.max_output).unwrap_or(u32::MAX),
            headers: routing_headers(&call.headers),
            last_user_text: config
                .routing
                .is_auto(&call.group)
                .then(|| summary::last_user_text(call.api, &call.body))
                .flatten(),
        };
        let (routed, timing) = timed(
            policy.id(),
            "route",
            policy.route(&choice.config_json, &route_req, &candidates),
        )
        .await;
        billing.plugin_call(timing, false);
        let plan = routed?.map_err(|e| plugin_error(e, None))?;
        if plan.is_empty() {
            return Err(Error::Unavailable(format!(
                "no deployment of `{}` is available",
                call.group
            )));
        }
        Ok(plan)
    }
}

/// One request on its way: what was read from it, who sent it, and the configuration and
/// plugins it runs on from start to end.
pub(crate) struct Call {
    /// The configuration snapshot.
    config: Arc<Config>,
    /// The plugins snapshot.
    registry: Arc<Registry>,
    /// `x-litellm-call-id`, the spend log's request id.
    id: String,
    started: Instant,
    api: Api,
    dialect: Dialect,
    headers: HeaderMap,
    body: Bytes,
    content_type: String,
    caller: Caller,
    /// The model the client asked for.
    model: String,
    stream: bool,
    /// `max_tokens` (or its like), 0 if absent.
    max_output: u64,
    /// The model group it resolved to.
    group: String,
    /// What `*` matched, for wildcard groups.
    capture: Option<String>,
    /// Candidate deployments: the group's, then those of its fallback groups.
    deployments: Vec<usize>,
    /// The W3C trace context (the client's `traceparent`, or a new trace when traced).
    trace: Option<TraceContext>,
}

impl Call {
    /// Read the few fields needed from the body and resolve the model group.
    fn read(gw: &Gateway, req: Request) -> Result<(Self, LogFields), Error> {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().to_string();
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let summary::Summary {
            model,
            stream,
            max_output,
            user,
            metadata,
        } = summary::summarize(req.api, &content_type, &req.body)?;
        let config = gw.config.load_full();
        let registry = gw.registry.load_full();
        let resolved = config
            .resolve(&model)
            .ok_or_else(|| Error::ModelNotFound(model.clone()))?;
        let group = resolved.group.to_string();
        let capture = resolved.capture;
        let deployments: Vec<usize> = resolved
            .deployments
            .iter()
            .chain(config.related_deployments(&group))
            .copied()
            .collect();
        if deployments.is_empty() {
            return Err(Error::Unavailable(format!(
                "no deployment serves `{group}`"
            )));
        }
        let trace = TraceContext::from_headers(&req.headers, crate::observe::otel::sampler());
        let call = Self {
            trace,
            config,
            registry,
            id,
            started,
            api: req.api,
            dialect: req.dialect,
            headers: req.headers,
            body: req.body,
            content_type,
            caller: req.caller,
            model,
            stream,
            max_output,
            group,
            capture,
            deployments,
        };
        Ok((call, LogFields { user, metadata }))
    }
}

/// Run one plugin call and time it: its result and the [`PluginCall`] that records it
/// (outcome `ok`, `error`: the plugin's own error, `trap`: the call failed).
pub(crate) async fn timed<T, G, E>(
    plugin: &Arc<str>,
    call: &'static str,
    fut: impl std::future::Future<Output = Result<Result<T, G>, E>>,
) -> (Result<Result<T, G>, E>, PluginCall) {
    let start_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let started = Instant::now();
    let out = fut.await;
    let outcome = match &out {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "trap",
    };
    let timing = PluginCall {
        plugin: plugin.clone(),
        call,
        attempt: None,
        start_us,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        outcome,
    };
    (out, timing)
}

/// A plugin-reported error as a client-facing one.
fn plugin_error(e: GatewayError, deployment: Option<&str>) -> Error {
    let message = match deployment {
        Some(d) if !e.message.contains(&format!("(deployment {d})")) => {
            format!("{} (deployment {d})", e.message)
        }
        Some(_) => e.message,
        None => e.message,
    };
    Error::Upstream {
        class: e.class,
        status: if (400..=599).contains(&e.status) {
            e.status
        } else {
            502
        },
        message,
        code: e.code,
        retry_after_ms: e.retry_after_ms,
    }
}

fn plugin_deployment(dep: &Deployment, capture: Option<&str>) -> PluginDeployment {
    let model = match capture {
        Some(c) if dep.model.contains('*') => dep.model.replacen('*', c, 1),
        _ => dep.model.clone(),
    };
    PluginDeployment {
        id: dep.id.clone(),
        provider: dep.provider.clone(),
        model,
        api_base: dep.api_base.clone(),
        api_version: dep.api_version.clone(),
        params_json: dep.params_json.clone(),
    }
}

/// The client headers a plugin may see: neither a gateway key (in any header the host reads
/// keys from) nor credentials nor hop-by-hop headers.
fn forwardable_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            !PRIVATE_HEADERS.contains(&k.as_str())
                && !crate::ledger::KEY_HEADERS.contains(&k.as_str())
        })
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

fn routing_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            k.as_str().starts_with("x-kilocode") || k.as_str().starts_with("x-llmgate")
        })
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Set a response header from a string, skipping values that are not valid header text.
pub(crate) fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// A response with `status`, the plugin's headers and `body`.
pub(crate) fn response(status: u16, headers: &[(String, String)], body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}
