//! Authentication: the LiteLLM / OpenClaw set-up commands run verbatim with curl, keys in
//! both dialects' headers, no master key, and the master key from the environment.

use super::*;

fn sh(script: &str, master: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("LITELLM_MASTER_KEY", master)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\nstatus {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_commands_work_verbatim_with_curl_on_port_4000() {
    let free = ["127.0.0.1:4000", "0.0.0.0:4000"]
        .iter()
        .all(|a| std::net::TcpListener::bind(a).is_ok());
    if !free {
        eprintln!("NOTE: port 4000 is in use; the verbatim seed-command test is skipped");
        return;
    }
    let m = keyed_mock().await;
    let master = "sk-1234-seed-master";
    let gw = Gateway::start_spec(Spec {
        config: &open_config(&m.url()),
        plugins: PLUGINS,
        env: &[("LITELLM_MASTER_KEY", master)],
        port: 4000,
        ..Spec::default()
    });
    assert!(gw.url.ends_with(":4000"), "{}", gw.url);

    let generated = sh(
        r#"curl -X POST "http://localhost:4000/key/generate" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H "Content-Type: application/json" \
  -d '{
    "key_alias": "openclaw",
    "max_budget": 50.00,
    "budget_duration": "monthly"
  }'"#,
        master,
    );
    let v: Value = serde_json::from_str(&generated).unwrap_or_else(|e| panic!("{e}: {generated}"));
    let key = v["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk-") && key.len() >= 32, "{v}");
    assert_eq!(v["key_alias"], "openclaw");
    assert_eq!(v["max_budget"], 50.0);
    assert_eq!(v["budget_duration"], "monthly");
    assert_eq!(v["spend"], 0.0);
    assert_eq!(v["token"], hash(&key));
    // Monthly windows reset at midnight UTC on the first of a month.
    let reset = v["budget_reset_at"].as_str().unwrap();
    assert!(reset.ends_with("-01T00:00:00.000Z"), "{reset}");

    // The generated key works on the API.
    let body = chat_body("priced", "hello from openclaw", false);
    let c = chat(&gw, Some(&key), &body).await;
    assert_eq!(c.resp.status, 200, "{}", c.resp.text);

    let info_cmd = r#"curl "http://localhost:4000/key/info" \
  -H "Authorization: Bearer sk-litellm-key""#
        .replace("sk-litellm-key", &key);
    let out = sh(&info_cmd, master);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["key"], hash(&key), "{v}");
    assert_eq!(v["info"]["key_alias"], "openclaw");
    assert_eq!(v["info"]["max_budget"], 50.0);
    assert_eq!(v["info"]["budget_duration"], "monthly");
    assert_eq!(v["info"]["spend"].as_f64().unwrap(), c.cost(), "{v}");

    let out = sh(
        r#"curl "http://localhost:4000/spend/logs" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY""#,
        master,
    );
    let rows: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = rows.as_array().unwrap_or_else(|| panic!("a list: {out}"));
    assert_eq!(rows.len(), 1, "{out}");
    let row = &rows[0];
    assert_eq!(row["api_key"], hash(&key));
    assert_eq!(row["model_group"], "priced");
    assert_eq!(row["status"], "success");
    assert_eq!(row["spend"].as_f64().unwrap(), c.cost());
    assert_eq!(row["prompt_tokens"], c.prompt);
    assert_eq!(row["completion_tokens"], c.completion);
    assert_eq!(
        row["request_id"].as_str(),
        c.resp.header("x-litellm-call-id")
    );
}

