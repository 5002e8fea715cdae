//! Secrets and upstream paths through the real binary: a client's model name cannot move a
//! request out of the deployment's `api_base` path (plugins encode it, the host checks the
//! planned URL on its own), credential-like params, `api_base` credentials and gateway keys
//! never reach `/model/info`, headers, errors, logs, spend logs or plugins, and blocked or
//! expired keys cannot list models.

use std::time::{Duration, Instant};

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::admin;
use crate::support::http::{get, post, send};
use crate::support::mock::{mock, mock_requiring};
use crate::support::{Config, Deployment, Gateway, Resp, Spec, client};

const MASTER: &str = "sk-master-secrets-e2e-9876";

/// Every secret the deployments of [`secret_params`] carry, as the tests look for them.
const SECRETS: &[&str] = &[
    "sk-upstream-secret-0001",
    "tok-extra-header-secret-0002",
    "azure-password-secret-0003",
    "azure-client-secret-0004",
    "web-identity-token-secret-0005",
    "azure-ad-token-secret-0006",
    "vertex-credentials-secret-0007",
    "my-service-token-secret-0008",
    "sk-proj-valuepattern0009secret",
    "AKIAIOSFODNN7SECRET10",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQxMSJ9.c2lnbmF0dXJlMTE",
    "userinfo-password-0012",
    "query-key-secret-0013",
    "aws-secret-access-key-0014",
];

/// `d` with every kind of credential-like param in `litellm_params`, plus the non-secret
/// `temperature` and `x-custom` header the tests expect to still work.
fn secret_params(d: Deployment) -> Deployment {
    d.api_key("sk-upstream-secret-0001")
        .param("temperature", 0.25)
        .param(
            "extra_headers",
            json!({
                "X-Upstream-Token": "tok-extra-header-secret-0002",
                "X-Custom": "custom-value-ok",
            }),
        )
        .param("azure_password", "azure-password-secret-0003")
        .param("azure_client_secret", "azure-client-secret-0004")
        .param("aws_web_identity_token", "web-identity-token-secret-0005")
        .param("azure_ad_token", "azure-ad-token-secret-0006")
        .param("vertex_credentials", "vertex-credentials-secret-0007")
        .param("my_service_token", "my-service-token-secret-0008")
        .param("note", "sk-proj-valuepattern0009secret")
        .param("aws_access_key_id", "AKIAIOSFODNN7SECRET10")
        .param("aws_secret_access_key", "aws-secret-access-key-0014")
        .param(
            "id_hint",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQxMSJ9.c2lnbmF0dXJlMTE",
        )
}

/// `http://user:pass@host:port{path}?key=...`: an api_base carrying credentials.
fn base_with_credentials(url: &str, path: &str) -> String {
    let host = url.strip_prefix("http://").unwrap();
    format!("http://llm-user:userinfo-password-0012@{host}{path}?key=query-key-secret-0013")
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} carries the secret `{s}`: {text}");
    }
}

fn start(config: &str, plugins: &[&str]) -> Gateway {
    Gateway::start_spec(Spec {
        config,
        plugins,
        ..Spec::default()
    })
}

async fn chat(gw: &Gateway, key: Option<&str>, model: &str) -> Resp {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    post(gw, "/v1/chat/completions", key, &body).await
}

async fn generate(gw: &Gateway, body: Value) -> String {
    admin::generate(gw, MASTER, body).await.0
}

/// The paths (with query) the mock was asked for.
fn seen(m: &MockServer) -> Vec<String> {
    m.requests().iter().map(|r| r.path_and_query()).collect()
}

// ---------------------------------------------------------------------------------------
// Defect 2: a client's model name can rewrite the upstream path.
// ---------------------------------------------------------------------------------------

