//! Virtual keys, budgets, rate limits and spend logs through the real binary (LiteLLM's
//! `/key/*` and `/spend/logs` routes): authentication, every key route and field, every
//! limit, costs and headers, the budget under concurrency, budget windows and persistence
//! across a restart.
//!
//! Prices are set explicitly and are powers of two (2^-10 and 2^-9 USD per token), so every
//! cost, reservation and sum of costs is exact in `f64` and the tests compare money exactly.

use std::time::Duration;

use llmgate_mock::MockServer;
use serde_json::{Value, json};

use crate::support::admin::{generate, hash, info, key_spend, spend_logs, update};
use crate::support::clock::{away_from_minute_boundary, unix_now};
use crate::support::http::{
    chat_on, client, get, messages, post, post_raw, send, storm_client, stream_usage,
};
use crate::support::mock::keyed_mock;
use crate::support::{Config, Deployment, Gateway, Resp, Spec};

const MASTER: &str = "sk-master-e2e-1234";
/// USD per input token (2^-10).
const IN: f64 = 0.000_976_562_5;
/// USD per output token (2^-9).
const OUT: f64 = 0.001_953_125;
/// `max_tokens` of every chat request: the output part of the worst case.
const MAX_TOKENS: u64 = 16;
const PLUGINS: &[&str] = &["openai", "anthropic", "policy-ordered"];

mod admin;
mod auth;
mod block;
mod budgets;
mod cluster;
mod limits;
mod model_budgets;
mod postgres;
mod postgres_tls;
mod spend_logs;
mod spend_reports;

// ---------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------

/// The model list: prices in `litellm_params` for most groups, in `model_info` (at twice the
/// price) for `priced-info`.
fn model_list(mock: &str) -> Config {
    let dep = |name: &str, model: &str| {
        Deployment::openai(name, model, mock)
            .prices(IN, OUT)
            .id(&format!("dep-{name}"))
    };
    Config::new()
        .deployment(dep("priced", "mock-gpt"))
        .deployment(dep("other", "mock-gpt"))
        .deployment(dep("slow", "mock-slow-800"))
        .deployment(dep("failing", "mock-error-500"))
        .deployment(
            Deployment::openai("priced-info", "mock-gpt", mock)
                .id("dep-priced-info")
                .info_prices(2.0 * IN, 2.0 * OUT),
        )
        // The routing policy pinned to `ordered`, the plugin the tests load.
        .default_policy("ordered")
}

/// A config without a master key.
fn open_config(mock: &str) -> String {
    model_list(mock).yaml()
}

/// A config with the master key in `general_settings`.
fn config(mock: &str) -> Config {
    model_list(mock).master_key(MASTER)
}

fn start(cfg: &str) -> Gateway {
    Gateway::start_spec(Spec {
        config: cfg,
        plugins: PLUGINS,
        ..Spec::default()
    })
}

async fn setup() -> (MockServer, Gateway) {
    let m = keyed_mock().await;
    let gw = start(&config(&m.url()).yaml());
    (m, gw)
}

fn chat_body(model: &str, text: &str, stream: bool) -> Value {
    let mut b = json!({
        "model": model,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": text}],
    });
    if stream {
        b["stream"] = json!(true);
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// The cost of a usage at the test prices.
fn cost(prompt: u64, completion: u64) -> f64 {
    prompt as f64 * IN + completion as f64 * OUT
}

/// The reservation the gateway makes for `body` (host/src/ledger/cost.rs): every body byte
/// a third of an input token, plus the whole `max_tokens` allowance.
fn worst_case(body: &Value) -> f64 {
    let bytes = serde_json::to_vec(body).unwrap().len() as u64;
    bytes.div_ceil(3) as f64 * IN + body["max_tokens"].as_u64().unwrap() as f64 * OUT
}

/// A chat completion answered: the response and its usage (non-streamed: from the body;
/// streamed: from the usage chunk).
struct Chat {
    resp: Resp,
    prompt: u64,
    completion: u64,
}

impl Chat {
    fn cost(&self) -> f64 {
        cost(self.prompt, self.completion)
    }
}

async fn chat(gw: &Gateway, key: Option<&str>, body: &Value) -> Chat {
    let resp = post(gw, "/v1/chat/completions", key, body).await;
    let (mut prompt, mut completion) = (0, 0);
    if resp.status == 200 {
        let usage = if body["stream"] == true {
            stream_usage(&resp.text)
        } else {
            resp.json()["usage"].clone()
        };
        prompt = usage["prompt_tokens"].as_u64().unwrap();
        completion = usage["completion_tokens"].as_u64().unwrap();
        assert!(prompt > 0 && completion > 0, "{usage}");
    }
    Chat {
        resp,
        prompt,
        completion,
    }
}

/// The status of a one-word chat with `model` under `key`.
async fn chat_status(gw: &Gateway, key: &str, model: &str) -> u16 {
    chat(gw, Some(key), &chat_body(model, "x", false))
        .await
        .resp
        .status
}

/// Assert a 400 `budget_exceeded` in OpenAI's shape.
fn assert_budget_exceeded(r: &Resp) {
    let e = r.openai_error(400);
    assert_eq!(e["type"], "budget_exceeded", "{}", r.text);
    assert_eq!(e["code"], "budget_exceeded", "{}", r.text);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("Budget has been exceeded") && msg.contains("Max budget"),
        "{msg}"
    );
}

/// Unix seconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS(.mmm)Z`.
fn iso_secs(s: &str) -> f64 {
    let y: i64 = s[0..4].parse().unwrap();
    let mo: i64 = s[5..7].parse().unwrap();
    let d: i64 = s[8..10].parse().unwrap();
    let h: i64 = s[11..13].parse().unwrap();
    let mi: i64 = s[14..16].parse().unwrap();
    let sec: f64 = s[17..s.len() - 1].parse().unwrap();
    // Days from civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + h * 3600 + mi * 60) as f64 + sec
}
