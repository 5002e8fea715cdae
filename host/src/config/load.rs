//! Loading: read `config.yaml` (or nothing, for a command-line-only start), parse it and
//! hand it to [`validate`] with the environment read once, now.

use std::path::Path;

use super::env::Environment;
use super::raw::RawConfig;
use super::validate::validate;
use super::{Config, ConfigError, Overrides};

/// Load and validate `path`, then apply `overrides`. The default database file is next to
/// `path` (unless `overrides.config_dir` says where).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let env = Environment::capture();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", p.display())]))?;
            let overrides = Overrides {
                config_dir: overrides
                    .config_dir
                    .clone()
                    .or_else(|| p.parent().map(Path::to_path_buf)),
                ..overrides.clone()
            };
            from_text(&text, &p.display().to_string(), &overrides, &env)
        }
        None => validate(
            RawConfig::default(),
            "command line".to_string(),
            overrides,
            &env,
        ),
    }
}

/// Whether the config at `path` asks for JSON logs (`litellm_settings.json_logs: true`).
/// Logging starts before the config is loaded, so this reads only that one key; a file
/// that cannot be read or parsed says no here and is reported by [`load`].
pub fn wants_json_logs(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(raw) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
        return false;
    };
    match &raw["litellm_settings"]["json_logs"] {
        serde_yaml_ng::Value::Bool(b) => *b,
        serde_yaml_ng::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Parse and validate a config text (`source` names it in messages), then apply
/// `overrides`. `env` is the environment it reads (once: see [`env`]).
pub fn from_text(
    text: &str,
    source: &str,
    overrides: &Overrides,
    env: &Environment,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError(vec![format!("{source}: {e}")]))?
    };
    validate(raw, source.to_string(), overrides, env)
}
