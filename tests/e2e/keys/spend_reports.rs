//! LiteLLM's spend report routes (`/global/spend/*`, `/spend/tags`, `/user/daily/activity`)
//! through the real binary: traffic under two keys on two priced models, with tags,
//! customers and one failed request; every route's numbers against the costs of what was
//! sent, the date filters, pagination, and the 400s.

use super::*;

/// Today (UTC) as the gateway dates rows: the day of a spend log row's `startTime`.
async fn today(gw: &Gateway) -> String {
    let rows = spend_logs(gw, MASTER, "").await;
    rows[0]["startTime"].as_str().unwrap()[..10].to_string()
}

/// A chat under `key` with `tags` and end user `user`, answered 200: its cost.
async fn tagged(gw: &Gateway, key: &str, model: &str, tags: Value, user: &str) -> f64 {
    let mut body = chat_body(model, "report on this", false);
    body["metadata"] = json!({"tags": tags});
    body["user"] = json!(user);
    let c = chat(gw, Some(key), &body).await;
    assert_eq!(c.resp.status, 200, "{}", c.resp.text);
    let price = if model == "priced-info" { 2.0 } else { 1.0 };
    price * c.cost()
}

/// `GET path` with the master key, answered 200: its JSON.
async fn report(gw: &Gateway, path: &str) -> Value {
    let r = get(gw, path, Some(MASTER)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.json()
}

/// `GET path` answered 400 in OpenAI's shape, the message naming `param`.
async fn refused(gw: &Gateway, path: &str, param: &str) {
    let r = get(gw, path, Some(MASTER)).await;
    let e = r.openai_error(400);
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(&format!("`{param}`")), "{path}: {msg}");
}

