//! The web dashboard at `/ui`: a static shell (HTML, our script and style, the vendored
//! Preact, htm and uPlot files of `host/ui/`) embedded in the binary and served with a
//! strict Content-Security-Policy.
//!
//! The shell holds no data and needs no key: every datum it shows comes from the admin
//! routes, which it calls with the master key the operator types into its login form (kept
//! in the tab's `sessionStorage`). Without the master key it shows the login form and
//! nothing else.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::error::Error;

/// The policy every dashboard answer carries: only our own scripts, styles and API.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file the dashboard is made of.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: CSS,
        body: include_bytes!("../../ui/app.css"),
    },
    Asset {
        name: "vendor/preact.mjs",
        content_type: JS,
        body: include_bytes!("../../ui/vendor/preact.mjs"),
    },
    Asset {
        name: "vendor/hooks.mjs",
        content_type: JS,
        body: include_bytes!("../../ui/vendor/hooks.mjs"),
    },
    Asset {
        name: "vendor/htm.mjs",
        content_type: JS,
        body: include_bytes!("../../ui/vendor/htm.mjs"),
    },
    Asset {
        name: "vendor/uPlot.iife.min.js",
        content_type: JS,
        body: include_bytes!("../../ui/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "vendor/uPlot.min.css",
        content_type: CSS,
        body: include_bytes!("../../ui/vendor/uPlot.min.css"),
    },
];

/// `GET /ui` and `GET /ui/`: the shell.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /ui/{*file}`: one of the shell's files; 404 (OpenAI's shape) for any other name.
pub async fn asset(Path(file): Path<String>) -> Response {
    serve(&file)
}

/// The answer for the file `name`, with its type and the dashboard's headers.
fn serve(name: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::from(Error::NotFound(format!(
            "no dashboard file `{name}` (the dashboard is at /ui)"
        )))
        .into_response();
    };
    let mut resp = a.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    // The files change with the binary, not with a version in their names: always revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_policy() {
        for a in ASSETS {
            let r = serve(a.name);
            assert_eq!(r.status(), 200, "{}", a.name);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert_eq!(serve("../Cargo.toml").status(), 404);
    }

    #[test]
    fn the_shell_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        let scripts = html.matches("<script").count();
        assert_eq!(
            scripts,
            html.matches("<script src=").count(),
            "inline script"
        );
        assert!(!html.contains("<style"), "inline style in index.html");
        assert!(!html.contains(" style="), "inline style in index.html");
        for handler in ["onload=", "onclick=", "onerror=", "onsubmit="] {
            assert!(
                !html.contains(handler),
                "inline handler {handler} in index.html"
            );
        }
    }
}
