//! The attempts of a routing plan: which ones run (retries and fallbacks, LiteLLM's
//! counting; Retry-After; cooldowns), and one attempt through its provider plugin up to a
//! whole answer or the start of a stream. The answer is rendered (and billed) by
//! [`Answer::respond`], once no other attempt can run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use tracing::Instrument as _;

use super::billing::Billing;
use super::stats::InFlight;
use super::upstream::{self, scrub_error, timeout_error};
use super::{
    Call, Gateway, forwardable_headers, plugin_deployment, plugin_error, response, set_header,
    timed,
};
use crate::config::Deployment;
use crate::error::Error;
use crate::plugins::provider::{Exchange, ProviderPlugin};
use crate::wit::policy_api::Attempt;
use crate::wit::provider_api::{ClientResponse, Inbound};
use crate::wit::types::Framing;

/// Run `plan`'s attempts until one answers; the last failure if none does.
pub(super) async fn run_plan(
    gw: &Gateway,
    call: &Call,
    plan: &[Attempt],
    billing: &mut Billing,
) -> Result<Answer, Error> {
    let forwarded = forwardable_headers(&call.headers);
    let mut last: Option<Error> = None;
    let mut tried: Vec<&Arc<Deployment>> = Vec::new();
    for attempt in plan {
        let Some(dep) = next_deployment(call, attempt, last.as_ref(), &tried).await else {
            continue;
        };
        if !gw.windows.admit_attempt(dep).await {
            last = Some(over_limit(dep));
            continue;
        }
        let (retries, fallbacks) = attempt_counts(&tried, dep);
        tried.push(dep);
        let one = One {
            gw,
            call,
            dep,
            retries,
            fallbacks,
        };
        let span = tracing::info_span!("attempt", deployment = %dep.id, provider = %dep.provider);
        let ran = one.run(&forwarded, billing).instrument(span).await;
        billing.attempt_ended(ran.as_ref().err());
        match ran {
            Ok(answer) => return Ok(answer),
            // The gateway is at capacity, not the deployment at fault: no cooldown, and no
            // other attempt (they share the pool). Logged where counted.
            Err(e @ Error::PluginCapacity(_)) => return Err(e),
            Err(e) => {
                cool_down(gw, call, dep, &e);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Unavailable(format!(
            "no deployment of `{}` could take the request",
            call.group
        ))
    }))
}

