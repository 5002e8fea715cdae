//! One attempt: the provider plugin plans the request, the host checks where it goes,
//! applies the secret, sends it, and hands the answer (whole or event by event) back to the
//! plugin for translation.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

use super::sse::{self, Framer};
use super::{Gateway, plugin_error, response, set_header};
use crate::config::secrets::Scrubber;
use crate::config::{Config, Deployment};
use crate::error::{Dialect, Error};
use crate::ledger::Ticket;
use crate::net::{origin_of, url_origin};
use crate::plugins::provider::Exchange;
use crate::plugins::{Fault, Registry, SseEvent};
use crate::pricing::Prices;
use crate::wit::provider_api::{Inbound, Prefix};
use crate::wit::types::{Auth, ErrorClass, Framing};

/// Everything an attempt needs from the request.
pub(super) struct AttemptCtx<'a> {
    pub gateway: &'a Gateway,
    pub registry: &'a Registry,
    pub config: &'a Config,
    pub dep: &'a Arc<Deployment>,
    pub dialect: Dialect,
    pub call_id: &'a str,
    pub started: Instant,
    pub retries: usize,
    pub fallbacks: usize,
    /// The request's ledger ticket; taken (and settled) by the attempt that answers.
    pub ticket: &'a mut Option<Ticket>,
    /// Upper bound of the request's input tokens.
    pub input_bound: u64,
}

/// Run one attempt to completion (non-streamed) or to the start of the stream. Its error,
/// whatever made it, has the deployment's secrets masked before anyone (client, log, spend
/// log, the routing loop) sees it.
pub(super) async fn run(ctx: AttemptCtx<'_>, inbound: Inbound) -> Result<Response, Error> {
    let dep = ctx.dep.clone();
    let env_key = match &dep.api_key {
        Some(_) => None,
        None => ctx
            .registry
            .provider(&dep.provider)
            .and_then(|p| upstream_key(&dep, p.prefix(&dep.provider))),
    };
    attempt(ctx, inbound)
        .await
        .map_err(|e| scrub_error(e, &dep.scrubber, env_key.as_deref()))
}

/// The key sent upstream: the deployment's `api_key`, else the prefix's environment variables.
fn upstream_key(dep: &Deployment, prefix: Option<&Prefix>) -> Option<String> {
    dep.api_key
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| {
            prefix.and_then(|p| p.api_key_env.iter().find_map(|var| dep.env.non_empty(var)))
        })
}

/// `e` with the deployment's secrets (and `extra`, a key read from the environment) masked
/// in every text it carries.
fn scrub_error(e: Error, scrubber: &Scrubber, extra: Option<&str>) -> Error {
    let clean = |t: String| -> String {
        let t = scrubber.scrub(&t).into_owned();
        match extra {
            Some(k) if k.len() >= 4 => t.replace(k, crate::config::secrets::MASK),
            _ => t,
        }
    };
    match e {
        Error::BadRequest(m) => Error::BadRequest(clean(m)),
        Error::Upstream {
            class,
            status,
            message,
            code,
            retry_after_ms,
        } => Error::Upstream {
            class,
            status,
            message: clean(message),
            code: code.map(clean),
            retry_after_ms,
        },
        Error::Plugin { plugin, message } => Error::Plugin {
            plugin,
            message: clean(message),
        },
        Error::Unavailable(m) => Error::Unavailable(clean(m)),
        Error::Internal(m) => Error::Internal(clean(m)),
        Error::Forbidden(m) => Error::Forbidden(clean(m)),
        Error::NotFound(m) => Error::NotFound(clean(m)),
        other => other,
    }
}

