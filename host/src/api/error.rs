//! What a handler's error answers: an [`Error`] and the API dialect whose shape it takes,
//! decided here, by the route, and rendered once by [`Error::render`].

use axum::response::{IntoResponse, Response};

use crate::error::{Dialect, Error};

/// An error paired with the dialect to render it in; what handlers and extractors return.
#[derive(Debug)]
pub struct ApiError(pub Error, pub Dialect);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.render(self.1)
    }
}

impl From<Error> for ApiError {
    /// An error on an OpenAI-shaped route (every route but `/v1/messages*`).
    fn from(e: Error) -> Self {
        Self(e, Dialect::OpenAi)
    }
}

/// The error shape of the API a path belongs to: Anthropic's under `/messages`, else OpenAI's.
pub fn dialect_for(path: &str) -> Dialect {
    if path.contains("/messages") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}
