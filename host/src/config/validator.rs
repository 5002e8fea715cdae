//! The validator: collects problems and warnings (each naming the file and the key) and
//! reads scalar values, secrets and durations the way every section needs them.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::env::Environment;
use super::{ConfigError, Secret};

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

/// A whole number of seconds from the `llmgate:` section (0 allowed: each key says what it
/// means), when it is at most [`MAX_SECONDS`]: the rule [`bounded_seconds`] applies to
/// fractional waits.
pub(super) fn bounded_whole_seconds(secs: u64) -> Option<Duration> {
    (secs <= MAX_SECONDS).then(|| Duration::from_secs(secs))
}

pub(super) fn yaml_to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Reads a config's values for its sections and keeps what is wrong with them, in order.
pub(super) struct Validator {
    /// The file (or `command line`) every message names first.
    source: String,
    problems: Vec<String>,
    warnings: Vec<String>,
    /// The environment the deployments keep (see [`Deployment::env`]).
    ///
    /// [`Deployment::env`]: super::Deployment::env
    pub(super) environment: Arc<Environment>,
    /// The config's `environment_variables` (scalars as text): `os.environ/VAR` reads them
    /// before the environment.
    config_env: BTreeMap<String, String>,
}

impl Validator {
    /// A validator for the file `source`, reading `environment` and the config's own
    /// `environment_variables`.
    pub(super) fn new(
        source: String,
        environment: &Environment,
        config_env: &BTreeMap<String, Value>,
    ) -> Self {
        let config_env = config_env
            .iter()
            .filter_map(|(k, val)| scalar_string(val).map(|s| (k.clone(), s)))
            .collect();
        Self {
            source,
            problems: Vec::new(),
            warnings: Vec::new(),
            environment: Arc::new(environment.clone()),
            config_env,
        }
    }

    /// The warnings, or every problem found.
    pub(super) fn finish(self) -> Result<Vec<String>, ConfigError> {
        if self.problems.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigError(self.problems))
        }
    }

    pub(super) fn problem(&mut self, at: &str, what: &str) {
        self.problems.push(format!("{}: {at}: {what}", self.source));
    }

    pub(super) fn warn(&mut self, at: &str, what: &str) {
        self.warnings.push(format!("{}: {at}: {what}", self.source));
    }

    /// What `os.environ/VAR` names: the config's `environment_variables`, then the
    /// environment.
    pub(super) fn lookup(&self, var: &str) -> Option<String> {
        self.config_env
            .get(var)
            .cloned()
            .or_else(|| self.environment.get(var).map(str::to_string))
    }

    /// A string value, resolving `os.environ/VAR`. Missing variables give `None` and a warning.
    pub(super) fn string(&mut self, at: &str, v: &Value) -> Option<String> {
        let Some(s) = scalar_string(v) else {
            self.problem(at, "must be a string");
            return None;
        };
        let Some(var) = s.strip_prefix("os.environ/") else {
            return Some(s);
        };
        let val = self.lookup(var);
        if val.is_none() {
            self.warn(at, &format!("environment variable {var} is not set"));
        }
        val
    }

    /// A [`Self::string`] that is a secret: empty counts as unset.
    pub(super) fn secret(&mut self, at: &str, v: &Value) -> Option<Secret> {
        self.string(at, v).filter(|s| !s.is_empty()).map(Secret)
    }

    /// A wait in seconds, written as a number or a numeric string (see [`Self::wait`]).
    pub(super) fn seconds(&mut self, at: &str, v: &Value) -> Option<Duration> {
        let secs = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        self.wait(at, secs)
    }

    /// A wait of `secs` seconds ([`bounded_seconds`]); anything else (`None` too) is a problem.
    pub(super) fn wait(&mut self, at: &str, secs: Option<f64>) -> Option<Duration> {
        let wait = secs.and_then(bounded_seconds);
        if wait.is_none() {
            self.problem(
                at,
                &format!("must be a positive number of seconds, at most {MAX_SECONDS}"),
            );
        }
        wait
    }

    /// A whole number of seconds ([`bounded_whole_seconds`]); past a year is a problem.
    pub(super) fn whole_seconds(&mut self, at: &str, secs: u64) -> Option<Duration> {
        let wait = bounded_whole_seconds(secs);
        if wait.is_none() {
            self.problem(
                at,
                &format!("must be at most {MAX_SECONDS} seconds (a year)"),
            );
        }
        wait
    }

    /// `n` when it is set and in `range`; out of it is a problem (and `None`).
    pub(super) fn in_range(
        &mut self,
        at: &str,
        n: Option<u64>,
        range: RangeInclusive<u64>,
    ) -> Option<u64> {
        let n = n?;
        if range.contains(&n) {
            return Some(n);
        }
        let (lo, hi) = range.into_inner();
        self.problem(at, &format!("must be between {lo} and {hi}"));
        None
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
