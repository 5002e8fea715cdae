//! Hostile clients against the real binary: connections that never finish a request head,
//! idle keep-alive connections, bodies sent too slowly, more connections than the cap,
//! requests hyper cannot parse, keys in logged paths, and the open file limit.
//!
//! Every wait here has a generous deadline; what is asserted is behaviour (the connection
//! is closed, the request is answered), never how fast it happened.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{Gateway, client};

/// Long enough for any busy machine; the limits under test are 1 s.
const DEADLINE: Duration = Duration::from_secs(40);

fn connect(gw: &Gateway) -> TcpStream {
    let addr = gw.url.trim_start_matches("http://");
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Whether the gateway has closed `s` (a read sees EOF or a reset).
fn closed(s: &mut TcpStream) -> Option<bool> {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Some(true),
        Ok(_) => Some(false),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(true),
    }
}

/// Read everything until the gateway closes the connection (or the deadline passes).
fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Send one complete request and read its whole response (it has a content-length).
fn request(s: &mut TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Some(end) = memchr_end(&out) {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + len {
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    panic!("no complete response: {:?}", String::from_utf8_lossy(&out));
}

fn memchr_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn body_json(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp:?}"))
}

#[test]
fn a_request_head_sent_one_byte_at_a_time_is_cut_off() {
    let gw = Gateway::start("llmgate:\n  client_header_timeout_seconds: 1\n");
    let mut s = connect(&gw);
    s.write_all(b"GET /health/liveliness HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .unwrap();
    // A slowloris: one more header byte every 200 ms, never the end of the head.
    let deadline = Instant::now() + DEADLINE;
    let mut cut = false;
    while Instant::now() < deadline {
        if s.write_all(b"a").is_err() {
            cut = true;
            break;
        }
        match closed(&mut s) {
            Some(true) => {
                cut = true;
                break;
            }
            Some(false) => panic!("the gateway answered a request whose head never ended"),
            None => {}
        }
    }
    assert!(cut, "a head that never ends kept its connection open");
    // The gateway still serves others.
    let mut other = connect(&gw);
    let resp = request(
        &mut other,
        "GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let gw = Gateway::start(
        "llmgate:\n  client_idle_timeout_seconds: 1\n  client_header_timeout_seconds: 30\n",
    );
    // Never sends a byte.
    let mut silent = connect(&gw);
    // Sends one request, then keeps the connection idle.
    let mut kept = connect(&gw);
    let resp = request(
        &mut kept,
        "GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    for (name, s) in [("silent", &mut silent), ("keep-alive", &mut kept)] {
        let deadline = Instant::now() + DEADLINE;
        let mut shut = false;
        while Instant::now() < deadline {
            match closed(s) {
                Some(true) => {
                    shut = true;
                    break;
                }
                Some(false) => panic!("{name}: unexpected bytes"),
                None => {}
            }
        }
        assert!(shut, "{name}: an idle connection was kept open");
    }
}

#[test]
fn a_body_sent_too_slowly_is_answered_408_in_the_api_shape() {
    let gw = Gateway::start("llmgate:\n  client_body_timeout_seconds: 1\n");
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let mut s = connect(&gw);
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\":"
            )
            .as_bytes(),
        )
        .unwrap();
        // One byte every 200 ms: the body would take minutes.
        let deadline = Instant::now() + DEADLINE;
        let mut resp = String::new();
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline && resp.is_empty() {
            let _ = s.write_all(b" ");
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("{path}: {e}"),
            }
        }
        resp.push_str(&read_to_close(&mut s));
        assert!(resp.starts_with("HTTP/1.1 408"), "{path}: {resp}");
        let v = body_json(&resp);
        if anthropic {
            assert_eq!(v["type"], "error", "{path}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("client_body_timeout_seconds"),
                "{v}"
            );
        } else {
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("client_body_timeout_seconds"),
                "{path}: {v}"
            );
        }
    }
}

