//! Prometheus metrics with LiteLLM's names and labels, so the Grafana dashboards made for
//! LiteLLM's `/metrics` work on llmgate unchanged.
//!
//! Two kinds of series:
//! - **per request**, counted by [`Metrics`] as a [`Sink`] when a request ends: requests,
//!   failures, latencies, tokens, spend, per-deployment outcomes, fallbacks, the key's
//!   budget and limits;
//! - **at scrape time**, read from what the gateway keeps anyway ([`Scrape`]): deployment
//!   state and cooldowns, plugin calls and faults, the instance pool, the store queue, the
//!   event loops' connections.
//!
//! Each metric's labels are LiteLLM's, in LiteLLM's order (the `*_LABELS` lists below; they
//! come from LiteLLM 1.106's `PrometheusMetricLabels`). Labels llmgate has no value for
//! (`user_email`, `client_ip`, `user_agent`, `service_tier`, `team_alias`) are there, empty,
//! so queries that group by them still work; `client_ip` and `user_agent` stay empty on
//! purpose (one series per client address would grow without bound).
//!
//! Cost on the request path: one hash of the request's label values and one map lookup
//! under a read lock ([`SeriesCache`]), then an atomic add per series touched; no
//! allocation once a label set has been seen.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use arc_swap::ArcSwap;
use prometheus::core::{Collector, GenericCounter, MetricVec, MetricVecBuilder, Number};
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, Opts, Registry,
};

use super::{Record, Sink};
use crate::store::SpendLog;

/// LiteLLM's latency buckets, seconds (`+Inf` is implied).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 420.0,
    600.0,
];

const TOTAL_REQUESTS_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "requested_model",
    "team",
    "team_alias",
    "user",
    "status_code",
    "user_email",
    "route",
    "client_ip",
    "user_agent",
    "model_id",
    "api_provider",
];
const FAILED_REQUESTS_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "requested_model",
    "team",
    "team_alias",
    "user",
    "user_email",
    "exception_status",
    "exception_class",
    "route",
    "client_ip",
    "user_agent",
    "model_id",
    "api_provider",
];
const TOTAL_LATENCY_LABELS: &[&str] = &[
    "model_group",
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "requested_model",
    "team",
    "team_alias",
    "user",
    "model",
    "model_id",
    "api_provider",
    "service_tier",
];
const API_LATENCY_LABELS: &[&str] = &[
    "model_group",
    "model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "requested_model",
    "end_user",
    "user",
    "model_id",
    "api_provider",
    "service_tier",
];
const OVERHEAD_LABELS: &[&str] = &[
    "model_group",
    "api_provider",
    "api_base",
    "litellm_model_name",
    "hashed_api_key",
    "api_key_alias",
    "model_id",
];
const SPEND_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "model",
    "team",
    "team_alias",
    "user",
    "user_email",
    "client_ip",
    "user_agent",
    "requested_model",
    "model_id",
    "api_provider",
    "service_tier",
];
const REQUESTS_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "model",
    "team",
    "team_alias",
    "user",
    "user_email",
    "client_ip",
    "user_agent",
    "requested_model",
    "model_id",
    "api_provider",
];
const TOKENS_LABELS: &[&str] = &[
    "end_user",
    "hashed_api_key",
    "api_key_alias",
    "model",
    "team",
    "team_alias",
    "user",
    "user_email",
    "requested_model",
    "model_id",
    "api_provider",
];
const DEPLOYMENT_LABELS: &[&str] = &["litellm_model_name", "model_id", "api_base", "api_provider"];
const COOLED_DOWN_LABELS: &[&str] = &[
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "exception_status",
];
const DEPLOYMENT_REQUEST_LABELS: &[&str] = &[
    "model_group",
    "requested_model",
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "client_ip",
    "user_agent",
];
const DEPLOYMENT_FAILURE_LABELS: &[&str] = &[
    "model_group",
    "requested_model",
    "litellm_model_name",
    "model_id",
    "api_base",
    "api_provider",
    "exception_status",
    "exception_class",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "client_ip",
    "user_agent",
];
const FALLBACK_LABELS: &[&str] = &[
    "requested_model",
    "fallback_model",
    "hashed_api_key",
    "api_key_alias",
    "team",
    "team_alias",
    "exception_status",
    "exception_class",
    "model_id",
];
const KEY_BUDGET_LABELS: &[&str] = &["hashed_api_key", "api_key_alias"];
const KEY_MODEL_LIMIT_LABELS: &[&str] = &["hashed_api_key", "api_key_alias", "model", "model_id"];

/// What names a deployment in LiteLLM's labels.
#[derive(Debug, Clone, Default)]
pub struct DeploymentLabels {
    /// The deployment's id (`model_id`).
    pub model_id: String,
    /// Its model group (`model_name` in the config).
    pub model_group: String,
    /// `provider/model`, as `litellm_params.model` (`litellm_model_name`).
    pub litellm_model_name: String,
    /// Its `api_base`, without credentials (empty: the provider's default).
    pub api_base: String,
    /// Its provider (`api_provider`).
    pub api_provider: String,
}

