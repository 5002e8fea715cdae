//! URL helpers shared by config, plugins and the gateway: the origin a URL points at.

/// `scheme://host[:port]` of a URL, lower-cased; `None` if it is not an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    url_origin(&reqwest::Url::parse(url).ok()?)
}

/// [`origin_of`] for a parsed URL.
pub fn url_origin(u: &reqwest::Url) -> Option<String> {
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return None;
    }
    Some(u.origin().ascii_serialization())
}