/// Where a planned URL may go, besides its origin (checked first), and what it may carry:
///
/// - **path**: under the path of the deployment's `api_base` (else the prefix's
///   `default-api-base`), segment-wise: `/v1` admits `/v1` and `/v1/...`, not `/v1x`;
/// - **no dot segments**: no `.` or `..` segment in the URL as the plugin wrote it, read the
///   way any server might ([`llmgate_sdk::url::dot_segment`]: percent escapes such as
///   `%2e%2e` and `%252e` decoded, `\` taken as `/`, tabs and newlines dropped), nor in the
///   normalized path;
/// - **query**: only the `api_base`'s own (non-secret) query parameters, `api-version` (or
///   `api_version`) with the deployment's `api_version` when it sets one (any value made of
///   letters, digits, `.`, `-` and `_` when it does not), and `alt=sse` (Gemini's streaming
///   switch); the host adds the `api_base`'s credential parameters and an `auth: query` key
///   itself, after this check;
/// - **no fragment** (not even an empty `#`).
///
/// A refusal is a client error (400, class `bad-request`): what moves a URL is the client's
/// model name, so it is never sent, retried elsewhere, or counted against the deployment
/// (no cooldown).
fn check_planned_url(
    planned: &str,
    url: &reqwest::Url,
    base: Option<&str>,
    dep: &Deployment,
) -> Result<(), String> {
    if planned.contains('#') {
        return Err("has a fragment".into());
    }
    let raw_path = planned.split('?').next().unwrap_or(planned);
    let raw_path = raw_path.split_once("://").map_or(raw_path, |(_, rest)| {
        rest.find(['/', '\\']).map_or("", |i| &rest[i..])
    });
    if llmgate_sdk::url::dot_segment(raw_path) || llmgate_sdk::url::dot_segment(url.path()) {
        return Err(format!("has a `.` or `..` path segment ({raw_path})"));
    }
    let base = base.and_then(|b| reqwest::Url::parse(b).ok());
    if let Some(b) = &base {
        let prefix = b.path().trim_end_matches('/');
        let path = url.path();
        let under = prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'));
        if !under {
            return Err(format!(
                "goes to {path}, outside the api_base path {prefix}"
            ));
        }
    }
    let own: Vec<(String, String)> = base
        .as_ref()
        .map(|b| {
            b.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in url.query_pairs() {
        let allowed = own.iter().any(|(ok, ov)| *ok == *k && *ov == *v)
            || (matches!(&*k, "api-version" | "api_version")
                && match dep.api_version.as_deref() {
                    Some(want) => *v == *want,
                    None => {
                        !v.is_empty()
                            && v.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
                            })
                    }
                })
            || (k == "alt" && v == "sse");
        if !allowed {
            return Err(format!("adds the query parameter `{k}`"));
        }
    }
    Ok(())
}

