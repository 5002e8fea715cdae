//! The gateway's admin API as the bench uses it: the virtual key every request goes with
//! (`/key/generate`), and afterwards what the gateway recorded for it (`/key/info`,
//! `/spend/logs`).

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request};
use serde_json::Value;

use crate::load::{HttpClient, REQUEST_TIMEOUT};

/// The gateway's master key whenever the bench sends a virtual key.
pub const MASTER_KEY: &str = "sk-bench-master";

/// Which virtual key the load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// None: the gateway has no master key, requests are not authenticated.
    None,
    /// `--keys`: a budget, a daily budget window, rpm/tpm/parallel limits.
    Limits,
    /// `--virtual-key`: a `max_budget`, and an `rpm_limit` when Redis is on.
    Budget,
}

impl KeyMode {
    /// Whether requests go with a virtual key (and the gateway has a master key).
    pub fn on(self) -> bool {
        self != KeyMode::None
    }
}

/// The virtual key of one run: its secret and alias, unique per run so that a database
/// kept between runs (PostgreSQL) never holds it already.
pub struct BenchKey {
    /// The key itself (`sk-bench-<run>`).
    pub key: String,
    /// Its alias (`bench-<run>`).
    pub alias: String,
}

impl BenchKey {
    /// A fresh key named after this process and the time.
    pub fn fresh() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let run = format!("{millis}-{}", std::process::id());
        Self {
            key: format!("sk-bench-{run}"),
            alias: format!("bench-{run}"),
        }
    }

    /// The `Authorization` header that sends it.
    pub fn auth(&self) -> anyhow::Result<HeaderValue> {
        HeaderValue::from_str(&format!("Bearer {}", self.key)).context("a key header")
    }

    /// The `/key/generate` body for `mode` (limits far above any load; a budget that never
    /// runs out).
    fn body(&self, mode: KeyMode, redis: bool) -> Value {
        let mut body = serde_json::json!({
            "key": self.key,
            "key_alias": self.alias,
            "max_budget": 1_000_000_000,
        });
        match mode {
            KeyMode::Limits => {
                body["budget_duration"] = "1d".into();
                body["rpm_limit"] = 1_000_000_000u64.into();
                body["tpm_limit"] = 1_000_000_000_000u64.into();
                body["max_parallel_requests"] = 1_000_000u64.into();
            }
            KeyMode::Budget if redis => body["rpm_limit"] = 1_000_000_000u64.into(),
            KeyMode::Budget | KeyMode::None => {}
        }
        body
    }
}

/// Create `key` on the gateway at `base` (`POST /key/generate` with the master key);
/// returns its hash (`token_id`), the name the admin calls below use.
pub async fn generate(
    client: &HttpClient,
    base: &str,
    key: &BenchKey,
    mode: KeyMode,
    redis: bool,
) -> anyhow::Result<String> {
    let body = key.body(mode, redis).to_string();
    let answer = call(client, Method::POST, &format!("{base}/key/generate"), body).await?;
    answer
        .get("token_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("/key/generate answered without a token_id")
}

/// What the gateway holds for a key: its spend (`/key/info`) and its spend log rows
/// (`/spend/logs`, read from the store after the queued rows are committed).
pub struct Recorded {
    /// The key's spend.
    pub spend: f64,
    /// Its spend log rows: request id, spend, status.
    pub rows: Vec<(String, f64, String)>,
}

/// Read what the gateway at `base` recorded for the key whose hash is `token`.
pub async fn recorded(client: &HttpClient, base: &str, token: &str) -> anyhow::Result<Recorded> {
    let info = call(
        client,
        Method::GET,
        &format!("{base}/key/info?key={token}"),
        String::new(),
    )
    .await?;
    let spend = info
        .pointer("/info/spend")
        .and_then(Value::as_f64)
        .context("/key/info has no info.spend")?;
    let logs = call(
        client,
        Method::GET,
        &format!("{base}/spend/logs?api_key={token}"),
        String::new(),
    )
    .await?;
    let rows = logs
        .as_array()
        .context("/spend/logs is not a list")?
        .iter()
        .map(|r| {
            let text = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
            let spend = r.get("spend").and_then(Value::as_f64).unwrap_or(f64::NAN);
            (text("request_id"), spend, text("status"))
        })
        .collect();
    Ok(Recorded { spend, rows })
}

/// One admin call with the master key; the answer's JSON, or an error with its status
/// and body.
async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: String,
) -> anyhow::Result<Value> {
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = method.clone();
    *req.uri_mut() = url.parse().with_context(|| format!("bad URL {url}"))?;
    let headers = req.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {MASTER_KEY}")).context("the master key header")?,
    );
    let exchange = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {url}"))?;
    if !status.is_success() {
        bail!(
            "{method} {url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{method} {url}: not JSON"))
}
