//! `model_max_budget`: the shapes LiteLLM's `/key/generate` takes, shown back as given,
//! and bad input refused with a 400 that names the entry (enforcement: `budgets.rs`).

use super::*;

/// Every shape at once: a bare number, a numeric string limit, LiteLLM's other field names
/// (`max_budget`, `budget_duration`) and a field llmgate does not use.
fn every_shape() -> Value {
    json!({
        "priced": {"budget_limit": "0.5", "time_period": "1d"},
        "other": 2,
        "priced-info": {"max_budget": 1.25, "budget_duration": "30d", "rpm_limit": 5},
    })
}

#[tokio::test]
async fn model_max_budget_is_shown_as_given() {
    let (_m, gw) = setup().await;
    let given = every_shape();
    let (key, v) = generate(&gw, MASTER, json!({"model_max_budget": given})).await;
    assert_eq!(v["model_max_budget"], given, "{v}");
    assert_eq!(info(&gw, MASTER, &key).await["model_max_budget"], given);
    // The limit given as a string stays a string, to the byte.
    let r = get(&gw, &format!("/key/info?key={key}"), Some(MASTER)).await;
    assert!(r.text.contains(r#""budget_limit":"0.5""#), "{}", r.text);

    // /key/update answers with the new value, as given; regenerate keeps it.
    let changed = json!({"priced": {"budget_limit": 3, "time_period": null}});
    let u = update(
        &gw,
        MASTER,
        json!({"key": key, "model_max_budget": changed}),
    )
    .await;
    assert_eq!(u["info"]["model_max_budget"], changed, "{u}");
    let regenerated = json!({"key": key});
    let r = post(&gw, "/key/regenerate", Some(MASTER), &regenerated).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["model_max_budget"], changed, "{}", r.text);
    let new_key = r.json()["key"].as_str().unwrap().to_string();
    assert_eq!(
        info(&gw, MASTER, &new_key).await["model_max_budget"],
        changed
    );

    // `null` clears it.
    update(
        &gw,
        MASTER,
        json!({"key": new_key, "model_max_budget": null}),
    )
    .await;
    assert_eq!(
        info(&gw, MASTER, &new_key).await["model_max_budget"],
        json!({})
    );
}

#[tokio::test]
async fn bad_model_max_budget_is_a_clear_400_on_generate_and_update() {
    let (_m, gw) = setup().await;
    let kept = json!({"priced": 1});
    let (key, _) = generate(&gw, MASTER, json!({"model_max_budget": kept})).await;
    let cases = [
        (json!([1]), "must be a JSON object"),
        (json!({"priced": "x"}), "entry `priced` needs a budget"),
        (json!({"priced": "1.0"}), "entry `priced` needs a budget"),
        (
            json!({"priced": {"time_period": "1d"}}),
            "entry `priced` needs a budget",
        ),
        (
            json!({"priced": {"budget_limit": -1}}),
            "entry `priced` needs a budget",
        ),
        (
            json!({"priced": {"budget_limit": null}}),
            "entry `priced` needs a budget",
        ),
        (
            json!({"priced": {"budget_limit": 1, "time_period": "soon"}}),
            "entry `priced`: ",
        ),
        (
            json!({"priced": {"budget_limit": 1, "time_period": 7}}),
            "entry `priced` has a `time_period` that is not a string",
        ),
        (
            json!({"priced": {"budget_limit": 1, "max_budget": 2}}),
            "entry `priced` gives both `budget_limit` and `max_budget`",
        ),
        (
            json!({"priced": {"budget_limit": 1, "time_period": "1d", "budget_duration": "1d"}}),
            "entry `priced` gives both `time_period` and `budget_duration`",
        ),
    ];
    for (bad, needle) in cases {
        for (path, body) in [
            ("/key/generate", json!({"model_max_budget": bad})),
            ("/key/update", json!({"key": key, "model_max_budget": bad})),
        ] {
            let r = post(&gw, path, Some(MASTER), &body).await;
            let e = r.openai_error(400);
            assert_eq!(e["type"], "invalid_request_error", "{path} {bad}");
            let msg = e["message"].as_str().unwrap();
            assert!(
                msg.starts_with("`model_max_budget` ") && msg.contains(needle),
                "{path} {bad}: expected `{needle}` in {msg}"
            );
        }
    }
    // A refused update changed nothing.
    assert_eq!(info(&gw, MASTER, &key).await["model_max_budget"], kept);
}