/// The deployment `attempt` goes to, or `None` to skip it: after a failure, only attempts
/// that list its class run. Retrying the deployment that just failed honours its
/// Retry-After (and `retry_after`), or skips the attempt if that is longer than we hold a
/// client.
async fn next_deployment<'c>(
    call: &'c Call,
    attempt: &Attempt,
    last: Option<&Error>,
    tried: &[&Arc<Deployment>],
) -> Option<&'c Arc<Deployment>> {
    if let Some(err) = last
        && !attempt.when.contains(&err.class())
    {
        return None;
    }
    let dep = call
        .config
        .deployments
        .iter()
        .find(|d| d.id == attempt.candidate_id)?;
    if let (Some(err), Some(prev)) = (last, tried.last())
        && prev.id == dep.id
    {
        let routing = &call.config.routing;
        let wait = retry_after(err).max(routing.retry_after);
        if wait > routing.max_retry_wait {
            tracing::info!(deployment = %dep.id, wait_ms = wait.as_millis() as u64, "skipping a retry: Retry-After is longer than the gateway waits");
            return None;
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    Some(dep)
}

/// An attempt skipped because its deployment reached its `rpm` or `tpm` this minute.
fn over_limit(dep: &Deployment) -> Error {
    let reset_secs = (60 - crate::ledger::unix_now().rem_euclid(60)).max(1) as u64;
    Error::RateLimited {
        message: format!(
            "No deployments available: deployment {} reached its rpm/tpm limit (rpm {}, tpm {}) for this minute; retry in {reset_secs}s",
            dep.id, dep.rpm, dep.tpm
        ),
        retry_after_secs: reset_secs,
        headers: Vec::new(),
    }
}

/// The upstream's Retry-After in an error, zero if it gave none.
fn retry_after(err: &Error) -> Duration {
    match err {
        Error::Upstream {
            retry_after_ms: Some(ms),
            ..
        } => Duration::from_millis(u64::from(*ms)),
        _ => Duration::ZERO,
    }
}

/// Log a failed attempt and count it against its deployment (cooldown after
/// `allowed_fails`).
fn cool_down(gw: &Gateway, call: &Call, dep: &Deployment, e: &Error) {
    tracing::warn!(deployment = %dep.id, kind = e.kind(), status = e.status().as_u16(), "attempt failed: {e}");
    let retry_after = match e {
        Error::Upstream { retry_after_ms, .. } => *retry_after_ms,
        _ => None,
    };
    let routing = &call.config.routing;
    let cooled = gw.stats.failed(
        &dep.id,
        e.class(),
        e.status().as_u16(),
        retry_after,
        routing.allowed_fails,
        routing.cooldown_time,
    );
    if let (Some(ms), Some(shared)) = (cooled, gw.shared()) {
        shared.cooldown(&dep.id, ms);
    }
}

/// A health probe: one attempt at `dep` outside any plan and bill, within `limit`. It runs
/// the path a client's attempt runs (the plugin plans, the host checks the origin, signs,
/// sends on the pooled client, the plugin parses the answer) and counts the same way in the
/// deployment's live stats: an answer as a success, a failure against `allowed_fails` and
/// the cooldown.
pub(super) async fn probe(
    gw: &Gateway,
    call: &Call,
    dep: &Arc<Deployment>,
    limit: Duration,
) -> Result<(), Error> {
    let one = One {
        gw,
        call,
        dep,
        retries: 0,
        fallbacks: 0,
    };
    let deployment = plugin_deployment(dep, None);
    let span = tracing::info_span!("probe", deployment = %dep.id, provider = %dep.provider);
    let ran =
        tokio::time::timeout(limit, one.attempt(deployment, &[], None).instrument(span)).await;
    let result = match ran {
        Ok(Ok(answer)) => answer.probed(),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timeout_error(dep, limit)),
    };
    if let Err(e) = &result {
        cool_down(gw, call, dep, e);
    }
    result
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

/// One attempt: a deployment, and where it stands among the plan's attempts.
struct One<'a> {
    gw: &'a Gateway,
    call: &'a Call,
    dep: &'a Arc<Deployment>,
    retries: usize,
    fallbacks: usize,
}

/// The upstream's answer to a sent request, before the plugin reads it.
struct Sent {
    resp: reqwest::Response,
    status: u16,
    headers: Vec<(String, String)>,
    timeout: Duration,
    sent_at: Instant,
    in_flight: InFlight,
}

/// An attempt that answered: the client gets it (and the request is billed) in
/// [`Answer::respond`].
pub(super) struct Answer {
    served: Served,
    kind: AnswerKind,
}

/// Who answered, and after how many other attempts.
struct Served {
    dep: Arc<Deployment>,
    plugin: Arc<str>,
    retries: usize,
    fallbacks: usize,
}

enum AnswerKind {
    /// A whole response, translated by the plugin.
    Whole(Exchange, ClientResponse),
    /// A 2xx stream the attempt committed to.
    Stream(super::stream::Started),
}

