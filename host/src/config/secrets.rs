//! What counts as a secret in a deployment, and how it is kept in the host.
//!
//! One rule ([`is_secret`]) decides which `litellm_params` entries are credentials: by name
//! ([`is_secret_name`]: `api_key`, `*_key`, `*secret*`, `*password*`, `*_token`,
//! `*credential*`, ...) or by value ([`looks_secret`]: `sk-...`, `AKIA...`, `Bearer ...`,
//! JWTs, ...). Every `extra_headers` value counts as a secret too. The rule is applied once,
//! at config load, to build:
//!
//! - the params handed to plugins ([`plugin_params`]): secrets and `extra_headers` left out
//!   (the host applies the headers itself);
//! - the params `/model/info` shows ([`masked_params`]): secrets replaced by [`MASK`];
//! - the `api_base` anyone may see ([`ApiBase::public`]): without userinfo and without
//!   credential-like query parameters, which the host adds back to the upstream request only;
//! - a per-deployment [`Scrubber`] that masks every one of the deployment's secrets in text
//!   that leaves the host (upstream error bodies and messages, logs, spend logs).

use llmgate_sdk::url::percent_decode;
use std::borrow::Cow;

use serde_json::{Map, Value};

/// What a secret is replaced with.
pub const MASK: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed from text (they would mangle every message
/// without protecting anything).
const MIN_SCRUBBED_LEN: usize = 4;

/// Whether a param (or header, or query parameter) name names a credential. Names are read
/// as words split at anything not alphanumeric: a word `key`, `secret`, `password`,
/// `credential(s)`, `auth`, `cookie`, ... makes it a secret, and so does a word `token`
/// unless the name is about token counts or prices (`max_tokens`, `input_cost_per_token`).
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().any(|w| {
        matches!(
            *w,
            "key"
                | "apikey"
                | "secret"
                | "secrets"
                | "password"
                | "passwd"
                | "pwd"
                | "passphrase"
                | "credential"
                | "credentials"
                | "auth"
                | "authorization"
                | "cookie"
                | "signature"
                | "jwt"
                | "bearer"
                | "sig"
        ) || w.ends_with("secret")
            || w.ends_with("password")
            || w.ends_with("apikey")
            || (*w == "token" && !words.iter().any(|o| matches!(*o, "cost" | "per" | "max")))
    })
}

/// Whether a value looks like a credential whatever its name: an OpenAI/Anthropic-style
/// `sk-...` key (and similar vendor prefixes), an AWS access key id, `Bearer ...`/`Basic ...`
/// header values, or a JWT.
pub fn looks_secret(value: &str) -> bool {
    let v = value.trim();
    if v.len() < 12 || v.contains(char::is_whitespace) && !has_scheme_prefix(v) {
        return false;
    }
    const PREFIXES: &[&str] = &[
        "sk-",
        "sk_",
        "rk-",
        "rk_",
        "pk_live_",
        "ghp_",
        "gho_",
        "ghs_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "AIza",
        "ya29.",
    ];
    if PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    if (v.starts_with("AKIA") || v.starts_with("ASIA"))
        && v.len() >= 20
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return true;
    }
    if has_scheme_prefix(v) {
        return true;
    }
    // header.payload.signature, base64url, starting with `{"` encoded.
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && v.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
        })
}

/// `Bearer x...`, `Basic x...` (case-insensitive), as in an `Authorization` header.
fn has_scheme_prefix(v: &str) -> bool {
    let lower = v.get(..7).map(str::to_ascii_lowercase).unwrap_or_default();
    (lower.starts_with("bearer ") || lower.starts_with("basic "))
        && v.split_whitespace().nth(1).is_some_and(|t| t.len() >= 8)
}

/// The one rule: a param is a secret by its name, or (for text) by its value.
pub fn is_secret(name: &str, value: &Value) -> bool {
    is_secret_name(name) || value.as_str().is_some_and(looks_secret)
}

/// The params for plugins: every secret (at any depth) and `extra_headers` left out.
pub fn plugin_params(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(k, v)| k.as_str() != "extra_headers" && !is_secret(k, v))
        .map(|(k, v)| (k.clone(), without_secrets(v)))
        .collect()
}

