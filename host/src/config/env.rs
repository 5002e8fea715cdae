//! The process environment, read once when the config loads. `os.environ/VAR` references,
//! the provider keys a plugin's prefix names (`OPENAI_API_KEY`, ...) and the AWS credentials
//! and region are all looked up in this snapshot, never in the live environment on an
//! attempt.

use std::collections::HashMap;
use std::fmt;

/// A snapshot of environment variables (values are secrets: `Debug` shows names only).
#[derive(Clone, Default)]
pub struct Environment(HashMap<String, String>);

impl Environment {
    /// The process environment now (variables whose name or value is not UTF-8 are left
    /// out, as `std::env::var` would not read them).
    pub fn capture() -> Self {
        Self(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        )
    }

    /// The variable's value as set (possibly empty), `None` if unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The variable's value, `None` if unset or empty.
    pub fn non_empty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Environment {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_tuple("Environment").field(&names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stay_out_of_debug_and_empty_counts_as_unset_only_when_asked() {
        let env: Environment = [("OPENAI_API_KEY", "sk-live-secret"), ("AWS_REGION", "")]
            .into_iter()
            .collect();
        let shown = format!("{env:?}");
        assert!(shown.contains("OPENAI_API_KEY") && !shown.contains("sk-live-secret"));
        assert_eq!(env.get("AWS_REGION"), Some(""));
        assert_eq!(env.non_empty("AWS_REGION"), None);
        assert_eq!(
            env.non_empty("OPENAI_API_KEY").as_deref(),
            Some("sk-live-secret")
        );
        assert_eq!(env.get("UNSET"), None);
    }
}