impl One<'_> {
    /// Run the attempt to a whole answer or to the start of the stream. Its error, whatever
    /// made it, has the deployment's secrets masked before anyone (client, log, spend log,
    /// the routing loop) sees it.
    async fn run(
        &self,
        forwarded: &[(String, String)],
        billing: &mut Billing,
    ) -> Result<Answer, Error> {
        let deployment = plugin_deployment(self.dep, self.call.capture.as_deref());
        billing.route_to(self.dep, &deployment.model);
        self.attempt(deployment, forwarded, Some(billing)).await
    }

    /// The attempt itself, billed or not (a health probe: `billing` `None`): the plugin
    /// plans, the host sends, the plugin reads; the error has the deployment's secrets masked.
    async fn attempt(
        &self,
        deployment: crate::wit::provider_api::Deployment,
        forwarded: &[(String, String)],
        billing: Option<&mut Billing>,
    ) -> Result<Answer, Error> {
        let (call, dep) = (self.call, self.dep);
        let inbound = Inbound {
            api: call.api,
            model: call.model.clone(),
            stream: call.stream,
            body: call.body.to_vec(),
            content_type: call.content_type.clone(),
            headers: forwarded.to_vec(),
            deployment,
        };
        let env_key = match &dep.api_key {
            Some(_) => None,
            None => call
                .registry
                .provider(&dep.provider)
                .and_then(|p| upstream::upstream_key(dep, p.prefix(&dep.provider))),
        };
        self.exchange(inbound, env_key.clone(), billing)
            .await
            .map_err(|e| scrub_error(e, &dep.scrubber, env_key.as_deref()))
    }

    /// The plugin plans the request, the host sends it, the plugin reads the answer.
    async fn exchange(
        &self,
        inbound: Inbound,
        env_key: Option<String>,
        mut billing: Option<&mut Billing>,
    ) -> Result<Answer, Error> {
        let dep = self.dep;
        let plugin = self.provider(&inbound)?;
        let prefix = plugin.prefix(&dep.provider);
        let mut ex = plugin.exchange(&inbound).await?;
        drop(inbound);
        let (planned, timing) = timed(plugin.id(), "plan", ex.build_request()).await;
        if let Some(b) = billing.as_deref_mut() {
            b.plugin_call(timing, true);
        }
        let plan = planned?.map_err(|e| plugin_error(e, Some(&dep.id)))?;
        let framing = plan.framing;
        let trace = billing.as_deref().and_then(Billing::upstream_trace);
        let outgoing = upstream::prepare(plugin.id(), prefix, dep, plan, trace)?;
        let timeout = if self.call.stream {
            dep.stream_timeout
        } else {
            dep.timeout
        };
        let in_flight = self.gw.stats.start(&dep.id);
        let sent_at = Instant::now();
        let resp = match upstream::send(self.gw.http(), outgoing, timeout, dep).await {
            Ok(r) => r,
            Err(e) => {
                in_flight.done(false, 0);
                return Err(e);
            }
        };
        let sent = Sent {
            status: resp.status().as_u16(),
            headers: upstream::header_pairs(resp.headers()),
            resp,
            timeout,
            sent_at,
            in_flight,
        };
        let kind = if !(200..300).contains(&sent.status) || framing == Framing::None {
            self.whole(ex, sent, billing.as_deref_mut()).await?
        } else {
            let (started, timing) = timed(
                plugin.id(),
                "stream_start",
                ex.on_stream_start(sent.status, &sent.headers),
            )
            .await;
            if let Some(b) = billing {
                b.plugin_call(timing, true);
            }
            let extra = started?.map_err(|e| plugin_error(e, Some(&dep.id)))?;
            AnswerKind::Stream(super::stream::Started {
                ex,
                resp: sent.resp,
                framing,
                headers: extra,
                in_flight: sent.in_flight,
                sent_at,
                env_key,
            })
        };
        Ok(Answer {
            served: Served {
                dep: dep.clone(),
                plugin: plugin.id().clone(),
                retries: self.retries,
                fallbacks: self.fallbacks,
            },
            kind,
        })
    }

    /// The provider plugin of the deployment, if it serves the request's API.
    fn provider(&self, inbound: &Inbound) -> Result<Arc<ProviderPlugin>, Error> {
        let (dep, registry) = (self.dep, &self.call.registry);
        let plugin = registry
            .provider(&dep.provider)
            .ok_or_else(|| Error::NoProvider {
                provider: dep.provider.clone(),
                deployment: dep.id.clone(),
                loaded: registry.prefixes().join(", "),
            })?;
        if !plugin.apis.contains(&inbound.api) {
            return Err(Error::BadRequest(format!(
                "provider `{}` (plugin {}) does not serve the {} API (deployment {})",
                dep.provider,
                plugin.id(),
                crate::observe::route(inbound.api),
                dep.id
            )));
        }
        Ok(plugin.clone())
    }

    /// Read a whole (non-streamed, or error) response within the attempt's timeout and
    /// have the plugin translate it.
    async fn whole(
        &self,
        mut ex: Exchange,
        sent: Sent,
        billing: Option<&mut Billing>,
    ) -> Result<AnswerKind, Error> {
        let dep = self.dep;
        let Sent {
            resp,
            status,
            headers,
            timeout,
            sent_at,
            in_flight,
        } = sent;
        let remaining = timeout.saturating_sub(sent_at.elapsed());
        let limit = self.call.config.max_response_body_bytes;
        let read = tokio::time::timeout(remaining, upstream::read_limited(resp, limit)).await;
        let body = match read.unwrap_or_else(|_| Err(timeout_error(dep, timeout))) {
            Ok(b) => b,
            Err(e) => {
                in_flight.done(false, 0);
                return Err(e);
            }
        };
        let plugin = ex.plugin().id().clone();
        let (parsed, timing) = timed(&plugin, "parse", ex.on_body(status, &headers, &body)).await;
        if let Some(b) = billing {
            b.plugin_call(timing, true);
        }
        let answer = parsed?;
        let latency = sent_at.elapsed().as_micros() as u64;
        let cr = match answer {
            // An error answer the plugin passes on may echo a credential.
            Ok(mut cr) if !(200..300).contains(&status) || !(200..300).contains(&cr.status) => {
                if let std::borrow::Cow::Owned(clean) = dep.scrubber.scrub_bytes(&cr.body) {
                    cr.body = clean;
                }
                cr
            }
            Ok(cr) => cr,
            Err(e) => {
                in_flight.done(false, latency);
                return Err(plugin_error(e, Some(&dep.id)));
            }
        };
        in_flight.done(true, latency);
        Ok(AnswerKind::Whole(ex, cr))
    }
}