async fn attempt(ctx: AttemptCtx<'_>, inbound: Inbound) -> Result<Response, Error> {
    let dep = ctx.dep;
    let plugin = ctx
        .registry
        .provider(&dep.provider)
        .ok_or_else(|| Error::NoProvider {
            provider: dep.provider.clone(),
            deployment: dep.id.clone(),
            loaded: ctx.registry.prefixes().join(", "),
        })?;
    if !plugin.apis.contains(&inbound.api) {
        return Err(Error::BadRequest(format!(
            "provider `{}` (plugin {}) does not serve the {} API (deployment {})",
            dep.provider,
            plugin.id(),
            api_name(inbound.api),
            dep.id
        )));
    }
    let prefix = plugin.prefix(&dep.provider);
    let stream = inbound.stream;
    let mut ex = plugin.exchange(&inbound).await?;
    drop(inbound);
    let plan = ex
        .build_request()
        .await?
        .map_err(|e| plugin_error(e, Some(&dep.id)))?;

    // Where may this go? The deployment's api_base origin, else the prefix's default.
    let allowed = match &dep.api_base {
        Some(_) => dep.api_base_origin.clone(),
        None => prefix
            .and_then(|p| p.default_api_base.as_deref())
            .and_then(origin_of),
    };
    let parsed = reqwest::Url::parse(&plan.url).ok();
    let target = parsed.as_ref().and_then(url_origin);
    if target.is_none() || target != allowed {
        return Err(Fault {
            plugin: plugin.id().clone(),
            message: format!(
                "planned a request to `{}`, but deployment {} may only reach {}",
                plan.url,
                dep.id,
                allowed.as_deref().unwrap_or("(no api_base configured)")
            ),
        }
        .into());
    }
    let method = reqwest::Method::from_bytes(plan.method.as_bytes()).map_err(|_| Fault {
        plugin: plugin.id().clone(),
        message: format!("planned an invalid HTTP method `{}`", plan.method),
    })?;
    let mut url = parsed.ok_or_else(|| Error::Internal(format!("unparsable URL {}", plan.url)))?;
    let base = match &dep.api_base {
        Some(b) => Some(b.as_str()),
        None => prefix.and_then(|p| p.default_api_base.as_deref()),
    };
    if let Err(why) = check_planned_url(&plan.url, &url, base, dep) {
        return Err(Error::BadRequest(format!(
            "refused to send the request: the upstream URL planned by {} {why}; a request may only go under the deployment's api_base {} (deployment {})",
            plugin.id(),
            base.unwrap_or("(none)"),
            dep.id
        )));
    }
    // The api_base's own credentials, which the plugin never saw.
    let creds = &dep.api_base_credentials;
    if let Some((user, pass)) = &creds.userinfo {
        let _ = url.set_username(user);
        let _ = url.set_password(pass.as_deref());
    }
    if !creds.secret_query.is_empty() {
        url.query_pairs_mut().extend_pairs(&creds.secret_query);
    }

    // The secret: from the deployment, else the prefix's environment variables.
    let key = upstream_key(dep, prefix);
    let mut headers = reqwest::header::HeaderMap::with_capacity(plan.headers.len() + 1);
    for (k, v) in &plan.headers {
        let lk = k.to_ascii_lowercase();
        if matches!(
            lk.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(lk.as_bytes()),
            reqwest::header::HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    // `extra_headers`, applied by the host (plugins never see their values).
    for (k, v) in &dep.extra_headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            insert_secret(&mut headers, k, v.expose())?;
        }
    }
    if let Some(key) = &key {
        match &plan.auth {
            Auth::None => {}
            Auth::Bearer => insert_secret(&mut headers, "authorization", &format!("Bearer {key}"))?,
            Auth::Header(name) => insert_secret(&mut headers, &name.to_ascii_lowercase(), key)?,
            Auth::Query(name) => {
                url.query_pairs_mut()
                    .append_pair(name.as_str(), key.as_str());
            }
            // Signed below, over the final URL, headers and body.
            Auth::AwsSigv4(_) => {}
        }
    }
    if let Auth::AwsSigv4(service) = &plan.auth {
        let creds = aws_credentials(dep).ok_or_else(|| Error::Upstream {
            class: ErrorClass::Auth,
            status: 401,
            message: format!(
                "deployment {} has no AWS credentials: set aws_access_key_id and aws_secret_access_key in litellm_params, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                dep.id
            ),
            code: None,
            retry_after_ms: None,
        })?;
        let region = aws_region(dep, &url);
        let signed: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let added = super::aws::sign(
            &super::aws::SignRequest {
                method: plan.method.as_str(),
                url: &url,
                headers: &signed,
                body: &plan.body,
                region: &region,
                service,
                amz_date: &super::aws::amz_date(now),
            },
            &creds,
        );
        for (k, v) in added {
            insert_secret(&mut headers, &k, &v)?;
        }
    }

    let timeout = if stream {
        dep.stream_timeout
    } else {
        dep.timeout
    };
    let in_flight = ctx.gateway.stats.start(&dep.id);
    let sent_at = Instant::now();
    let request = ctx
        .gateway
        .http()
        .request(method, url)
        .headers(headers)
        .body(plan.body);
    let resp = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => {
            in_flight.done(false, 0);
            return Err(timeout_error(dep, timeout));
        }
        Ok(Err(e)) => {
            in_flight.done(false, 0);
            return Err(send_error(dep, &e));
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status().as_u16();
    let up_headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();

    if !(200..300).contains(&status) || plan.framing == Framing::None {
        let remaining = timeout.saturating_sub(sent_at.elapsed());
        let body = match tokio::time::timeout(
            remaining,
            read_limited(resp, ctx.config.max_response_body_bytes),
        )
        .await
        {
            Err(_) => {
                in_flight.done(false, 0);
                return Err(timeout_error(dep, timeout));
            }
            Ok(Err(e)) => {
                in_flight.done(false, 0);
                return Err(e);
            }
            Ok(Ok(b)) => b,
        };
        let answer = ex.on_body(status, &up_headers, &body).await?;
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
        let ticket = ctx.ticket.take();
        let mut rate_headers = Vec::new();
        let mut costs = None;
        if let Some(t) = ticket {
            rate_headers = t.rate_headers.clone();
            let max_budget = t.key_spend().and_then(|(_, b)| b);
            let response = t
                .ledger_store_prompts()
                .then(|| serde_json::from_slice(&cr.body).ok())
                .flatten();
            let (cost, spend) = super::settle_served(t, dep, cr.usage.as_ref(), response, true);
            costs = Some((cost, spend, max_budget));
        }
        let mut out = response(cr.status, &cr.headers, Body::from(cr.body));
        decorate(&mut out, &ctx, plugin.id());
        if let Some((cost, spend, max_budget)) = costs {
            set_header(&mut out, "x-litellm-response-cost", &cost.to_string());
            set_header(&mut out, "x-litellm-key-spend", &spend.to_string());
            if let Some(b) = max_budget {
                set_header(&mut out, "x-litellm-key-max-budget", &b.to_string());
            }
        }
        for (k, v) in rate_headers {
            set_header(&mut out, k, &v);
        }
        plugin.recycle(ex);
        return Ok(out);
    }

    // A 2xx stream: commit to it.
    let framing = plan.framing;
    let extra = ex
        .on_stream_start(status, &up_headers)
        .await?
        .map_err(|e| plugin_error(e, Some(&dep.id)))?;
    let idle = dep.timeout;
    let idle_event = ctx.config.stream_idle_timeout;
    let max_duration = ctx.config.max_stream_duration;
    let prices = dep.prices;
    let mut ticket = ctx.ticket.take();
    let mut spend_headers = Vec::new();
    if let Some(t) = ticket.as_mut() {
        // If the client goes away mid-stream: the prompt (estimated) is still billed.
        t.fallback_cost = (ctx.input_bound * 3 / 4) as f64 * prices.input;
        spend_headers.clone_from(&t.rate_headers);
        if let Some((spend, budget)) = t.key_spend() {
            spend_headers.push(("x-litellm-key-spend", spend.to_string()));
            if let Some(b) = budget {
                spend_headers.push(("x-litellm-key-max-budget", b.to_string()));
            }
        }
    }
    let body = stream_body(
        ex,
        resp,
        StreamCtx {
            framing,
            dialect: ctx.dialect,
            idle,
            idle_event,
            max_duration,
            in_flight,
            sent_at,
            dep: dep.clone(),
            env_key: if dep.api_key.is_none() { key } else { None },
            ticket,
            prices,
        },
    );
    let mut out = response(200, &extra, body);
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    out.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    decorate(&mut out, &ctx, plugin.id());
    for (k, v) in spend_headers {
        set_header(&mut out, k, &v);
    }
    Ok(out)
}

/// The route an API is served on, for messages.
pub(crate) fn api_name(api: crate::wit::types::Api) -> &'static str {
    use crate::wit::types::Api;
    match api {
        Api::ChatCompletions => "/v1/chat/completions",
        Api::Messages => "/v1/messages",
        Api::CountTokens => "/v1/messages/count_tokens",
        Api::ImagesGenerations => "/v1/images/generations",
        Api::ImagesEdits => "/v1/images/edits",
        Api::Embeddings => "/v1/embeddings",
    }
}

