//! Loading: read `config.yaml` (or nothing, for a command-line-only start), parse it and
//! hand it to [`validate`] with the environment read once, now.

use std::path::Path;

use super::env::Environment;
use super::raw::RawConfig;
use super::validate::validate;
use super::{Config, ConfigError, Overrides};

/// Load and validate `path`, then apply `overrides`.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let env = Environment::capture();
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", p.display())]))?;
            from_text(&text, &p.display().to_string(), overrides, &env)
        }
        None => validate(
            RawConfig::default(),
            "command line".to_string(),
            overrides,
            &env,
        ),
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