impl Answer {
    /// Stream or answer: the client's response, with the request settled (a whole answer)
    /// or handed to the stream to settle when it ends.
    pub(super) fn respond(self, call: &Call, mut billing: Billing) -> Response {
        let served = &self.served;
        let dep = &served.dep;
        match self.kind {
            AnswerKind::Whole(ex, cr) => {
                let headers = billing.settle_answer(dep, cr.status, cr.usage.as_ref(), &cr.body);
                let mut out = response(cr.status, &cr.headers, Body::from(cr.body));
                decorate(&mut out, call, served);
                for (k, v) in headers {
                    set_header(&mut out, k, &v);
                }
                ex.plugin().clone().recycle(ex);
                out
            }
            AnswerKind::Stream(mut started) => {
                let headers = billing.start_stream(&dep.prices);
                let extra = std::mem::take(&mut started.headers);
                let body = super::stream::body(started.into_state(call, dep.clone(), billing));
                let mut out = response(200, &extra, body);
                out.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/event-stream"),
                );
                out.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-cache"),
                );
                decorate(&mut out, call, served);
                for (k, v) in headers {
                    set_header(&mut out, k, &v);
                }
                out
            }
        }
    }
}

impl Answer {
    /// A probe's verdict: a 2xx answer (or a started stream) is healthy; the answer is
    /// dropped (the plugin instance recycled), nothing is billed.
    fn probed(self) -> Result<(), Error> {
        let AnswerKind::Whole(ex, cr) = self.kind else {
            return Ok(());
        };
        ex.plugin().clone().recycle(ex);
        if (200..300).contains(&cr.status) {
            return Ok(());
        }
        let body = String::from_utf8_lossy(&cr.body);
        let text: String = body.chars().take(500).collect();
        Err(Error::Upstream {
            class: crate::wit::types::ErrorClass::Upstream,
            status: if (400..=599).contains(&cr.status) {
                cr.status
            } else {
                502
            },
            message: format!(
                "deployment {} answered HTTP {}: {text}",
                self.served.dep.id, cr.status
            ),
            code: None,
            retry_after_ms: None,
        })
    }
}

/// The `x-litellm-*` headers that say who answered, and how.
fn decorate(resp: &mut Response, call: &Call, answer: &Served) {
    let dep = &answer.dep;
    set_header(resp, "x-litellm-call-id", &call.id);
    set_header(resp, "x-litellm-model-id", &dep.id);
    set_header(resp, "x-litellm-model-group", &dep.model_name);
    if let Some(base) = &dep.api_base {
        set_header(resp, "x-litellm-model-api-base", base);
    }
    let counts = [
        ("x-litellm-attempted-retries", answer.retries),
        ("x-litellm-attempted-fallbacks", answer.fallbacks),
    ];
    for (name, n) in counts {
        set_header(resp, name, &n.to_string());
    }
    set_header(
        resp,
        "x-litellm-response-duration-ms",
        &call.started.elapsed().as_millis().to_string(),
    );
    set_header(resp, "x-llmgate-plugin", &answer.plugin);
}
