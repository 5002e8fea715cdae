//! [`Plan`]: a builder for the WIT `upstream-request`.

use crate::plugin::{Request, UpstreamRequest};
use crate::{Api, Auth, Framing, Headers};

/// An upstream request being planned. [`Plan::post`] starts a JSON `POST` whose framing
/// follows the request (SSE when the client streams, except `count_tokens`, else none);
/// [`Plan::build`] adds the deployment's `extra_headers` after the plugin's own headers and
/// before forwarded client headers.
#[derive(Debug, Clone)]
pub struct Plan {
    req: UpstreamRequest,
    forwarded: Headers,
}

impl Plan {
    /// `POST url` with a JSON `body`, the key applied as `auth`.
    pub fn post(req: &Request, url: impl Into<String>, auth: Auth, body: Vec<u8>) -> Self {
        let streamed = req.stream && req.api != Api::CountTokens;
        Self {
            req: UpstreamRequest {
                method: "POST".into(),
                url: url.into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body,
                auth,
                framing: if streamed {
                    Framing::Sse
                } else {
                    Framing::None
                },
            },
            forwarded: req.extra_headers.clone(),
        }
    }

    /// Replace the body's content type (e.g. a multipart body forwarded as is).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.req.headers[0].1 = content_type.into();
        self
    }

    /// Add a header (before `extra_headers`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.req.headers.push((name.into(), value.into()));
        self
    }

    /// Add a client header to forward (after `extra_headers`).
    pub fn forward(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.forwarded.push((name.into(), value.into()));
        self
    }

    /// Override the framing of a successful answer.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.req.framing = framing;
        self
    }

    /// The upstream request.
    pub fn build(mut self) -> UpstreamRequest {
        self.req.headers.append(&mut self.forwarded);
        self.req
    }
}
