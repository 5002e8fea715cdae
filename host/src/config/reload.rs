//! What a config reload may change: the settings that only take effect at start are kept
//! at their running values, and named so the operator knows a restart is needed.
//!
//! Live: the model list (deployments, groups, wildcards), router settings (fallbacks,
//! retries, cooldowns, aliases, auto models, policies), limits and timeouts read per
//! request (body and response caps, stream timeouts, reserved output tokens), and the
//! shutdown grace. Kept until a restart: what the process built once from the config at
//! start (listed in [`keep_restart_settings`]).

use super::Config;

/// Whether two alerting settings are the same (URLs compared as secrets, never shown).
fn same_alerting(a: &super::alerting::Alerting, b: &super::alerting::Alerting) -> bool {
    let url = |u: &Option<super::Secret>| u.as_ref().map(|s| s.expose().to_string());
    a.threshold == b.threshold
        && a.alert_types == b.alert_types
        && url(&a.slack_url) == url(&b.slack_url)
        && url(&a.webhook_url) == url(&b.webhook_url)
}

/// Keep in `next` every setting of `running` that only takes effect at start, and name the
/// ones `next` wanted to change (config key names, in a fixed order; empty when none).
///
/// Kept: the plugins folder, the compiled-plugin cache and the sandbox limits (the plugin
/// runtime), the database path and the master key, the budget admission rule, spend logs
/// and stored prompts (the ledger), the access log (a sink added at start), the two file
/// watches, the client connection limits (the listener's), and the shared Redis.
pub fn keep_restart_settings(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut keep = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    keep(
        "llmgate.plugins_dir",
        running.plugins_dir != next.plugins_dir,
    );
    next.plugins_dir.clone_from(&running.plugins_dir);
    keep(
        "llmgate.plugin_cache_dir",
        running.plugin_cache_dir != next.plugin_cache_dir,
    );
    next.plugin_cache_dir.clone_from(&running.plugin_cache_dir);
    let (a, b) = (&running.plugin_limits, &next.plugin_limits);
    keep(
        "llmgate.plugin_limits",
        (a.memory_bytes, a.call_timeout, a.max_instances)
            != (b.memory_bytes, b.call_timeout, b.max_instances),
    );
    next.plugin_limits = running.plugin_limits.clone();
    keep(
        "llmgate.database_path",
        running.database_path != next.database_path,
    );
    next.database_path.clone_from(&running.database_path);
    let database = |c: &Config| c.postgres.as_ref().map(|p| (p.url.clone(), p.wait));
    keep(
        "general_settings.database_url",
        database(running) != database(next),
    );
    let resync = |c: &Config| c.postgres.as_ref().map(|p| p.key_resync);
    keep(
        "llmgate.key_resync_seconds",
        resync(running) != resync(next),
    );
    next.postgres.clone_from(&running.postgres);
    keep(
        "general_settings.master_key",
        running.master_key != next.master_key,
    );
    next.master_key.clone_from(&running.master_key);
    keep(
        "llmgate.budget_admission",
        running.budget_admission != next.budget_admission,
    );
    next.budget_admission = running.budget_admission;
    keep(
        "general_settings.disable_spend_logs",
        running.spend_logs != next.spend_logs,
    );
    next.spend_logs = running.spend_logs;
    keep(
        "general_settings.store_prompts_in_spend_logs",
        running.store_prompts != next.store_prompts,
    );
    next.store_prompts = running.store_prompts;
    keep("llmgate.access_log", running.access_log != next.access_log);
    next.access_log = running.access_log;
    keep(
        "litellm_settings.callbacks / llmgate.metrics",
        running.metrics != next.metrics || running.callbacks != next.callbacks,
    );
    next.metrics = running.metrics;
    next.callbacks.clone_from(&running.callbacks);
    keep(
        "general_settings.alerting",
        !same_alerting(&running.alerting, &next.alerting),
    );
    next.alerting = running.alerting.clone();
    keep("llmgate.hot_reload", running.hot_reload != next.hot_reload);
    next.hot_reload = running.hot_reload;
    keep(
        "llmgate.watch_config",
        running.watch_config != next.watch_config,
    );
    next.watch_config = running.watch_config;
    let (a, b) = (&running.client, &next.client);
    keep(
        "llmgate.client_*_timeout_seconds / max_client_connections",
        (
            a.header_read_timeout,
            a.idle_timeout,
            a.body_read_timeout,
            a.max_connections,
        ) != (
            b.header_read_timeout,
            b.idle_timeout,
            b.body_read_timeout,
            b.max_connections,
        ),
    );
    next.client = running.client;
    keep("router_settings.redis_*", running.redis != next.redis);
    next.redis.clone_from(&running.redis);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, from_text};

    fn config(yaml: &str) -> Config {
        from_text(
            yaml,
            "config.yaml",
            &Overrides::default(),
            &Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn start_only_settings_are_kept_and_named() {
        let running = config(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\ngeneral_settings: {master_key: sk-old}\nllmgate: {database_path: /tmp/a.db}\n",
        );
        let mut next = config(
            "model_list:\n  - model_name: b\n    litellm_params: {model: openai/b}\ngeneral_settings: {master_key: sk-new}\nllmgate: {database_path: /tmp/b.db, watch_config: false}\n",
        );
        let changed = keep_restart_settings(&running, &mut next);
        assert_eq!(
            changed,
            [
                "llmgate.database_path",
                "general_settings.master_key",
                "llmgate.watch_config"
            ]
        );
        assert_eq!(next.database_path, running.database_path);
        assert_eq!(next.master_key, running.master_key);
        assert!(next.watch_config);
        // The model list is what changes live.
        assert!(next.groups.contains_key("b") && !next.groups.contains_key("a"));
    }

    #[test]
    fn nothing_named_when_only_live_settings_change() {
        let running =
            config("model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n");
        let mut next = config(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n  - model_name: c\n    litellm_params: {model: openai/c}\nrouter_settings: {num_retries: 3}\n",
        );
        assert!(keep_restart_settings(&running, &mut next).is_empty());
    }
}