/// The exact attack against a `gemini/*` wildcard: nothing reaches the mock outside
/// `/v1beta/`, the client gets an error, and repeating it puts the deployment in no
/// cooldown (a well-formed model still works afterwards).
#[tokio::test]
async fn gemini_wildcard_model_cannot_leave_the_api_base_path() {
    let m = mock_requiring("goog-upstream-key-42").await;
    let cfg = Config::new().deployment(
        Deployment::new("gemini/*", "gemini/*")
            .api_base(&format!("{}/v1beta", m.url()))
            .api_key("goog-upstream-key-42"),
    );
    let gw = start(&cfg.yaml(), &["gemini"]);
    for model in [
        "gemini/../../../../fail/418/x?y=1#",
        "gemini/..",
        "gemini/models/../../fail/418",
    ] {
        for _ in 0..4 {
            let r = chat(&gw, None, model).await;
            assert!(
                (400..500).contains(&r.status),
                "{model}: a client error expected, got {}: {}",
                r.status,
                r.text
            );
            assert!(r.json()["error"]["message"].is_string(), "{}", r.text);
        }
        for p in seen(&m) {
            assert!(
                p.starts_with("/v1beta/models/") && !p.contains('?'),
                "{model} reached {p} on the provider origin"
            );
        }
    }
    assert_eq!(
        m.count(),
        0,
        "refused requests reached the upstream: {:?}",
        seen(&m)
    );
    // No cooldown: the deployment still serves.
    let r = chat(&gw, None, "gemini/gemini-2.5-flash").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        seen(&m),
        ["/v1beta/models/gemini-2.5-flash:generateContent"]
    );
}