/// One deployment at scrape time.
#[derive(Debug, Clone)]
pub struct DeploymentSample {
    /// Which deployment.
    pub labels: DeploymentLabels,
    /// LiteLLM's state: 0 healthy, 1 partial outage, 2 complete outage (cooling down).
    pub state: i64,
    /// Attempts in flight.
    pub in_flight: u32,
    /// Cooldowns so far, by the HTTP status of the failure that started them.
    pub cooldowns: Vec<(u16, u64)>,
}

/// One plugin's counters at scrape time.
#[derive(Debug, Clone)]
pub struct PluginSample {
    /// `name@version`.
    pub plugin: String,
    /// Calls into it.
    pub calls: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls interrupted at their deadline.
    pub timeouts: u64,
}

/// What the gateway knows at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every configured deployment.
    pub deployments: Vec<DeploymentSample>,
    /// Every plugin that has been called or loaded.
    pub plugins: Vec<PluginSample>,
    /// Plugin files that failed to load (their `GET /plugins` rows with an error).
    pub plugin_load_errors: u64,
    /// Rescans of the plugins folder (hot reload) since start.
    pub plugin_rescans: u64,
    /// Requests refused because the plugin instance pool was full.
    pub pool_exhausted: u64,
    /// The instance pool's size.
    pub pool_max: u64,
    /// Spend events waiting for the store thread.
    pub store_queue_depth: u64,
    /// Open client connections per event loop.
    pub loop_connections: Vec<usize>,
    /// Further counters, from parts of the gateway that keep their own.
    pub extra_counters: Vec<ExtraCounter>,
}

/// A counter another part of the gateway keeps as a total (config reloads, alerts, spans).
#[derive(Debug, Clone)]
pub struct ExtraCounter {
    /// Its metric name (ending in `_total`).
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Its labels, names with values.
    pub labels: Vec<(&'static str, String)>,
    /// The total so far.
    pub total: u64,
}

/// The request-time series.
struct PerRequest {
    total: IntCounterVec,
    failed: IntCounterVec,
    requests: IntCounterVec,
    total_latency: HistogramVec,
    api_latency: HistogramVec,
    ttft: HistogramVec,
    overhead: HistogramVec,
    spend: CounterVec,
    total_tokens: CounterVec,
    input_tokens: CounterVec,
    output_tokens: CounterVec,
    cached_tokens: CounterVec,
    cache_creation_tokens: CounterVec,
    dep_total: IntCounterVec,
    dep_success: IntCounterVec,
    dep_failure: IntCounterVec,
    fallback_ok: IntCounterVec,
    fallback_failed: IntCounterVec,
    key_remaining_budget: GaugeVec,
    key_max_budget: GaugeVec,
    remaining_requests: GaugeVec,
    remaining_tokens: GaugeVec,
    key_requests_for_model: GaugeVec,
    key_tokens_for_model: GaugeVec,
}

/// The scrape-time series.
struct AtScrape {
    state: GaugeVec,
    cooled_down: IntCounterVec,
    in_flight: GaugeVec,
    plugin_calls: IntCounterVec,
    plugin_traps: IntCounterVec,
    plugin_timeouts: IntCounterVec,
    plugin_load_errors: GaugeVec,
    plugin_rescans: IntCounterVec,
    pool_exhausted: IntCounterVec,
    pool_max: GaugeVec,
    store_queue: GaugeVec,
    loop_connections: GaugeVec,
}

/// The metrics registry and the sink that fills it.
pub struct Metrics {
    registry: Registry,
    deployments: ArcSwap<HashMap<String, DeploymentLabels>>,
    req: PerRequest,
    /// The per-request series of each label set seen, resolved once.
    series: SeriesCache,
    at: AtScrape,
    /// Counters of [`Scrape::extra_counters`], made on first sight.
    extra: Mutex<HashMap<&'static str, IntCounterVec>>,
    /// One scrape at a time: scrape-time counters move by the difference since the last.
    scraping: Mutex<()>,
}

/// The label values of one request (and, per attempt, of its deployment).
#[derive(Clone, Copy, Default)]
struct Labels<'a> {
    end_user: &'a str,
    hashed_api_key: &'a str,
    api_key_alias: &'a str,
    requested_model: &'a str,
    team: &'a str,
    user: &'a str,
    status_code: &'a str,
    route: &'a str,
    model_group: &'a str,
    model: &'a str,
    model_id: &'a str,
    api_provider: &'a str,
    api_base: &'a str,
    litellm_model_name: &'a str,
    exception_status: &'a str,
    exception_class: &'a str,
    fallback_model: &'a str,
}