#[test]
fn connections_over_the_cap_wait_until_one_closes() {
    let gw = Gateway::start("llmgate:\n  max_client_connections: 2\n");
    // Two connections, each served once and then held open.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(&gw);
            let r = request(&mut s, "GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            s
        })
        .collect();
    // A third is not served while both are open...
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = gw.url.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let r = request(&mut s, "GET /health/liveliness HTTP/1.1\r\nhost: x\r\n\r\n");
        let _ = tx.send(r);
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "a connection over the cap was served"
    );
    let logs = gw.logs_once("client connection limit reached", DEADLINE);
    assert!(logs.contains("client connection limit reached"), "{logs}");
    // ...and is once one of them closes.
    drop(held.pop());
    let r = rx
        .recv_timeout(DEADLINE)
        .expect("served after a slot freed");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn unparseable_requests_get_an_error_body_in_openai_shape() {
    let gw = Gateway::start("");
    let huge_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET /health/liveliness HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    for (req, status) in [
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), "400"),
        (huge_uri, "414"),
        (many_headers, "431"),
    ] {
        let mut s = connect(&gw);
        let _ = s.write_all(req.as_bytes());
        let resp = read_to_close(&mut s);
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {resp:?}"
        );
        let v = body_json(&resp);
        assert_eq!(v["error"]["code"], status, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
}

#[tokio::test]
async fn keys_in_request_paths_never_reach_the_logs() {
    let master = "sk-master-logs-1234";
    let gw = Gateway::start(&format!("general_settings:\n  master_key: {master}\n"));
    let secret = "sk-not-a-real-key-in-the-path-9876";
    for (method, path) in [
        ("POST", format!("/key/{secret}/regenerate")),
        ("GET", format!("/no/such/route/{secret}?api_key={secret}")),
        (
            "GET",
            "/v1/models/Zk3xQ9vLm2Rt8Yb4Np6Wc1Hd5Js7Ke0A".to_string(),
        ),
    ] {
        let r = client()
            .request(method.parse().unwrap(), format!("{}{path}", gw.url))
            .bearer_auth(master)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_client_error(),
            "{method} {path}: {}",
            r.status()
        );
    }
    // Wait until the last request's line is there, then check none has the secrets.
    let deadline = Instant::now() + DEADLINE;
    while gw.logs().matches("request failed").count() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = gw.logs();
    assert!(logs.matches("request failed").count() >= 3, "{logs}");
    assert!(logs.contains("/key/{key}/regenerate"), "{logs}");
    for s in [secret, "Zk3xQ9vLm2Rt8Yb4Np6Wc1Hd5Js7Ke0A", "api_key="] {
        assert!(!logs.contains(s), "`{s}` reached the logs:\n{logs}");
    }
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    // Start with a low soft limit, as many shells and service managers give.
    let plugins = crate::harness::plugin("openai");
    let dir = plugins.parent().unwrap();
    let mut child = std::process::Command::new("bash")
        .args([
            "-c",
            "ulimit -Sn 256 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_llmgate"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--plugins-dir",
        ])
        .arg(dir)
        .env_remove("LLMGATE_CONFIG")
        .env("LLMGATE_DB", tempfile::tempdir().unwrap().keep().join("db"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("llmgate listening on"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums[0], nums[1], "soft limit not raised: {row}");
    assert_ne!(nums[0], "256", "{row}");
}

/// Found by fuzzing `request_summary`: a second `model` written with an escape
/// (`"mod\u0065l"`) must not let a key limited to one model reach another. The host reads
/// the request as the upstream's JSON parser will (the last `model` wins) and the upstream
/// only ever gets the deployment's model.
#[tokio::test]
async fn an_escaped_duplicate_model_key_cannot_bypass_the_allowlist() {
    let mock = crate::support::mock::mock().await;
    let master = "sk-master-escape-1234";
    let config = crate::support::Config::openai(
        &mock.url(),
        &[("allowed", "gpt-allowed"), ("dear", "gpt-dear")],
    )
    .master_key(master);
    let gw = Gateway::start(&config.yaml());
    let key: serde_json::Value = client()
        .post(format!("{}/key/generate", gw.url))
        .bearer_auth(master)
        .json(&serde_json::json!({"models": ["allowed"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let body =
        r#"{"model":"allowed","mod\u0065l":"dear","messages":[{"role":"user","content":"hi"}]}"#;
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_client_error(), "{status}: {text}");
    assert!(
        mock.requests().is_empty(),
        "a refused request reached the upstream: {:?}",
        mock.requests()
            .iter()
            .map(|r| r.body["model"].clone())
            .collect::<Vec<_>>()
    );
    // The allowed model alone is served, with the deployment's model upstream.
    let ok =
        r#"{"model":"dear","mod\u0065l":"allowed","messages":[{"role":"user","content":"hi"}]}"#;
    let r = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.body["model"], "gpt-allowed", "{}", last.body);
}
