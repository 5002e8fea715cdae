//! Alerts to Slack and webhooks (LiteLLM's `general_settings.alerting`), never on the
//! request path.
//!
//! An [`Alerter`] is a [`Sink`]: per request record it checks the key's budget crossings
//! (soft budget, 80 % of `max_budget`, `max_budget`; each once per key until the budget
//! window resets or the budget changes) and whether the request was slower than
//! `alerting_threshold`. Other parts of the process raise alerts with [`Alerter::raise`]
//! (deployments going down and coming back, plugins failing to load: `server::alerts`).
//!
//! Raising an alert only queues it (`try_send` on a bounded queue: a full queue drops it and
//! counts the drop). One background task POSTs each alert to every configured URL with a
//! timeout, trying up to [`TRIES`] times with a growing pause; [`counts`] tells how many were
//! sent, failed or dropped. A webhook URL is a secret: it is never logged (reqwest errors are
//! logged without their URL), and a key appears in an alert only as its hash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::{Facts, KeyTotals, Record, Sink};
use crate::config::Secret;
use crate::config::alerting::Alerting;

/// Alerts waiting to be sent, at most.
pub const QUEUE: usize = 1024;
/// Tries per alert and URL.
pub const TRIES: u32 = 3;
/// Longest one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The pause before the second try (doubled before each later one).
pub const BACKOFF: Duration = Duration::from_millis(250);

/// One alert, in the terms of LiteLLM's `WebhookEvent`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Alert {
    /// LiteLLM's alert type (`budget_alerts`, `llm_too_slow`, `cooldown_deployment`, ...).
    #[serde(skip)]
    pub alert_type: &'static str,
    /// `budget_crossed`, `threshold_crossed`, `soft_budget_crossed`, `llm_too_slow`,
    /// `deployment_down`, `deployment_up`, `plugin_load_failure`.
    pub event: &'static str,
    /// `key` for a key's budget, `proxy` for the others.
    pub event_group: &'static str,
    /// What happened, in one sentence.
    pub event_message: String,
    /// The key's spend, USD (budget alerts).
    pub spend: Option<f64>,
    /// The key's budget, USD.
    pub max_budget: Option<f64>,
    /// The key's soft budget, USD.
    pub soft_budget: Option<f64>,
    /// The key's hash (never the key).
    pub token: Option<String>,
    /// The key's alias.
    pub key_alias: Option<String>,
    /// The key's owner.
    pub user_id: Option<String>,
    /// The key's team.
    pub team_id: Option<String>,
    /// Fields of LiteLLM's `WebhookEvent` llmgate has nothing for: always `null`.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `WebhookEvent` fields llmgate does not track (teams, customers, projections): `null`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Unknown {
    /// LiteLLM's end-user id.
    pub customer_id: Option<()>,
    /// LiteLLM's team alias.
    pub team_alias: Option<()>,
    /// LiteLLM's user e-mail.
    pub user_email: Option<()>,
    /// LiteLLM's projected budget overrun date.
    pub projected_exceeded_date: Option<()>,
    /// LiteLLM's projected spend.
    pub projected_spend: Option<()>,
}

