//! Config reload through the real binary: SIGHUP and file edits swap the config without a
//! restart, a broken edit never replaces the serving config (and shows where an operator
//! looks), and requests under load or mid-stream never fail because of a swap.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::http::{chat_on, get};
use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Spec, client, sse_data};

const MASTER: &str = "sk-master-reload";

/// How long a test waits for a change to take effect: the tests assert that it happens,
/// not how fast (a loaded CI machine can be many times slower).
const DEADLINE: Duration = Duration::from_secs(60);

/// Wait until `f` is true, up to [`DEADLINE`]; whether it became true.
async fn until(mut f: impl AsyncFnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < DEADLINE {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Replace the file the way editors and deploy tools do: write another, rename it over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A config serving `groups` (`(model_name, upstream model)`) from the mock at `url`.
fn config(url: &str, groups: &[(&str, &str)]) -> Config {
    Config::openai(url, groups).master_key(MASTER)
}

async fn chat(gw: &Gateway, model: &str) -> (u16, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let r = chat_on(&client(), &gw.url, MASTER, &body).await;
    (r.status, r.json())
}

/// The admin's view of config reloads in `/health/readiness`.
async fn reload_view(gw: &Gateway) -> Value {
    let r = get(gw, "/health/readiness", Some(MASTER)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["config"].clone()
}

#[tokio::test]
async fn sighup_reloads_a_new_model_group_and_the_process_lives() {
    let m = mock().await;
    // The file watch is off: only the signal can load the edit.
    let first = config(&m.url(), &[("a", "mock-a")]).llmgate_setting("watch_config", false);
    let mut gw = Gateway::start(&first.yaml());
    assert_eq!(chat(&gw, "b").await.0, 404, "`b` is not configured yet");
    let next = config(&m.url(), &[("a", "mock-a"), ("b", "mock-b")])
        .llmgate_setting("watch_config", false)
        .llmgate_setting("max_client_connections", 77);
    std::fs::write(gw.config_path(), next.yaml()).unwrap();
    gw.signal("HUP");
    assert!(
        until(async || chat(&gw, "b").await.0 == 200).await,
        "the new group never served; logs:\n{}",
        gw.logs()
    );
    assert!(gw.alive(), "SIGHUP ended the process");
    assert_eq!(chat(&gw, "a").await.0, 200);
    let view = reload_view(&gw).await;
    assert_eq!(view["reloads"], 1, "{view}");
    assert_eq!(view["last_error"], Value::Null);
    assert!(view["path"].as_str().unwrap().ends_with("config.yaml"));
    // The connection cap needs a restart: kept, and said in one WARN line.
    let logs = gw.logs_once("takes effect after a restart", DEADLINE);
    let line = logs
        .lines()
        .find(|l| l.contains("takes effect after a restart"))
        .unwrap_or_else(|| panic!("no restart warning:\n{logs}"));
    assert!(
        line.contains("WARN") && line.contains("max_client_connections"),
        "{line}"
    );
}

#[tokio::test]
async fn an_edited_file_is_picked_up_without_a_signal() {
    let m = mock().await;
    let gw = Gateway::start(&config(&m.url(), &[("a", "mock-a")]).yaml());
    replace(
        &gw.config_path(),
        &config(&m.url(), &[("c", "mock-c")]).yaml(),
    );
    assert!(
        until(async || chat(&gw, "c").await.0 == 200).await,
        "the edit was never picked up; logs:\n{}",
        gw.logs()
    );
    let (status, body) = chat(&gw, "a").await;
    assert_eq!(status, 404, "the removed group still serves: {body}");
    assert!(gw.logs().contains("config reloaded"));
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_old_config_until_a_fix() {
    let m = mock().await;
    let good = config(&m.url(), &[("a", "mock-a")]).yaml();
    let gw = Gateway::start(&good);
    // Valid YAML, invalid config: a deployment without a model.
    let bad = good.replace("model: openai/mock-a", "nomodel: sk-should-not-leak-9f3");
    assert_ne!(bad, good);
    replace(&gw.config_path(), &bad);
    assert!(
        until(async || reload_view(&gw).await["failed_reloads"] == 1).await,
        "the bad edit was never noticed; logs:\n{}",
        gw.logs()
    );
    assert_eq!(
        chat(&gw, "a").await.0,
        200,
        "the old config stopped serving"
    );
    let view = reload_view(&gw).await;
    let error = view["last_error"].as_str().expect("the error is shown");
    assert!(error.contains("model"), "{error}");
    assert!(!error.contains("sk-should-not-leak-9f3"), "{error}");
    assert_eq!(view["reloads"], 0);
    let logs = gw.logs_once("config reload refused", DEADLINE);
    let line = logs
        .lines()
        .find(|l| l.contains("config reload refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(!logs.contains("sk-should-not-leak-9f3"), "{logs}");
    // Readiness without the master key shows nothing of it.
    let open = get(&gw, "/health/readiness", None).await;
    assert!(open.json().get("config").is_none(), "{}", open.text);

    // A fix clears the error.
    replace(
        &gw.config_path(),
        &config(&m.url(), &[("a", "mock-a"), ("d", "mock-d")]).yaml(),
    );
    assert!(
        until(async || chat(&gw, "d").await.0 == 200).await,
        "the fix was never picked up; logs:\n{}",
        gw.logs()
    );
    let view = reload_view(&gw).await;
    assert_eq!(view["last_error"], Value::Null, "{view}");
    assert_eq!(
        (view["reloads"].clone(), view["failed_reloads"].clone()),
        (json!(1), json!(1))
    );
}

/// The config whose group `m` goes to the mock at `url`, plus a group `extra` that the
/// load never asks for (added and removed between rewrites).
fn load_config(url: &str, extra: bool) -> String {
    let mut c = Config::new()
        .master_key(MASTER)
        .deployment(Deployment::openai("m", "mock-load", url).id("m-main"));
    if extra {
        c = c.deployment(Deployment::openai("extra", "mock-extra", url));
    }
    c.yaml()
}

/// What readiness says serves: the `api_base` of `m-main`, and whether `extra` is there.
async fn serving(gw: &Gateway) -> (String, bool) {
    let r = get(gw, "/health/readiness", Some(MASTER)).await;
    let deployments = r.json()["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let base = deployments
        .iter()
        .find(|d| d["model_id"] == "m-main")
        .and_then(|d| d["api_base"].as_str())
        .unwrap_or_default()
        .to_string();
    let extra = deployments.iter().any(|d| d["model_name"] == "extra");
    (base, extra)
}

#[tokio::test]
async fn rewrites_under_load_fail_no_request() {
    let (a, b) = (mock().await, mock().await);
    let gw = Arc::new(Gateway::start(&load_config(&a.url(), false)));
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for task in 0..6 {
        let (gw, stop, served, failed) = (gw.clone(), stop.clone(), served.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            let body = json!({"model": "m", "messages": [{"role": "user", "content": format!("load {task}")}]});
            while !stop.load(Ordering::Relaxed) {
                let r = chat_on(&c, &gw.url, MASTER, &body).await;
                if r.status == 200 && r.json()["choices"][0]["message"]["content"].is_string() {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("failed under reload: {} {}", r.status, r.text);
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Six rewrites: the upstream of `m` flips between the mocks, `extra` comes and goes.
    let path = gw.config_path();
    for i in 1..=6 {
        let upstream = if i % 2 == 1 { b.url() } else { a.url() };
        replace(&path, &load_config(&upstream, i % 3 == 0));
        let want = (format!("{upstream}/v1"), i % 3 == 0);
        assert!(
            until(async || serving(&gw).await == want).await,
            "rewrite {i} was never loaded; logs:\n{}",
            gw.logs()
        );
        let floor = served.load(Ordering::Relaxed) + 20;
        assert!(until(async || served.load(Ordering::Relaxed) >= floor).await);
    }
    // The last rewrite points `m` at `a`: what is sent now goes there, not to `b`.
    let before_b = b.count();
    let floor = served.load(Ordering::Relaxed) + 50;
    assert!(until(async || served.load(Ordering::Relaxed) >= floor).await);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let total = served.load(Ordering::Relaxed);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(total >= 200, "only {total} requests were served");
    // Requests already in flight on `b` when the last swap came may still land there.
    assert!(
        b.count() <= before_b + 6,
        "requests after the swap went to the old upstream"
    );
    assert!(
        b.count() > 0 && a.count() > 0,
        "both upstreams served at some point"
    );
    assert_eq!(reload_view(&gw).await["failed_reloads"], 0);
}

#[tokio::test]
async fn a_sighup_during_a_stream_lets_it_finish() {
    let m = mock().await;
    let gw = Gateway::start_spec(Spec {
        config: &config(&m.url(), &[("s", "mock-slow-1500")]).yaml(),
        ..Spec::default()
    });
    let url = gw.url.clone();
    let stream = tokio::spawn(async move {
        let body = json!({"model": "s", "stream": true, "messages": [{"role": "user", "content": "stream me"}]});
        let r = client()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(MASTER)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    // Once the stream is in flight upstream, its group is removed and the signal sent.
    assert!(
        until(async || m.count() == 1).await,
        "the stream never reached the mock"
    );
    std::fs::write(
        gw.config_path(),
        config(&m.url(), &[("other", "mock-other")]).yaml(),
    )
    .unwrap();
    gw.signal("HUP");
    let (status, text) = stream.await.unwrap();
    assert_eq!(status, 200, "{text}");
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(events.len() > 2, "{text}");
    // The new config serves now: the stream's group is gone.
    assert!(
        until(async || chat(&gw, "s").await.0 == 404).await,
        "the reload never happened; logs:\n{}",
        gw.logs()
    );
}
