//! The API's shape, in process: `llmgate::server::app` over a gateway built by
//! `llmgate::build`, called with `tower::ServiceExt::oneshot`. For answers a real socket adds
//! nothing to (authentication, unknown routes, bad JSON, unknown models, the admin guard,
//! the model list), no process, port or upstream is needed; each case checks the status and
//! the error shape of the API the path belongs to.

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::http::{anthropic_error_shape, openai_error_shape};
use crate::support::{Config, Deployment, root};

const MASTER: &str = "sk-master-router-4321";
/// No upstream listens here: every case is answered before an upstream would be called.
const NO_UPSTREAM: &str = "http://127.0.0.1:9";

/// The app over a gateway with two OpenAI groups, `gpt` and `mini`, and the master key.
struct App {
    router: axum::Router,
    /// The config, plugins folder and database.
    _dir: tempfile::TempDir,
}

impl App {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        for p in ["openai", "policy-ordered", "policy-router"] {
            let built = root().join(format!("plugins/dist/{p}.wasm"));
            std::fs::copy(&built, plugins.join(format!("{p}.wasm"))).unwrap_or_else(|e| {
                panic!("{}: {e} (run scripts/build-plugins.sh)", built.display())
            });
        }
        let config = Config::new()
            .deployment(Deployment::openai("gpt", "mock-gpt", NO_UPSTREAM))
            .deployment(Deployment::openai("mini", "mock-mini", NO_UPSTREAM))
            .master_key(MASTER)
            .llmgate_setting("database_path", dir.path().join("llmgate.db"))
            .llmgate_setting("hot_reload", false);
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config.yaml()).unwrap();
        let opts = llmgate::RunOptions {
            config: Some(path),
            overrides: llmgate::config::Overrides {
                plugins_dir: Some(plugins),
                ..Default::default()
            },
            host: "127.0.0.1".into(),
            port: 0,
            event_loops: 1,
        };
        let gateway: Arc<_> = llmgate::build(&opts).await.unwrap();
        Self {
            router: llmgate::server::app(gateway),
            _dir: dir,
        }
    }

    /// Call `method path` with `headers` and `body`; the status and the body as JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: status {status}, body not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, v)
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> (StatusCode, Value) {
        self.call(Method::POST, path, headers, &body.to_string())
            .await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        self.call(Method::GET, path, headers, "").await
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn message(model: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
}

/// An OpenAI-shaped error and nothing of Anthropic's shape.
fn openai_only(v: &Value) -> Value {
    assert!(v.get("type").is_none(), "not OpenAI's shape: {v}");
    openai_error_shape(v)
}

#[tokio::test]
async fn chat_completions_without_a_valid_key_is_a_401_in_openai_shape() {
    let app = App::start().await;
    let wrong = bearer("sk-not-a-real-key");
    for headers in [vec![], vec![("authorization", wrong.as_str())]] {
        let (status, v) = app
            .post("/v1/chat/completions", &headers, &chat("gpt"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        let e = openai_only(&v);
        assert_eq!(e["type"], "auth_error", "{v}");
        assert_eq!(e["code"], "401", "{v}");
    }
}

#[tokio::test]
async fn messages_without_a_valid_key_is_a_401_in_anthropic_shape() {
    let app = App::start().await;
    for headers in [
        vec![("anthropic-version", "2023-06-01")],
        vec![
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", "sk-not-a-real-key"),
        ],
    ] {
        let (status, v) = app.post("/v1/messages", &headers, &message("gpt")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
        let e = anthropic_error_shape(&v);
        assert_eq!(e["type"], "authentication_error", "{v}");
    }
}

#[tokio::test]
async fn unknown_routes_are_a_404_in_the_shape_of_their_api() {
    let app = App::start().await;
    let auth = bearer(MASTER);
    let headers = [("authorization", auth.as_str())];
    for path in ["/v1/no-such-route", "/no/such/route"] {
        let (status, v) = app.get(path, &headers).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {v}");
        let e = openai_only(&v);
        assert_eq!(e["type"], "invalid_request_error", "{path}: {v}");
    }
    let (status, v) = app
        .post("/v1/messages/no-such-route", &headers, &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(anthropic_error_shape(&v)["type"], "not_found_error", "{v}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_in_the_shape_of_its_api() {
    let app = App::start().await;
    let auth = bearer(MASTER);
    let headers = [("authorization", auth.as_str())];
    let (status, v) = app
        .call(Method::POST, "/v1/chat/completions", &headers, "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let e = openai_only(&v);
    assert_eq!(e["type"], "invalid_request_error", "{v}");
    assert!(
        e["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );
    let (status, v) = app
        .call(Method::POST, "/v1/messages", &headers, "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        anthropic_error_shape(&v)["type"],
        "invalid_request_error",
        "{v}"
    );
}

#[tokio::test]
async fn a_model_no_group_serves_is_a_404_model_not_found() {
    let app = App::start().await;
    let auth = bearer(MASTER);
    let headers = [("authorization", auth.as_str())];
    let (status, v) = app
        .post("/v1/chat/completions", &headers, &chat("no-such-model"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let e = openai_only(&v);
    assert_eq!(e["code"], "model_not_found", "{v}");
    assert!(
        e["message"].as_str().unwrap().contains("no-such-model"),
        "{v}"
    );
    let (status, v) = app.get("/v1/models/no-such-model", &headers).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(openai_only(&v)["code"], "model_not_found", "{v}");
    let (status, v) = app
        .post("/v1/messages", &headers, &message("no-such-model"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(anthropic_error_shape(&v)["type"], "not_found_error", "{v}");
}

#[tokio::test]
async fn admin_routes_refuse_callers_without_the_master_key() {
    let app = App::start().await;
    let master = bearer(MASTER);
    let (status, v) = app
        .post(
            "/key/generate",
            &[("authorization", master.as_str())],
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let key = bearer(v["key"].as_str().unwrap());
    let wrong = bearer("sk-not-a-real-key");
    let routes = [
        (Method::POST, "/key/generate"),
        (Method::POST, "/key/update"),
        (Method::POST, "/key/delete"),
        (Method::GET, "/key/list"),
        (Method::GET, "/spend/logs"),
        (Method::GET, "/plugins"),
    ];
    for (method, path) in routes {
        let body = if method == Method::POST { "{}" } else { "" };
        for (who, headers, want, kind) in [
            ("no key", vec![], StatusCode::UNAUTHORIZED, "auth_error"),
            (
                "an unknown key",
                vec![("authorization", wrong.as_str())],
                StatusCode::UNAUTHORIZED,
                "auth_error",
            ),
            (
                "a virtual key",
                vec![("authorization", key.as_str())],
                StatusCode::FORBIDDEN,
                "permission_error",
            ),
        ] {
            let (status, v) = app.call(method.clone(), path, &headers, body).await;
            assert_eq!(status, want, "{method} {path} with {who}: {v}");
            assert_eq!(
                openai_only(&v)["type"],
                kind,
                "{method} {path} with {who}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn models_lists_every_group_to_a_valid_key_only() {
    let app = App::start().await;
    let master = bearer(MASTER);
    let (status, v) = app
        .get("/v1/models", &[("authorization", master.as_str())])
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "list", "{v}");
    let mut ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model", "{m}");
            m["id"].as_str().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["gpt", "mini"], "{v}");
    let (status, v) = app.get("/v1/models", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(openai_only(&v)["type"], "auth_error", "{v}");
}
