//! LiteLLM's `POST /key/block` and `POST /key/unblock`: the master key blocks a key (named
//! by the key or its hash), its next request is refused, unblocking serves it again.

use super::*;

#[tokio::test]
async fn block_and_unblock_a_key_by_key_or_hash() {
    let (m, gw) = setup().await;
    let (key, _) = generate(&gw, MASTER, json!({"key_alias": "to-block"})).await;
    assert_eq!(chat_status(&gw, &key, "priced").await, 200);

    // Block by the key itself: the answer is the key's row, blocked, without the key.
    let r = post(&gw, "/key/block", Some(MASTER), &json!({"key": key})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["blocked"], true, "{v}");
    assert_eq!(v["token"], hash(&key), "{v}");
    assert_eq!(v["key_alias"], "to-block", "{v}");
    assert!(
        !r.text.contains(&key),
        "the answer must not hold the key: {v}"
    );
    assert_eq!(info(&gw, MASTER, &key).await["blocked"], true);

    // The next request is refused in OpenAI's shape and never reaches the upstream.
    let before = m.count();
    let e = post(
        &gw,
        "/v1/chat/completions",
        Some(&key),
        &chat_body("priced", "x", false),
    )
    .await
    .openai_error(401);
    assert!(e["message"].as_str().unwrap().contains("blocked"), "{e}");
    assert_eq!(
        m.count(),
        before,
        "a blocked key must not reach the upstream"
    );

    // Unblock by the hash: served again.
    let r = post(
        &gw,
        "/key/unblock",
        Some(MASTER),
        &json!({"key": hash(&key)}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["blocked"], false);
    assert_eq!(chat_status(&gw, &key, "priced").await, 200);
}

#[tokio::test]
async fn block_needs_the_master_key_and_a_known_key() {
    let (_m, gw) = setup().await;
    let (key, _) = generate(&gw, MASTER, json!({})).await;
    // A virtual key may not block (itself or any other).
    for path in ["/key/block", "/key/unblock"] {
        let r = post(&gw, path, Some(&key), &json!({"key": key})).await;
        assert!(r.status == 401 || r.status == 403, "{path}: {}", r.text);
        r.openai_error(r.status);
        let r = post(&gw, path, None, &json!({"key": key})).await;
        r.openai_error(401);
    }
    assert_eq!(chat_status(&gw, &key, "priced").await, 200);
    // Unknown key: 404; no `key`: 400; not an object: 400. All in OpenAI's shape.
    post(
        &gw,
        "/key/block",
        Some(MASTER),
        &json!({"key": "sk-nope-unknown"}),
    )
    .await
    .openai_error(404);
    let e = post(&gw, "/key/block", Some(MASTER), &json!({}))
        .await
        .openai_error(400);
    assert!(e["message"].as_str().unwrap().contains("key"), "{e}");
    post(&gw, "/key/unblock", Some(MASTER), &json!([1]))
        .await
        .openai_error(400);
}
