//! Costs, cost headers and spend log rows; refused requests write none; keys, spend and
//! logs survive a restart.

use super::*;

#[tokio::test]
async fn costs_headers_and_spend_log_rows() {
    let (_m, gw) = setup().await;
    let (key, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "costed", "user_id": "owner-1", "max_budget": 10}),
    )
    .await;
    let mut expected_spend = 0.0;

    // Non-streamed, prices in litellm_params.
    let mut body = chat_body("priced", "what does this cost", false);
    body["user"] = json!("end-user-7");
    let c1 = chat(&gw, Some(&key), &body).await;
    assert_eq!(c1.resp.status, 200, "{}", c1.resp.text);
    expected_spend += c1.cost();
    assert_eq!(c1.resp.header_f64("x-litellm-response-cost"), c1.cost());
    assert_eq!(c1.resp.header_f64("x-litellm-key-spend"), expected_spend);
    assert_eq!(c1.resp.header_f64("x-litellm-key-max-budget"), 10.0);
    assert_eq!(c1.resp.header("x-litellm-model-id"), Some("dep-priced"));
    let call1 = c1.resp.header("x-litellm-call-id").unwrap().to_string();
    assert!(!call1.is_empty());

    // Non-streamed, prices in model_info (twice as dear).
    let c2 = chat(
        &gw,
        Some(&key),
        &chat_body("priced-info", "model info prices", false),
    )
    .await;
    assert_eq!(c2.resp.status, 200);
    let cost2 = c2.prompt as f64 * (2.0 * IN) + c2.completion as f64 * (2.0 * OUT);
    expected_spend += cost2;
    assert_eq!(c2.resp.header_f64("x-litellm-response-cost"), cost2);
    assert_eq!(c2.resp.header_f64("x-litellm-key-spend"), expected_spend);
    assert_eq!(
        c2.resp.header("x-litellm-model-id"),
        Some("dep-priced-info")
    );

    // Streamed: costed from the final usage.
    let c3 = chat(
        &gw,
        Some(&key),
        &chat_body("priced", "stream this one please", true),
    )
    .await;
    assert_eq!(c3.resp.status, 200, "{}", c3.resp.text);
    assert_eq!(c3.resp.header("x-litellm-model-id"), Some("dep-priced"));
    assert!(c3.resp.header("x-litellm-call-id").is_some());
    // The spend header of a stream is the spend before it (sent before the usage is known).
    assert_eq!(c3.resp.header_f64("x-litellm-key-spend"), c1.cost() + cost2);
    expected_spend += c3.cost();
    assert_eq!(key_spend(&gw, MASTER, &key).await, expected_spend);

    // Anthropic dialect: costed the same way.
    let r = messages(
        &gw,
        Some(&key),
        &json!({"model": "priced", "max_tokens": 16, "messages": [{"role": "user", "content": "anthropic cost"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let u = &r.json()["usage"];
    let c4 = cost(
        u["input_tokens"].as_u64().unwrap(),
        u["output_tokens"].as_u64().unwrap(),
    );
    assert_eq!(r.header_f64("x-litellm-response-cost"), c4);
    expected_spend += c4;
    assert_eq!(key_spend(&gw, MASTER, &key).await, expected_spend);

    // A failed upstream request: a failure row with spend 0, and the reservation released.
    let r = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat_body("failing", "x", false),
    )
    .await;
    r.openai_error(500);
    assert_eq!(key_spend(&gw, MASTER, &key).await, expected_spend);
    // A reservation left behind would refuse this: admission needs spend + reserved < budget.
    let tiny = expected_spend + 0.000_000_953_674_316_406_25; // + 2^-20
    update(&gw, MASTER, json!({"key": key, "max_budget": tiny})).await;
    let c5 = chat(&gw, Some(&key), &chat_body("priced", "admitted", false)).await;
    assert_eq!(c5.resp.status, 200, "reservation leaked: {}", c5.resp.text);
    expected_spend += c5.cost();
    assert_budget_exceeded(&post(&gw, "/v1/chat/completions", Some(&key), &body).await);

    // The spend log rows.
    let rows = spend_logs(&gw, MASTER, &format!("api_key={key}")).await;
    assert_eq!(rows.len(), 6, "{rows:#?}");
    let total: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert_eq!(total, expected_spend);
    assert_eq!(key_spend(&gw, MASTER, &key).await, expected_spend);
    // By hash: the same rows.
    assert_eq!(
        spend_logs(&gw, MASTER, &format!("api_key={}", hash(&key)))
            .await
            .len(),
        6
    );
    let row = rows
        .iter()
        .find(|r| r["request_id"] == call1.as_str())
        .unwrap_or_else(|| panic!("no row for {call1}: {rows:#?}"));
    assert_eq!(row["api_key"], hash(&key));
    assert_eq!(row["model"], "mock-gpt");
    assert_eq!(row["model_group"], "priced");
    assert_eq!(row["model_id"], "dep-priced");
    assert_eq!(row["status"], "success");
    assert_eq!(row["spend"].as_f64().unwrap(), c1.cost());
    assert_eq!(row["prompt_tokens"], c1.prompt);
    assert_eq!(row["completion_tokens"], c1.completion);
    assert_eq!(row["total_tokens"], c1.prompt + c1.completion);
    assert_eq!(row["cache_read_input_tokens"], 0);
    assert_eq!(row["cache_creation_input_tokens"], 0);
    assert_eq!(row["user"], "end-user-7");
    assert_eq!(row["call_type"], "acompletion");
    assert_eq!(row["metadata"]["user_api_key_alias"], "costed");
    assert_eq!(row["metadata"]["user_api_key_user_id"], "owner-1");
    let (start, end) = (
        iso_secs(row["startTime"].as_str().unwrap()),
        iso_secs(row["endTime"].as_str().unwrap()),
    );
    assert!(start <= end && end <= unix_now() + 1.0, "{row}");
    // The streamed row.
    let srow = rows
        .iter()
        .find(|r| r["request_id"] == c3.resp.header("x-litellm-call-id").unwrap())
        .unwrap();
    assert_eq!(srow["status"], "success");
    assert_eq!(srow["spend"].as_f64().unwrap(), c3.cost());
    assert_eq!(srow["prompt_tokens"], c3.prompt);
    assert_eq!(srow["completion_tokens"], c3.completion);
    // The Anthropic row.
    assert_eq!(
        rows.iter()
            .filter(|r| r["call_type"] == "anthropic_messages")
            .count(),
        1
    );
    // The failure row.
    let failed: Vec<&Value> = rows.iter().filter(|r| r["status"] == "failure").collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert_eq!(failed[0]["spend"], 0.0);
    assert_eq!(failed[0]["model_group"], "failing");
    assert_eq!(failed[0]["metadata"]["error_status"], 500);

    // Filters: request_id, user_id, dates; summaries.
    let one = spend_logs(&gw, MASTER, &format!("request_id={call1}")).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["request_id"], call1.as_str());
    let today = &row["startTime"].as_str().unwrap()[..10];
    let rows_today = spend_logs(
        &gw,
        MASTER,
        &format!("api_key={key}&start_date={today}&end_date={today}&summarize=false"),
    )
    .await;
    assert_eq!(rows_today.len(), 6);
    let summary = spend_logs(
        &gw,
        MASTER,
        &format!("api_key={key}&start_date={today}&end_date={today}"),
    )
    .await;
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(summary[0]["startTime"], today);
    assert_eq!(summary[0]["spend"].as_f64().unwrap(), expected_spend);
    assert_eq!(
        summary[0]["api_keys"][hash(&key)].as_f64().unwrap(),
        expected_spend
    );
    assert_eq!(
        spend_logs(
            &gw,
            MASTER,
            "start_date=2000-01-01&end_date=2000-01-02&summarize=false"
        )
        .await
        .len(),
        0
    );
    get(&gw, "/spend/logs?start_date=yesterday", Some(MASTER))
        .await
        .openai_error(400);
    // Refused requests leave no row (filter by end user: the refused request above was
    // sent as end-user-7 too).
    let by_user = spend_logs(&gw, MASTER, "user_id=end-user-7").await;
    assert_eq!(
        by_user.len(),
        1,
        "only c1 was sent as end-user-7 and admitted: {by_user:#?}"
    );
}

#[tokio::test]
async fn refused_requests_write_no_spend_log_rows() {
    // Only admitted requests are logged: a request refused at admission (budget, rpm,
    // model allowlist, blocked or expired key) never reached an upstream and costs nothing.
    let (_m, gw) = setup().await;
    let body = chat_body("priced", "x", false);
    let (key, _) = generate(
        &gw,
        MASTER,
        json!({"max_budget": 0.000_244_140_625, "rpm_limit": 100, "models": ["priced"]}),
    )
    .await;
    let c = chat(&gw, Some(&key), &body).await;
    assert_eq!(c.resp.status, 200);
    assert_budget_exceeded(&post(&gw, "/v1/chat/completions", Some(&key), &body).await);
    let (allow, _) = generate(&gw, MASTER, json!({"models": ["priced"]})).await;
    post(
        &gw,
        "/v1/chat/completions",
        Some(&allow),
        &chat_body("other", "x", false),
    )
    .await
    .openai_error(403);
    let (blocked, _) = generate(&gw, MASTER, json!({"blocked": true})).await;
    post(&gw, "/v1/chat/completions", Some(&blocked), &body)
        .await
        .openai_error(401);
    let (rpm, _) = generate(&gw, MASTER, json!({"rpm_limit": 0})).await;
    post(&gw, "/v1/chat/completions", Some(&rpm), &body)
        .await
        .openai_error(429);
    let rows = spend_logs(&gw, MASTER, "").await;
    assert_eq!(rows.len(), 1, "one admitted request, one row: {rows:#?}");
    assert_eq!(rows[0]["api_key"], hash(&key));
    assert_eq!(rows[0]["status"], "success");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_spend_and_logs_survive_a_restart() {
    let m = keyed_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("persist.db");
    let db = db.to_str().unwrap();
    let cfg = open_config(&m.url());
    let env = [("LLMGATE_MASTER_KEY", MASTER), ("LLMGATE_DB", db)];
    let spec = || Spec {
        config: &cfg,
        plugins: PLUGINS,
        env: &env,
        ..Spec::default()
    };
    let mut gw = Gateway::start_spec(spec());
    let (steady, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "steady", "max_budget": 100.0, "models": ["priced"], "metadata": {"k": "v"}}),
    )
    .await;
    let (windowed, v) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "windowed", "budget_duration": "3s"}),
    )
    .await;
    let window_reset = iso_secs(v["budget_reset_at"].as_str().unwrap());
    let mut steady_spend = 0.0;
    let mut calls = Vec::new();
    for (i, stream) in [false, true, false, true, false].into_iter().enumerate() {
        let c = chat(
            &gw,
            Some(&steady),
            &chat_body("priced", &format!("persist me {i}"), stream),
        )
        .await;
        assert_eq!(c.resp.status, 200, "{}", c.resp.text);
        steady_spend += c.cost();
        calls.push(c.resp.header("x-litellm-call-id").unwrap().to_string());
    }
    let cw = chat(&gw, Some(&windowed), &chat_body("priced", "window", false)).await;
    assert_eq!(cw.resp.status, 200);
    // Stop right away, without reading spend logs (which would flush): SIGTERM must flush.
    let pid = gw.pid();
    let status = gw
        .stop_graceful(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("llmgate (pid {pid}) did not stop on SIGTERM"));
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        gw.logs()
    );
    drop(gw);
    // Let the windowed key's window end while the gateway is down.
    let wait = window_reset - unix_now() + 1.0;
    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;

    let gw = Gateway::start_spec(spec());
    let i = info(&gw, MASTER, &steady).await;
    assert_eq!(i["spend"].as_f64().unwrap(), steady_spend, "{i}");
    assert_eq!(i["key_alias"], "steady");
    assert_eq!(i["max_budget"], 100.0);
    assert_eq!(i["models"], json!(["priced"]));
    assert_eq!(i["metadata"], json!({"k": "v"}));
    let rows = spend_logs(&gw, MASTER, &format!("api_key={steady}")).await;
    assert_eq!(rows.len(), 5, "spend log rows lost: {rows:#?}");
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = calls.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    let logged: f64 = rows.iter().map(|r| r["spend"].as_f64().unwrap()).sum();
    assert_eq!(logged, steady_spend);
    // The window that ended while the gateway was down starts over.
    let iw = info(&gw, MASTER, &windowed).await;
    assert_eq!(iw["spend"], 0.0, "{iw}");
    assert!(
        iso_secs(iw["budget_reset_at"].as_str().unwrap()) > unix_now() - 0.5,
        "{iw}"
    );
    assert_eq!(
        spend_logs(&gw, MASTER, &format!("api_key={windowed}"))
            .await
            .len(),
        1
    );
    // The keys still work, and spend carries on from the stored value.
    let c = chat(
        &gw,
        Some(&steady),
        &chat_body("priced", "after restart", false),
    )
    .await;
    assert_eq!(c.resp.status, 200, "{}", c.resp.text);
    assert_eq!(
        c.resp.header_f64("x-litellm-key-spend"),
        steady_spend + c.cost()
    );
    assert_eq!(
        chat(&gw, Some(&windowed), &chat_body("priced", "x", false))
            .await
            .resp
            .status,
        200
    );
    // The allowlist survived too.
    post(
        &gw,
        "/v1/chat/completions",
        Some(&steady),
        &chat_body("other", "x", false),
    )
    .await
    .openai_error(403);
    assert_eq!(
        get(&gw, "/key/list", Some(MASTER)).await.json()["total_count"],
        2
    );
}