/// AWS credentials: the deployment's `aws_*` params, else the standard AWS environment.
fn aws_credentials(dep: &Deployment) -> Option<super::aws::Credentials> {
    let env = |k: &str| dep.env.non_empty(k);
    let id = dep
        .aws_access_key_id
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| env("AWS_ACCESS_KEY_ID"))?;
    let secret = dep
        .aws_secret_access_key
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| env("AWS_SECRET_ACCESS_KEY"))?;
    let token = dep
        .aws_session_token
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| env("AWS_SESSION_TOKEN"));
    Some(super::aws::Credentials {
        access_key_id: id,
        secret_access_key: secret,
        session_token: token,
    })
}

/// The signing region: `aws_region_name`, else `AWS_REGION`/`AWS_DEFAULT_REGION`, else the
/// region in the endpoint's host name (`bedrock-runtime.<region>.amazonaws.com`).
fn aws_region(dep: &Deployment, url: &reqwest::Url) -> String {
    let param = serde_json::from_str::<serde_json::Value>(&dep.params_json)
        .ok()
        .and_then(|v| {
            v.get("aws_region_name")
                .and_then(|r| r.as_str().map(str::to_string))
        });
    param
        .or_else(|| dep.env.get("AWS_REGION").map(str::to_string))
        .or_else(|| dep.env.get("AWS_DEFAULT_REGION").map(str::to_string))
        .or_else(|| {
            let host = url.host_str()?;
            let mut parts = host.split('.');
            let _service = parts.next()?;
            parts.next().map(str::to_string)
        })
        .unwrap_or_else(|| "us-east-1".to_string())
}

