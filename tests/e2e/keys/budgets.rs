//! Budgets: exceeded in both dialects, per model, under concurrency (reserve and strict
//! admission), and reset by the budget window.

use super::*;

#[tokio::test]
async fn budget_exceeded_in_both_dialects() {
    let (m, gw) = setup().await;
    // A budget smaller than one request: the first is admitted, the next refused.
    let budget = 0.000_244_140_625; // 2^-12
    let (key, _) = generate(&gw, MASTER, json!({"max_budget": budget})).await;
    let body = chat_body("priced", "spend it all", false);
    let c = chat(&gw, Some(&key), &body).await;
    assert_eq!(c.resp.status, 200, "{}", c.resp.text);
    assert!(c.cost() > budget);
    let before = m.count();
    let r = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
    assert_budget_exceeded(&r);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&format!("Current cost: {}, Max budget: {budget}", c.cost())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "Key={}",
            &info(&gw, MASTER, &key).await["key_name"].as_str().unwrap()
        )),
        "{msg}"
    );
    // Streamed requests too.
    assert_budget_exceeded(
        &post(
            &gw,
            "/v1/chat/completions",
            Some(&key),
            &chat_body("priced", "x", true),
        )
        .await,
    );
    // Anthropic's shape on /v1/messages.
    for stream in [false, true] {
        let r = messages(
            &gw,
            Some(&key),
            &json!({"model": "priced", "max_tokens": 16, "stream": stream,
                "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        let e = r.anthropic_error(400);
        assert_eq!(e["type"], "invalid_request_error", "{}", r.text);
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("Budget has been exceeded"),
            "{e}"
        );
    }
    assert_eq!(
        m.count(),
        before,
        "refused requests must not reach the upstream"
    );
    // A zero budget refuses the first request.
    let (zero, _) = generate(&gw, MASTER, json!({"max_budget": 0})).await;
    assert_budget_exceeded(&post(&gw, "/v1/chat/completions", Some(&zero), &body).await);
    // Raising the budget lets requests in again.
    update(&gw, MASTER, json!({"key": key, "max_budget": 100})).await;
    assert_eq!(chat(&gw, Some(&key), &body).await.resp.status, 200);
}

#[tokio::test]
async fn model_max_budget_limits_one_model_only() {
    let (_m, gw) = setup().await;
    // Under either of LiteLLM's names for the two fields.
    for budget in [
        json!({"budget_limit": 0.000_244_140_625, "time_period": "1d"}),
        json!({"max_budget": 0.000_244_140_625, "budget_duration": "1d"}),
    ] {
        let (key, _) = generate(&gw, MASTER, json!({"model_max_budget": {"priced": budget}})).await;
        let body = chat_body("priced", "x", false);
        let c = chat(&gw, Some(&key), &body).await;
        assert_eq!(c.resp.status, 200);
        let r = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
        assert_budget_exceeded(&r);
        assert!(r.text.contains("for model priced"), "{}", r.text);
        // Other models are not limited.
        assert_eq!(chat_status(&gw, &key, "other").await, 200);
        assert_eq!(
            info(&gw, MASTER, &key).await["model_spend"]["priced"]
                .as_f64()
                .unwrap(),
            c.cost()
        );
    }
}

/// One answer of the storm.
struct Answer {
    stream: bool,
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    /// `x-litellm-response-cost` (non-streamed 200s).
    header_cost: Option<f64>,
    /// Cost computed from the usage in the answer (200s).
    usage_cost: Option<f64>,
}

const STORM: usize = 300;
const STORM_TEXT: &str = "tell me something short about budgets and gateways please";

pub(super) fn storm_body(stream: bool) -> Value {
    chat_body("slow", STORM_TEXT, stream)
}

/// Fire [`STORM`] requests at once (half streamed), their starts spread over ~1.5 s so that
/// admissions interleave with settlements; the upstream takes 800 ms each.
async fn storm(gw: &Gateway, key: &str) -> Vec<Answer> {
    let c = storm_client();
    let mut tasks = Vec::new();
    for i in 0..STORM {
        let stream = i % 2 == 0;
        let (c, url, key) = (c.clone(), gw.url.clone(), key.to_string());
        let delay = Duration::from_millis(((i * 37) % STORM) as u64 * 5);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let body = storm_body(stream);
            let resp = chat_on(&c, &url, &key, &body).await;
            let mut a = Answer {
                stream,
                status: resp.status,
                headers: resp.headers.clone(),
                text: resp.text.clone(),
                header_cost: None,
                usage_cost: None,
            };
            if resp.status == 200 {
                let usage = if stream {
                    stream_usage(&resp.text)
                } else {
                    a.header_cost = Some(resp.header_f64("x-litellm-response-cost"));
                    resp.json()["usage"].clone()
                };
                a.usage_cost = Some(cost(
                    usage["prompt_tokens"].as_u64().unwrap(),
                    usage["completion_tokens"].as_u64().unwrap(),
                ));
            }
            a
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// What the storm left behind, checked for consistency.
struct StormResult {
    spend: f64,
    admitted: usize,
    max_cost: f64,
    min_cost: f64,
}

async fn check_storm(gw: &Gateway, key: &str, answers: &[Answer]) -> StormResult {
    // Every answer is a 200 or a budget refusal: the 400 of a budget spent (or, strict, of
    // a request too large for what is left), or the 429 of a budget held by requests in
    // flight.
    for a in answers.iter().filter(|a| a.status != 200) {
        let r = Resp {
            status: a.status,
            headers: a.headers.clone(),
            text: a.text.clone(),
        };
        if r.status == 429 {
            let e = r.openai_error(429);
            assert_eq!(e["code"], "budget_held_by_requests_in_flight", "{}", r.text);
            assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
        } else {
            let e = r.openai_error(400);
            assert_eq!(e["type"], "budget_exceeded", "{}", r.text);
        }
    }
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let admitted = ok.len();
    assert!(admitted > 0, "nothing was admitted");
    assert!(
        admitted < STORM,
        "the budget never ran out: the test proves nothing"
    );
    assert!(ok.iter().any(|a| a.stream) && ok.iter().any(|a| !a.stream));
    // x-litellm-response-cost is the cost of the usage in the body.
    for a in ok.iter().filter(|a| !a.stream) {
        assert_eq!(a.header_cost, a.usage_cost);
    }
    let answered: f64 = ok.iter().map(|a| a.usage_cost.unwrap()).sum();
    let max_cost = ok.iter().map(|a| a.usage_cost.unwrap()).fold(0.0, f64::max);
    let min_cost = ok
        .iter()
        .map(|a| a.usage_cost.unwrap())
        .fold(f64::INFINITY, f64::min);

    let spend = key_spend(gw, MASTER, key).await;
    let rows = spend_logs(gw, MASTER, &format!("api_key={key}")).await;
    // One row per admitted request, none dropped, none for refused requests.
    assert_eq!(rows.len(), admitted, "spend log rows vs admitted requests");
    assert!(rows.iter().all(|r| r["status"] == "success"));
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    // The money adds up exactly (power-of-two prices: every sum is exact).
    assert_eq!(spend, logged, "key spend vs sum of spend logs");
    assert_eq!(spend, answered, "key spend vs sum of the answers' costs");
    let header_sum: f64 = ok.iter().filter_map(|a| a.header_cost).sum();
    let stream_sum: f64 = ok
        .iter()
        .filter(|a| a.stream)
        .map(|a| a.usage_cost.unwrap())
        .sum();
    assert_eq!(spend, header_sum + stream_sum);
    // The premise of the bounds below: no request costs more than what was reserved for it.
    let w = worst_case(&storm_body(true)).max(worst_case(&storm_body(false)));
    for r in &rows {
        assert!(
            r["spend"].as_f64().unwrap() <= w,
            "row above its reservation: {r}"
        );
    }
    StormResult {
        spend,
        admitted,
        max_cost,
        min_cost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_drop_spend_and_respect_the_budget() {
    let (_m, gw) = setup().await;
    // Calibrate: the exact cost of one request of each kind (the master key is not limited).
    let c_ns = chat(&gw, Some(MASTER), &storm_body(false)).await;
    let c_s = chat(&gw, Some(MASTER), &storm_body(true)).await;
    assert_eq!(c_ns.resp.status, 200);
    assert_eq!(c_s.resp.status, 200);
    let unit = c_ns.cost().max(c_s.cost());
    let w_ns = worst_case(&storm_body(false));
    let w = w_ns.max(worst_case(&storm_body(true)));
    // ~20 requests exhaust it.
    let budget = 20.0 * unit;
    let (key, _) = generate(
        &gw,
        MASTER,
        json!({"max_budget": budget, "key_alias": "storm"}),
    )
    .await;

    let answers = storm(&gw, &key).await;
    let r = check_storm(&gw, &key, &answers).await;
    eprintln!(
        "reserve: admitted {} of {STORM}, spend {} of budget {budget} (worst case {w}, real {unit})",
        r.admitted, r.spend
    );
    // The bound. A request is admitted only while spend + reserved < budget, and it reserves
    // its worst case W, which is at least its real cost (checked per row above). Take the
    // last request admitted, r. When r was admitted, every earlier admitted request had
    // either settled (its real cost is in `spend`) or was in flight (W of it is in
    // `reserved`, and its real cost will be at most that). No request is admitted after r.
    // So the final spend is at most (spend + reserved at r's admission) + real(r)
    // < budget + W: at most one worst case over the budget, however many run at once.
    assert!(
        r.spend < budget + w,
        "overspent: spend {} >= budget {budget} + one worst case {w}",
        r.spend
    );
    // And the budget was really used. There was a refusal (checked), so at some moment
    // spend + reserved >= budget; every reservation then in flight settled at a real cost of
    // at least min_cost, i.e. at least min_cost / W of what it reserved. So the final spend
    // is at least budget * min_cost / W.
    let floor = budget * r.min_cost / w;
    assert!(
        r.spend >= floor * (1.0 - 1e-12),
        "spend {} below {floor} of budget {budget}",
        r.spend
    );
    assert!(r.max_cost <= w);

    // No reservation leaked: with the budget at spend + 2^-20, a request is admitted only if
    // nothing is reserved any more.
    let spend = r.spend;
    update(
        &gw,
        MASTER,
        json!({"key": key, "max_budget": spend + 0.000_000_953_674_316_406_25}),
    )
    .await;
    let c = chat(&gw, Some(&key), &storm_body(false)).await;
    assert_eq!(c.resp.status, 200, "a reservation leaked: {}", c.resp.text);
    let spend = spend + c.cost();
    assert_eq!(key_spend(&gw, MASTER, &key).await, spend);
    assert_budget_exceeded(
        &post(&gw, "/v1/chat/completions", Some(&key), &storm_body(false)).await,
    );
    // And exactly one worst case of room admits one request.
    update(&gw, MASTER, json!({"key": key, "max_budget": spend + w_ns})).await;
    let c = chat(&gw, Some(&key), &storm_body(false)).await;
    assert_eq!(c.resp.status, 200, "{}", c.resp.text);
    assert_eq!(key_spend(&gw, MASTER, &key).await, spend + c.cost());
    assert_eq!(
        spend_logs(&gw, MASTER, &format!("api_key={key}"))
            .await
            .len(),
        r.admitted + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_admission_never_exceeds_the_budget_under_concurrency() {
    let m = keyed_mock().await;
    let gw = start(&config(&m.url()).budget_admission("strict").yaml());
    let c_ns = chat(&gw, Some(MASTER), &storm_body(false)).await;
    let c_s = chat(&gw, Some(MASTER), &storm_body(true)).await;
    let unit = c_ns.cost().max(c_s.cost());
    let w_ns = worst_case(&storm_body(false));
    let budget = 20.0 * unit;
    let (key, _) = generate(&gw, MASTER, json!({"max_budget": budget})).await;

    let answers = storm(&gw, &key).await;
    let r = check_storm(&gw, &key, &answers).await;
    eprintln!(
        "strict: admitted {} of {STORM}, spend {} of budget {budget}",
        r.admitted, r.spend
    );
    // Strict: admitted only if spend + reserved + W <= budget, so spend never passes it.
    assert!(r.spend <= budget, "spend {} > budget {budget}", r.spend);

    // No reservation leaked: exactly one worst case of room admits one request (strict needs
    // spend + reserved + W <= budget, so any leftover reservation would refuse it) ...
    update(
        &gw,
        MASTER,
        json!({"key": key, "max_budget": r.spend + w_ns}),
    )
    .await;
    let c = chat(&gw, Some(&key), &storm_body(false)).await;
    assert_eq!(c.resp.status, 200, "a reservation leaked: {}", c.resp.text);
    // ... and then there is less than one worst case left: refused, as a request too large
    // for what is left (the budget is not spent).
    let refused = post(&gw, "/v1/chat/completions", Some(&key), &storm_body(false)).await;
    let e = refused.openai_error(400);
    assert_eq!(e["type"], "budget_exceeded", "{}", refused.text);
    assert_eq!(
        e["code"], "budget_too_small_for_request",
        "{}",
        refused.text
    );
    assert_eq!(key_spend(&gw, MASTER, &key).await, r.spend + c.cost());
    assert!(key_spend(&gw, MASTER, &key).await <= r.spend + w_ns);
}

#[tokio::test]
async fn budget_window_resets_spend() {
    let (_m, gw) = setup().await;
    let (key, v) = generate(
        &gw,
        MASTER,
        json!({"max_budget": 0.000_244_140_625, "budget_duration": "2s"}),
    )
    .await;
    let first_reset = iso_secs(v["budget_reset_at"].as_str().unwrap());
    let body = chat_body("priced", "windowed", false);
    let c = chat(&gw, Some(&key), &body).await;
    assert_eq!(c.resp.status, 200);
    assert_budget_exceeded(&post(&gw, "/v1/chat/completions", Some(&key), &body).await);
    assert_eq!(key_spend(&gw, MASTER, &key).await, c.cost());
    // Wait out the window.
    let wait = first_reset - unix_now() + 1.2;
    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
    let i = info(&gw, MASTER, &key).await;
    assert_eq!(i["spend"], 0.0, "{i}");
    assert!(
        iso_secs(i["budget_reset_at"].as_str().unwrap()) > first_reset,
        "{i}"
    );
    let c2 = chat(&gw, Some(&key), &body).await;
    assert_eq!(c2.resp.status, 200, "{}\n{}", c2.resp.text, gw.logs());
    assert_eq!(c2.resp.header_f64("x-litellm-key-spend"), c2.cost());
    // The logs keep both requests.
    assert_eq!(
        spend_logs(&gw, MASTER, &format!("api_key={key}"))
            .await
            .len(),
        2
    );
}