/// Azure and Bedrock wildcards: a bare `..` (or `.`) model is refused before anything is sent.
#[tokio::test]
async fn azure_and_bedrock_dot_segment_models_are_refused() {
    let m = mock().await;
    let u = m.url();
    let cfg = Config::new()
        .deployment(
            Deployment::new("azure/*", "azure/*")
                .api_base(&u)
                .api_key("az-key-1"),
        )
        .deployment(
            Deployment::new("bedrock/*", "bedrock/*")
                .api_base(&u)
                .param("aws_access_key_id", "AKIDEXAMPLE")
                .param("aws_secret_access_key", "secret-example")
                .param("aws_region_name", "us-east-1"),
        );
    let gw = start(&cfg.yaml(), &["azure", "bedrock"]);
    for model in [
        "azure/..",
        "azure/.",
        "azure/../../v1/chat/completions",
        "bedrock/..",
        "bedrock/.",
        "bedrock/../../v1/chat/completions",
    ] {
        let r = chat(&gw, None, model).await;
        assert!(
            (400..500).contains(&r.status),
            "{model}: a client error expected, got {}: {}",
            r.status,
            r.text
        );
        assert!(r.json()["error"]["message"].is_string(), "{}", r.text);
        assert_eq!(m.count(), 0, "{model} reached the upstream: {:?}", seen(&m));
    }
    // Well-formed models still go where they should.
    assert_eq!(chat(&gw, None, "azure/my-dep").await.status, 200);
    assert_eq!(
        chat(
            &gw,
            None,
            "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
        )
        .await
        .status,
        200
    );
    let paths = seen(&m);
    assert!(
        paths[0].starts_with("/openai/deployments/my-dep/chat/completions?api-version="),
        "{paths:?}"
    );
    assert_eq!(
        paths[1],
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
}

/// The host's own check, with a plugin that plans escaping URLs itself: a `..` path (raw or
/// `%2e%2e`), an added query and a fragment are refused with a client error in OpenAI's
/// shape, nothing is sent, and the deployment does not cool down.
#[tokio::test]
async fn host_refuses_planned_urls_outside_the_api_base() {
    let m = mock().await;
    let u = m.url();
    let cfg = ["escape", "escape-encoded", "escape-query", "plain"]
        .iter()
        .fold(Config::new(), |c, mode| {
            c.deployment(
                Deployment::new(mode, &format!("hostile/{mode}")).api_base(&format!("{u}/v1")),
            )
        });
    let gw = start(&cfg.yaml(), &["hostile"]);
    for mode in ["escape", "escape-encoded", "escape-query"] {
        for _ in 0..5 {
            let r = chat(&gw, None, mode).await;
            assert_eq!(r.status, 400, "{mode}: {}", r.text);
            let e = &r.json()["error"];
            assert_eq!(e["type"], "invalid_request_error", "{mode}: {}", r.text);
            assert!(
                e["message"].as_str().unwrap().contains("api_base"),
                "{mode}: {}",
                r.text
            );
        }
        assert_eq!(m.count(), 0, "{mode} reached the upstream: {:?}", seen(&m));
    }
    let logs = gw.logs();
    assert!(
        !logs.contains("cooling down"),
        "a refused plan put a deployment in cooldown:\n{logs}"
    );
    assert_eq!(chat(&gw, None, "plain").await.status, 200);
    assert_eq!(seen(&m), ["/v1/chat/completions"]);
}

// ---------------------------------------------------------------------------------------
// Defects 4 and 5: secrets readable by any key; the gateway credential reaches plugins.
// ---------------------------------------------------------------------------------------

/// `/model/info` shows no credential-like param, header value or `api_base` credential, to a
/// virtual key or to the master key, and still shows the rest.
#[tokio::test]
async fn model_info_never_shows_secret_params() {
    let m = mock().await;
    let cfg = Config::new()
        .deployment(secret_params(
            Deployment::new("guarded", "openai/mock-gpt")
                .api_base(&base_with_credentials(&m.url(), "/v1")),
        ))
        .master_key(MASTER);
    let gw = start(&cfg.yaml(), &["openai"]);
    let key = generate(&gw, json!({})).await;
    for k in [key.as_str(), MASTER] {
        for path in ["/model/info", "/v1/model/info"] {
            let r = get(&gw, path, Some(k)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_no_secret(path, &r.text);
            let params = &r.json()["data"][0]["litellm_params"];
            assert_eq!(params["model"], "openai/mock-gpt", "{}", r.text);
            assert_eq!(params["temperature"], 0.25, "{}", r.text);
            let base = params["api_base"].as_str().unwrap();
            assert!(
                base.contains("127.0.0.1") && base.ends_with("/v1"),
                "{base}"
            );
        }
    }
}

/// Blocked and expired keys get the authentication error on the model listing routes, like
/// on every other route.
#[tokio::test]
async fn blocked_and_expired_keys_cannot_list_models() {
    let m = mock().await;
    let cfg = Config::new()
        .deployment(Deployment::openai("guarded", "mock-gpt", &m.url()).api_key("sk-up"))
        .master_key(MASTER);
    let gw = start(&cfg.yaml(), &["openai"]);
    let blocked = generate(&gw, json!({"blocked": true})).await;
    let expired = generate(&gw, json!({"duration": "1s"})).await;
    let good = generate(&gw, json!({})).await;
    // Wait (generously) until the short key has expired for the chat route.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = chat(&gw, Some(&expired), "guarded").await;
        if r.status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the key never expired: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for path in [
        "/model/info",
        "/v1/model/info",
        "/v1/models",
        "/models",
        "/v1/models/guarded",
    ] {
        assert_eq!(get(&gw, path, Some(&good)).await.status, 200, "{path}");
        for (what, k) in [("blocked", &blocked), ("expired", &expired)] {
            let r = get(&gw, path, Some(k)).await;
            assert_eq!(r.status, 401, "{what} key on {path}: {}", r.text);
            assert!(r.json()["error"]["message"].is_string(), "{}", r.text);
        }
    }
}

/// A plugin that reports what it was given sees no secret param, no `api_base` credential
/// and no gateway key, whichever accepted header the key came in; the upstream still gets
/// the deployment's headers and credentials, applied by the host.
#[tokio::test]
async fn plugins_are_given_no_secret_and_no_gateway_key() {
    let m = mock().await;
    let cfg = Config::new()
        .deployment(secret_params(
            Deployment::new("echo", "hostile/echo")
                .api_base(&base_with_credentials(&m.url(), "/v1")),
        ))
        .master_key(MASTER);
    let gw = start(&cfg.yaml(), &["hostile"]);
    let key = generate(&gw, json!({})).await;
    for k in [MASTER, key.as_str()] {
        for (name, value) in [
            ("authorization", format!("Bearer {k}")),
            ("x-api-key", k.to_string()),
            ("api-key", k.to_string()),
            ("x-litellm-api-key", k.to_string()),
        ] {
            let r = send(
                client()
                    .post(format!("{}/v1/chat/completions", gw.url))
                    .header(name, &value)
                    .header("x-trace-me", "visible-header")
                    .json(
                        &json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
                    ),
            )
            .await;
            assert_eq!(r.status, 200, "{name}: {}", r.text);
            let given = r.json();
            assert!(
                given["deployment"]["params_json"]
                    .as_str()
                    .unwrap()
                    .contains("temperature"),
                "{given}"
            );
            assert!(
                given["headers"].to_string().contains("visible-header"),
                "{given}"
            );
            assert!(
                !r.text.contains(MASTER),
                "{name}: the master key reached the plugin: {given}"
            );
            assert!(
                !r.text.contains(&key),
                "{name}: the virtual key reached the plugin: {given}"
            );
            assert_no_secret("the plugin's input", &r.text);
        }
    }
    // The host applied what the plugin was not given.
    let last = m.requests().pop().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(last.query.as_deref(), Some("key=query-key-secret-0013"));
    assert_eq!(
        last.header("authorization"),
        Some("Bearer sk-upstream-secret-0001")
    );
    assert_eq!(
        last.header("x-upstream-token"),
        Some("tok-extra-header-secret-0002")
    );
    assert_eq!(last.header("x-custom"), Some("custom-value-ok"));
}

// ---------------------------------------------------------------------------------------
// Defect 8: upstream secrets are not redacted.
// ---------------------------------------------------------------------------------------

/// An upstream that answers 401 with a body echoing the key and the URL it was sent.
async fn echo_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    async fn echo(uri: Uri, headers: HeaderMap) -> (StatusCode, axum::Json<Value>) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {
                "message": format!("Incorrect API key provided: {auth} (for {uri})"),
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }})),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(echo);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// Spend log rows, once `want` of them are there (the store writes in batches).
async fn spend_rows(gw: &Gateway, want: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(gw, "/spend/logs", Some(MASTER)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.json().as_array().is_some_and(|a| a.len() >= want) {
            return r.text;
        }
        assert!(Instant::now() < deadline, "no spend rows: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An upstream error echoing the key, and errors naming an `api_base` with credentials,
/// reach neither the client nor the gateway's log nor the spend logs; the
/// `x-litellm-model-api-base` header carries no credential either.
#[tokio::test]
async fn upstream_secrets_are_scrubbed_from_errors_logs_headers_and_spend_logs() {
    let (echo, _task) = echo_upstream().await;
    let m = mock().await;
    let cfg = Config::new()
        .deployment(secret_params(
            Deployment::new("echoing", "openai/gpt-4o")
                .api_base(&base_with_credentials(&echo, "/v1")),
        ))
        .deployment(
            Deployment::new("unreachable", "openai/gpt-4o")
                .api_base(
                    "http://llm-user:userinfo-password-0012@127.0.0.1:1/v1?key=query-key-secret-0013",
                )
                .api_key("sk-upstream-secret-0001"),
        )
        .deployment(
            Deployment::new("served", "openai/mock-gpt")
                .api_base(&base_with_credentials(&m.url(), "/v1"))
                .api_key("sk-upstream-secret-0001"),
        )
        .master_key(MASTER)
        .default_policy("ordered")
        .yaml();
    let gw = start(&cfg, &["openai", "policy-ordered"]);
    let r = chat(&gw, Some(MASTER), "echoing").await;
    assert!(r.status >= 400, "{}", r.text);
    assert!(r.text.contains("Incorrect API key provided"), "{}", r.text);
    assert_no_secret("the client's error", &r.text);
    let r = chat(&gw, Some(MASTER), "unreachable").await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_no_secret("the client's error", &r.text);
    // Streamed too.
    let r = send(
        client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(MASTER)
            .json(&json!({"model": "echoing", "stream": true, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert!(r.status >= 400, "{}", r.text);
    assert_no_secret("the client's streamed error", &r.text);
    let r = chat(&gw, Some(MASTER), "served").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let base = r
        .headers
        .get("x-litellm-model-api-base")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_string();
    assert!(base.contains("127.0.0.1"), "{base}");
    assert_no_secret("x-litellm-model-api-base", &base);
    let rows = spend_rows(&gw, 4).await;
    assert_no_secret("the spend logs", &rows);
    assert!(rows.contains("Incorrect API key provided"), "{rows}");
    let logs = gw.logs();
    assert!(logs.contains("Incorrect API key provided"), "{logs}");
    assert_no_secret("the gateway's log", &logs);
}
