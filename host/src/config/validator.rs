//! The validator: collects problems and warnings (each naming the file and the key) and
//! reads scalar values, secrets and durations the way every section needs them.

use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::Secret;
use super::env::Environment;

pub(super) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The longest wait a config may name: a year. Anything longer is a typo, and a deadline
/// that far out (`Instant` + the wait) would overflow the clock.
pub(super) const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// A wait of `secs` seconds, when it is positive and at most [`MAX_SECONDS`] (NaN and
/// infinities are neither).
pub(super) fn bounded_seconds(secs: f64) -> Option<Duration> {
    (secs > 0.0 && secs <= MAX_SECONDS as f64).then(|| Duration::from_secs_f64(secs))
}

pub(super) fn yaml_to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

pub(super) struct Validator {
    pub(super) source: String,
    pub(super) problems: Vec<String>,
    pub(super) warnings: Vec<String>,
    /// The environment the deployments keep (see [`Deployment::env`]).
    pub(super) environment: Arc<Environment>,
}

impl Validator {
    pub(super) fn problem(&mut self, at: &str, what: &str) {
        self.problems.push(format!("{}: {at}: {what}", self.source));
    }

    pub(super) fn warn(&mut self, at: &str, what: &str) {
        self.warnings.push(format!("{}: {at}: {what}", self.source));
    }

    /// A string value, resolving `os.environ/VAR`. Missing variables give `None` and a warning.
    pub(super) fn string(
        &mut self,
        at: &str,
        v: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        let Some(s) = scalar_string(v) else {
            self.problem(at, "must be a string");
            return None;
        };
        match s.strip_prefix("os.environ/") {
            Some(var) => {
                let val = env(var);
                if val.is_none() {
                    self.warn(at, &format!("environment variable {var} is not set"));
                }
                val
            }
            None => Some(s),
        }
    }

    pub(super) fn secret(
        &mut self,
        at: &str,
        v: &Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Secret> {
        self.string(at, v, env)
            .filter(|s| !s.is_empty())
            .map(Secret)
    }

    pub(super) fn seconds(&mut self, at: &str, v: &Value) -> Option<Duration> {
        let secs = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let wait = secs.and_then(bounded_seconds);
        if wait.is_none() {
            self.problem(
                at,
                &format!("must be a positive number of seconds, at most {MAX_SECONDS}"),
            );
        }
        wait
    }

    pub(super) fn uint(&mut self, at: &str, v: Option<&Value>) -> Option<u32> {
        let v = v?;
        match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if n <= u64::from(u32::MAX) => Some(n as u32),
            _ => {
                self.problem(at, "must be a non-negative integer");
                None
            }
        }
    }

    pub(super) fn policy_config(&mut self, at: &str, v: Option<serde_json::Value>) -> Arc<str> {
        match v {
            None | Some(serde_json::Value::Null) => Arc::from("{}"),
            Some(obj @ serde_json::Value::Object(_)) => Arc::from(obj.to_string()),
            Some(_) => {
                self.problem(at, "must be a mapping");
                Arc::from("{}")
            }
        }
    }
}