fn insert_secret(
    headers: &mut reqwest::header::HeaderMap,
    name: &str,
    value: &str,
) -> Result<(), Error> {
    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Error::Internal(format!("invalid auth header name `{name}`")))?;
    let mut value = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| Error::Internal("the deployment's api_key is not valid header text".into()))?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

fn timeout_error(dep: &Deployment, timeout: Duration) -> Error {
    Error::Upstream {
        class: ErrorClass::Timeout,
        status: 504,
        message: format!(
            "upstream did not answer within {:.1}s (deployment {})",
            timeout.as_secs_f64(),
            dep.id
        ),
        code: Some("timeout".into()),
        retry_after_ms: None,
    }
}

fn send_error(dep: &Deployment, e: &reqwest::Error) -> Error {
    let what = if e.is_connect() {
        "could not connect to the upstream"
    } else {
        "the upstream request failed"
    };
    let mut source = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = cur {
        source = s.to_string();
        cur = s.source();
    }
    Error::Upstream {
        class: ErrorClass::Upstream,
        status: 502,
        message: format!(
            "{what} at {} ({}) (deployment {})",
            dep.api_base.as_deref().unwrap_or("its default api_base"),
            if source.is_empty() {
                e.to_string()
            } else {
                source
            },
            dep.id
        ),
        code: Some("upstream_unreachable".into()),
        retry_after_ms: None,
    }
}