fn without_secrets(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, v)| !is_secret(k, v))
                .map(|(k, v)| (k.clone(), without_secrets(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| !v.as_str().is_some_and(looks_secret))
                .map(without_secrets)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The params for display (`/model/info`): every secret (at any depth) and every
/// `extra_headers` value replaced by [`MASK`], names kept.
pub fn masked_params(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| {
            let shown = if k == "extra_headers" {
                match v {
                    Value::Object(h) => Value::Object(
                        h.keys()
                            .map(|name| (name.clone(), Value::String(MASK.into())))
                            .collect(),
                    ),
                    _ => Value::String(MASK.into()),
                }
            } else if is_secret(k, v) {
                Value::String(MASK.into())
            } else {
                masked(v)
            };
            (k.clone(), shown)
        })
        .collect()
}

fn masked(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let shown = if is_secret(k, v) {
                        Value::String(MASK.into())
                    } else {
                        masked(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(masked).collect()),
        Value::String(s) if looks_secret(s) => Value::String(MASK.into()),
        other => other.clone(),
    }
}

/// Every secret text in `params` (what [`plugin_params`] leaves out, and `extra_headers`
/// values), for the [`Scrubber`].
pub fn secret_texts(params: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in params {
        if k == "extra_headers" || is_secret(k, v) {
            leaves(v, &mut out);
        } else {
            nested_secrets(v, &mut out);
        }
    }
    out
}

fn nested_secrets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if is_secret(k, v) {
                    leaves(v, out);
                } else {
                    nested_secrets(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| nested_secrets(v, out)),
        Value::String(s) if looks_secret(s) => out.push(s.clone()),
        _ => {}
    }
}

fn leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Object(o) => o.values().for_each(|v| leaves(v, out)),
        Value::Array(a) => a.iter().for_each(|v| leaves(v, out)),
        _ => {}
    }
}

/// Query parameters, in order.
type Pairs = Vec<(String, String)>;

/// An `api_base` split into what may be shown (and handed to plugins) and the credentials
/// only the host applies.
#[derive(Debug, Clone, Default)]
pub struct ApiBase {
    /// The base without userinfo and without credential-like query parameters.
    pub public: String,
    /// `user:password@` of the base, applied to the upstream URL by the host.
    pub userinfo: Option<(String, Option<String>)>,
    /// Credential-like query parameters (`?key=...`), appended by the host.
    pub secret_query: Pairs,
}

impl ApiBase {
    /// Split `base`. A base that is not a URL is kept as it is (validation reports it).
    pub fn split(base: &str) -> Self {
        let Ok(mut url) = reqwest::Url::parse(base) else {
            return Self {
                public: base.to_string(),
                ..Self::default()
            };
        };
        let userinfo = (!url.username().is_empty() || url.password().is_some()).then(|| {
            (
                percent_decode(url.username()),
                url.password().map(percent_decode),
            )
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let (secret_query, kept): (Pairs, Pairs) = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .partition(|(k, v)| is_secret_name(k) || looks_secret(v));
        if secret_query.is_empty() {
            // Keep the operator's text (no re-encoding) when nothing was taken out of it.
            if userinfo.is_none() {
                return Self {
                    public: base.to_string(),
                    ..Self::default()
                };
            }
        } else if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(&kept);
        }
        let mut public = url.to_string();
        // `Url` adds a `/` to an empty path; keep the operator's form.
        if !base.trim_end().ends_with('/') && url.path() == "/" && url.query().is_none() {
            public.pop();
        }
        Self {
            public,
            userinfo,
            secret_query,
        }
    }

    /// The secret texts in it, for the [`Scrubber`].
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.secret_query.iter().map(|(_, v)| v.clone()).collect();
        if let Some((user, pass)) = &self.userinfo {
            out.push(user.clone());
            if let Some(p) = pass {
                out.push(p.clone());
                out.push(format!("{user}:{p}"));
            }
        }
        out
    }
}

/// Masks a deployment's secrets (each as written, and URL-encoded) in text leaving the host.
/// Built once at config load.
#[derive(Clone, Default)]
pub struct Scrubber {
    matcher: Option<aho_corasick::AhoCorasick>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber(***)")
    }
}

