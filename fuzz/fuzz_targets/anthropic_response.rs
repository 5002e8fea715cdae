//! The response conversions between OpenAI chat completions and Anthropic Messages
//! (`sdk/src/anthropic/response.rs`), on any upstream body. The first byte picks the
//! direction. What they produce is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate_sdk::anthropic::{chat_response_to_messages, messages_response_to_chat};

fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(b).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let out = if pick & 1 == 0 {
        chat_response_to_messages(body, "client-model")
    } else {
        messages_response_to_chat(body, "client-model")
    };
    if let Ok((out, _usage)) = out {
        assert!(is_json(&out), "not JSON: {}", String::from_utf8_lossy(&out));
    }
});
