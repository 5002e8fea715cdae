//! One upstream request: the host checks where a provider plugin's plan goes, applies the
//! secrets the plugin never saw, sends it, and reads a whole response within its limits.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;

use crate::config::Deployment;
use crate::config::secrets::Scrubber;
use crate::error::Error;
use crate::net::{origin_of, url_origin};
use crate::plugins::Fault;
use crate::wit::provider_api::{Prefix, UpstreamRequest};
use crate::wit::types::{Auth, ErrorClass};

/// The key sent upstream: the deployment's `api_key`, else the prefix's environment variables.
pub(super) fn upstream_key(dep: &Deployment, prefix: Option<&Prefix>) -> Option<String> {
    dep.api_key
        .as_ref()
        .map(|s| s.expose().to_string())
        .or_else(|| {
            prefix.and_then(|p| p.api_key_env.iter().find_map(|var| dep.env.non_empty(var)))
        })
}

/// `e` with the deployment's secrets (and `extra`, a key read from the environment) masked
/// in every text it carries.
pub(super) fn scrub_error(e: Error, scrubber: &Scrubber, extra: Option<&str>) -> Error {
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

/// W3C Trace Context headers: set by the host only (a plugin's are dropped).
fn is_trace_header(lower: &str) -> bool {
    matches!(lower, "traceparent" | "tracestate")
}

/// Put the attempt's `traceparent` (and the client's `tracestate`) on the request.
fn set_trace(headers: &mut reqwest::header::HeaderMap, trace: Option<(String, Option<String>)>) {
    let Some((parent, state)) = trace else {
        return;
    };
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&parent) {
        headers.insert("traceparent", v);
    }
    if let Some(v) = state.and_then(|s| reqwest::header::HeaderValue::from_str(&s).ok()) {
        headers.insert("tracestate", v);
    }
}

/// A planned request, checked, with the secrets the plugin never saw applied: ready to send.
pub(super) struct Outgoing {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// Check where `plugin`'s plan goes ([`check_planned_url`]) and apply the secrets: the
/// api_base's credentials, `extra_headers`, the key (from the deployment, else the prefix's
/// environment variables) and a SigV4 signature.
pub(super) fn prepare(
    plugin: &Arc<str>,
    prefix: Option<&Prefix>,
    dep: &Deployment,
    plan: UpstreamRequest,
    trace: Option<(String, Option<String>)>,
) -> Result<Outgoing, Error> {
    let (method, mut url) = target(plugin, prefix, dep, &plan)?;
    // The api_base's own credentials, which the plugin never saw.
    let creds = &dep.api_base_credentials;
    if let Some((user, pass)) = &creds.userinfo {
        let _ = url.set_username(user);
        let _ = url.set_password(pass.as_deref());
    }
    if !creds.secret_query.is_empty() {
        url.query_pairs_mut().extend_pairs(&creds.secret_query);
    }
    let key = upstream_key(dep, prefix);
    let mut headers = reqwest::header::HeaderMap::with_capacity(plan.headers.len() + 1);
    for (k, v) in &plan.headers {
        let lk = k.to_ascii_lowercase();
        if is_framing_header(&lk) || is_trace_header(&lk) {
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
        if !is_framing_header(k) {
            insert_secret(&mut headers, k, v.expose())?;
        }
    }
    if let Some(key) = &key {
        apply_key(&mut headers, &mut url, &plan.auth, key)?;
    }
    set_trace(&mut headers, trace);
    if let Auth::AwsSigv4(service) = &plan.auth {
        sign_aws(&mut headers, dep, &url, &plan, service)?;
    }
    Ok(Outgoing {
        method,
        url,
        headers,
        body: plan.body,
    })
}

/// Headers the host sets itself, never taken from a plan or `extra_headers`.
fn is_framing_header(name: &str) -> bool {
    matches!(
        name,
        "host" | "content-length" | "transfer-encoding" | "connection"
    )
}

/// The plan's method and URL, if it may go there: the deployment's api_base origin (else
/// the prefix's default) and [`check_planned_url`].
fn target(
    plugin: &Arc<str>,
    prefix: Option<&Prefix>,
    dep: &Deployment,
    plan: &UpstreamRequest,
) -> Result<(reqwest::Method, reqwest::Url), Error> {
    let default_base = prefix.and_then(|p| p.default_api_base.as_deref());
    let allowed = match &dep.api_base {
        Some(_) => dep.api_base_origin.clone(),
        None => default_base.and_then(origin_of),
    };
    let parsed = reqwest::Url::parse(&plan.url).ok();
    let target = parsed.as_ref().and_then(url_origin);
    if target.is_none() || target != allowed {
        return Err(Fault {
            plugin: plugin.clone(),
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
        plugin: plugin.clone(),
        message: format!("planned an invalid HTTP method `{}`", plan.method),
    })?;
    let url = parsed.ok_or_else(|| Error::Internal(format!("unparsable URL {}", plan.url)))?;
    let base = dep.api_base.as_deref().or(default_base);
    if let Err(why) = check_planned_url(&plan.url, &url, base, dep) {
        return Err(Error::BadRequest(format!(
            "refused to send the request: the upstream URL planned by {plugin} {why}; a request may only go under the deployment's api_base {} (deployment {})",
            base.unwrap_or("(none)"),
            dep.id
        )));
    }
    Ok((method, url))
}

/// Put the upstream key where the plan's `auth` says (SigV4 is signed apart).
fn apply_key(
    headers: &mut reqwest::header::HeaderMap,
    url: &mut reqwest::Url,
    auth: &Auth,
    key: &str,
) -> Result<(), Error> {
    match auth {
        Auth::None => {}
        Auth::Bearer => insert_secret(headers, "authorization", &format!("Bearer {key}"))?,
        Auth::Header(name) => insert_secret(headers, &name.to_ascii_lowercase(), key)?,
        Auth::Query(name) => {
            url.query_pairs_mut().append_pair(name.as_str(), key);
        }
        // Signed over the final URL, headers and body.
        Auth::AwsSigv4(_) => {}
    }
    Ok(())
}

/// Sign the request for AWS `service` with the deployment's (or the environment's) AWS
/// credentials.
fn sign_aws(
    headers: &mut reqwest::header::HeaderMap,
    dep: &Deployment,
    url: &reqwest::Url,
    plan: &UpstreamRequest,
    service: &str,
) -> Result<(), Error> {
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
    let region = aws_region(dep, url);
    let signed = header_pairs(headers);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let added = super::aws::sign(
        &super::aws::SignRequest {
            method: plan.method.as_str(),
            url,
            headers: &signed,
            body: &plan.body,
            region: &region,
            service,
            amz_date: &super::aws::amz_date(now),
        },
        &creds,
    );
    for (k, v) in added {
        insert_secret(headers, &k, &v)?;
    }
    Ok(())
}

/// Headers as text pairs (values that are not text left out).
pub(super) fn header_pairs(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Send `req` and wait up to `timeout` for the response head.
pub(super) async fn send(
    http: &reqwest::Client,
    req: Outgoing,
    timeout: Duration,
    dep: &Deployment,
) -> Result<reqwest::Response, Error> {
    let request = http
        .request(req.method, req.url)
        .headers(req.headers)
        .body(req.body);
    match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => Err(timeout_error(dep, timeout)),
        Ok(Err(e)) => Err(send_error(dep, &e)),
        Ok(Ok(r)) => Ok(r),
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

pub(super) fn timeout_error(dep: &Deployment, timeout: Duration) -> Error {
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

pub(super) async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, Error> {
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
