//! In-process cost of the gateway's per-request steps that the HTTP bench cannot separate:
//! the routing policy call (`router` and `ordered`), the ledger's admit + settle for a
//! virtual key, and a plugin reload (compile + check) as hot reload does it.
//!
//! `cargo run --release -p llmgate --example overhead -- plugins/dist`

#![expect(clippy::unwrap_used, reason = "a measuring tool")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use llmgate::config::PluginLimits;
use llmgate::ledger::{Admit, Caller, Ledger, Outcome, Settings};
use llmgate::plugins::{Loaded, Runtime};
use llmgate::store::{SpendLog, Store};
use llmgate::wit::policy_api::{Candidate, RouteRequest};
use llmgate::wit::provider_api::{Deployment, Inbound};
use llmgate::wit::types::Api;

fn candidate(id: &str, group: &str) -> Candidate {
    Candidate {
        id: id.into(),
        model_group: group.into(),
        provider: "openai".into(),
        model: "gpt-4o".into(),
        healthy: true,
        in_flight: 1,
        error_rate: 0.0,
        latency_ms_p50: 300,
        ttft_ms_p50: 120,
        price_in: 2.5e-6,
        price_out: 1e-5,
        weight: 1,
        rpm: 0,
        tpm: 0,
        order: 0,
        max_input_tokens: 128_000,
    }
}