impl<'a> Labels<'a> {
    /// The value of label `name` (empty for those llmgate has no value for).
    fn get(&self, name: &str) -> &'a str {
        match name {
            "end_user" => self.end_user,
            "hashed_api_key" => self.hashed_api_key,
            "api_key_alias" => self.api_key_alias,
            "requested_model" => self.requested_model,
            "team" => self.team,
            "user" => self.user,
            "status_code" => self.status_code,
            "route" => self.route,
            "model_group" => self.model_group,
            "model" => self.model,
            "model_id" => self.model_id,
            "api_provider" => self.api_provider,
            "api_base" => self.api_base,
            "litellm_model_name" => self.litellm_model_name,
            "exception_status" => self.exception_status,
            "exception_class" => self.exception_class,
            "fallback_model" => self.fallback_model,
            _ => "",
        }
    }

    /// Every value, in field order: what tells one label set from another.
    fn key(&self) -> [&'a str; 17] {
        [
            self.end_user,
            self.hashed_api_key,
            self.api_key_alias,
            self.requested_model,
            self.team,
            self.user,
            self.status_code,
            self.route,
            self.model_group,
            self.model,
            self.model_id,
            self.api_provider,
            self.api_base,
            self.litellm_model_name,
            self.exception_status,
            self.exception_class,
            self.fallback_model,
        ]
    }

    /// The values of `names`, in order (at most 16).
    fn values(&self, names: &[&str]) -> ([&'a str; 16], usize) {
        let mut out = [""; 16];
        for (slot, name) in out.iter_mut().zip(names) {
            *slot = self.get(name);
        }
        (out, names.len().min(16))
    }

    /// The deployment's labels, if it is known.
    fn at(mut self, dep: Option<&'a DeploymentLabels>) -> Self {
        if let Some(d) = dep {
            self.model_id = &d.model_id;
            self.model_group = &d.model_group;
            self.api_base = &d.api_base;
            self.api_provider = &d.api_provider;
            self.litellm_model_name = &d.litellm_model_name;
        }
        self
    }
}

/// The series of `vec` for `labels`' values of its label names.
fn with<T: MetricVecBuilder>(vec: &MetricVec<T>, names: &[&str], labels: &Labels<'_>) -> T::M {
    let (values, n) = labels.values(names);
    vec.with_label_values(&values[..n])
}

fn seconds(ms: f64) -> f64 {
    ms.max(0.0) / 1000.0
}

fn meta<'a>(log: &'a SpendLog, key: &str) -> &'a str {
    log.metadata
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
}

impl Metrics {
    /// A registry with every series, none of them observed yet.
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let req = PerRequest::register(&registry)?;
        let at = AtScrape::register(&registry)?;
        Ok(Self {
            registry,
            deployments: ArcSwap::from_pointee(HashMap::new()),
            req,
            series: SeriesCache::default(),
            at,
            extra: Mutex::default(),
            scraping: Mutex::new(()),
        })
    }

    /// The deployments requests are labelled with (set at start and on every config
    /// reload).
    pub fn set_deployments(&self, deployments: Vec<DeploymentLabels>) {
        let by_id = deployments
            .into_iter()
            .map(|d| (d.model_id.clone(), d))
            .collect();
        self.deployments.store(Arc::new(by_id));
    }

    /// Every series in Prometheus' text format (version 0.0.4), with the scrape-time
    /// values of `scrape`.
    pub fn render(&self, scrape: &Scrape) -> String {
        let _one = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        self.at.update(scrape);
        self.update_extra(scrape);
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }

    fn update_extra(&self, scrape: &Scrape) {
        let mut extra = self.extra.lock().unwrap_or_else(|p| p.into_inner());
        for ExtraCounter {
            name,
            help,
            labels,
            total,
        } in &scrape.extra_counters
        {
            let vec = match extra.get(name) {
                Some(v) => v.clone(),
                None => {
                    let names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
                    let Ok(v) = IntCounterVec::new(Opts::new(*name, *help), &names) else {
                        continue;
                    };
                    if self.registry.register(Box::new(v.clone())).is_err() {
                        continue;
                    }
                    extra.insert(name, v.clone());
                    v
                }
            };
            let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
            if let Ok(c) = vec.get_metric_with_label_values(&values) {
                catch_up(&c, *total);
            }
        }
    }
}

