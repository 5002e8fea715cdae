//! The admin routes (LiteLLM's `/key/*` and `/spend/logs`) called with a master key.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::gateway::Gateway;
use super::http::{get, post};

/// `POST /key/generate` with `master`; returns (key, answer).
pub async fn generate(gw: &Gateway, master: &str, body: Value) -> (String, Value) {
    let r = post(gw, "/key/generate", Some(master), &body).await;
    assert_eq!(r.status, 200, "generate {body}: {}", r.text);
    let v = r.json();
    (v["key"].as_str().unwrap().to_string(), v)
}

/// `GET /key/info?key=` with `master`; checks that the answer names the key by its hash
/// and returns `info`.
pub async fn info(gw: &Gateway, master: &str, key: &str) -> Value {
    let r = get(gw, &format!("/key/info?key={key}"), Some(master)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let is_hash = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
    assert_eq!(
        v["key"],
        if is_hash { key.to_string() } else { hash(key) },
        "{v}"
    );
    v["info"].clone()
}

/// The key's spend, from `/key/info`.
pub async fn key_spend(gw: &Gateway, master: &str, key: &str) -> f64 {
    info(gw, master, key).await["spend"].as_f64().unwrap()
}

/// `POST /key/update` with `master`, which must succeed; returns the answer.
pub async fn update(gw: &Gateway, master: &str, body: Value) -> Value {
    let r = post(gw, "/key/update", Some(master), &body).await;
    assert_eq!(r.status, 200, "update {body}: {}", r.text);
    r.json()
}

/// `GET /spend/logs?{query}` with `master`: the rows.
pub async fn spend_logs(gw: &Gateway, master: &str, query: &str) -> Vec<Value> {
    let r = get(gw, &format!("/spend/logs?{query}"), Some(master)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json().as_array().unwrap().clone()
}

/// The hash a key is stored and shown under (SHA-256, lower-case hex).
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