async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Upstream {
            class: ErrorClass::Upstream,
            status: 502,
            message: format!("the upstream response broke off: {e}"),
            code: None,
            retry_after_ms: None,
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn too_large(limit: usize) -> Error {
    Error::Upstream {
        class: ErrorClass::Upstream,
        status: 502,
        message: format!("the upstream response is larger than {limit} bytes"),
        code: None,
        retry_after_ms: None,
    }
}

fn decorate(resp: &mut Response, ctx: &AttemptCtx<'_>, plugin: &str) {
    let dep = ctx.dep;
    set_header(resp, "x-litellm-call-id", ctx.call_id);
    set_header(resp, "x-litellm-model-id", &dep.id);
    set_header(resp, "x-litellm-model-group", &dep.model_name);
    if let Some(base) = &dep.api_base {
        set_header(resp, "x-litellm-model-api-base", base);
    }
    set_header(
        resp,
        "x-litellm-attempted-retries",
        &ctx.retries.to_string(),
    );
    set_header(
        resp,
        "x-litellm-attempted-fallbacks",
        &ctx.fallbacks.to_string(),
    );
    set_header(
        resp,
        "x-litellm-response-duration-ms",
        &ctx.started.elapsed().as_millis().to_string(),
    );
    set_header(resp, "x-llmgate-plugin", plugin);
}

/// The client's view of an error inside an already-started stream.
fn error_event(dialect: Dialect, err: &Error) -> SseEvent {
    let body = err.body(dialect);
    SseEvent {
        event: matches!(dialect, Dialect::Anthropic).then(|| "error".to_string()),
        data: body.to_string(),
    }
}

/// A started stream that ran out of time.
fn stream_timeout(message: String) -> Error {
    Error::Upstream {
        class: ErrorClass::Timeout,
        status: 504,
        message,
        code: Some("timeout".into()),
        retry_after_ms: None,
    }
}

fn stream_error(message: String) -> Error {
    Error::Upstream {
        class: ErrorClass::Upstream,
        status: 502,
        message,
        code: Some("stream_error".into()),
        retry_after_ms: None,
    }
}

/// The client body of a streamed attempt: upstream bytes are framed into events, translated
/// by the plugin, and written out; any break ends the stream with an error event.
/// Most bytes of a streamed response kept for full request logging.
const LOGGED_STREAM_CAP: usize = 1 << 20;

/// The parts of a started stream.
struct StreamCtx {
    framing: Framing,
    dialect: Dialect,
    /// Longest wait for the next upstream bytes (the deployment's `timeout`).
    idle: Duration,
    /// Longest wait for the next upstream event: bytes that frame no event (SSE comments,
    /// keep-alive blank lines) do not count.
    idle_event: Duration,
    /// Longest the whole stream may run, from the request being sent.
    max_duration: Option<Duration>,
    in_flight: super::stats::InFlight,
    sent_at: Instant,
    dep: Arc<Deployment>,
    /// The key read from the environment for this attempt (masked in stream errors like
    /// the deployment's own secrets).
    env_key: Option<String>,
    ticket: Option<Ticket>,
    prices: Prices,
}

fn stream_body(mut ex: Exchange, resp: reqwest::Response, sc: StreamCtx) -> Body {
    let StreamCtx {
        framing,
        dialect,
        idle,
        idle_event,
        max_duration,
        in_flight,
        sent_at,
        dep,
        env_key,
        mut ticket,
        prices,
    } = sc;
    let ends_at = max_duration.map(|d| sent_at + d);
    let deployment = dep.id.clone();
    let stream = async_stream::stream! {
        let mut emitted: u64 = 0;
        let mut logged = BytesMut::new();
        let mut parser = Framer::new(framing);
        let mut upstream = resp.bytes_stream();
        let mut first = true;
        let mut failed: Option<Error> = None;
        let mut out = BytesMut::new();
        let mut last_event = Instant::now();
        'read: loop {
            // The next bytes must come within `idle`, an event within `idle_event` of the
            // last one, and the stream must end by `ends_at`: whichever is first.
            let now = Instant::now();
            let mut wait = idle.min((last_event + idle_event).saturating_duration_since(now));
            if let Some(end) = ends_at {
                wait = wait.min(end.saturating_duration_since(now));
            }
            let next = tokio::time::timeout(wait, upstream.next()).await;
            let chunk = match next {
                Err(_) => {
                    let now = Instant::now();
                    failed = Some(if ends_at.is_some_and(|end| now >= end) {
                        stream_timeout(format!("the upstream stream ran longer than the {:.0}s allowed (llmgate.max_stream_duration_seconds; deployment {deployment})", max_duration.unwrap_or_default().as_secs_f64()))
                    } else if now >= last_event + idle_event {
                        stream_timeout(format!("the upstream stream sent no event for {:.0}s (llmgate.stream_idle_timeout_seconds; deployment {deployment})", idle_event.as_secs_f64()))
                    } else {
                        stream_timeout(format!("the upstream stream stalled for {:.0}s (deployment {deployment})", idle.as_secs_f64()))
                    });
                    break;
                }
                Ok(None) => {
                    match parser.finish() {
                        Ok(Some(ev)) => match ex.on_event(&ev).await {
                            Ok(Ok(evs)) => evs.iter().for_each(|e| sse::encode(&mut out, e)),
                            Ok(Err(e)) => failed = Some(plugin_error(e, Some(&deployment))),
                            Err(f) => failed = Some(f.into()),
                        },
                        Ok(None) => {}
                        Err(e) => failed = Some(stream_error(format!("{} (deployment {deployment})", e.0))),
                    }
                    break;
                }
                Ok(Some(Err(e))) => {
                    failed = Some(stream_error(format!("the upstream stream broke off: {e} (deployment {deployment})")));
                    break;
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            if first {
                first = false;
                in_flight.first_event(sent_at.elapsed().as_micros() as u64);
                if let Some(t) = ticket.as_mut() {
                    t.log.completion_start_time_ms = Some(crate::ledger::unix_now_ms());
                }
            }
            parser.push(&chunk);
            loop {
                match parser.next_event() {
                    Ok(Some(ev)) => {
                        last_event = Instant::now();
                        match ex.on_event(&ev).await {
                            Ok(Ok(evs)) => {
                                emitted += evs.len() as u64;
                                evs.iter().for_each(|e| sse::encode(&mut out, e));
                            }
                            Ok(Err(e)) => {
                                failed = Some(plugin_error(e, Some(&deployment)));
                                break 'read;
                            }
                            Err(f) => {
                                failed = Some(f.into());
                                break 'read;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(stream_error(format!("{} (deployment {deployment})", e.0)));
                        break 'read;
                    }
                }
            }
            if !out.is_empty() {
                if let Some(t) = ticket.as_mut() {
                    // One event is about one output token: the charge if the client leaves.
                    t.fallback_cost += emitted as f64 * prices.output;
                    emitted = 0;
                    if t.ledger_store_prompts() && logged.len() < LOGGED_STREAM_CAP {
                        logged.extend_from_slice(&out);
                    }
                }
                yield Ok::<Bytes, Infallible>(out.split().freeze());
            }
        }
        // What reaches the client, the log and the spend log has the secrets masked.
        failed = failed.map(|e| scrub_error(e, &dep.scrubber, env_key.as_deref()));
        // The upstream is done (or broke): the plugin's closing events and usage.
        match ex.finish().await {
            Ok(Ok((events, usage))) => {
                // After a break, closing events would dress a cut-off answer up as a
                // complete one: keep only the usage, and report the break below.
                if failed.is_none() {
                    events.iter().for_each(|e| sse::encode(&mut out, e));
                }
                if let Some(t) = ticket.take() {
                    let mut t = t;
                    if t.ledger_store_prompts() {
                        events.iter().for_each(|e| sse::encode(&mut logged, e));
                    }
                    if let Some(err) = &failed
                        && let Some(m) = t.log.metadata.as_object_mut()
                    {
                        m.insert("error".into(), serde_json::json!(err.to_string()));
                    }
                    let response = t.ledger_store_prompts().then(|| {
                        serde_json::Value::String(String::from_utf8_lossy(&logged).into_owned())
                    });
                    if usage.is_some() || failed.is_none() {
                        super::settle_served(t, &dep, usage.as_ref(), response, failed.is_none());
                    }
                    // Else: dropped below, charging the estimate so far.
                }
            }
            Ok(Err(e)) => {
                if failed.is_none() {
                    failed = Some(plugin_error(e, Some(&deployment)));
                }
            }
            Err(f) => {
                if failed.is_none() {
                    failed = Some(f.into());
                }
            }
        }
        failed = failed.map(|e| scrub_error(e, &dep.scrubber, env_key.as_deref()));
        if let (Some(t), Some(err)) = (ticket.as_mut(), &failed)
            && let Some(m) = t.log.metadata.as_object_mut()
        {
            m.entry("error").or_insert_with(|| serde_json::json!(err.to_string()));
        }
        // A ticket still held here settles on drop with the estimate so far.
        drop(ticket.take());
        let latency = sent_at.elapsed().as_micros() as u64;
        in_flight.done(failed.is_none(), latency);
        if let Some(err) = &failed {
            tracing::warn!(deployment = %deployment, kind = err.kind(), "stream ended with an error: {err}");
            sse::encode(&mut out, &error_event(dialect, err));
        }
        if !out.is_empty() {
            yield Ok(out.split().freeze());
        }
        // The last bytes are handed over: tear the instance down and make a spare.
        let plugin = ex.plugin().clone();
        plugin.recycle(ex);
    };
    Body::from_stream(stream)
}
