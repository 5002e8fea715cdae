//! Where the shared Redis is: host and port (or a `redis://` URL), and its password, which
//! is never shown.

use std::fmt;

/// The Redis every instance shares (`router_settings.redis_host`/`redis_port`/
/// `redis_password`, or `redis_url`). `Debug` and [`Target::shown`] leave the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database number (`redis://host:port/N`), 0 by default.
    pub db: i64,
    /// ACL user name, from a URL's userinfo.
    pub username: Option<String>,
    /// The password (`redis_password`, a URL's userinfo, or `REDIS_PASSWORD`).
    pub password: Option<String>,
}

impl Target {
    /// `redis://host:port/db`, without any credential: what logs and readiness show.
    pub fn shown(&self) -> String {
        format!("redis://{}:{}/{}", self.host, self.port, self.db)
    }

    /// Read a `redis://[user][:password@]host[:port][/db]` URL. `rediss://` (TLS) and Unix
    /// sockets are not supported: the error says so (and never repeats the URL, which may
    /// hold the password).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err(if url.starts_with("rediss://") {
                "TLS (rediss://) is not supported yet: use redis:// on a trusted network".into()
            } else {
                "must be a redis://host:port URL".into()
            });
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((hp, db)) => (hp, db.split(['?', '#']).next().unwrap_or("")),
            None => (rest.split(['?', '#']).next().unwrap_or(""), ""),
        };
        let db = if db.is_empty() {
            0
        } else {
            db.parse()
                .map_err(|_| "the database after the host must be a number".to_string())?
        };
        let (host, port) = split_host_port(hostport)?;
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (nonempty(u), nonempty(p)),
                None => (nonempty(a), None),
            },
        };
        Ok(Self {
            host,
            port,
            db,
            username: username.map(|u| decode(&u)),
            password: password.map(|p| decode(&p)),
        })
    }

    /// The client's connection settings.
    pub(super) fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo as _;
        let mut settings = redis::RedisConnectionInfo::default()
            .set_db(self.db)
            .set_lib_name("llmgate", env!("CARGO_PKG_VERSION"));
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        Ok((self.host.clone(), self.port)
            .into_connection_info()?
            .set_redis_settings(settings))
    }

    /// `text` with the password masked (for error messages from the client).
    pub(super) fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => text.replace(p.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn decode(s: &str) -> String {
    llmgate_sdk::url::percent_decode(s)
}

/// `host[:port]` or `[v6]:port`; the port defaults to 6379.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 host must be written [addr]:port".to_string())?;
        (h, rest.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("names no host".into());
    }
    let port = match port {
        None | Some("") => 6379,
        Some(p) => p
            .parse()
            .map_err(|_| format!("`{p}` is not a port number"))?,
    };
    Ok((host.to_string(), port))
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("at", &self.shown())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let t = Target::from_url("redis://:s3cr%40t@cache.internal:6380/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("cache.internal", 6380, 2));
        assert_eq!(t.password.as_deref(), Some("s3cr@t"));
        assert_eq!(t.shown(), "redis://cache.internal:6380/2");
        assert!(!format!("{t:?}").contains("s3cr"));
        let t = Target::from_url("redis://default:pw@127.0.0.1").unwrap();
        assert_eq!((t.username.as_deref(), t.port), (Some("default"), 6379));
        assert!(
            Target::from_url("rediss://h:1")
                .unwrap_err()
                .contains("TLS")
        );
        assert!(Target::from_url("http://h").is_err());
        let err = Target::from_url("redis://:pw@h:notaport").unwrap_err();
        assert!(!err.contains("pw"), "{err}");
    }
}