/// The entries of a JSON array keyed by `field`.
fn by(v: &Value, field: &str) -> std::collections::BTreeMap<String, Value> {
    let list = v.as_array().unwrap_or_else(|| panic!("not a list: {v}"));
    list.iter()
        .map(|e| (e[field].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[tokio::test]
async fn spend_reports_sum_what_was_sent() {
    let (_m, gw) = setup().await;
    let (a, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "rep-a", "team_id": "team-red"}),
    )
    .await;
    let (b, _) = generate(&gw, MASTER, json!({"key_alias": "rep-b"})).await;
    let a1 = tagged(&gw, &a, "priced", json!(["alpha", "beta"]), "cust-1").await;
    let a2 = tagged(&gw, &a, "priced-info", json!(["alpha"]), "cust-1").await;
    let b1 = tagged(&gw, &b, "priced", json!([]), "cust-2").await;
    let failed = post(
        &gw,
        "/v1/chat/completions",
        Some(&b),
        &chat_body("failing", "x", false),
    )
    .await;
    failed.openai_error(500);
    let (ha, hb) = (hash(&a), hash(&b));
    let day = today(&gw).await;
    let dates = format!("start_date={day}&end_date={day}");

    // Top keys: A (two requests, one at double price) above B; hash, alias and name.
    let keys = report(&gw, "/global/spend/keys?limit=10").await;
    assert_eq!(keys[0]["api_key"], ha.as_str(), "{keys}");
    assert_eq!(keys[0]["total_spend"].as_f64().unwrap(), a1 + a2);
    assert_eq!(keys[0]["key_alias"], "rep-a");
    assert!(keys[0]["key_name"].as_str().unwrap().starts_with("sk-"));
    assert_eq!(
        (&keys[1]["api_key"], keys[1]["total_spend"].as_f64()),
        (&json!(hb), Some(b1))
    );
    let text = get(&gw, "/global/spend/keys", Some(MASTER)).await.text;
    assert!(
        !text.contains(&a) && !text.contains(&b),
        "a key itself in {text}"
    );
    assert_eq!(
        report(&gw, "/global/spend/keys?limit=1")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Top models.
    let models = by(&report(&gw, "/global/spend/models").await, "model");
    assert_eq!(models["priced"]["total_spend"].as_f64().unwrap(), a1 + b1);
    assert_eq!(models["priced-info"]["total_spend"].as_f64().unwrap(), a2);
    assert_eq!(models["failing"]["total_spend"].as_f64().unwrap(), 0.0);
    let top = report(&gw, "/global/spend/models?limit=1").await;
    let best = if a2 > a1 + b1 {
        "priced-info"
    } else {
        "priced"
    };
    assert_eq!(
        top,
        json!([{"model": best, "total_spend": models[best]["total_spend"]}])
    );

    // Spend per day, all keys and one key (by the key or its hash).
    let all = report(&gw, "/global/spend/logs").await;
    assert_eq!(all, json!([{"date": day, "spend": a1 + a2 + b1}]));
    let one = report(&gw, &format!("/global/spend/logs?api_key={b}")).await;
    assert_eq!(one, json!([{"date": day, "spend": b1, "api_key": hb}]));
    assert_eq!(
        report(&gw, &format!("/global/spend/logs?api_key={hb}")).await,
        one
    );

    // Tags, with the date filter.
    let tags = by(
        &report(&gw, &format!("/spend/tags?{dates}")).await,
        "individual_request_tag",
    );
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags["alpha"]["log_count"], 2);
    assert_eq!(tags["alpha"]["total_spend"].as_f64().unwrap(), a1 + a2);
    assert_eq!(
        (
            &tags["beta"]["log_count"],
            tags["beta"]["total_spend"].as_f64()
        ),
        (&json!(1), Some(a1))
    );
    let tomorrow = report(&gw, "/spend/tags?start_date=2999-01-01&end_date=2999-01-02").await;
    assert_eq!(tomorrow, json!([]));
    let before = report(&gw, "/spend/tags?start_date=2000-01-01&end_date=2000-01-31").await;
    assert_eq!(before, json!([]));

    check_report(&gw, &dates, &day, (&ha, &hb), (a1, a2, b1)).await;
    check_activity(&gw, &dates, &day, (&ha, &a), (a1, a2, b1)).await;
    check_refusals(&gw, &a).await;
    check_logs_ui(&gw, &day, (&a, &hb), b1).await;
}

/// `/spend/logs/ui`: filters and pages over the four rows.
async fn check_logs_ui(gw: &Gateway, day: &str, (a, hb): (&str, &str), b1: f64) {
    let range = format!("start_date={day}%2000:00:00&end_date={day}%2023:59:59");
    let all = report(gw, &format!("/spend/logs/ui?{range}&page_size=3")).await;
    assert_eq!(
        (
            &all["total"],
            &all["page"],
            &all["page_size"],
            &all["total_pages"]
        ),
        (&json!(4), &json!(1), &json!(3), &json!(2)),
        "{all}"
    );
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
    let second = report(gw, &format!("/spend/logs/ui?{range}&page_size=3&page=2")).await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    let mut ids: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|r| &r["request_id"])
        .collect();
    ids.sort_by_key(|v| v.to_string());
    ids.dedup();
    assert_eq!(ids.len(), 4, "pages overlap: {ids:?}");
    let failed = report(gw, &format!("/spend/logs/ui?{range}&status_filter=failure")).await;
    assert_eq!(
        (
            &failed["total"],
            &failed["data"][0]["api_key"],
            &failed["data"][0]["model_group"]
        ),
        (&json!(1), &json!(hb), &json!("failing"))
    );
    let by_key = report(
        gw,
        &format!("/spend/logs/ui?{range}&api_key={a}&model=priced"),
    )
    .await;
    assert_eq!(by_key["total"], 1);
    let cust = report(
        gw,
        &format!("/spend/logs/ui?{range}&user_id=cust-2&status_filter=success"),
    )
    .await;
    assert_eq!(
        (&cust["total"], cust["data"][0]["spend"].as_f64()),
        (&json!(1), Some(b1))
    );
    let id = failed["data"][0]["request_id"].as_str().unwrap();
    let one = report(gw, &format!("/spend/logs/ui?{range}&request_id={id}")).await;
    assert_eq!(one["total"], 1);
    let elsewhere = report(
        gw,
        "/spend/logs/ui?start_date=2000-01-01&end_date=2000-01-01",
    )
    .await;
    assert_eq!(
        (&elsewhere["total"], &elsewhere["data"]),
        (&json!(0), &json!([]))
    );
    refused(
        gw,
        &format!("/spend/logs/ui?{range}&status_filter=ok"),
        "status_filter",
    )
    .await;
    refused(gw, "/spend/logs/ui?start_date=2026-12-01", "end_date").await;
    refused(
        gw,
        &format!("/spend/logs/ui?{range}&page_size=0"),
        "page_size",
    )
    .await;
    refused(
        gw,
        "/spend/logs/ui?start_date=2026-12-02&end_date=2026-12-01",
        "end_date",
    )
    .await;
}

