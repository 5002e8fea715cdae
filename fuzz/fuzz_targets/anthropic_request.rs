//! The request conversions between OpenAI chat completions and Anthropic Messages
//! (`sdk/src/anthropic/request.rs`), on any client body. The first byte picks the
//! direction. What they produce is JSON, and converting it back never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate_sdk::anthropic::{chat_to_messages_request, messages_to_chat_request};

fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(b).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    if pick & 1 == 0 {
        if let Ok(out) = messages_to_chat_request(body, "upstream-model") {
            assert!(is_json(&out), "not JSON: {}", String::from_utf8_lossy(&out));
            let _ = chat_to_messages_request(&out, "upstream-model");
        }
    } else if let Ok(out) = chat_to_messages_request(body, "upstream-model") {
        assert!(is_json(&out), "not JSON: {}", String::from_utf8_lossy(&out));
        let _ = messages_to_chat_request(&out, "upstream-model");
    }
});
