use super::*;
use llmgate_sdk::Api;

fn cand(id: &str, group: &str) -> Candidate {
    Candidate {
        id: id.into(),
        model_group: group.into(),
        provider: "openai".into(),
        model: id.into(),
        healthy: true,
        in_flight: 0,
        error_rate: 0.0,
        latency_ms_p50: 0,
        ttft_ms_p50: 0,
        price_in: 0.0,
        price_out: 0.0,
        weight: 1,
        rpm: 0,
        tpm: 0,
        order: 0,
        max_input_tokens: 0,
    }
}

fn req(group: &str, headers: &[(&str, &str)]) -> RouteRequest {
    RouteRequest {
        api: Api::ChatCompletions,
        model: group.into(),
        model_group: group.into(),
        stream: false,
        est_input_tokens: 10,
        max_output_tokens: 0,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        last_user_text: None,
    }
}

fn ids(plan: &[Attempt]) -> Vec<&str> {
    plan.iter().map(|a| a.candidate_id.as_str()).collect()
}

fn config(json: &str) -> Config {
    serde_json::from_str(json).unwrap()
}

/// A deterministic "random" sequence.
fn seq(values: &[u64]) -> impl FnMut() -> u64 + '_ {
    let mut i = 0;
    move || {
        let v = values[i % values.len()];
        i += 1;
        v
    }
}

#[test]
fn fallbacks_follow_the_group_and_gate_on_error_classes() {
    let cands = vec![cand("a", "gpt-4o"), cand("b", "claude"), cand("c", "big")];
    let cfg = config(
        r#"{"strategy":"ordered","fallbacks":{"gpt-4o":["claude"]},"context_window_fallbacks":{"gpt-4o":["big"]}}"#,
    );
    let p = plan(&cfg, &req("gpt-4o", &[]), &cands, seq(&[0])).unwrap();
    assert_eq!(ids(&p), ["a", "c", "b"]);
    assert_eq!(p[1].when, [ErrorClass::ContextLength]);
    assert!(p[2].when.contains(&ErrorClass::RateLimited));
    assert!(!p[2].when.contains(&ErrorClass::BadRequest));
}

