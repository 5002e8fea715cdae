//! Mock LLM provider upstream speaking OpenAI's chat-completions wire format.
//!
//! Used in-process by integration tests ([`MockServer`]) and as the `llmgate-mock`
//! binary by benchmarks and Python tests. The behaviour of each request is chosen by
//! substrings of its `model` field, see [`behaviour`].

pub mod behaviour;
pub mod openai;
pub mod record;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// If set, requests must carry `Authorization: Bearer <key>`, else they get a 401.
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
}

impl MockState {
    /// Fresh state for these options.
    pub fn new(opts: MockOptions) -> Self {
        Self {
            opts,
            recorder: Recorder::default(),
            counter: AtomicU64::new(0),
        }
    }

    /// The next response number (1, 2, ...), used in `chatcmpl-N` ids.
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
            let _ = axum::serve(listener, app).await;
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

    /// Recorded chat requests, oldest first (at most the last 1000).
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
