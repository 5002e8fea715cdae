//! A key's limits: the model allowlist, expiry and blocking, rpm, tpm and parallel requests.

use super::*;

#[tokio::test]
async fn model_allowlist_expiry_and_blocking() {
    let (m, gw) = setup().await;
    let (key, _) = generate(&gw, MASTER, json!({"models": ["priced"]})).await;
    assert_eq!(chat_status(&gw, &key, "priced").await, 200);
    let before = m.count();
    let r = chat(&gw, Some(&key), &chat_body("other", "x", false)).await;
    let e = r.resp.openai_error(403);
    assert_eq!(e["type"], "permission_error");
    assert!(e["message"].as_str().unwrap().contains("`other`"), "{e}");
    assert_eq!(
        m.count(),
        before,
        "a refused request must not reach the upstream"
    );
    // In Anthropic's shape on /v1/messages.
    let r = messages(
        &gw,
        Some(&key),
        &json!({"model": "other", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.anthropic_error(403)["type"], "permission_error");
    // The key only sees its models.
    let l = get(&gw, "/v1/models", Some(&key)).await.json();
    let ids: Vec<&str> = l["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["priced"], "{l}");
    get(&gw, "/v1/models/other", Some(&key))
        .await
        .openai_error(404);

    // Expiry.
    let (short, v) = generate(&gw, MASTER, json!({"duration": "1s"})).await;
    assert!(v["expires"].is_string());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = post(
        &gw,
        "/v1/chat/completions",
        Some(&short),
        &chat_body("priced", "x", false),
    )
    .await;
    let e = r.openai_error(401);
    assert!(
        e["message"].as_str().unwrap().contains("Expired Key"),
        "{e}"
    );
    // Extending the expiry brings it back.
    update(&gw, MASTER, json!({"key": short, "duration": "1h"})).await;
    assert_eq!(
        chat(&gw, Some(&short), &chat_body("priced", "x", false))
            .await
            .resp
            .status,
        200
    );

    // Blocking.
    let (blocked, _) = generate(&gw, MASTER, json!({"blocked": true})).await;
    let body = chat_body("priced", "x", false);
    let e = post(&gw, "/v1/chat/completions", Some(&blocked), &body)
        .await
        .openai_error(401);
    assert!(e["message"].as_str().unwrap().contains("blocked"), "{e}");
    let r = messages(
        &gw,
        Some(&blocked),
        &json!({"model": "priced", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.anthropic_error(401)["type"], "authentication_error");
    update(&gw, MASTER, json!({"key": blocked, "blocked": false})).await;
    assert_eq!(chat(&gw, Some(&blocked), &body).await.resp.status, 200);
    update(&gw, MASTER, json!({"key": blocked, "blocked": true})).await;
    post(&gw, "/v1/chat/completions", Some(&blocked), &body)
        .await
        .openai_error(401);
}

#[tokio::test]
async fn rpm_limit_answers_429_with_rate_limit_headers() {
    let (_m, gw) = setup().await;
    let (key, _) = generate(&gw, MASTER, json!({"rpm_limit": 2})).await;
    let body = chat_body("priced", "x", false);
    away_from_minute_boundary(50.0).await;
    for remaining in ["1", "0"] {
        let c = chat(&gw, Some(&key), &body).await;
        assert_eq!(c.resp.status, 200, "{}", c.resp.text);
        assert_eq!(c.resp.header("x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(
            c.resp.header("x-ratelimit-remaining-requests"),
            Some(remaining)
        );
    }
    let r = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
    let e = r.openai_error(429);
    assert_eq!(e["type"], "rate_limit_error");
    assert!(e["message"].as_str().unwrap().contains("rpm_limit"), "{e}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(r.header("x-ratelimit-reset-requests").is_some());
    // In Anthropic's shape too.
    let r = messages(
        &gw,
        Some(&key),
        &json!({"model": "priced", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.anthropic_error(429)["type"], "rate_limit_error");
    assert!(r.header("retry-after").is_some());
    // Refused requests are not logged or charged.
    assert_eq!(
        spend_logs(&gw, MASTER, &format!("api_key={key}"))
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn tpm_limit_refuses_after_the_tokens_are_used() {
    let (_m, gw) = setup().await;
    let (key, _) = generate(&gw, MASTER, json!({"tpm_limit": 10})).await;
    let body = chat_body("priced", "a request that uses more than ten tokens", false);
    away_from_minute_boundary(50.0).await;
    let c = chat(&gw, Some(&key), &body).await;
    assert_eq!(c.resp.status, 200, "{}", c.resp.text);
    assert!(c.prompt + c.completion > 10);
    assert_eq!(c.resp.header("x-ratelimit-limit-tokens"), Some("10"));
    let r = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
    let e = r.openai_error(429);
    assert!(e["message"].as_str().unwrap().contains("tpm_limit"), "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("({} used)", c.prompt + c.completion)),
        "{e}"
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_parallel_requests_refuses_the_concurrent_second() {
    let (m, gw) = setup().await;
    let (key, _) = generate(&gw, MASTER, json!({"max_parallel_requests": 1})).await;
    let body = chat_body("slow", "slow one", false);
    let url = gw.url.clone();
    let k = key.clone();
    let b = body.clone();
    let first = tokio::spawn(async move {
        send(
            client()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(k)
                .json(&b),
        )
        .await
    });
    // The first is in flight once the upstream has it (it answers 800 ms later): wait for
    // that, with a generous deadline, instead of guessing how long admission takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while m.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = post(&gw, "/v1/chat/completions", Some(&key), &body).await;
    let e = r.openai_error(429);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("max_parallel_requests"),
        "{e}"
    );
    assert!(r.header("retry-after").is_some());
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text);
    // The slot is free again once the first finished (also after a streamed one).
    let sbody = chat_body("priced", "stream", true);
    assert_eq!(chat(&gw, Some(&key), &sbody).await.resp.status, 200);
    assert_eq!(chat(&gw, Some(&key), &body).await.resp.status, 200);
}
