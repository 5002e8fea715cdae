//! The shared Redis, as LiteLLM configures it: `router_settings.redis_url`, or
//! `redis_host` + `redis_port` (6379 when unset) + `redis_password`; each value may be
//! `os.environ/VAR`. Without either in the config, LiteLLM's environment fallbacks are
//! read: `REDIS_URL`, else `REDIS_HOST` (+ `REDIS_PORT`); `REDIS_PASSWORD` fills a missing
//! password. A config that names a host ignores `REDIS_URL` (as LiteLLM does).

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::Validator;
use crate::shared::Target;

const AT: &str = "router_settings";

/// The Redis target, if one is configured (in `router_settings` or the environment).
pub(super) fn parse(v: &mut Validator, router: &BTreeMap<String, Value>) -> Option<Target> {
    let get = |v: &mut Validator, k: &str| {
        router
            .get(k)
            .filter(|x| !x.is_null())
            .and_then(|x| v.string(&format!("{AT}.{k}"), x))
            .filter(|s| !s.is_empty())
    };
    let url = get(v, "redis_url");
    let host = get(v, "redis_host");
    let port = get(v, "redis_port");
    let password = router
        .get("redis_password")
        .filter(|x| !x.is_null())
        .and_then(|x| v.secret(&format!("{AT}.redis_password"), x))
        .map(|s| s.expose().to_string());
    let (url, host, port) = match (url, host) {
        (None, None) => (
            v.lookup("REDIS_URL").filter(|s| !s.is_empty()),
            v.lookup("REDIS_HOST").filter(|s| !s.is_empty()),
            port.or_else(|| v.lookup("REDIS_PORT").filter(|s| !s.is_empty())),
        ),
        (url, host) => (url, host, port),
    };
    let password = password.or_else(|| v.lookup("REDIS_PASSWORD").filter(|s| !s.is_empty()));
    let mut target = if let Some(host) = host {
        from_host(v, host, port.as_deref())?
    } else {
        let url = url?;
        match Target::from_url(&url) {
            Ok(t) => t,
            Err(e) => {
                v.problem(&format!("{AT}.redis_url"), &e);
                return None;
            }
        }
    };
    if target.password.is_none() {
        target.password = password;
    }
    Some(target)
}

/// `redis_host` and `redis_port`.
fn from_host(v: &mut Validator, host: String, port: Option<&str>) -> Option<Target> {
    let port = match port {
        None => 6379,
        Some(p) => match p.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                v.problem(
                    &format!("{AT}.redis_port"),
                    &format!("`{p}` is not a port number (1-65535)"),
                );
                return None;
            }
        },
    };
    Some(Target {
        host,
        port,
        db: 0,
        username: None,
        password: None,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::env::Environment;
    use crate::config::{Overrides, from_text};
    use crate::shared::Target;

    const MODELS: &str = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n";

    fn target(router: &str, env: &[(&str, &str)]) -> Result<Option<Target>, String> {
        let env: Environment = env.iter().copied().collect();
        let text = format!("{MODELS}router_settings: {router}\n");
        from_text(&text, "config.yaml", &Overrides::default(), &env)
            .map(|c| c.redis)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn litellm_settings_and_environment_fallbacks() {
        let t = target(
            "{redis_host: cache, redis_port: 6380, redis_password: os.environ/RPW}",
            &[("RPW", "hunter22"), ("REDIS_URL", "redis://other:1")],
        )
        .unwrap()
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("cache", 6380));
        assert_eq!(t.password.as_deref(), Some("hunter22"));
        let t = target("{}", &[("REDIS_URL", "redis://:pw@h:7/1")])
            .unwrap()
            .unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("h", 7, 1));
        let t = target(
            "{}",
            &[
                ("REDIS_HOST", "h2"),
                ("REDIS_PORT", "6390"),
                ("REDIS_PASSWORD", "p"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.password.as_deref()),
            ("h2", 6390, Some("p"))
        );
        let t = target("{redis_host: h3}", &[]).unwrap().unwrap();
        assert_eq!(t.port, 6379);
        assert_eq!(target("{}", &[]).unwrap(), None);
    }

    #[test]
    fn bad_values_are_named_without_the_password() {
        let e = target("{redis_host: h, redis_port: 99999}", &[]).unwrap_err();
        assert!(e.contains("router_settings.redis_port"), "{e}");
        let e = target("{redis_url: 'rediss://:topsecret@h:1'}", &[]).unwrap_err();
        assert!(
            e.contains("router_settings.redis_url") && e.contains("TLS"),
            "{e}"
        );
        assert!(!e.contains("topsecret"), "{e}");
    }
}
