//! Event loops (`--num_workers`): connections are shared out between the loops, every loop
//! serves, and a graceful stop drains the requests in flight on all of them.

use std::time::Duration;

use llmgate_mock::{MockOptions, MockServer};
use serde_json::{Value, json};

use crate::support::mock::mock;
use crate::support::{Gateway, Spec, openai_config};

fn chat_body(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// One chat completion on `client`'s own keep-alive connection; returns (status, body).
async fn chat(client: &reqwest::Client, url: &str, text: &str, stream: bool) -> (u16, String) {
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat_body(text, stream))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// A client with a connection pool of its own (so each one is one connection).
fn own_connection() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// The gateway in front of `m` with `loops` event loops.
fn gateway(m: &MockServer, loops: &str) -> Gateway {
    let cfg = openai_config(&m.url(), &[("gpt-4o", "mock-gpt")]);
    Gateway::start_spec(Spec {
        config: &cfg,
        args: &["--num_workers", loops],
        ..Spec::default()
    })
}

/// `GET /health/readiness` over a connection of its own.
async fn readiness_on_a_new_connection(gw: &Gateway) -> Value {
    own_connection()
        .get(format!("{}/health/readiness", gw.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_spread_over_the_event_loops_and_each_loop_serves() {
    let m = mock().await;
    let gw = gateway(&m, "3");
    // Six clients, six keep-alive connections, opened one after the other.
    let clients: Vec<reqwest::Client> = (0..6).map(|_| own_connection()).collect();
    for (i, c) in clients.iter().enumerate() {
        let (status, body) = chat(c, &gw.url, &format!("hello {i}"), false).await;
        assert_eq!(status, 200, "{body}");
    }
    // Asked over a seventh connection: 7 open, shared out as evenly as they can be.
    let v = readiness_on_a_new_connection(&gw).await;
    assert_eq!(v["event_loops"], 3, "{v}");
    let open: Vec<u64> = v["open_connections_per_loop"]
        .as_array()
        .unwrap_or_else(|| panic!("no per-loop counts: {v}"))
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(open.len(), 3, "{v}");
    assert_eq!(open.iter().sum::<u64>(), 7, "{v}");
    let (min, max) = (open.iter().min().unwrap(), open.iter().max().unwrap());
    assert!(
        max - min <= 1,
        "connections not shared out evenly: {open:?}"
    );
    // Every connection (so every loop) keeps serving, plain and streamed, concurrently.
    let mut tasks = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, url) = (c.clone(), gw.url.clone());
        tasks.push(tokio::spawn(async move {
            chat(&c, &url, &format!("again {i}"), i % 2 == 1).await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("chat.completion"), "not a completion: {body}");
    }
    // A closed connection is no longer counted: soon only the asking one is open.
    drop(clients);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = gw.get_json("/health/readiness").await;
        let total: u64 = v["open_connections_per_loop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum();
        if total == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "closed connections still counted: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_drains_requests_in_flight_on_every_loop() {
    // Every answer takes 1.5 s, so the stop lands while all of them are in flight.
    let m = MockServer::start(MockOptions {
        latency_ms: 1500,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut gw = gateway(&m, "3");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let url = gw.url.clone();
        tasks.push(tokio::spawn(async move {
            chat(&own_connection(), &url, &format!("drain {i}"), i % 2 == 1).await
        }));
    }
    // Wait until all six are at the upstream, then stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while m.count() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = tokio::task::block_in_place(|| gw.stop_graceful(Duration::from_secs(60)))
        .expect("llmgate did not stop on SIGTERM");
    for t in tasks {
        let (code, body) = t.await.unwrap();
        assert_eq!(
            code, 200,
            "a request in flight was cut off by the stop: {body}"
        );
    }
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_event_loop_takes_every_connection() {
    let m = mock().await;
    let gw = gateway(&m, "1");
    let clients: Vec<reqwest::Client> = (0..3).map(|_| own_connection()).collect();
    for (i, c) in clients.iter().enumerate() {
        let (status, body) = chat(c, &gw.url, &format!("one loop {i}"), i == 1).await;
        assert_eq!(status, 200, "{body}");
    }
    let v = readiness_on_a_new_connection(&gw).await;
    assert_eq!(v["event_loops"], 1, "{v}");
    assert_eq!(v["open_connections_per_loop"], json!([4]), "{v}");
}