/// How many alert deliveries went how, since start (one per alert and URL).
#[derive(Debug, Default)]
pub struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A reading of [`Counts`]: what `/metrics` exports as `llmgate_alerts_total{result}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountsNow {
    /// Delivered (a 2xx answer).
    pub sent: u64,
    /// Not delivered after every try.
    pub failed: u64,
    /// Not queued: the queue was full.
    pub dropped: u64,
}

static COUNTS: Counts = Counts {
    sent: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
};

/// The process's alert delivery counts.
pub fn counts() -> CountsNow {
    CountsNow {
        sent: COUNTS.sent.load(Ordering::Relaxed),
        failed: COUNTS.failed.load(Ordering::Relaxed),
        dropped: COUNTS.dropped.load(Ordering::Relaxed),
    }
}

/// Where alerts go, and in which shape.
#[derive(Clone)]
struct Target {
    /// `slack` (`{"text": ...}`) or `webhook` (the [`Alert`] as JSON).
    channel: &'static str,
    url: Secret,
}

/// What was already said about one key's budget.
#[derive(Debug, Default, Clone, Copy)]
struct Crossed {
    max_budget: Option<f64>,
    soft_budget: Option<f64>,
    spend: f64,
    soft: bool,
    eighty: bool,
    exceeded: bool,
}

/// Queues alerts and checks request records for them.
pub struct Alerter {
    tx: tokio::sync::mpsc::Sender<Alert>,
    config: Alerting,
    budgets: Mutex<HashMap<String, Crossed>>,
}

impl Alerter {
    /// The alerter of `config`, and its delivery task on the current runtime; `None` when
    /// no alert URL is configured. The task ends when the last `Alerter` is dropped.
    pub fn start(config: &Alerting) -> anyhow::Result<Option<Arc<Self>>> {
        let targets: Vec<Target> = [
            ("slack", &config.slack_url),
            ("webhook", &config.webhook_url),
        ]
        .into_iter()
        .filter_map(|(channel, url)| url.clone().map(|url| Target { channel, url }))
        .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()?;
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(deliver_all(client, targets, rx));
        Ok(Some(Arc::new(Self {
            tx,
            config: config.clone(),
            budgets: Mutex::new(HashMap::new()),
        })))
    }

    /// Queue `alert` if its type is on; never waits (a full queue drops it).
    pub fn raise(&self, alert: Alert) {
        if !self.config.wants(alert.alert_type) {
            return;
        }
        if self.tx.try_send(alert).is_err() {
            COUNTS.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("alert queue full: an alert was dropped");
        }
    }

    /// The budget alerts `totals` calls for, remembering them for the key `token`.
    fn budget_alerts(&self, token: &str, totals: &KeyTotals) -> Vec<&'static str> {
        let mut map = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.entry(token.to_owned()).or_default();
        let changed = c.max_budget != totals.max_budget || c.soft_budget != totals.soft_budget;
        // A budget window that reset shows as spend going down.
        if changed || totals.spend + 1e-12 < c.spend {
            *c = Crossed {
                max_budget: totals.max_budget,
                soft_budget: totals.soft_budget,
                ..Crossed::default()
            };
        }
        c.spend = totals.spend;
        let mut out = Vec::new();
        if let Some(soft) = totals.soft_budget
            && totals.spend >= soft
            && !std::mem::replace(&mut c.soft, true)
        {
            out.push("soft_budget_crossed");
        }
        if let Some(max) = totals.max_budget {
            if totals.spend >= 0.8 * max && !std::mem::replace(&mut c.eighty, true) {
                out.push("threshold_crossed");
            }
            if totals.spend >= max && !std::mem::replace(&mut c.exceeded, true) {
                out.push("budget_crossed");
            }
        }
        out
    }
}

impl Sink for Alerter {
    fn record(&self, r: &Record<'_>) {
        if let Some(totals) = &r.key
            && !r.log.api_key.is_empty()
            && (totals.max_budget.is_some() || totals.soft_budget.is_some())
        {
            for event in self.budget_alerts(&r.log.api_key, totals) {
                self.raise(budget_alert(r, totals, event));
            }
        }
        let latency_ms = Facts::latency_ms(r.log);
        let threshold_ms = self.config.threshold.as_millis();
        if u128::try_from(latency_ms).unwrap_or(0) > threshold_ms {
            self.raise(slow_alert(r, latency_ms));
        }
    }
}

/// A metadata string of the request's row (`user_api_key_alias`, ...).
fn meta(r: &Record<'_>, key: &str) -> Option<String> {
    r.log
        .metadata
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// A key's budget alert (`event`: `soft_budget_crossed`, `threshold_crossed`,
/// `budget_crossed`).
fn budget_alert(r: &Record<'_>, t: &KeyTotals, event: &'static str) -> Alert {
    let alias = meta(r, "user_api_key_alias");
    let name = alias.as_deref().map_or_else(
        || format!("key {}", short_hash(&r.log.api_key)),
        |a| format!("key `{a}`"),
    );
    let what = match event {
        "soft_budget_crossed" => format!(
            "Key Budget: Soft Budget Crossed: {name} spent ${:.6} of its soft budget ${:.6}",
            t.spend,
            t.soft_budget.unwrap_or(0.0)
        ),
        "threshold_crossed" => format!(
            "Key Budget: 80% Threshold Crossed: {name} spent ${:.6} of its max budget ${:.6}",
            t.spend,
            t.max_budget.unwrap_or(0.0)
        ),
        _ => format!(
            "Key Budget: Budget Crossed: {name} spent ${:.6}, over its max budget ${:.6}",
            t.spend,
            t.max_budget.unwrap_or(0.0)
        ),
    };
    Alert {
        alert_type: "budget_alerts",
        event,
        event_group: "key",
        event_message: what,
        spend: Some(t.spend),
        max_budget: t.max_budget,
        soft_budget: t.soft_budget,
        token: Some(r.log.api_key.clone()),
        key_alias: alias,
        user_id: meta(r, "user_api_key_user_id"),
        team_id: meta(r, "user_api_key_team_id"),
        unknown: Unknown::default(),
    }
}

/// The first characters of a key's hash, to name a key without an alias.
fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A request slower than `alerting_threshold`.
fn slow_alert(r: &Record<'_>, latency_ms: i64) -> Alert {
    let group = if r.log.model_group.is_empty() {
        r.facts.requested_model.as_str()
    } else {
        r.log.model_group.as_str()
    };
    let deployment = if r.log.model_id.is_empty() {
        "-"
    } else {
        r.log.model_id.as_str()
    };
    Alert {
        alert_type: "llm_too_slow",
        event: "llm_too_slow",
        event_group: "proxy",
        event_message: format!(
            "Responses are slow: {:.3}s response time > alerting_threshold. Model group: `{group}`, deployment: `{deployment}`, API: {}, call id: {}",
            latency_ms as f64 / 1000.0,
            r.facts.api,
            r.log.request_id
        ),
        token: (!r.log.api_key.is_empty()).then(|| r.log.api_key.clone()),
        key_alias: meta(r, "user_api_key_alias"),
        ..Alert::default()
    }
}

/// A deployment that went into cooldown (`status`: the failure's HTTP status, when known).
pub fn deployment_down(id: &str, group: &str, status: Option<u16>, for_ms: Option<u64>) -> Alert {
    let why = status.map_or_else(String::new, |s| format!(" after a {s} failure"));
    let until = for_ms.map_or_else(String::new, |ms| {
        format!(", out of rotation for {:.1}s", ms as f64 / 1000.0)
    });
    Alert {
        alert_type: "cooldown_deployment",
        event: "deployment_down",
        event_group: "proxy",
        event_message: format!(
            "Deployment down: `{id}` (model group `{group}`) is cooling down{why}{until}"
        ),
        ..Alert::default()
    }
}

/// A deployment that answers again after a cooldown.
pub fn deployment_up(id: &str, group: &str) -> Alert {
    Alert {
        alert_type: "cooldown_deployment",
        event: "deployment_up",
        event_group: "proxy",
        event_message: format!(
            "Deployment back up: `{id}` (model group `{group}`) answered again after its cooldown"
        ),
        ..Alert::default()
    }
}

/// A plugin file that failed to load (at start or on hot reload).
pub fn plugin_failed(file: &str, error: &str) -> Alert {
    Alert {
        alert_type: "plugin_load_failure",
        event: "plugin_load_failure",
        event_group: "proxy",
        event_message: format!("Plugin failed to load: {file}: {error}"),
        ..Alert::default()
    }
}

/// The delivery task: every queued alert to every target, until the queue closes.
async fn deliver_all(
    client: reqwest::Client,
    targets: Vec<Target>,
    mut rx: tokio::sync::mpsc::Receiver<Alert>,
) {
    while let Some(alert) = rx.recv().await {
        for t in &targets {
            let body = body(t.channel, &alert);
            let ok = deliver(&client, t, &body).await;
            let counter = if ok { &COUNTS.sent } else { &COUNTS.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The JSON body of `alert` for `channel`.
fn body(channel: &str, alert: &Alert) -> serde_json::Value {
    if channel == "slack" {
        serde_json::json!({
            "text": format!("*llmgate alert* `{}`\n{}", alert.alert_type, alert.event_message)
        })
    } else {
        serde_json::to_value(alert).unwrap_or_default()
    }
}

/// POST `body` to `t`, up to [`TRIES`] times; whether a try got a 2xx answer.
async fn deliver(client: &reqwest::Client, t: &Target, body: &serde_json::Value) -> bool {
    let body = body.to_string();
    let mut pause = BACKOFF;
    for attempt in 1..=TRIES {
        let sent = client
            .post(t.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("status {}", r.status().as_u16()),
            // Without the URL: it is a secret.
            Err(e) => e.without_url().to_string(),
        };
        tracing::warn!(
            channel = t.channel,
            attempt,
            tries = TRIES,
            "alert delivery failed: {why}"
        );
        if attempt < TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerter() -> Alerter {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        Alerter {
            tx,
            config: Alerting::default(),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    fn totals(spend: f64, max: Option<f64>, soft: Option<f64>) -> KeyTotals {
        KeyTotals {
            spend,
            max_budget: max,
            soft_budget: soft,
            ..KeyTotals::default()
        }
    }

    #[test]
    fn each_crossing_once_until_the_window_resets_or_the_budget_changes() {
        let a = alerter();
        let b = |s| a.budget_alerts("h", &totals(s, Some(1.0), Some(0.5)));
        assert!(b(0.1).is_empty());
        assert_eq!(b(0.6), ["soft_budget_crossed"]);
        assert!(b(0.7).is_empty());
        assert_eq!(b(0.85), ["threshold_crossed"]);
        assert_eq!(b(1.2), ["budget_crossed"]);
        assert!(b(1.3).is_empty());
        // The window reset: spend went down.
        assert!(b(0.0).is_empty());
        assert_eq!(b(0.9), ["soft_budget_crossed", "threshold_crossed"]);
        // A new budget: said again where it is crossed.
        let raised = a.budget_alerts("h", &totals(0.9, Some(0.5), Some(0.5)));
        assert_eq!(
            raised,
            ["soft_budget_crossed", "threshold_crossed", "budget_crossed"]
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let a = alerter();
        let before = counts().dropped;
        a.raise(deployment_up("d", "g"));
        a.raise(deployment_up("d", "g"));
        assert!(counts().dropped > before);
    }

    #[test]
    fn slack_gets_text_and_webhook_gets_the_event() {
        let alert = deployment_down("d1", "g", Some(500), Some(1000));
        let s = body("slack", &alert);
        assert!(
            s["text"]
                .as_str()
                .unwrap()
                .contains("Deployment down: `d1`")
        );
        let w = body("webhook", &alert);
        assert_eq!(w["event"], "deployment_down");
        assert_eq!(w["event_group"], "proxy");
        assert!(w.get("alert_type").is_none());
    }
}
