//! The key routes and every field: generate, info, update, list, delete, regenerate.

use super::*;

#[tokio::test]
async fn generate_with_every_field_round_trips_through_info() {
    let (_m, gw) = setup().await;
    let before = unix_now();
    let custom = "sk-my-custom-key-0042";
    let (key, v) = generate(
        &gw,
        MASTER,
        json!({
            "key": custom,
            "key_alias": "all-fields",
            "max_budget": 12.5,
            "budget_duration": "30s",
            "duration": "1h",
            "models": ["priced", "other"],
            "metadata": {"team": "e2e", "n": 1},
            "tpm_limit": 100_000,
            "rpm_limit": 600,
            "max_parallel_requests": 7,
            "model_max_budget": {"priced": {"budget_limit": 3.0, "time_period": "1d"}},
            "blocked": false,
            "user_id": "user-1",
            "team_id": "team-1",
        }),
    )
    .await;
    assert_eq!(key, custom);
    assert_eq!(v["token"], hash(custom));
    assert_eq!(v["token_id"], hash(custom));
    assert_eq!(v["key_name"], "sk-...0042");
    let check = |i: &Value| {
        assert_eq!(i["token"], hash(custom), "{i}");
        assert_eq!(i["key_alias"], "all-fields");
        assert_eq!(i["max_budget"], 12.5);
        assert_eq!(i["budget_duration"], "30s");
        assert_eq!(i["models"], json!(["priced", "other"]));
        assert_eq!(i["metadata"], json!({"team": "e2e", "n": 1}));
        assert_eq!(i["tpm_limit"], 100_000);
        assert_eq!(i["rpm_limit"], 600);
        assert_eq!(i["max_parallel_requests"], 7);
        assert_eq!(
            i["model_max_budget"],
            json!({"priced": {"budget_limit": 3.0, "time_period": "1d"}})
        );
        assert_eq!(i["blocked"], false);
        assert_eq!(i["user_id"], "user-1");
        assert_eq!(i["team_id"], "team-1");
        assert_eq!(i["spend"], 0.0);
        // A 30 s window from now; expiry an hour from now.
        let t = |k: &str| {
            let s = i[k].as_str().unwrap_or_else(|| panic!("{k}: {i}"));
            iso_secs(s)
        };
        let reset = t("budget_reset_at");
        assert!(
            reset >= before.floor() + 30.0 && reset <= unix_now() + 31.0,
            "{i}"
        );
        let exp = t("expires");
        assert!(
            exp >= before.floor() + 3600.0 && exp <= unix_now() + 3601.0,
            "{i}"
        );
        assert!(i["created_at"].is_string() && i["updated_at"].is_string());
    };
    check(&v);
    check(&info(&gw, MASTER, custom).await);
    // By hash too.
    check(&info(&gw, MASTER, &hash(custom)).await);
    // A key reads its own info without ?key= (and with its own key or hash).
    for q in ["", "?key=sk-my-custom-key-0042"] {
        let r = get(&gw, &format!("/key/info{q}"), Some(custom)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        check(&r.json()["info"]);
    }
    // ... but not another key's.
    let (other, _) = generate(&gw, MASTER, json!({})).await;
    let r = get(&gw, &format!("/key/info?key={other}"), Some(custom)).await;
    assert_eq!(r.openai_error(403)["type"], "permission_error");
    // The master key must name a key.
    assert_eq!(get(&gw, "/key/info", Some(MASTER)).await.status, 400);
    // Unknown keys: 404.
    let r = get(&gw, "/key/info?key=sk-never-generated", Some(MASTER)).await;
    r.openai_error(404);
    // A generated key is usable with the allowlisted models; a key value can not be reused.
    let r = post(&gw, "/key/generate", Some(MASTER), &json!({"key": custom})).await;
    assert_eq!(r.openai_error(400)["type"], "invalid_request_error");
    // Nor can an alias.
    let r = post(
        &gw,
        "/key/generate",
        Some(MASTER),
        &json!({"key_alias": "all-fields"}),
    )
    .await;
    assert!(
        r.openai_error(400)["message"]
            .as_str()
            .unwrap()
            .contains("all-fields"),
        "{}",
        r.text
    );
    // Generated keys without `key` are random and distinct.
    let (a, _) = generate(&gw, MASTER, json!({})).await;
    let (b, _) = generate(&gw, MASTER, json!({})).await;
    assert_ne!(a, b);
    assert!(a.starts_with("sk-") && a.len() >= 32, "{a}");
}

#[tokio::test]
async fn update_changes_fields_and_keeps_spend() {
    let (_m, gw) = setup().await;
    let (key, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "before", "tpm_limit": 5000}),
    )
    .await;
    let c = chat(
        &gw,
        Some(&key),
        &chat_body("priced", "spend a little", false),
    )
    .await;
    assert_eq!(c.resp.status, 200);
    let v = update(
        &gw,
        MASTER,
        json!({
            "key": key,
            "key_alias": "after",
            "max_budget": 9.5,
            "budget_duration": "1d",
            "duration": "2h",
            "models": ["priced"],
            "metadata": {"changed": true},
            "tpm_limit": null,
            "rpm_limit": 100,
            "max_parallel_requests": 3,
            "user_id": "u2",
            "team_id": "t2",
        }),
    )
    .await;
    assert_eq!(v["key"], hash(&key));
    for i in [v["info"].clone(), info(&gw, MASTER, &key).await] {
        assert_eq!(i["key_alias"], "after", "{i}");
        assert_eq!(i["max_budget"], 9.5);
        assert_eq!(i["budget_duration"], "1d");
        assert!(
            i["budget_reset_at"]
                .as_str()
                .unwrap()
                .ends_with("T00:00:00.000Z")
        );
        assert!(i["expires"].is_string());
        assert_eq!(i["models"], json!(["priced"]));
        assert_eq!(i["metadata"], json!({"changed": true}));
        assert_eq!(i["tpm_limit"], Value::Null);
        assert_eq!(i["rpm_limit"], 100);
        assert_eq!(i["max_parallel_requests"], 3);
        assert_eq!(i["user_id"], "u2");
        assert_eq!(i["team_id"], "t2");
        // Spend is not touched by an update that does not name it.
        assert_eq!(i["spend"].as_f64().unwrap(), c.cost());
    }
    // The alias can be looked up in the list, the old alias is gone.
    let l = get(&gw, "/key/list?key_alias=after", Some(MASTER))
        .await
        .json();
    assert_eq!(l["keys"], json!([hash(&key)]));
    let l = get(&gw, "/key/list?key_alias=before", Some(MASTER))
        .await
        .json();
    assert_eq!(l["keys"], json!([]));
    // The new settings apply: the allowlist now refuses `other`.
    let r = chat(&gw, Some(&key), &chat_body("other", "x", false)).await;
    assert_eq!(r.resp.openai_error(403)["type"], "permission_error");
    // Clearing the allowlist and the expiry.
    let v = update(
        &gw,
        MASTER,
        json!({"key": hash(&key), "models": null, "duration": null}),
    )
    .await;
    assert_eq!(v["info"]["models"], json!([]));
    assert_eq!(v["info"]["expires"], Value::Null);
    assert_eq!(chat_status(&gw, &key, "other").await, 200);
    // Setting spend explicitly (LiteLLM allows it).
    let v = update(&gw, MASTER, json!({"key": key, "spend": 1.25})).await;
    assert_eq!(v["info"]["spend"], 1.25);
    assert_eq!(key_spend(&gw, MASTER, &key).await, 1.25);

    // Errors: unknown key 404, no key 400, bad fields 400 (and nothing changes).
    let r = post(
        &gw,
        "/key/update",
        Some(MASTER),
        &json!({"key": "sk-unknown-123", "max_budget": 1}),
    )
    .await;
    r.openai_error(404);
    let r = post(&gw, "/key/update", Some(MASTER), &json!({"max_budget": 1})).await;
    assert!(
        r.openai_error(400)["message"]
            .as_str()
            .unwrap()
            .contains("`key`")
    );
    for (field, bad, needle) in [
        ("rpm_limit", json!(-1), "`rpm_limit`"),
        ("tpm_limit", json!(1.5), "`tpm_limit`"),
        ("max_budget", json!(-3), "`max_budget`"),
        ("budget_duration", json!("fortnightly"), "`budget_duration`"),
        ("models", json!("priced"), "`models`"),
        ("metadata", json!([1]), "`metadata`"),
        ("blocked", json!("yes"), "`blocked`"),
    ] {
        let r = post(
            &gw,
            "/key/update",
            Some(MASTER),
            &json!({"key": key, field: bad}),
        )
        .await;
        let e = r.openai_error(400);
        assert_eq!(e["type"], "invalid_request_error");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{field}: {e}"
        );
    }
    let i = info(&gw, MASTER, &key).await;
    assert_eq!(i["max_budget"], 9.5);
    assert_eq!(i["rpm_limit"], 100);
    assert_eq!(i["budget_duration"], "1d");
}

