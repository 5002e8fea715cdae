//! Hot reload through the real binary: a plugin swapped under load with zero failed
//! requests, a broken file that never replaces a working plugin, plugins added and removed.
//!
//! The "new version" of a plugin is the hostile test plugin (version 6.6.6) with its
//! version string patched in its data: same code, another version to tell them apart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::mock::mock;
use crate::support::{Config, Deployment, Gateway, Spec, client, plugin};

/// The hostile plugin with its version `6.6.6` replaced by `version` (same length).
fn hostile_as(version: &str) -> Vec<u8> {
    assert_eq!(version.len(), 5);
    let mut bytes = std::fs::read(plugin("hostile")).unwrap();
    let mut n = 0;
    let mut i = 0;
    while i + 5 <= bytes.len() {
        if &bytes[i..i + 5] == b"6.6.6" {
            bytes[i..i + 5].copy_from_slice(version.as_bytes());
            n += 1;
        }
        i += 1;
    }
    assert!(n > 0, "version string not found in hostile.wasm");
    bytes
}

/// Replace a file the way deploy tools do: write a temporary file, then rename over.
fn replace_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.part");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config(u: &str) -> String {
    let base = format!("{u}/v1");
    Config::new()
        .deployment(Deployment::new("h", "hostile/mock-slow-20").api_base(&base))
        .deployment(Deployment::new("p", "openai/mock-gpt").api_base(&base))
        .routing_setting(
            "groups",
            json!({"p": {"policy": "hostile-policy", "config": {"do": "none"}}}),
        )
        .yaml()
}

async fn plugin_of(gw: &Gateway) -> (u16, String) {
    let r = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "h", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let p = r
        .headers()
        .get("x-llmgate-plugin")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status().as_u16(), p)
}

async fn plugins(gw: &Gateway) -> Vec<Value> {
    let v: Value = gw.get_json("/plugins").await;
    v["plugins"].as_array().unwrap().clone()
}

/// How long a test waits for a change to take effect. Generous: the tests assert that the
/// change happens, not how fast (a swap takes about 0.25 s; speed is the bench's business),
/// and a loaded CI machine can be many times slower.
const DEADLINE: Duration = Duration::from_secs(60);

/// Wait until `f` is true, up to `limit`; returns how long it took.
async fn until(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f().await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_plugin_swapped_under_load_fails_no_request() {
    let m = mock().await;
    let gw = Arc::new(Gateway::start_spec(Spec {
        config: &config(&m.url()),
        plugins: &["openai", "hostile"],
        ..Spec::default()
    }));
    let file = gw.plugins_dir().join("hostile.wasm");
    assert_eq!(plugin_of(&gw).await, (200, "hostile@6.6.6".into()));

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    // Load requests served, per plugin version (`x-llmgate-plugin`).
    let served: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..8 {
        let (gw, stop, failed, served) = (gw.clone(), stop.clone(), failed.clone(), served.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"model": "h", "messages": [{"role": "user", "content": "load"}]});
                let ok = match c
                    .post(format!("{}/v1/chat/completions", gw.url))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let version = r
                            .headers()
                            .get("x-llmgate-plugin")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        r.text()
                            .await
                            .is_ok_and(|t| t.contains("load"))
                            .then_some(version)
                    }
                    _ => None,
                };
                match ok {
                    Some(version) => *served.lock().unwrap().entry(version).or_default() += 1,
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // The load is running on a version once it has served a few load requests: swaps then
    // land while requests are in flight, however slow the machine is.
    let serving_load = async |version: &str| {
        let served = served.clone();
        until(DEADLINE, async || {
            served.lock().unwrap().get(version).copied().unwrap_or(0) >= 20
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "{version} never served the load: {:?}",
                served.lock().unwrap()
            )
        });
    };
    serving_load("hostile@6.6.6").await;

    // Swap by rename.
    replace_atomically(&file, &hostile_as("6.6.7"));
    let t1 = until(DEADLINE, async || plugin_of(&gw).await.1 == "hostile@6.6.7")
        .await
        .expect("the new version never served");
    serving_load("hostile@6.6.7").await;
    // Swap by writing in place.
    std::fs::write(&file, hostile_as("6.6.8")).unwrap();
    let t2 = until(DEADLINE, async || plugin_of(&gw).await.1 == "hostile@6.6.8")
        .await
        .expect("the in-place version never served");
    serving_load("hostile@6.6.8").await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let served = served.lock().unwrap().clone();
    // For information only: the bench measures swap speed.
    println!(
        "swap took: rename {t1:?}, in-place write {t2:?}; load served per version: {served:?}"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during the swaps"
    );
    // Every version served, and nothing else did.
    let mut versions: Vec<&str> = served.keys().map(String::as_str).collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        ["hostile@6.6.6", "hostile@6.6.7", "hostile@6.6.8"],
        "{served:?}"
    );
    let rows = plugins(&gw).await;
    let row = rows.iter().find(|p| p["name"] == "hostile").unwrap();
    assert_eq!(row["version"], "6.6.8");
    assert!(row["last_error"].is_null());
    assert_eq!(row["kind"], "provider");
    assert_eq!(row["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_broken_file_never_replaces_a_working_plugin() {
    let m = mock().await;
    let gw = Gateway::start_spec(Spec {
        config: &config(&m.url()),
        plugins: &["openai", "hostile"],
        ..Spec::default()
    });
    let file = gw.plugins_dir().join("hostile.wasm");
    let before = plugins(&gw).await;
    let sha = before.iter().find(|p| p["name"] == "hostile").unwrap()["sha256"].clone();

    replace_atomically(&file, b"\0asm garbage, not a component");
    let seen = until(DEADLINE, async || {
        plugins(&gw)
            .await
            .iter()
            .any(|p| p["name"] == "hostile" && !p["last_error"].is_null())
    })
    .await;
    assert!(seen.is_some(), "the error never showed in GET /plugins");
    let rows = plugins(&gw).await;
    let row = rows.iter().find(|p| p["name"] == "hostile").unwrap();
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("not a valid WASM component"),
        "{row}"
    );
    assert_eq!(
        row["version"], "6.6.6",
        "the row names the version still serving"
    );
    assert_eq!(row["sha256"], sha);
    // The old version keeps serving.
    for _ in 0..5 {
        assert_eq!(plugin_of(&gw).await, (200, "hostile@6.6.6".into()));
    }
    assert!(
        gw.logs().contains("the previous version keeps serving"),
        "{}",
        gw.logs()
    );

    // A valid file fixes it.
    replace_atomically(&file, &hostile_as("6.6.7"));
    until(DEADLINE, async || plugin_of(&gw).await.1 == "hostile@6.6.7")
        .await
        .expect("the fixed file never served");
    let rows = plugins(&gw).await;
    let row = rows.iter().find(|p| p["name"] == "hostile").unwrap();
    assert!(row["last_error"].is_null(), "{row}");
}

