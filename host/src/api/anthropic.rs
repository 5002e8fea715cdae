//! Anthropic-compatible routes: `POST /v1/messages` and `/v1/messages/count_tokens`.
//! Errors answer in Anthropic's shape (`{"type":"error","error":{...}}`).

use axum::response::Response;

use super::{ApiError, ModelCall};
use crate::error::Dialect;
use crate::wit::types::Api;

/// `POST /v1/messages` (and `/messages`).
pub async fn messages(call: ModelCall) -> Result<Response, ApiError> {
    call.serve(Api::Messages, Dialect::Anthropic).await
}

/// `POST /v1/messages/count_tokens`.
pub async fn count_tokens(call: ModelCall) -> Result<Response, ApiError> {
    call.serve(Api::CountTokens, Dialect::Anthropic).await
}
