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
