//! The request pipeline: read the few fields needed, resolve the model group, ask the
//! routing policy for a plan, and run attempts through provider plugins until one answers.
//!
//! Fallback happens only before the first byte reaches the client: an attempt fails over
//! when sending fails, times out, or the upstream answers with an error; once a 2xx stream
//! has started, a break is reported to the client in-stream.

pub mod aws;
pub mod sse;
mod stats;
pub(crate) mod summary;
mod upstream;

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
use crate::ledger::{Admission, Admit, Caller, Ledger, Outcome, Ticket, unix_now_ms};
use crate::plugins::{GatewayError, Registry, Runtime};
use crate::pricing::input_tokens_upper_bound;
use crate::store::SpendLog;
use crate::wit::policy_api::{Candidate, RouteRequest};
use crate::wit::provider_api::{Deployment as PluginDeployment, Inbound};
use crate::wit::types::Api;
pub use stats::Stats;

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
    stats: Stats,
    ledger: Arc<Ledger>,
    started_at: u64,
    reload: ReloadStats,
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
        let stats = Stats::new(&config.deployments);
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            registry: ArcSwap::from_pointee(registry),
            runtime,
            http,
            loop_connections: std::sync::OnceLock::new(),
            stats,
            ledger,
            started_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            reload: ReloadStats::default(),
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

    /// Hot reload's counters.
    pub fn reload_stats(&self) -> &ReloadStats {
        &self.reload
    }

    /// Unix time the gateway started.
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// Serve one model request (chat completions, messages, ...), with fallback.
    pub async fn handle(&self, req: Request) -> Result<Response, Error> {
        let started = Instant::now();
        let call_id = uuid::Uuid::new_v4().to_string();
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

        let config = self.config.load_full();
        let registry = self.registry.load_full();
        let resolved = config
            .resolve(&model)
            .ok_or_else(|| Error::ModelNotFound(model.clone()))?;
        let group = resolved.group.to_string();
        let span = tracing::info_span!("request", call_id = %call_id, model = %model, group = %group, stream);

        // Admission: the key's checks and the reservation (cost and tokens), in memory.
        let input_bound = input_tokens_upper_bound(req.body.len());
        let related = config.related_deployments(resolved.group);
        let all = || resolved.deployments.iter().chain(related);
        if all().next().is_none() {
            return Err(Error::Unavailable(format!(
                "no deployment serves `{group}`"
            )));
        }
        // Without max_tokens: the bounded default output, or the whole cap under strict
        // admission (the rule is in ledger::cost). The dearest candidate sets the amount.
        let unset_output = match self.ledger.settings().admission {
            Admission::Reserve => config.default_reserved_output_tokens,
            Admission::Strict => u64::MAX,
        };
        let (reserve, tokens) = all()
            .map(|&i| {
                let prices = &config.deployments[i].prices;
                let output = prices.output_reservation(max_output, unset_output);
                (
                    prices.reservation(input_bound, output),
                    input_bound.saturating_add(output),
                )
            })
            .fold((0.0, 0), |(c, t), (c2, t2)| (f64::max(c, c2), t.max(t2)));
        let settings = self.ledger.settings();
        let mut log_meta = serde_json::Map::new();
        let mut tags = Vec::new();
        if let Some(m) = metadata {
            if let Some(t) = m.get("tags").and_then(|t| t.as_array()) {
                tags = t
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect();
            }
            log_meta.insert("requester_metadata".into(), m);
        }
        let log = SpendLog {
            request_id: call_id.clone(),
            call_type: call_type(req.api).to_string(),
            start_time_ms: unix_now_ms(),
            model_group: group.clone(),
            user: user.unwrap_or_default(),
            metadata: serde_json::Value::Object(log_meta),
            request_tags: tags,
            messages: (settings.store_prompts && req.api != Api::ImagesEdits)
                .then(|| serde_json::from_slice(&req.body).ok())
                .flatten(),
            requester_ip_address: req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string()),
            ..SpendLog::default()
        };
        let mut ticket = Some(self.ledger.admit(
            &req.caller,
            Admit {
                group: &group,
                reserve,
                tokens,
                log,
            },
        )?);

        let result = async {
            let candidates: Vec<Candidate> = all()
                .map(|&i| self.stats.candidate(&config.deployments[i]))
                .collect();
            let choice = config.policy_for(resolved.group);
            let policy = registry.policy(&choice.policy).ok_or_else(|| {
                Error::Internal(format!(
                    "routing policy `{}` is not loaded (loaded: {})",
                    choice.policy,
                    registry.policy_names().join(", ")
                ))
            })?;
            let route_req = RouteRequest {
                api: req.api,
                model: model.clone(),
                model_group: group.clone(),
                stream,
                est_input_tokens: u32::try_from(req.body.len() / 4).unwrap_or(u32::MAX),
                max_output_tokens: u32::try_from(max_output).unwrap_or(u32::MAX),
                headers: routing_headers(&req.headers),
                last_user_text: config
                    .routing
                    .is_auto(&group)
                    .then(|| summary::last_user_text(req.api, &req.body))
                    .flatten(),
            };
            let plan = policy
                .route(&choice.config_json, &route_req, &candidates)
                .await?
                .map_err(|e| plugin_error(e, None))?;
            if plan.is_empty() {
                return Err(Error::Unavailable(format!("no deployment of `{group}` is available")));
            }
            let forwarded = forwardable_headers(&req.headers);
            let mut last: Option<Error> = None;
            let mut tried: Vec<&Arc<Deployment>> = Vec::new();
            let routing = &config.routing;
            for attempt in &plan {
                if let Some(err) = &last
                    && !attempt.when.contains(&err.class())
                {
                    continue;
                }
                let Some(dep) = config.deployments.iter().find(|d| d.id == attempt.candidate_id) else {
                    continue;
                };
                // Retrying the deployment that just failed: honour its Retry-After (and
                // `retry_after`), or skip the attempt if that is longer than we hold a client.
                if let (Some(err), Some(prev)) = (&last, tried.last())
                    && prev.id == dep.id
                {
                    let asked = match err {
                        Error::Upstream { retry_after_ms: Some(ms), .. } => std::time::Duration::from_millis(u64::from(*ms)),
                        _ => std::time::Duration::ZERO,
                    };
                    let wait = asked.max(routing.retry_after);
                    if wait > routing.max_retry_wait {
                        tracing::info!(deployment = %dep.id, wait_ms = wait.as_millis() as u64, "skipping a retry: Retry-After is longer than the gateway waits");
                        continue;
                    }
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                let upstream_model = plugin_deployment(dep, resolved.capture.as_deref());
                if let Some(t) = ticket.as_mut() {
                    t.log.model.clone_from(&upstream_model.model);
                    t.log.model_id.clone_from(&dep.id);
                    t.log.custom_llm_provider.clone_from(&dep.provider);
                    t.log.api_base = dep.api_base.clone().unwrap_or_default();
                }
                let inbound = Inbound {
                    api: req.api,
                    model: model.clone(),
                    stream,
                    body: req.body.to_vec(),
                    content_type: content_type.clone(),
                    headers: forwarded.clone(),
                    deployment: upstream_model,
                };
                let ctx = upstream::AttemptCtx {
                    gateway: self,
                    registry: &registry,
                    config: &config,
                    dep,
                    dialect: req.dialect,
                    call_id: &call_id,
                    started,
                    retries: attempt_counts(&tried, dep).0,
                    fallbacks: attempt_counts(&tried, dep).1,
                    ticket: &mut ticket,
                    input_bound,
                };
                tried.push(dep);
                let attempt_span = tracing::info_span!("attempt", deployment = %dep.id, provider = %dep.provider);
                match upstream::run(ctx, inbound).instrument(attempt_span).await {
                    Ok(resp) => return Ok(resp),
                    // The gateway is at capacity, not the deployment at fault: no cooldown,
                    // and no other attempt (they share the pool). Logged where counted.
                    Err(e @ Error::PluginCapacity(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(deployment = %dep.id, kind = e.kind(), status = e.status().as_u16(), "attempt failed: {e}");
                        let retry_after = match &e {
                            Error::Upstream { retry_after_ms, .. } => *retry_after_ms,
                            _ => None,
                        };
                        self.stats.failed(&dep.id, e.class(), retry_after, routing.allowed_fails, routing.cooldown_time);
                        last = Some(e);
                    }
                }
            }
            Err(last.unwrap_or_else(|| Error::Unavailable(format!("no deployment of `{group}` could take the request"))))
        }
        .instrument(span)
        .await;
        if let (Err(e), Some(mut t)) = (&result, ticket.take()) {
            if let Some(m) = t.log.metadata.as_object_mut() {
                m.insert("error".into(), serde_json::json!(e.to_string()));
                m.insert(
                    "error_status".into(),
                    serde_json::json!(e.status().as_u16()),
                );
            }
            t.settle(Outcome {
                cost: 0.0,
                success: false,
                tokens: 0,
            });
        }
        result
    }
}

/// `(retries, fallbacks)` made before `current`, LiteLLM's way: switching to another model
/// group (a fallback group) is a fallback; every other extra attempt (the same deployment
/// again, or another deployment of a group already tried) is a retry.
fn attempt_counts(tried: &[&Arc<Deployment>], current: &Deployment) -> (usize, usize) {
    let mut groups: Vec<&str> = Vec::with_capacity(tried.len() + 1);
    for name in tried
        .iter()
        .map(|d| d.model_name.as_str())
        .chain([current.model_name.as_str()])
    {
        if !groups.contains(&name) {
            groups.push(name);
        }
    }
    let fallbacks = groups.len() - 1;
    (tried.len() - fallbacks, fallbacks)
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

/// Finish a ticket with the usage of a served request; returns (cost, key spend).
pub(crate) fn settle_served(
    ticket: Ticket,
    dep: &Deployment,
    usage: Option<&crate::plugins::Usage>,
    response: Option<serde_json::Value>,
    success: bool,
) -> (f64, f64) {
    let mut ticket = ticket;
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