/// Move a counter kept elsewhere as a total up to `total`.
fn catch_up<P: prometheus::core::Atomic>(counter: &GenericCounter<P>, total: P::T)
where
    P::T: Number + PartialOrd + std::ops::Sub<Output = P::T>,
{
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Sink for Metrics {
    fn record(&self, r: &Record<'_>) {
        let (log, facts) = (r.log, r.facts);
        let deployments = self.deployments.load();
        let mut status = itoa::Buffer::new();
        let status = status.format(facts.status);
        let base = Labels {
            end_user: &log.user,
            hashed_api_key: &log.api_key,
            api_key_alias: meta(log, "user_api_key_alias"),
            requested_model: &facts.requested_model,
            team: meta(log, "user_api_key_team_id"),
            user: meta(log, "user_api_key_user_id"),
            status_code: status,
            route: facts.api,
            model_group: &log.model_group,
            model: &log.model,
            model_id: &log.model_id,
            api_provider: &log.custom_llm_provider,
            api_base: &log.api_base,
            exception_status: status,
            exception_class: facts.error_class.unwrap_or(""),
            ..Labels::default()
        }
        .at(deployments.get(&log.model_id));
        let series = self.series.of(&base);
        let s = Resolve {
            p: &self.req,
            l: &base,
            s: &series,
        };
        s.get(|s| &s.total, |p| &p.total, TOTAL_REQUESTS_LABELS)
            .inc();
        let ok = facts.error_class.is_none() && facts.status < 400;
        if ok {
            self.succeeded(log, facts, &s);
        } else {
            s.get(|s| &s.failed, |p| &p.failed, FAILED_REQUESTS_LABELS)
                .inc();
        }
        self.usage(log, &s);
        self.attempts(facts, &s, &deployments, status);
        if let Some(k) = r.key {
            self.key(&k, &s);
        }
    }
}

impl Metrics {
    /// A request that answered: its latencies.
    fn succeeded(&self, log: &SpendLog, facts: &super::Facts, s: &Resolve<'_>) {
        s.get(|s| &s.requests, |p| &p.requests, REQUESTS_LABELS)
            .inc();
        let total_ms = (log.end_time_ms - log.start_time_ms) as f64;
        s.get(
            |s| &s.total_latency,
            |p| &p.total_latency,
            TOTAL_LATENCY_LABELS,
        )
        .observe(seconds(total_ms));
        if let Some(served) = facts.attempts.last() {
            s.get(|s| &s.api_latency, |p| &p.api_latency, API_LATENCY_LABELS)
                .observe(seconds(served.duration_ms));
            if let Some(first) = log.completion_start_time_ms {
                let ttft = (first - served.start_ms) as f64;
                s.get(|s| &s.ttft, |p| &p.ttft, API_LATENCY_LABELS)
                    .observe(seconds(ttft));
            }
        }
        let upstream: f64 = facts.attempts.iter().map(|a| a.duration_ms).sum();
        s.get(|s| &s.overhead, |p| &p.overhead, OVERHEAD_LABELS)
            .observe(seconds(total_ms - upstream));
    }

    /// Tokens and spend, whatever the outcome (a client that left mid-stream still paid).
    fn usage(&self, log: &SpendLog, s: &Resolve<'_>) {
        if log.spend > 0.0 {
            s.get(|s| &s.spend, |p| &p.spend, SPEND_LABELS)
                .inc_by(log.spend);
        }
        if log.total_tokens == 0 {
            return;
        }
        let tokens = |n: u64| n as f64;
        s.get(|s| &s.total_tokens, |p| &p.total_tokens, TOKENS_LABELS)
            .inc_by(tokens(log.total_tokens));
        s.get(|s| &s.input_tokens, |p| &p.input_tokens, TOKENS_LABELS)
            .inc_by(tokens(log.prompt_tokens));
        s.get(|s| &s.output_tokens, |p| &p.output_tokens, TOKENS_LABELS)
            .inc_by(tokens(log.completion_tokens));
        if log.cache_read_input_tokens > 0 {
            s.get(|s| &s.cached_tokens, |p| &p.cached_tokens, TOKENS_LABELS)
                .inc_by(tokens(log.cache_read_input_tokens));
        }
        if log.cache_creation_input_tokens > 0 {
            s.get(
                |s| &s.cache_creation_tokens,
                |p| &p.cache_creation_tokens,
                TOKENS_LABELS,
            )
            .inc_by(tokens(log.cache_creation_input_tokens));
        }
    }

    /// Every attempt at a deployment, and the fallbacks among them: a fallback is an
    /// attempt at another model group than the first attempt's.
    fn attempts(
        &self,
        facts: &super::Facts,
        s: &Resolve<'_>,
        deployments: &HashMap<String, DeploymentLabels>,
        status: &str,
    ) {
        let base = s.l;
        if let [a] = facts.attempts.as_slice()
            && a.error_class.is_none()
            && a.deployment == base.model_id
            && a.model_group == base.model_group
        {
            // The usual request, one attempt that answered at the deployment the row
            // names: its labels are the request's.
            s.get(
                |s| &s.dep_total,
                |p| &p.dep_total,
                DEPLOYMENT_REQUEST_LABELS,
            )
            .inc();
            s.get(
                |s| &s.dep_success,
                |p| &p.dep_success,
                DEPLOYMENT_REQUEST_LABELS,
            )
            .inc();
            return;
        }
        let p = &self.req;
        let first_group = facts.attempts.first().map(|a| a.model_group.as_str());
        let first_failure = facts.attempts.iter().position(|a| a.error_class.is_some());
        let statuses: Vec<String> = facts
            .attempts
            .iter()
            .map(|a| a.status.to_string())
            .collect();
        for (a, a_status) in facts.attempts.iter().zip(&statuses) {
            let mut l = Labels {
                model_id: &a.deployment,
                model_group: &a.model_group,
                ..*base
            }
            .at(deployments.get(&a.deployment));
            with(&p.dep_total, DEPLOYMENT_REQUEST_LABELS, &l).inc();
            match a.error_class {
                None => with(&p.dep_success, DEPLOYMENT_REQUEST_LABELS, &l).inc(),
                Some(class) => {
                    l.exception_status = a_status;
                    l.exception_class = class;
                    with(&p.dep_failure, DEPLOYMENT_FAILURE_LABELS, &l).inc();
                }
            }
            if Some(a.model_group.as_str()) == first_group {
                continue;
            }
            let (cause_status, cause_class) = match first_failure {
                Some(i) => (
                    statuses[i].as_str(),
                    facts.attempts[i].error_class.unwrap_or(""),
                ),
                None => (status, ""),
            };
            let l = Labels {
                requested_model: first_group.unwrap_or(""),
                fallback_model: &a.model_group,
                exception_status: cause_status,
                exception_class: cause_class,
                ..l
            };
            let vec = if a.error_class.is_none() {
                &p.fallback_ok
            } else {
                &p.fallback_failed
            };
            with(vec, FALLBACK_LABELS, &l).inc();
        }
    }

    /// The key's budget and what is left of its limits after the request.
    fn key(&self, k: &super::KeyTotals, s: &Resolve<'_>) {
        let max = k.max_budget.unwrap_or(f64::INFINITY);
        s.get(
            |s| &s.key_max_budget,
            |p| &p.key_max_budget,
            KEY_BUDGET_LABELS,
        )
        .set(max);
        s.get(
            |s| &s.key_remaining_budget,
            |p| &p.key_remaining_budget,
            KEY_BUDGET_LABELS,
        )
        .set(max - k.spend);
        if let Some(n) = k.remaining_requests {
            s.get(
                |s| &s.remaining_requests,
                |p| &p.remaining_requests,
                OVERHEAD_LABELS,
            )
            .set(n as f64);
            s.get(
                |s| &s.key_requests_for_model,
                |p| &p.key_requests_for_model,
                KEY_MODEL_LIMIT_LABELS,
            )
            .set(n as f64);
        }
        if let Some(n) = k.remaining_tokens {
            s.get(
                |s| &s.remaining_tokens,
                |p| &p.remaining_tokens,
                OVERHEAD_LABELS,
            )
            .set(n as f64);
            s.get(
                |s| &s.key_tokens_for_model,
                |p| &p.key_tokens_for_model,
                KEY_MODEL_LIMIT_LABELS,
            )
            .set(n as f64);
        }
    }
}

/// The per-request series one label set selects, each looked up in its vector the first
/// time a request with these labels touches it (so no series appears before it is
/// observed, as with a lookup per request).
#[derive(Default)]
struct Series {
    total: OnceLock<IntCounter>,
    failed: OnceLock<IntCounter>,
    requests: OnceLock<IntCounter>,
    total_latency: OnceLock<Histogram>,
    api_latency: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    overhead: OnceLock<Histogram>,
    spend: OnceLock<Counter>,
    total_tokens: OnceLock<Counter>,
    input_tokens: OnceLock<Counter>,
    output_tokens: OnceLock<Counter>,
    cached_tokens: OnceLock<Counter>,
    cache_creation_tokens: OnceLock<Counter>,
    dep_total: OnceLock<IntCounter>,
    dep_success: OnceLock<IntCounter>,
    key_remaining_budget: OnceLock<Gauge>,
    key_max_budget: OnceLock<Gauge>,
    remaining_requests: OnceLock<Gauge>,
    remaining_tokens: OnceLock<Gauge>,
    key_requests_for_model: OnceLock<Gauge>,
    key_tokens_for_model: OnceLock<Gauge>,
}

/// The [`Series`] of every label set seen: a request's labels are hashed once and its
/// series found with one map lookup, instead of one hash and lookup per series in the
/// `prometheus` crate (about a dozen per request). Grows with the label sets, as the
/// metric vectors themselves do.
#[derive(Default)]
struct SeriesCache {
    hasher: RandomState,
    /// By the hash of the label values: the label sets with that hash and their series.
    sets: RwLock<LabelSets>,
}

/// Label sets by the hash of their values, each with its series.
type LabelSets = HashMap<u64, Vec<(Box<[Box<str>]>, Arc<Series>)>>;

impl SeriesCache {
    /// The series of `labels`' label set, made empty on first sight.
    fn of(&self, labels: &Labels<'_>) -> Arc<Series> {
        let key = labels.key();
        let hash = self.hasher.hash_one(key);
        let same = |set: &[Box<str>]| set.iter().map(|v| &**v).eq(key.iter().copied());
        let found = |sets: &LabelSets| {
            sets.get(&hash)?
                .iter()
                .find(|(set, _)| same(set))
                .map(|(_, series)| series.clone())
        };
        if let Some(series) = found(&self.sets.read().unwrap_or_else(PoisonError::into_inner)) {
            return series;
        }
        let mut sets = self.sets.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = found(&sets) {
            return series;
        }
        let series = Arc::new(Series::default());
        let set = key.iter().map(|v| Box::<str>::from(*v)).collect();
        sets.entry(hash).or_default().push((set, series.clone()));
        series
    }
}

/// One request's way to its series: the cached [`Series`] for its labels, and the vectors
/// and labels to make one on first use.
struct Resolve<'a> {
    p: &'a PerRequest,
    l: &'a Labels<'a>,
    s: &'a Series,
}