#[tokio::test]
async fn api_routes_need_a_valid_key_in_both_dialects() {
    let (_m, gw) = setup().await;
    let body = chat_body("priced", "hi", false);
    let anthropic_body = json!({"model": "priced", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]});

    for key in [None, Some("sk-not-a-real-key")] {
        for path in ["/v1/chat/completions", "/chat/completions"] {
            let r = post(&gw, path, key, &body).await;
            let e = r.openai_error(401);
            assert_eq!(e["type"], "auth_error", "{}", r.text);
            assert_eq!(e["code"], "401");
        }
        for path in ["/v1/models", "/models", "/model/info", "/v1/models/priced"] {
            let r = get(&gw, path, key).await;
            assert_eq!(r.openai_error(401)["type"], "auth_error", "{path}");
        }
        let r = messages(&gw, key, &anthropic_body).await;
        assert_eq!(r.anthropic_error(401)["type"], "authentication_error");
        // Admin routes: no key or an unknown key is 401 too.
        assert_eq!(get(&gw, "/spend/logs", key).await.status, 401);
        assert_eq!(
            post(&gw, "/key/generate", key, &json!({})).await.status,
            401
        );
    }
    // The message names the problem.
    let r = post(&gw, "/v1/chat/completions", None, &body).await;
    assert!(r.text.contains("No api key passed in"), "{}", r.text);
    let r = post(
        &gw,
        "/v1/chat/completions",
        Some("sk-not-a-real-key"),
        &body,
    )
    .await;
    assert!(r.text.contains("sk-...-key"), "{}", r.text);

    // Health is always open.
    for path in ["/health/liveliness", "/health/readiness"] {
        assert_eq!(get(&gw, path, None).await.status, 200, "{path}");
    }

    // The master key works on every route, as Bearer and as x-api-key.
    assert_eq!(chat(&gw, Some(MASTER), &body).await.resp.status, 200);
    assert_eq!(get(&gw, "/v1/models", Some(MASTER)).await.status, 200);
    assert_eq!(get(&gw, "/plugins", Some(MASTER)).await.status, 200);
    let r = messages(&gw, Some(MASTER), &anthropic_body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["type"], "message");

    // A virtual key works on API routes (both headers) but not on admin routes.
    let (key, _) = generate(&gw, MASTER, json!({})).await;
    assert_eq!(chat(&gw, Some(&key), &body).await.resp.status, 200);
    let r = send(
        client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .header("x-api-key", &key)
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = messages(&gw, Some(&key), &anthropic_body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for path in ["/v1/models", "/model/info"] {
        assert_eq!(get(&gw, path, Some(&key)).await.status, 200, "{path}");
    }
    for (method, path) in [
        ("POST", "/key/generate"),
        ("POST", "/key/update"),
        ("POST", "/key/delete"),
        ("GET", "/key/list"),
        ("GET", "/spend/logs"),
        ("GET", "/plugins"),
        ("POST", "/key/regenerate"),
    ] {
        let r = if method == "GET" {
            get(&gw, path, Some(&key)).await
        } else {
            post(&gw, path, Some(&key), &json!({"key": key})).await
        };
        let e = r.openai_error(403);
        assert_eq!(e["type"], "permission_error", "{path}");
        assert!(
            e["message"].as_str().unwrap().contains("master key"),
            "{path}: {e}"
        );
    }
    let r = post(
        &gw,
        &format!("/key/{key}/regenerate"),
        Some(&key),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 403);
    // The key still works: nothing was changed by the refused admin calls.
    assert_eq!(chat(&gw, Some(&key), &body).await.resp.status, 200);
}

#[tokio::test]
async fn without_a_master_key_everything_is_open() {
    let m = keyed_mock().await;
    let gw = start(&open_config(&m.url()));
    let body = chat_body("priced", "hi", false);
    for key in [None, Some("anything-at-all")] {
        let c = chat(&gw, key, &body).await;
        assert_eq!(c.resp.status, 200, "{}", c.resp.text);
        // Open requests are still costed.
        assert_eq!(c.resp.header_f64("x-litellm-response-cost"), c.cost());
        assert_eq!(get(&gw, "/v1/models", key).await.status, 200);
        let r = messages(
            &gw,
            key,
            &json!({"model": "priced", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Admin routes too; and generated keys work.
    let r = post(&gw, "/key/generate", None, &json!({"key_alias": "open"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = r.json()["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&gw, Some(&key), &body).await.resp.status, 200);
    let r = get(&gw, "/spend/logs", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().unwrap().len(), 5, "{}", r.text);
    assert_eq!(get(&gw, "/key/list", None).await.status, 200);
}

#[tokio::test]
async fn master_key_from_the_environment() {
    let m = keyed_mock().await;
    for var in ["LITELLM_MASTER_KEY", "LLMGATE_MASTER_KEY"] {
        let gw = Gateway::start_spec(Spec {
            config: &open_config(&m.url()),
            plugins: PLUGINS,
            env: &[(var, "sk-from-env-1")],
            ..Spec::default()
        });
        let body = chat_body("priced", "hi", false);
        assert_eq!(
            post(&gw, "/v1/chat/completions", None, &body).await.status,
            401,
            "{var}"
        );
        assert_eq!(
            chat(&gw, Some("sk-from-env-1"), &body).await.resp.status,
            200,
            "{var}"
        );
    }
}