#[tokio::test]
async fn bad_generate_input_is_a_clear_400() {
    let (_m, gw) = setup().await;
    let cases: &[(&str, &str)] = &[
        (r#"{"budget_duration": "soon"}"#, "`budget_duration`"),
        (r#"{"budget_duration": "0d"}"#, "`budget_duration`"),
        (r#"{"duration": "forever"}"#, "`duration`"),
        (
            r#"{"max_budget": -1}"#,
            "`max_budget` must be a number of USD, 0 or more",
        ),
        (r#"{"max_budget": "lots"}"#, "`max_budget`"),
        (r#"{"rpm_limit": -5}"#, "`rpm_limit`"),
        (
            r#"{"max_parallel_requests": "x"}"#,
            "`max_parallel_requests`",
        ),
        (r#"{"models": "priced"}"#, "`models`"),
        (
            r#"{"model_max_budget": {"priced": "x"}}"#,
            "`model_max_budget`",
        ),
        (r#"{"key": "not-sk"}"#, "`key`"),
        (r#"{"key_alias": 5}"#, "`key_alias`"),
        (r#"[1, 2]"#, "must be a JSON object"),
        (r#""a string""#, "must be a JSON object"),
        (r#"{"key_alias": "x""#, "not valid JSON"),
        (r#"not json"#, "not valid JSON"),
    ];
    for (body, needle) in cases {
        let r = post_raw(&gw, "/key/generate", Some(MASTER), body).await;
        let e = r.openai_error(400);
        assert_eq!(e["type"], "invalid_request_error", "{body}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body}: expected `{needle}` in {e}"
        );
    }
    for path in ["/key/update", "/key/delete"] {
        let r = post_raw(&gw, path, Some(MASTER), "{oops").await;
        assert!(
            r.openai_error(400)["message"]
                .as_str()
                .unwrap()
                .contains("not valid JSON")
        );
        let r = post_raw(&gw, path, Some(MASTER), "[]").await;
        assert!(
            r.openai_error(400)["message"]
                .as_str()
                .unwrap()
                .contains("JSON object")
        );
    }
    // None of the bad requests created a key.
    let l = get(&gw, "/key/list", Some(MASTER)).await.json();
    assert_eq!(l["total_count"], 0, "{l}");
    // An empty body is an empty object: a key with defaults.
    let r = post_raw(&gw, "/key/generate", Some(MASTER), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn list_pages_and_filters() {
    let (_m, gw) = setup().await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let (k, _) = generate(
            &gw,
            MASTER,
            json!({"key_alias": format!("list-{i}"), "user_id": if i % 2 == 0 { "even" } else { "odd" }}),
        )
        .await;
        tokens.push(hash(&k));
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let l = get(&gw, &format!("/key/list?page={page}&size=2"), Some(MASTER))
            .await
            .json();
        assert_eq!(l["total_count"], 5, "{l}");
        assert_eq!(l["total_pages"], 3);
        assert_eq!(l["current_page"], page);
        let keys = l["keys"].as_array().unwrap();
        assert_eq!(keys.len(), if page == 3 { 1 } else { 2 }, "{l}");
        seen.extend(keys.iter().map(|k| k.as_str().unwrap().to_string()));
    }
    seen.sort();
    let mut want = tokens.clone();
    want.sort();
    assert_eq!(seen, want, "every key exactly once across the pages");
    // Past the end: empty.
    let l = get(&gw, "/key/list?page=4&size=2", Some(MASTER))
        .await
        .json();
    assert_eq!(l["keys"], json!([]));
    // Default page: all 5 (size 10).
    let l = get(&gw, "/key/list", Some(MASTER)).await.json();
    assert_eq!(l["keys"].as_array().unwrap().len(), 5);
    // Full objects.
    let l = get(
        &gw,
        "/key/list?return_full_object=true&size=10",
        Some(MASTER),
    )
    .await
    .json();
    let objs = l["keys"].as_array().unwrap();
    assert_eq!(objs.len(), 5);
    assert!(
        objs.iter().all(
            |o| o["token"].is_string() && o["key_alias"].as_str().unwrap().starts_with("list-")
        ),
        "{l}"
    );
    // Never the key itself.
    assert!(!l.to_string().contains("\"key\":\"sk-"), "{l}");
    // Filters.
    let l = get(&gw, "/key/list?key_alias=list-3", Some(MASTER))
        .await
        .json();
    assert_eq!(l["keys"], json!([tokens[3]]));
    let l = get(&gw, "/key/list?user_id=even", Some(MASTER))
        .await
        .json();
    assert_eq!(l["total_count"], 3);
    // Bad paging.
    assert_eq!(get(&gw, "/key/list?page=x", Some(MASTER)).await.status, 400);
}

#[tokio::test]
async fn delete_by_key_and_alias_all_or_nothing() {
    let (_m, gw) = setup().await;
    let body = chat_body("priced", "hi", false);
    let (a, _) = generate(&gw, MASTER, json!({"key_alias": "del-a"})).await;
    let (b, _) = generate(&gw, MASTER, json!({"key_alias": "del-b"})).await;
    let (c, _) = generate(&gw, MASTER, json!({"key_alias": "del-c"})).await;
    for k in [&a, &b, &c] {
        assert_eq!(chat(&gw, Some(k), &body).await.resp.status, 200);
    }
    // One unknown: 404 and nothing deleted.
    let r = post(
        &gw,
        "/key/delete",
        Some(MASTER),
        &json!({"keys": [a, "sk-unknown-999"]}),
    )
    .await;
    assert!(
        r.openai_error(404)["message"]
            .as_str()
            .unwrap()
            .contains("nothing was deleted")
    );
    let r = post(
        &gw,
        "/key/delete",
        Some(MASTER),
        &json!({"keys": [a], "key_aliases": ["no-such-alias"]}),
    )
    .await;
    r.openai_error(404);
    assert_eq!(chat(&gw, Some(&a), &body).await.resp.status, 200);
    assert_eq!(
        get(&gw, "/key/list", Some(MASTER)).await.json()["total_count"],
        3
    );
    // Nothing named: 400.
    let r = post(&gw, "/key/delete", Some(MASTER), &json!({})).await;
    r.openai_error(400);

    // By key (and by hash), then by alias.
    let r = post(
        &gw,
        "/key/delete",
        Some(MASTER),
        &json!({"keys": [a, hash(&b)]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["deleted_keys"], json!([a, hash(&b)]));
    let r = post(
        &gw,
        "/key/delete",
        Some(MASTER),
        &json!({"key_aliases": ["del-c"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["deleted_keys"], json!(["del-c"]));
    for k in [&a, &b, &c] {
        let r = post(&gw, "/v1/chat/completions", Some(k), &body).await;
        assert_eq!(r.openai_error(401)["type"], "auth_error");
        get(&gw, &format!("/key/info?key={k}"), Some(MASTER))
            .await
            .openai_error(404);
    }
    assert_eq!(
        get(&gw, "/key/list", Some(MASTER)).await.json()["total_count"],
        0
    );
    // Deleting again: 404.
    post(&gw, "/key/delete", Some(MASTER), &json!({"keys": [a]}))
        .await
        .openai_error(404);
    // The spend logs of deleted keys remain.
    assert_eq!(
        spend_logs(&gw, MASTER, &format!("api_key={a}")).await.len(),
        2
    );
}

#[tokio::test]
async fn regenerate_replaces_the_key_and_keeps_settings_and_spend() {
    let (_m, gw) = setup().await;
    let body = chat_body("priced", "regenerate me", false);
    let (old, _) = generate(
        &gw,
        MASTER,
        json!({"user_id": "regen-user", "max_budget": 10.0, "models": ["priced"], "rpm_limit": 50}),
    )
    .await;
    let c1 = chat(&gw, Some(&old), &body).await;
    assert_eq!(c1.resp.status, 200);
    let r = post(
        &gw,
        &format!("/key/{old}/regenerate"),
        Some(MASTER),
        &json!({"max_budget": 20.0}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let new = v["key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(v["token"], hash(&new));
    assert_eq!(v["user_id"], "regen-user");
    assert_eq!(v["max_budget"], 20.0);
    assert_eq!(v["models"], json!(["priced"]));
    assert_eq!(v["rpm_limit"], 50);
    assert_eq!(v["spend"].as_f64().unwrap(), c1.cost());

    // The old key stops working at once; the new one works and carries the spend on.
    let r = post(&gw, "/v1/chat/completions", Some(&old), &body).await;
    r.openai_error(401);
    get(&gw, &format!("/key/info?key={old}"), Some(MASTER))
        .await
        .openai_error(404);
    let c2 = chat(&gw, Some(&new), &body).await;
    assert_eq!(c2.resp.status, 200);
    assert_eq!(
        c2.resp.header_f64("x-litellm-key-spend"),
        c1.cost() + c2.cost()
    );
    assert_eq!(key_spend(&gw, MASTER, &new).await, c1.cost() + c2.cost());
    // Regenerating the old key again: 404.
    post(
        &gw,
        &format!("/key/{old}/regenerate"),
        Some(MASTER),
        &json!({}),
    )
    .await
    .openai_error(404);

    // `POST /key/regenerate {"key": ...}`, by hash, with a chosen new key.
    let r = post(
        &gw,
        "/key/regenerate",
        Some(MASTER),
        &json!({"key": hash(&new), "new_key": "sk-chosen-new-key-1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["key"], "sk-chosen-new-key-1");
    post(&gw, "/v1/chat/completions", Some(&new), &body)
        .await
        .openai_error(401);
    assert_eq!(
        key_spend(&gw, MASTER, "sk-chosen-new-key-1").await,
        c1.cost() + c2.cost()
    );
    let c3 = chat(&gw, Some("sk-chosen-new-key-1"), &body).await;
    assert_eq!(c3.resp.status, 200);
    assert_eq!(
        get(&gw, "/key/list?user_id=regen-user", Some(MASTER))
            .await
            .json()["keys"],
        json!([hash("sk-chosen-new-key-1")])
    );
}

#[tokio::test]
async fn regenerate_keeps_the_key_alias() {
    // LiteLLM keeps `key_alias` across /key/regenerate; the alias belongs to the key being
    // regenerated, so it is not "already used by another key".
    let (_m, gw) = setup().await;
    let (old, _) = generate(
        &gw,
        MASTER,
        json!({"key_alias": "regen", "max_budget": 10.0}),
    )
    .await;
    let r = post(
        &gw,
        &format!("/key/{old}/regenerate"),
        Some(MASTER),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.json()["key"].as_str().unwrap().to_string();
    assert_eq!(r.json()["key_alias"], "regen");
    assert_eq!(
        get(&gw, "/key/list?key_alias=regen", Some(MASTER))
            .await
            .json()["keys"],
        json!([hash(&new)])
    );
    let r = post(&gw, "/key/regenerate", Some(MASTER), &json!({"key": new})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["key_alias"], "regen");
}