#[tokio::test]
async fn plugins_are_added_and_removed_without_restart() {
    let m = mock().await;
    let gw = Gateway::start_spec(Spec {
        config: &config(&m.url()),
        plugins: &["openai", "hostile"],
        ..Spec::default()
    });
    let dir = gw.plugins_dir();
    let ask_p = async || {
        let r = gw
            .post(
                "/v1/chat/completions",
                &json!({"model": "p", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };
    // The group's policy is not there yet.
    let (status, body) = ask_p().await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("hostile-policy"), "{body}");

    std::fs::copy(plugin("hostile-policy"), dir.join("hostile-policy.wasm")).unwrap();
    let took = until(DEADLINE, async || ask_p().await.0 == 200).await;
    assert!(took.is_some(), "added policy never used");

    std::fs::remove_file(dir.join("hostile-policy.wasm")).unwrap();
    let took = until(DEADLINE, async || ask_p().await.0 == 500).await;
    assert!(took.is_some(), "removed policy still used");
    assert!(
        !plugins(&gw)
            .await
            .iter()
            .any(|p| p["name"] == "hostile-policy")
    );

    // A WASM file that is not a plugin component is refused, with the reason.
    std::fs::write(dir.join("empty.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let seen = until(DEADLINE, async || {
        plugins(&gw)
            .await
            .iter()
            .any(|p| p["name"] == "empty" && !p["last_error"].is_null())
    })
    .await;
    assert!(seen.is_some(), "the refused file is not listed");
    // Everything else still serves.
    assert_eq!(plugin_of(&gw).await.0, 200);
}

async fn rescans(gw: &Gateway) -> u64 {
    let v: Value = gw.get_json("/plugins").await;
    assert_eq!(v["hot_reload"]["enabled"], true);
    v["hot_reload"]["rescans"].as_u64().unwrap()
}

/// Reading the plugin files (as the rescan itself, a backup or `sha256sum` does) is not a
/// change: it must not start a rescan, or the watcher feeds itself and hashes every plugin
/// file forever. A real change rescans once.
#[tokio::test]
async fn reading_plugin_files_never_rescans_and_a_change_rescans_once() {
    let m = mock().await;
    let gw = Gateway::start_spec(Spec {
        config: &config(&m.url()),
        plugins: &["openai", "hostile"],
        ..Spec::default()
    });
    assert_eq!(plugin_of(&gw).await, (200, "hostile@6.6.6".into()));
    let dir = gw.plugins_dir();
    for _ in 0..3 {
        for f in std::fs::read_dir(&dir).unwrap() {
            std::fs::read(f.unwrap().path()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A file that is not a plugin comes and goes.
    std::fs::write(dir.join("notes.txt"), "not a plugin").unwrap();
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    // Past the debounce and a full poll interval.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(
        rescans(&gw).await,
        0,
        "a rescan ran though no plugin changed"
    );

    replace_atomically(&dir.join("hostile.wasm"), &hostile_as("6.6.9"));
    until(DEADLINE, async || plugin_of(&gw).await.1 == "hostile@6.6.9")
        .await
        .expect("the new version never served");
    let after_change = rescans(&gw).await;
    assert!(
        (1..=2).contains(&after_change),
        "{after_change} rescans for one change"
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(
        rescans(&gw).await,
        after_change,
        "rescans kept running after the change was loaded"
    );
}
