//! Which deployments serve a requested model: exact group, wildcard group (most specific
//! first) or the catch-all, and the routing policy of a group.

use super::{Config, PolicyChoice};

/// A matched model group and, for wildcards, the part `*` stood for.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    /// The group's name (the pattern for wildcards).
    pub group: &'a str,
    /// Deployment indices.
    pub deployments: &'a [usize],
    /// What `*` matched, for wildcard groups.
    pub capture: Option<String>,
}

impl Config {
    /// Find the group serving `model`: an exact group, then wildcards, then the catch-all.
    pub fn resolve(&self, model: &str) -> Option<Resolved<'_>> {
        if let Some((name, idx)) = self.groups.get_key_value(model) {
            return Some(Resolved {
                group: name,
                deployments: idx,
                capture: None,
            });
        }
        // `router_settings.model_group_alias`.
        if let Some((name, idx)) = self
            .routing
            .aliases
            .get(model)
            .and_then(|target| self.groups.get_key_value(target))
        {
            return Some(Resolved {
                group: name,
                deployments: idx,
                capture: None,
            });
        }
        // Auto models: no deployments of their own; the policy picks among related groups.
        if let Some(name) = self
            .routing
            .auto
            .as_ref()
            .and_then(|a| a.names.iter().find(|n| *n == model))
        {
            return Some(Resolved {
                group: name,
                deployments: &[],
                capture: None,
            });
        }
        for (pattern, idx) in &self.wildcards {
            if let Some(capture) = wildcard_match(pattern, model) {
                return Some(Resolved {
                    group: pattern,
                    deployments: idx,
                    capture: Some(capture),
                });
            }
        }
        let name = self.catch_all.as_deref()?;
        let (name, idx) = self.groups.get_key_value(name)?;
        Some(Resolved {
            group: name,
            deployments: idx,
            capture: None,
        })
    }

    /// Deployments (indices) of the groups a request for `group` may fall back or be
    /// routed to, besides its own.
    pub fn related_deployments(&self, group: &str) -> &[usize] {
        self.related.get(group).map_or(&[], Vec::as_slice)
    }

    /// The routing policy for a group.
    pub fn policy_for(&self, group: &str) -> &PolicyChoice {
        self.group_policies
            .get(group)
            .unwrap_or(&self.default_policy)
    }
}

/// Match `model` against a pattern with one `*`; returns what `*` stood for.
fn wildcard_match(pattern: &str, model: &str) -> Option<String> {
    let (pre, post) = pattern.split_once('*')?;
    if model.len() >= pre.len() + post.len() && model.starts_with(pre) && model.ends_with(post) {
        Some(model[pre.len()..model.len() - post.len()].to_string())
    } else {
        None
    }
}
