//! `general_settings.alerting` (LiteLLM's Slack and webhook alerting) → [`Alerting`]: where
//! alerts go, how slow a request may be, and which alert types are on.
//!
//! The URLs come from the environment as in LiteLLM: `SLACK_WEBHOOK_URL` (or
//! `ALERTING_WEBHOOK_URL`) for `slack`, `WEBHOOK_URL` for `webhook`; the config's
//! `environment_variables` count too. A webhook URL is a secret (Slack's carry a token): no
//! problem or warning ever shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::Secret;
use super::validator::{Validator, scalar_string};

/// LiteLLM's `alert_types` llmgate raises, plus its own `plugin_load_failure`.
pub const ALERT_TYPES: &[&str] = &[
    "budget_alerts",
    "llm_too_slow",
    "cooldown_deployment",
    "outage_alerts",
    "plugin_load_failure",
];

/// LiteLLM's `alert_types` llmgate accepts and does not raise (yet).
const OTHER_ALERT_TYPES: &[&str] = &[
    "llm_exceptions",
    "llm_requests_hanging",
    "db_exceptions",
    "daily_reports",
    "spend_reports",
    "fallback_reports",
    "new_model_added",
    "region_outage_alerts",
    "failed_tracking_spend",
];

/// LiteLLM's default `alerting_threshold`, seconds.
pub const DEFAULT_THRESHOLD_SECS: u64 = 300;

/// Alerting, validated. Off when neither URL is set.
#[derive(Debug, Clone)]
pub struct Alerting {
    /// Where Slack-shaped alerts (`{"text": ...}`) go (`alerting: ["slack"]`).
    pub slack_url: Option<Secret>,
    /// Where LiteLLM `WebhookEvent` JSON goes (`alerting: ["webhook"]`).
    pub webhook_url: Option<Secret>,
    /// A request slower than this raises `llm_too_slow` (`alerting_threshold`, default 300 s).
    pub threshold: Duration,
    /// The alert types raised (`alert_types`); `None`: all.
    pub alert_types: Option<BTreeSet<String>>,
}

impl Default for Alerting {
    fn default() -> Self {
        Self {
            slack_url: None,
            webhook_url: None,
            threshold: Duration::from_secs(DEFAULT_THRESHOLD_SECS),
            alert_types: None,
        }
    }
}

impl Alerting {
    /// Whether any alert can be sent.
    pub fn enabled(&self) -> bool {
        self.slack_url.is_some() || self.webhook_url.is_some()
    }

    /// Whether alerts of `alert_type` are raised.
    pub fn wants(&self, alert_type: &str) -> bool {
        self.alert_types
            .as_ref()
            .is_none_or(|t| t.contains(alert_type))
    }
}

/// `general_settings.alerting`, `alerting_threshold` and `alert_types`.
pub(super) fn parse(v: &mut Validator, general: &BTreeMap<String, Value>) -> Alerting {
    let mut out = Alerting::default();
    if let Some(t) = general.get("alerting_threshold")
        && let Some(d) = v.seconds("general_settings.alerting_threshold", t)
    {
        out.threshold = d;
    }
    out.alert_types = alert_types(v, general.get("alert_types"));
    for channel in channels(v, general.get("alerting")) {
        match channel.as_str() {
            "slack" => out.slack_url = url(v, "slack", &["SLACK_WEBHOOK_URL", "ALERTING_WEBHOOK_URL"]),
            "webhook" => out.webhook_url = url(v, "webhook", &["WEBHOOK_URL"]),
            other => v.warn(
                "general_settings.alerting",
                &format!("`{other}` alerting is not supported yet, ignored (llmgate sends `slack` and `webhook`)"),
            ),
        }
    }
    out
}

/// The `alerting` list's channel names.
fn channels(v: &mut Validator, value: Option<&Value>) -> Vec<String> {
    const AT: &str = "general_settings.alerting";
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|i| {
                let s = scalar_string(i);
                if s.is_none() {
                    v.problem(AT, "must be a list of names (`slack`, `webhook`)");
                }
                s
            })
            .collect(),
        Some(_) => {
            v.problem(AT, "must be a list of names (`slack`, `webhook`)");
            Vec::new()
        }
    }
}