/// `/global/spend/report` by team (the default), customer and key.
async fn check_report(
    gw: &Gateway,
    dates: &str,
    day: &str,
    (ha, hb): (&str, &str),
    (a1, a2, b1): (f64, f64, f64),
) {
    let teams = report(gw, &format!("/global/spend/report?{dates}")).await;
    assert_eq!(teams.as_array().unwrap().len(), 1, "{teams}");
    assert_eq!(teams[0]["group_by_day"], format!("{day}T00:00:00+00:00"));
    let t = by(&teams[0]["teams"], "team_name");
    assert_eq!(t["team-red"]["total_spend"].as_f64().unwrap(), a1 + a2);
    assert_eq!(t["Unassigned Team"]["total_spend"].as_f64().unwrap(), b1);
    let meta = by(&t["team-red"]["metadata"], "model");
    assert_eq!(meta["priced-info"]["spend"].as_f64().unwrap(), a2);
    assert_eq!(meta["priced-info"]["api_key"], ha);
    assert!(meta["priced-info"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        report(gw, &format!("/global/spend/report?{dates}&group_by=team")).await,
        teams
    );

    let customers = report(
        gw,
        &format!("/global/spend/report?{dates}&group_by=customer"),
    )
    .await;
    let c = by(&customers[0]["customers"], "customer");
    assert_eq!(c["cust-1"]["total_spend"].as_f64().unwrap(), a1 + a2);
    assert_eq!(c["cust-2"]["total_spend"].as_f64().unwrap(), b1);

    let keys = report(
        gw,
        &format!("/global/spend/report?{dates}&group_by=api_key"),
    )
    .await;
    assert_eq!(keys[0]["api_key"], ha, "{keys}");
    assert_eq!(keys[0]["total_cost"].as_f64().unwrap(), a1 + a2);
    assert_eq!(keys[0]["model_details"].as_array().unwrap().len(), 2);
    assert_eq!(keys[1]["api_key"], hb);
    let details = by(&keys[1]["model_details"], "model");
    assert_eq!(details["priced"]["total_cost"].as_f64().unwrap(), b1);
    assert_eq!(details["failing"]["total_cost"].as_f64().unwrap(), 0.0);

    let elsewhere = report(
        gw,
        "/global/spend/report?start_date=2000-01-01&end_date=2000-01-01",
    )
    .await;
    assert_eq!(elsewhere, json!([]));
}

/// `/user/daily/activity`: the day's metrics, breakdowns, filters and pages.
async fn check_activity(
    gw: &Gateway,
    dates: &str,
    day: &str,
    (ha, a): (&str, &str),
    (a1, a2, b1): (f64, f64, f64),
) {
    let v = report(gw, &format!("/user/daily/activity?{dates}")).await;
    let r = &v["results"][0];
    assert_eq!(r["date"], day, "{v}");
    let m = &r["metrics"];
    assert_eq!(m["spend"].as_f64().unwrap(), a1 + a2 + b1);
    assert_eq!(
        (
            &m["api_requests"],
            &m["successful_requests"],
            &m["failed_requests"]
        ),
        (&json!(4), &json!(3), &json!(1))
    );
    assert!(m["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        m["total_tokens"].as_u64(),
        Some(m["prompt_tokens"].as_u64().unwrap() + m["completion_tokens"].as_u64().unwrap())
    );
    let bd = &r["breakdown"];
    assert_eq!(
        bd["models"]["priced"]["metrics"]["spend"].as_f64().unwrap(),
        a1 + b1
    );
    assert_eq!(bd["models"]["failing"]["metrics"]["failed_requests"], 1);
    assert_eq!(
        bd["api_keys"][ha]["metrics"]["spend"].as_f64().unwrap(),
        a1 + a2
    );
    assert_eq!(bd["api_keys"][ha]["metadata"]["key_alias"], "rep-a");
    let providers: f64 = bd["providers"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["metrics"]["spend"].as_f64().unwrap())
        .sum();
    assert_eq!(providers, a1 + a2 + b1);
    let meta = &v["metadata"];
    assert_eq!(meta["total_spend"].as_f64().unwrap(), a1 + a2 + b1);
    assert_eq!(
        (&meta["total_api_requests"], &meta["total_failed_requests"]),
        (&json!(4), &json!(1))
    );
    assert_eq!(
        (&meta["page"], &meta["total_pages"], &meta["has_more"]),
        (&json!(1), &json!(1), &json!(false))
    );
    assert!(!v.to_string().contains(a), "a key itself in {v}");

    // Filters: a model, a key.
    let priced = report(gw, &format!("/user/daily/activity?{dates}&model=priced")).await;
    assert_eq!(priced["metadata"]["total_spend"].as_f64().unwrap(), a1 + b1);
    let key_a = report(gw, &format!("/user/daily/activity?{dates}&api_key={a}")).await;
    assert_eq!(key_a["metadata"]["total_spend"].as_f64().unwrap(), a1 + a2);
    assert_eq!(key_a["results"][0]["metrics"]["api_requests"], 2);

    // Pages: a page past the last is empty; the range's totals stay.
    let page2 = report(
        gw,
        &format!("/user/daily/activity?{dates}&page=2&page_size=1"),
    )
    .await;
    assert_eq!(page2["results"], json!([]));
    assert_eq!(
        (&page2["metadata"]["page"], &page2["metadata"]["has_more"]),
        (&json!(2), &json!(false))
    );
    assert_eq!(
        page2["metadata"]["total_spend"].as_f64().unwrap(),
        a1 + a2 + b1
    );
    let wide = report(
        gw,
        "/user/daily/activity?start_date=2000-01-01&end_date=2999-12-31&page_size=1",
    )
    .await;
    assert_eq!(wide["results"].as_array().unwrap().len(), 1);
    let none = report(
        gw,
        "/user/daily/activity?start_date=2000-01-01&end_date=2000-01-02",
    )
    .await;
    assert_eq!(
        (&none["results"], &none["metadata"]["total_spend"]),
        (&json!([]), &json!(0.0))
    );
}

/// Bad parameters: 400s naming the parameter; a key is not the master key.
async fn check_refusals(gw: &Gateway, key: &str) {
    refused(
        gw,
        "/global/spend/report?start_date=2026-13-01&end_date=2026-12-01",
        "start_date",
    )
    .await;
    refused(
        gw,
        "/global/spend/report?start_date=2026-12-02&end_date=2026-12-01",
        "end_date",
    )
    .await;
    refused(gw, "/global/spend/report?end_date=2026-12-01", "start_date").await;
    refused(
        gw,
        "/global/spend/report?start_date=2026-12-01&end_date=2026-12-01&group_by=model",
        "group_by",
    )
    .await;
    refused(gw, "/global/spend/keys?limit=0", "limit").await;
    refused(gw, "/global/spend/keys?limit=100000", "limit").await;
    refused(gw, "/global/spend/models?limit=ten", "limit").await;
    refused(gw, "/spend/tags?start_date=yesterday", "start_date").await;
    refused(gw, "/user/daily/activity?start_date=2026-12-01", "end_date").await;
    refused(
        gw,
        "/user/daily/activity?start_date=2026-12-01&end_date=2026-12-01&page=0",
        "page",
    )
    .await;
    refused(
        gw,
        "/user/daily/activity?start_date=2026-12-01&end_date=2026-12-01&page_size=5000",
        "page_size",
    )
    .await;
    for path in [
        "/global/spend/keys",
        "/global/spend/report",
        "/user/daily/activity",
        "/spend/tags",
    ] {
        let r = get(gw, path, Some(key)).await;
        assert!(
            r.status == 401 || r.status == 403,
            "{path} with a key: {} {}",
            r.status,
            r.text
        );
        assert!(!r.text.contains(key));
    }
}
