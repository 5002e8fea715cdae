//! Active health checks (`general_settings.background_health_checks`,
//! `health_check_interval`, `health_check_timeout`), as LiteLLM names them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::validator::Validator;

/// LiteLLM's default `health_check_interval`, seconds.
const DEFAULT_INTERVAL_SECS: f64 = 300.0;

/// LiteLLM's default probe timeout (`HEALTH_CHECK_TIMEOUT_SECONDS`), seconds.
const DEFAULT_TIMEOUT_SECS: f64 = 60.0;

/// How the gateway probes its deployments (`GET /health`, and in the background).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthChecks {
    /// Probe every deployment each [`Self::interval`] in the background; `GET /health`
    /// then answers from the latest results (`background_health_checks`, default false).
    pub background: bool,
    /// Time between background rounds (`health_check_interval`, default 300 s).
    pub interval: Duration,
    /// Longest one probe may take (`health_check_timeout`, default 60 s; a deployment's
    /// `model_info.health_check_timeout` overrides it).
    pub timeout: Duration,
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            background: false,
            interval: Duration::from_secs_f64(DEFAULT_INTERVAL_SECS),
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
        }
    }
}

/// Read the health check settings of `general_settings`.
pub(super) fn parse(v: &mut Validator, general: &BTreeMap<String, Value>) -> HealthChecks {
    let mut out = HealthChecks::default();
    match general.get("background_health_checks") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => out.background = *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => out.background = true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => {}
        Some(_) => v.problem(
            "general_settings.background_health_checks",
            "must be true or false",
        ),
    }
    for (key, slot) in [
        ("health_check_interval", &mut out.interval),
        ("health_check_timeout", &mut out.timeout),
    ] {
        if let Some(value) = general.get(key).filter(|v| !v.is_null())
            && let Some(d) = v.seconds(&format!("general_settings.{key}"), value)
        {
            *slot = d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> (HealthChecks, Vec<String>) {
        let general: BTreeMap<String, Value> = serde_yaml_ng::from_str(yaml).unwrap();
        let env = super::super::env::Environment::default();
        let mut v = Validator::new("config.yaml".into(), &env, &BTreeMap::new());
        let checks = parse(&mut v, &general);
        let problems = match v.finish() {
            Ok(_) => Vec::new(),
            Err(e) => e.0,
        };
        (checks, problems)
    }

    #[test]
    fn defaults_are_litellm_s() {
        let (c, problems) = read("{}");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c, HealthChecks::default());
        assert!(!c.background);
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.timeout, Duration::from_secs(60));
    }

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let (c, problems) = read(
            "{background_health_checks: true, health_check_interval: 1, health_check_timeout: '2.5'}",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(c.background);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        let (_, problems) = read(
            "{background_health_checks: sometimes, health_check_interval: 0, health_check_timeout: x}",
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("general_settings.background_health_checks"));
        assert!(problems[1].contains("general_settings.health_check_interval"));
        assert!(problems[2].contains("general_settings.health_check_timeout"));
    }
}
