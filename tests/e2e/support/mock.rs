//! The mock upstream (`tests/mock`), started the ways the tests need it.

use llmgate_mock::{MockOptions, MockServer};

/// The upstream key the deployments of the tests carry and a keyed mock requires.
pub const UPSTREAM_KEY: &str = "sk-upstream";

/// A mock upstream that takes any key.
pub async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

/// A mock upstream that answers only requests carrying [`UPSTREAM_KEY`].
pub async fn keyed_mock() -> MockServer {
    mock_requiring(UPSTREAM_KEY).await
}

/// A mock upstream that answers only requests carrying `key`.
pub async fn mock_requiring(key: &str) -> MockServer {
    MockServer::start(MockOptions {
        require_key: Some(key.into()),
        ..MockOptions::default()
    })
    .await
    .unwrap()
}
