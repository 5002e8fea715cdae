//! The request scanner: `summarize` and `last_user_text` on any body, for every API (the
//! first byte picks it). Bodies come straight from clients, before any authentication.
//! Whatever the scanner accepts, a JSON parser reads the same `model` and `stream` from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate::fuzzing::{Api, last_user_text, summarize};

const APIS: [Api; 6] = [
    Api::ChatCompletions,
    Api::Messages,
    Api::CountTokens,
    Api::ImagesGenerations,
    Api::ImagesEdits,
    Api::Embeddings,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let api = APIS[usize::from(pick) % APIS.len()];
    if let Ok(s) = summarize(api, "application/json", body) {
        assert!(!s.model.is_empty(), "an accepted request names a model");
        // The host routes, checks the key's allowlist and prices on the model it scanned;
        // the upstream reads the body with a real JSON parser. They must agree.
        if api != Api::ImagesEdits
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        {
            assert_eq!(
                v.get("model").and_then(serde_json::Value::as_str),
                Some(s.model.as_str()),
                "the scanner and a JSON parser read different models"
            );
            assert_eq!(
                v.get("stream")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                s.stream,
                "the scanner and a JSON parser read different `stream`"
            );
        }
    }
    if let Some(text) = last_user_text(api, body) {
        assert!(text.len() <= 4096, "last user text is capped");
    }
});