#[test]
fn num_retries_repeats_the_only_deployment_on_retryable_errors() {
    let cands = vec![cand("a", "g")];
    let cfg = config(r#"{"num_retries":2}"#);
    let p = plan(&cfg, &req("g", &[]), &cands, seq(&[0])).unwrap();
    assert_eq!(ids(&p), ["a", "a", "a"]);
    assert_eq!(p[1].when, RETRY_SAME);
}

#[test]
fn default_fallbacks_apply_to_groups_without_their_own() {
    let cands = vec![cand("a", "g"), cand("b", "backup")];
    let cfg = config(r#"{"default_fallbacks":["backup"]}"#);
    assert_eq!(
        ids(&plan(&cfg, &req("g", &[]), &cands, seq(&[0])).unwrap()),
        ["a", "b"]
    );
}

#[test]
fn strategies_order_the_group() {
    let mut a = cand("a", "g");
    let mut b = cand("b", "g");
    a.in_flight = 5;
    b.in_flight = 1;
    a.latency_ms_p50 = 10;
    b.latency_ms_p50 = 50;
    a.price_in = 2.0;
    b.price_in = 1.0;
    let cands = vec![a, b];
    let o = |s: &str| -> Vec<String> {
        order(s, "g", false, &cands, seq(&[0]))
            .iter()
            .map(|c| c.id.clone())
            .collect()
    };
    assert_eq!(o("least-busy"), ["b", "a"]);
    assert_eq!(o("latency-based-routing"), ["a", "b"]);
    assert_eq!(o("cost-based-routing"), ["b", "a"]);
    assert_eq!(o("ordered"), ["a", "b"]);
}

#[test]
fn latency_routing_uses_time_to_first_token_for_streams() {
    let mut a = cand("a", "g");
    let mut b = cand("b", "g");
    a.latency_ms_p50 = 10;
    a.ttft_ms_p50 = 90;
    b.latency_ms_p50 = 50;
    b.ttft_ms_p50 = 20;
    let cands = vec![a, b];
    let first = order("latency-based-routing", "g", true, &cands, seq(&[0]))[0]
        .id
        .clone();
    assert_eq!(first, "b");
}

#[test]
fn weighted_shuffle_follows_weights() {
    let mut a = cand("a", "g");
    let mut b = cand("b", "g");
    a.weight = 1;
    b.weight = 3;
    let cands = vec![a, b];
    // total weight 4: r in 0..1 picks a, 1..4 picks b.
    assert_eq!(
        order("simple-shuffle", "g", false, &cands, seq(&[0]))[0].id,
        "a"
    );
    assert_eq!(
        order("simple-shuffle", "g", false, &cands, seq(&[3]))[0].id,
        "b"
    );
    // Over many draws, b comes first about 3 times in 4.
    let mut state = 12345u64;
    let rng = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rng = rng;
    let b_first = (0..4000)
        .filter(|_| order("simple-shuffle", "g", false, &cands, &mut rng)[0].id == "b")
        .count();
    assert!((2800..3200).contains(&b_first), "{b_first}");
}

#[test]
fn order_and_health_come_before_the_strategy() {
    let mut a = cand("a", "g");
    let mut b = cand("b", "g");
    let mut c = cand("c", "g");
    a.healthy = false;
    a.order = 1;
    b.order = 2;
    c.order = 0;
    let cands = vec![a, b, c];
    let got: Vec<String> = order("least-busy", "g", false, &cands, seq(&[0]))
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(got, ["b", "c", "a"]);
}

#[test]
fn kilo_auto_routes_by_mode_and_feature() {
    let cands = vec![
        cand("opus-1", "claude-opus"),
        cand("sonnet-1", "claude-sonnet"),
    ];
    let cfg = config(
        r#"{"auto":{"models":["kilo/auto"],"strong":"claude-opus","fast":"claude-sonnet","default":"strong"}}"#,
    );
    let first = |h: &[(&str, &str)]| {
        plan(&cfg, &req("kilo/auto", h), &cands, seq(&[0])).unwrap()[0]
            .candidate_id
            .clone()
    };
    for m in [
        "plan",
        "debug",
        "orchestrator",
        "architect",
        "ask",
        "general",
    ] {
        assert_eq!(first(&[("x-kilocode-mode", m)]), "opus-1", "{m}");
    }
    for m in ["build", "code", "explore", "CODE"] {
        assert_eq!(first(&[("x-kilocode-mode", m)]), "sonnet-1", "{m}");
    }
    assert_eq!(first(&[]), "opus-1");
    assert_eq!(
        first(&[
            ("x-kilocode-mode", "code"),
            ("x-kilocode-feature", "openclaw")
        ]),
        "opus-1"
    );
    // The other model is the fallback.
    let p = plan(
        &cfg,
        &req("kilo/auto", &[("x-kilocode-mode", "code")]),
        &cands,
        seq(&[0]),
    )
    .unwrap();
    assert_eq!(ids(&p), ["sonnet-1", "opus-1"]);
    // The mapping is config: modes and the default can be changed.
    let cfg = config(
        r#"{"auto":{"models":["kilo/auto"],"strong":"claude-opus","fast":"claude-sonnet","default":"fast","modes":{"ask":"fast"}}}"#,
    );
    let p = plan(
        &cfg,
        &req("kilo/auto", &[("x-kilocode-mode", "ask")]),
        &cands,
        seq(&[0]),
    )
    .unwrap();
    assert_eq!(p[0].candidate_id, "sonnet-1");
    let p = plan(&cfg, &req("kilo/auto", &[]), &cands, seq(&[0])).unwrap();
    assert_eq!(p[0].candidate_id, "sonnet-1");
}

#[test]
fn an_empty_group_is_an_error() {
    let e = plan(&Config::default(), &req("nope", &[]), &[], seq(&[0])).unwrap_err();
    assert_eq!(e.status, 404);
}