/// `alert_types`: a list of LiteLLM's alert type names; an unknown one is a warning.
fn alert_types(v: &mut Validator, value: Option<&Value>) -> Option<BTreeSet<String>> {
    const AT: &str = "general_settings.alert_types";
    let items = match value? {
        Value::Null => return None,
        Value::Sequence(items) => items,
        _ => {
            v.problem(AT, "must be a list of alert type names");
            return None;
        }
    };
    let mut out = BTreeSet::new();
    for name in items.iter().filter_map(scalar_string) {
        if !ALERT_TYPES.contains(&name.as_str()) && !OTHER_ALERT_TYPES.contains(&name.as_str()) {
            v.warn(AT, &format!("unknown alert type `{name}`, ignored"));
        }
        out.insert(name);
    }
    Some(out)
}

/// The first of `vars` that is set and not empty, when it is an http(s) URL.
fn url(v: &mut Validator, channel: &str, vars: &[&str]) -> Option<Secret> {
    const AT: &str = "general_settings.alerting";
    let Some((var, value)) = vars
        .iter()
        .find_map(|var| v.lookup(var).filter(|s| !s.is_empty()).map(|s| (*var, s)))
    else {
        v.warn(
            AT,
            &format!(
                "`{channel}` needs {} set; {channel} alerts are off",
                vars.join(" or ")
            ),
        );
        return None;
    };
    let value = match value.strip_prefix("os.environ/") {
        Some(inner) => v.lookup(inner).unwrap_or_default(),
        None => value,
    };
    match reqwest::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Some(Secret(value))
        }
        // The value is a secret: name the variable, never the value.
        _ => {
            v.problem(AT, &format!("{var} is not an http(s) URL"));
            None
        }
    }
}

#[cfg(test)]
mod tests {

    use super::super::{Config, ConfigError, Overrides, from_text};

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        from_text(
            yaml,
            "config.yaml",
            &Overrides::default(),
            &env.iter().copied().collect(),
        )
    }

    #[test]
    fn urls_come_from_the_environment_or_the_config_and_default_threshold_is_300s() {
        let yaml = "general_settings:\n  alerting: [slack, webhook]\nenvironment_variables:\n  WEBHOOK_URL: http://127.0.0.1:9/hook\n";
        let c = load(
            yaml,
            &[("SLACK_WEBHOOK_URL", "https://hooks.example/T/B/secret")],
        )
        .unwrap();
        let a = &c.alerting;
        assert!(a.enabled());
        assert_eq!(
            a.slack_url.as_ref().unwrap().expose(),
            "https://hooks.example/T/B/secret"
        );
        assert_eq!(
            a.webhook_url.as_ref().unwrap().expose(),
            "http://127.0.0.1:9/hook"
        );
        assert_eq!(a.threshold.as_secs(), 300);
        assert!(a.wants("budget_alerts"));
    }

    #[test]
    fn problems_name_the_variable_never_the_url() {
        let yaml = "general_settings:\n  alerting: [slack]\n  alerting_threshold: -1\n  alert_types: [budget_alerts, nonsense]\n";
        let err = load(yaml, &[("SLACK_WEBHOOK_URL", "not-a-url-secret")]).unwrap_err();
        let all = err.0.join("\n");
        assert!(
            all.contains("SLACK_WEBHOOK_URL is not an http(s) URL"),
            "{all}"
        );
        assert!(all.contains("general_settings.alerting_threshold"), "{all}");
        assert!(!all.contains("not-a-url-secret"), "{all}");
        let c = load(
            "general_settings:\n  alerting: [slack, email]\n  alert_types: [budget_alerts, nonsense]\n",
            &[],
        )
        .unwrap();
        assert!(!c.alerting.enabled());
        assert!(!c.alerting.wants("llm_too_slow"));
        let warnings = c.warnings.join("\n");
        assert!(
            warnings.contains("`slack` needs SLACK_WEBHOOK_URL"),
            "{warnings}"
        );
        assert!(
            warnings.contains("`email` alerting is not supported"),
            "{warnings}"
        );
        assert!(
            warnings.contains("unknown alert type `nonsense`"),
            "{warnings}"
        );
    }
}