fn per_call(label: &str, n: u32, started: Instant) {
    println!(
        "{label:<52} {:>9.1} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "plugins/dist".into()),
    );
    let cache = tempfile::tempdir().unwrap();
    let runtime = Arc::new(Runtime::new(&PluginLimits::default(), Some(cache.path())).unwrap());

    // Routing policy calls, with 3 candidates of the group and 2 fallback candidates.
    let cands = vec![
        candidate("a", "gpt-4o"),
        candidate("b", "gpt-4o"),
        candidate("c", "gpt-4o"),
        candidate("d", "claude"),
        candidate("e", "claude"),
    ];
    let req = RouteRequest {
        api: Api::ChatCompletions,
        model: "gpt-4o".into(),
        model_group: "gpt-4o".into(),
        stream: true,
        est_input_tokens: 17_000,
        max_output_tokens: 64_000,
        headers: vec![("x-kilocode-mode".into(), "code".into())],
        last_user_text: None,
    };
    let config = r#"{"strategy":"simple-shuffle","num_retries":1,"fallbacks":{"gpt-4o":["claude"]},"context_window_fallbacks":{},"content_policy_fallbacks":{},"default_fallbacks":[]}"#;
    for name in ["policy-router", "policy-ordered"] {
        let Loaded::Policy(p) = runtime
            .load_file(&dir.join(format!("{name}.wasm")))
            .await
            .unwrap()
        else {
            panic!("{name} is not a policy");
        };
        for _ in 0..200 {
            p.route(config, &req, &cands).await.unwrap().unwrap();
        }
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            p.route(config, &req, &cands).await.unwrap().unwrap();
        }
        per_call(&format!("route() through {name} (pooled instance)"), n, t);
    }

    // Provider exchange: fresh instance + constructor, build-request, on-body, teardown.
    let Loaded::Provider(openai) = runtime.load_file(&dir.join("openai.wasm")).await.unwrap()
    else {
        panic!("openai.wasm is not a provider");
    };
    let reply = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock-gpt","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, this is a short answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;
    for (label, body) in [("small", small_body()), ("68 KB agent", agent_body())] {
        let inbound = Inbound {
            api: Api::ChatCompletions,
            model: "bench".into(),
            stream: false,
            body,
            content_type: "application/json".into(),
            headers: vec![("user-agent".into(), "OpenAI/Python 1.0".into())],
            deployment: Deployment {
                id: "bench-0".into(),
                provider: "openai".into(),
                model: "mock-gpt".into(),
                api_base: Some("http://127.0.0.1:9/v1".into()),
                api_version: None,
                params_json: "{}".into(),
            },
        };
        let n = 5_000;
        let (mut t_new, mut t_build, mut t_body, mut t_drop) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..n + 200 {
            let t = Instant::now();
            let mut ex = openai.exchange(&inbound).await.unwrap();
            let t1 = Instant::now();
            ex.build_request().await.unwrap().unwrap();
            let t2 = Instant::now();
            ex.on_body(
                200,
                &[("content-type".into(), "application/json".into())],
                reply,
            )
            .await
            .unwrap()
            .unwrap();
            let t3 = Instant::now();
            drop(ex);
            let t4 = Instant::now();
            if i >= 200 {
                t_new += (t1 - t).as_secs_f64();
                t_build += (t2 - t1).as_secs_f64();
                t_body += (t3 - t2).as_secs_f64();
                t_drop += (t4 - t3).as_secs_f64();
            }
        }
        let us = |s: f64| s * 1e6 / f64::from(n);
        println!(
            "openai exchange, {label:<12} new {:>6.1} + build {:>6.1} + on_body {:>6.1} + drop {:>6.1} = {:>6.1} µs",
            us(t_new),
            us(t_build),
            us(t_body),
            us(t_drop),
            us(t_new + t_build + t_body + t_drop)
        );
    }

    // Ledger: authenticate + admit + settle for a virtual key with every limit set.
    let db = tempfile::tempdir().unwrap();
    let store = Store::open(&db.path().join("l.db")).unwrap();
    let master = "sk-master";
    let ledger = Ledger::open(
        store.clone(),
        Settings {
            master_key_hash: Some(sha256(master)),
            spend_logs: true,
            ..Settings::default()
        },
    )
    .await
    .unwrap();
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"key":"sk-bench-key","max_budget":1e9,"budget_duration":"1d","rpm_limit":1000000000,"tpm_limit":1000000000000,"max_parallel_requests":100000,"models":["gpt-4o"]}"#,
    )
    .unwrap();
    ledger.generate(&body).await.unwrap();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", "Bearer sk-bench-key".parse().unwrap());
    let log = SpendLog {
        call_type: "acompletion".into(),
        model: "gpt-4o".into(),
        model_group: "gpt-4o".into(),
        model_id: "gpt-4o-0".into(),
        custom_llm_provider: "openai".into(),
        metadata: serde_json::json!({}),
        ..SpendLog::default()
    };
    let n = 100_000;
    let t = Instant::now();
    for i in 0..n {
        let caller = ledger.authenticate(&headers).unwrap();
        assert!(matches!(caller, Caller::Key(_)));
        let mut l = log.clone();
        l.request_id = i.to_string();
        let ticket = ledger
            .admit(
                &caller,
                Admit {
                    group: "gpt-4o",
                    reserve: 0.7,
                    tokens: 1000,
                    log: l,
                    facts: Default::default(),
                    seen: None,
                },
            )
            .await
            .unwrap();
        ticket.settle(Outcome {
            cost: 0.001,
            success: true,
            tokens: 1000,
        });
    }
    per_call("ledger: authenticate + admit + settle (virtual key)", n, t);
    let t = Instant::now();
    store.flush().await.unwrap();
    println!(
        "store: commit of {n} queued rows after the loop         {:>9.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // Hot reload cost: compile (cold cache) and load (warm cache) the biggest plugins.
    for name in ["openai", "anthropic", "policy-router"] {
        let path = dir.join(format!("{name}.wasm"));
        let fresh = Arc::new(Runtime::new(&PluginLimits::default(), None).unwrap());
        let t = Instant::now();
        fresh.load_file(&path).await.unwrap();
        println!(
            "reload {name:<16} compile + instantiate + describe     {:>9.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}

fn small_body() -> Vec<u8> {
    br#"{"model":"bench","messages":[{"role":"user","content":"Say hello in one short sentence."}]}"#.to_vec()
}

/// About 68 KB: a 50 KB system prompt, 14 function tools, a tool-call turn.
fn agent_body() -> Vec<u8> {
    let system: String = (0..7_000).map(|i| format!("word{} ", i % 97)).collect();
    let tools: Vec<serde_json::Value> = (0..14)
        .map(|i| {
            serde_json::json!({"type":"function","function":{"name":format!("tool_{i}"),
            "description":"Run a shell command in the workspace and return its output. ".repeat(8),
            "parameters":{"type":"object","properties":{"command":{"type":"string","description":"The command."},
            "timeout":{"type":"number"}},"required":["command"]}}})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "model": "bench",
        "max_completion_tokens": 64000,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "List the files."},
            {"role": "assistant", "content": null, "tool_calls": [{"id":"call_1","type":"function","function":{"name":"tool_0","arguments":"{\"command\":\"ls\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
            {"role": "user", "content": "Now read a.txt."}
        ],
        "tools": tools,
    }))
    .unwrap()
}

fn sha256(s: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).into()
}