impl Scrubber {
    /// A scrubber of these secrets (shorter than 4 bytes: ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for s in secrets {
            if s.len() < MIN_SCRUBBED_LEN {
                continue;
            }
            let encoded: String = reqwest::Url::parse("http://x/")
                .ok()
                .map(|mut u| {
                    u.query_pairs_mut().append_pair("k", &s);
                    u.query().unwrap_or("").trim_start_matches("k=").to_string()
                })
                .unwrap_or_default();
            if encoded.len() >= MIN_SCRUBBED_LEN && encoded != s {
                patterns.push(encoded);
            }
            patterns.push(s);
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Self::default();
        }
        // Longest first, so a secret containing another is masked whole.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let matcher = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Self { matcher }
    }

    /// `text` with every secret masked.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                Cow::Owned(m.replace_all(text, &vec![MASK; m.patterns_len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// `bytes` with every secret masked.
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.matcher {
            Some(m) if m.is_match(bytes) => {
                Cow::Owned(m.replace_all_bytes(bytes, &vec![MASK.as_bytes(); m.patterns_len()]))
            }
            _ => Cow::Borrowed(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for n in [
            "api_key",
            "aws_secret_access_key",
            "aws_access_key_id",
            "azure_password",
            "azure_client_secret",
            "client_secret",
            "aws_web_identity_token",
            "azure_ad_token",
            "vertex_credentials",
            "my_service_token",
            "x-api-key",
            "Ocp-Apim-Subscription-Key",
            "Authorization",
            "key",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "max_tokens",
            "max_completion_tokens",
            "input_cost_per_token",
            "output_cost_per_reasoning_token",
            "cache_read_input_token_cost",
            "temperature",
            "aws_region_name",
            "organization",
            "api_version",
            "X-Custom",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn values() {
        for v in [
            "sk-proj-abcdefghijklmnop",
            "AKIAIOSFODNN7EXAMPLE",
            "Bearer abcdefgh12345",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ] {
            assert!(looks_secret(v), "{v}");
        }
        for v in [
            "gpt-4o",
            "hello world, this is text",
            "2024-10-21",
            "us-east-1",
        ] {
            assert!(!looks_secret(v), "{v}");
        }
    }

    #[test]
    fn params_for_plugins_and_display() {
        let p = json!({
            "temperature": 0.2,
            "azure_password": "pw-1234",
            "note": "sk-abcdefghijklmnopq",
            "extra_headers": {"X-A": "a-value"},
            "extra_body": {"nested_token": "tok-5678", "ok": 1},
        });
        let p = p.as_object().unwrap();
        let plug = Value::Object(plugin_params(p)).to_string();
        assert!(
            plug.contains("temperature") && plug.contains("\"ok\""),
            "{plug}"
        );
        for s in ["pw-1234", "sk-abc", "a-value", "tok-5678", "extra_headers"] {
            assert!(!plug.contains(s), "{plug}");
        }
        let shown = Value::Object(masked_params(p)).to_string();
        for s in ["pw-1234", "sk-abc", "a-value", "tok-5678"] {
            assert!(!shown.contains(s), "{shown}");
        }
        assert!(shown.contains("X-A") && shown.contains(MASK), "{shown}");
        let mut texts = secret_texts(p);
        texts.sort();
        assert_eq!(
            texts,
            ["a-value", "pw-1234", "sk-abcdefghijklmnopq", "tok-5678"]
        );
    }

    #[test]
    fn api_base_credentials() {
        let b = ApiBase::split("http://u:p%40ss@h:1/v1?key=k-123&x=1");
        assert_eq!(b.public, "http://h:1/v1?x=1");
        assert_eq!(b.userinfo, Some(("u".into(), Some("p@ss".into()))));
        assert_eq!(b.secret_query, [("key".to_string(), "k-123".to_string())]);
        assert_eq!(ApiBase::split("http://h:1").public, "http://h:1");
        assert_eq!(ApiBase::split("http://u:pw@h:1").public, "http://h:1");
        assert_eq!(
            ApiBase::split("http://h:1/v1?key=abc").public,
            "http://h:1/v1"
        );
    }

    #[test]
    fn scrubs() {
        let s = Scrubber::new(["sk-secret-1".to_string(), "a b&c".to_string(), "x".into()]);
        assert_eq!(s.scrub("key sk-secret-1 here"), "key [redacted] here");
        assert_eq!(s.scrub("q=a+b%26c"), "q=[redacted]");
        assert_eq!(s.scrub("x marks"), "x marks");
        assert_eq!(&*s.scrub_bytes(b"sk-secret-1"), MASK.as_bytes());
    }
}