impl Resolve<'_> {
    /// The series `cell` holds, made from `vec` with this request's values of `names` the
    /// first time.
    fn get<T: MetricVecBuilder>(
        &self,
        cell: impl Fn(&Series) -> &OnceLock<T::M>,
        vec: impl Fn(&PerRequest) -> &MetricVec<T>,
        names: &[&str],
    ) -> &T::M {
        cell(self.s).get_or_init(|| with(vec(self.p), names, self.l))
    }
}

/// Register `c` with `r` and hand it back.
fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> anyhow::Result<C> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> anyhow::Result<IntCounterVec> {
    reg(r, IntCounterVec::new(Opts::new(name, help), labels)?)
}

fn fcounter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> anyhow::Result<CounterVec> {
    reg(r, CounterVec::new(Opts::new(name, help), labels)?)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> anyhow::Result<GaugeVec> {
    reg(r, GaugeVec::new(Opts::new(name, help), labels)?)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> anyhow::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    reg(r, HistogramVec::new(opts, labels)?)
}

impl PerRequest {
    fn register(r: &Registry) -> anyhow::Result<Self> {
        Ok(Self {
            total: counter(
                r,
                "litellm_proxy_total_requests_metric_total",
                "Requests made to the proxy, by status code",
                TOTAL_REQUESTS_LABELS,
            )?,
            failed: counter(
                r,
                "litellm_proxy_failed_requests_metric_total",
                "Requests that failed, by exception status and class",
                FAILED_REQUESTS_LABELS,
            )?,
            requests: counter(
                r,
                "litellm_requests_metric_total",
                "Requests that answered",
                REQUESTS_LABELS,
            )?,
            total_latency: histogram(
                r,
                "litellm_request_total_latency_metric",
                "Total time of a request through the proxy, seconds",
                TOTAL_LATENCY_LABELS,
            )?,
            api_latency: histogram(
                r,
                "litellm_llm_api_latency_metric",
                "Time of the call to the LLM API that answered, seconds",
                API_LATENCY_LABELS,
            )?,
            ttft: histogram(
                r,
                "litellm_llm_api_time_to_first_token_metric",
                "Time to the first streamed token from the LLM API, seconds",
                API_LATENCY_LABELS,
            )?,
            overhead: histogram(
                r,
                "litellm_overhead_latency_metric",
                "Time the proxy added to a request (total less upstream calls), seconds",
                OVERHEAD_LABELS,
            )?,
            spend: fcounter(r, "litellm_spend_metric_total", "Spend, USD", SPEND_LABELS)?,
            total_tokens: fcounter(
                r,
                "litellm_total_tokens_metric_total",
                "Input + output tokens",
                TOKENS_LABELS,
            )?,
            input_tokens: fcounter(
                r,
                "litellm_input_tokens_metric_total",
                "Input tokens",
                TOKENS_LABELS,
            )?,
            output_tokens: fcounter(
                r,
                "litellm_output_tokens_metric_total",
                "Output tokens",
                TOKENS_LABELS,
            )?,
            cached_tokens: fcounter(
                r,
                "litellm_input_cached_tokens_metric_total",
                "Input tokens read from the provider's prompt cache",
                TOKENS_LABELS,
            )?,
            cache_creation_tokens: fcounter(
                r,
                "litellm_input_cache_creation_tokens_metric_total",
                "Input tokens written to the provider's prompt cache",
                TOKENS_LABELS,
            )?,
            dep_total: counter(
                r,
                "litellm_deployment_total_requests_total",
                "Attempts at a deployment",
                DEPLOYMENT_REQUEST_LABELS,
            )?,
            dep_success: counter(
                r,
                "litellm_deployment_success_responses_total",
                "Attempts at a deployment that answered",
                DEPLOYMENT_REQUEST_LABELS,
            )?,
            dep_failure: counter(
                r,
                "litellm_deployment_failure_responses_total",
                "Attempts at a deployment that failed",
                DEPLOYMENT_FAILURE_LABELS,
            )?,
            fallback_ok: counter(
                r,
                "litellm_deployment_successful_fallbacks_total",
                "Fallbacks to another model group that answered",
                FALLBACK_LABELS,
            )?,
            fallback_failed: counter(
                r,
                "litellm_deployment_failed_fallbacks_total",
                "Fallbacks to another model group that failed",
                FALLBACK_LABELS,
            )?,
            key_remaining_budget: gauge(
                r,
                "litellm_remaining_api_key_budget_metric",
                "Budget left on a key, USD (+Inf: no budget)",
                KEY_BUDGET_LABELS,
            )?,
            key_max_budget: gauge(
                r,
                "litellm_api_key_max_budget_metric",
                "A key's budget, USD (+Inf: no budget)",
                KEY_BUDGET_LABELS,
            )?,
            remaining_requests: gauge(
                r,
                "litellm_remaining_requests_metric",
                "Requests left this minute under the key's rpm limit",
                OVERHEAD_LABELS,
            )?,
            remaining_tokens: gauge(
                r,
                "litellm_remaining_tokens_metric",
                "Tokens left this minute under the key's tpm limit",
                OVERHEAD_LABELS,
            )?,
            key_requests_for_model: gauge(
                r,
                "litellm_remaining_api_key_requests_for_model",
                "Requests left this minute under the key's rpm limit",
                KEY_MODEL_LIMIT_LABELS,
            )?,
            key_tokens_for_model: gauge(
                r,
                "litellm_remaining_api_key_tokens_for_model",
                "Tokens left this minute under the key's tpm limit",
                KEY_MODEL_LIMIT_LABELS,
            )?,
        })
    }
}

impl AtScrape {
    fn register(r: &Registry) -> anyhow::Result<Self> {
        Ok(Self {
            state: gauge(
                r,
                "litellm_deployment_state",
                "Deployment state: 0 healthy, 1 partial outage, 2 complete outage (cooling down)",
                DEPLOYMENT_LABELS,
            )?,
            cooled_down: counter(
                r,
                "litellm_deployment_cooled_down_total",
                "Times a deployment was put in cooldown, by the status that caused it",
                COOLED_DOWN_LABELS,
            )?,
            in_flight: gauge(
                r,
                "llmgate_deployment_in_flight",
                "Attempts in flight at a deployment",
                &["model_group", "model_id"],
            )?,
            plugin_calls: counter(
                r,
                "llmgate_plugin_calls_total",
                "Calls into a plugin",
                &["plugin"],
            )?,
            plugin_traps: counter(
                r,
                "llmgate_plugin_traps_total",
                "Plugin calls that trapped or ran out of memory",
                &["plugin"],
            )?,
            plugin_timeouts: counter(
                r,
                "llmgate_plugin_timeouts_total",
                "Plugin calls interrupted at their CPU deadline",
                &["plugin"],
            )?,
            plugin_load_errors: gauge(
                r,
                "llmgate_plugin_load_errors",
                "Plugin files whose last load failed",
                &[],
            )?,
            plugin_rescans: counter(
                r,
                "llmgate_plugin_reloads_total",
                "Rescans of the plugins folder by hot reload",
                &[],
            )?,
            pool_exhausted: counter(
                r,
                "llmgate_plugin_pool_exhausted_total",
                "Requests refused because the plugin instance pool was full",
                &[],
            )?,
            pool_max: gauge(
                r,
                "llmgate_plugin_pool_max_instances",
                "Size of the plugin instance pool",
                &[],
            )?,
            store_queue: gauge(
                r,
                "llmgate_store_queue_depth",
                "Spend events waiting for the store thread",
                &[],
            )?,
            loop_connections: gauge(
                r,
                "llmgate_event_loop_connections",
                "Open client connections per event loop",
                &["event_loop"],
            )?,
        })
    }

    fn update(&self, s: &Scrape) {
        self.state.reset();
        self.in_flight.reset();
        for d in &s.deployments {
            let l = &d.labels;
            let dep = [
                &*l.litellm_model_name,
                &l.model_id,
                &l.api_base,
                &l.api_provider,
            ];
            self.state.with_label_values(&dep).set(d.state as f64);
            self.in_flight
                .with_label_values(&[&*l.model_group, &l.model_id])
                .set(f64::from(d.in_flight));
            for (status, n) in &d.cooldowns {
                let st = status.to_string();
                let values = [dep[0], dep[1], dep[2], dep[3], &st];
                catch_up(&self.cooled_down.with_label_values(&values), *n);
            }
        }
        for p in &s.plugins {
            let name = [p.plugin.as_str()];
            catch_up(&self.plugin_calls.with_label_values(&name), p.calls);
            catch_up(&self.plugin_traps.with_label_values(&name), p.traps);
            catch_up(&self.plugin_timeouts.with_label_values(&name), p.timeouts);
        }
        let none: [&str; 0] = [];
        self.plugin_load_errors
            .with_label_values(&none)
            .set(s.plugin_load_errors as f64);
        catch_up(
            &self.plugin_rescans.with_label_values(&none),
            s.plugin_rescans,
        );
        catch_up(
            &self.pool_exhausted.with_label_values(&none),
            s.pool_exhausted,
        );
        self.pool_max
            .with_label_values(&none)
            .set(s.pool_max as f64);
        self.store_queue
            .with_label_values(&none)
            .set(s.store_queue_depth as f64);
        for (i, n) in s.loop_connections.iter().enumerate() {
            self.loop_connections
                .with_label_values(&[i.to_string().as_str()])
                .set(*n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{AttemptFacts, Facts, KeyTotals};

    /// Every metric the issue and LiteLLM's dashboards name, once one request (a streamed
    /// fallback) has been recorded and a scrape has read one cooled-down deployment.
    #[test]
    fn one_request_and_one_scrape_show_every_litellm_metric() {
        let m = Metrics::new().unwrap();
        let dep = |id: &str, group: &str| DeploymentLabels {
            model_id: id.into(),
            model_group: group.into(),
            litellm_model_name: "openai/gpt-4o".into(),
            api_base: "http://127.0.0.1:1/v1".into(),
            api_provider: "openai".into(),
        };
        m.set_deployments(vec![dep("a-0", "a"), dep("b-0", "b")]);
        let log = SpendLog {
            api_key: "hash".into(),
            spend: 0.5,
            total_tokens: 30,
            prompt_tokens: 20,
            completion_tokens: 10,
            start_time_ms: 1_000,
            end_time_ms: 1_900,
            completion_start_time_ms: Some(1_300),
            model: "gpt-4o".into(),
            model_group: "b".into(),
            model_id: "b-0".into(),
            custom_llm_provider: "openai".into(),
            metadata: serde_json::json!({"user_api_key_alias": "alias"}),
            ..SpendLog::default()
        };
        let attempt = |id: &str, group: &str, start_ms, failed: bool| AttemptFacts {
            deployment: id.into(),
            model_group: group.into(),
            start_ms,
            duration_ms: 100.0,
            error_class: failed.then_some("RateLimitError"),
            status: if failed { 429 } else { 0 },
            ..AttemptFacts::default()
        };
        let facts = Facts {
            api: "/v1/chat/completions",
            requested_model: "a".into(),
            caller: "key",
            stream: true,
            status: 200,
            error_class: None,
            attempts: vec![
                attempt("a-0", "a", 1_000, true),
                attempt("b-0", "b", 1_200, false),
            ],
            ..Facts::default()
        };
        let key = KeyTotals {
            spend: 0.75,
            max_budget: Some(2.0),
            remaining_requests: Some(9),
            remaining_tokens: Some(900),
            soft_budget: None,
        };
        m.record(&Record {
            log: &Arc::new(log),
            facts: &Arc::new(facts),
            key: Some(key),
        });
        let scrape = Scrape {
            deployments: vec![DeploymentSample {
                labels: dep("a-0", "a"),
                state: 2,
                in_flight: 0,
                cooldowns: vec![(429, 1)],
            }],
            loop_connections: vec![1],
            ..Scrape::default()
        };
        let text = m.render(&scrape);
        for name in [
            "litellm_proxy_total_requests_metric_total",
            "litellm_request_total_latency_metric",
            "litellm_llm_api_latency_metric",
            "litellm_llm_api_time_to_first_token_metric",
            "litellm_overhead_latency_metric",
            "litellm_spend_metric_total",
            "litellm_total_tokens_metric_total",
            "litellm_input_tokens_metric_total",
            "litellm_output_tokens_metric_total",
            "litellm_deployment_state",
            "litellm_deployment_success_responses_total",
            "litellm_deployment_failure_responses_total",
            "litellm_deployment_cooled_down_total",
            "litellm_deployment_successful_fallbacks_total",
            "litellm_remaining_api_key_budget_metric",
            "litellm_api_key_max_budget_metric",
            "litellm_remaining_requests_metric",
            "litellm_remaining_tokens_metric",
            "llmgate_event_loop_connections",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(name) && !l.starts_with('#')),
                "{name} has no sample:\n{text}"
            );
        }
        // A request that answered is no failure (a family shows once it has a series).
        assert!(!text.contains("litellm_proxy_failed_requests_metric_total"));
        // The labels that say what happened.
        let has = |needle: &str| text.lines().any(|l| l.contains(needle));
        assert!(
            has(
                "litellm_remaining_api_key_budget_metric{api_key_alias=\"alias\",hashed_api_key=\"hash\"} 1.25"
            ),
            "{text}"
        );
        assert!(
            has("exception_class=\"RateLimitError\",exception_status=\"429\",fallback_model=\"b\""),
            "{text}"
        );
        assert!(
            has(
                "litellm_deployment_state{api_base=\"http://127.0.0.1:1/v1\",api_provider=\"openai\",litellm_model_name=\"openai/gpt-4o\",model_id=\"a-0\"} 2"
            ),
            "{text}"
        );
        // TTFT from the answering attempt's start (1.2 s) to the first byte (1.3 s).
        assert!(
            has("litellm_llm_api_time_to_first_token_metric_sum{") && has("} 0.1"),
            "{text}"
        );
        // Overhead: 0.9 s in all, less two attempts of 0.1 s.
        assert!(text.contains("litellm_overhead_latency_metric_sum{api_base=\"http://127.0.0.1:1/v1\",api_key_alias=\"alias\",api_provider=\"openai\",hashed_api_key=\"hash\",litellm_model_name=\"openai/gpt-4o\",model_group=\"b\",model_id=\"b-0\"} 0.7"), "{text}");
        // A second scrape does not count the same cooldown twice.
        let again = m.render(&scrape);
        assert!(again.contains("litellm_deployment_cooled_down_total{api_base=\"http://127.0.0.1:1/v1\",api_provider=\"openai\",exception_status=\"429\",litellm_model_name=\"openai/gpt-4o\",model_id=\"a-0\"} 1"), "{again}");
    }
}
