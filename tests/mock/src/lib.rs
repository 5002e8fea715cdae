//! Mock LLM provider upstreams, each speaking its provider's real wire format, all served by
//! one router:
//!
//! - [`openai`]: OpenAI chat completions, embeddings and models (`/v1/...`);
//! - [`images`]: OpenAI image generations and (multipart) edits (`/v1/images/...`);
//! - [`anthropic`]: Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`);
//! - [`gemini`]: Google Gemini (`/v1beta/models/{model}:generateContent` and friends);
//! - [`bedrock`]: AWS Bedrock Runtime Converse (`/model/{modelId}/converse[-stream]`);
//! - [`azure`]: Azure OpenAI (`/openai/deployments/{deployment}/...`, `/openai/v1/...`).
//!
//! Used in-process by integration tests ([`MockServer`]) and as the `llmgate-mock`
//! binary by benchmarks and Python tests. The behaviour of each request is chosen by
//! substrings of its model name (body or URL), see [`behaviour`]. Every request is recorded
//! (see [`record`]) and listed by `GET /_mock/requests`.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod behaviour;
mod common;
pub mod gemini;
pub mod images;
pub mod openai;
pub mod record;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use behaviour::{Behaviour, MockError};
pub use record::{RecordedRequest, Recorder};

/// Largest request body accepted (large enough for inline images).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Options of a mock server.
#[derive(Clone, Debug, Default)]
pub struct MockOptions {
    /// If set, requests must carry this key in their provider's way, else they get that
    /// provider's authentication error: `Authorization: Bearer <key>` (OpenAI), `x-api-key`
    /// (Anthropic), `x-goog-api-key` or `?key=` (Gemini), `api-key` (Azure), a SigV4
    /// `Credential=<key>/...` (Bedrock).
    pub require_key: Option<String>,
    /// Fixed delay in milliseconds added to every answer.
    pub latency_ms: u64,
}

/// Shared state of a mock server: its options, recorded requests and id counter.
#[derive(Debug)]
pub struct MockState {
    /// The options the server was started with.
    pub opts: MockOptions,
    /// The recorded requests.
    pub recorder: Recorder,
    counter: AtomicU64,
    /// Prompt-cache keys seen so far (Anthropic `cache_control`, Bedrock `cachePoint`).
    prompt_cache: Mutex<HashSet<String>>,
}

impl MockState {
    /// Fresh state for these options.
    pub fn new(opts: MockOptions) -> Self {
        Self {
            opts,
            recorder: Recorder::default(),
            counter: AtomicU64::new(0),
            prompt_cache: Mutex::new(HashSet::new()),
        }
    }

    /// Whether this prompt-cache key was seen before; remembers it either way.
    pub(crate) fn prompt_cache_hit(&self, key: &str) -> bool {
        let mut seen = self
            .prompt_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !seen.insert(key.to_owned())
    }

    /// The next response number (1, 2, ...), used in `chatcmpl-N` (and other) ids.
    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The mock's HTTP routes.
pub fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/models", get(openai::models))
        .route("/v1/images/generations", post(images::openai_generations))
        .route("/v1/images/edits", post(images::openai_edits))
        .route("/images/generations", post(images::openai_generations))
        .route("/images/edits", post(images::openai_edits))
        // Anthropic.
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        // Gemini: `{model}:{method}`.
        .route("/v1beta/models/{*rest}", post(gemini::models_action))
        .route("/v1/models/{*rest}", post(gemini::models_action))
        // Bedrock.
        .route("/model/{model_id}/converse", post(bedrock::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(bedrock::converse_stream),
        )
        // Azure OpenAI.
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure::deployment_chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure::deployment_embeddings),
        )
        .route(
            "/openai/deployments/{deployment}/images/generations",
            post(azure::deployment_image_generations),
        )
        .route(
            "/openai/deployments/{deployment}/images/edits",
            post(azure::deployment_image_edits),
        )
        .route("/openai/v1/chat/completions", post(azure::v1_chat))
        .route("/openai/v1/embeddings", post(azure::v1_embeddings))
        .route(
            "/openai/v1/images/generations",
            post(azure::v1_image_generations),
        )
        .route("/openai/v1/images/edits", post(azure::v1_image_edits))
        .route("/_mock/requests", get(list_requests).delete(clear_requests))
        .fallback(openai::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn list_requests(State(state): State<Arc<MockState>>) -> Json<Vec<RecordedRequest>> {
    Json(state.recorder.all())
}

async fn clear_requests(State(state): State<Arc<MockState>>) -> StatusCode {
    state.recorder.clear();
    StatusCode::NO_CONTENT
}

/// A mock server running in a background tokio task; dropping it stops the server.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<MockState>,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Bind `127.0.0.1:0` and serve in the background. Must be called within a tokio runtime.
    pub async fn start(opts: MockOptions) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::new(opts));
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            // Errors here only happen when the listener fails; the server then just stops.
            let _ = axum::serve(
                axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                app,
            )
            .await;
        });
        Ok(MockServer { addr, state, task })
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's shared state.
    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    /// Recorded requests, oldest first (at most the last 1000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.all()
    }

    /// Forget the recorded requests.
    pub fn clear(&self) {
        self.state.recorder.clear();
    }

    /// Number of recorded requests.
    pub fn count(&self) -> usize {
        self.state.recorder.count()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
