//! The streamed conversions (`sdk/src/anthropic/stream.rs`): OpenAI chunks to Anthropic
//! events and Anthropic events to OpenAI chunks, on any upstream stream. Input: one byte
//! picking the direction and `include_usage`, then one event per line; for Anthropic
//! streams a line is `event-name\tdata` (or just `data`). Every payload emitted is JSON or
//! `[DONE]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate_sdk::SseEvent as Event;
use llmgate_sdk::anthropic::{ChatStreamToMessages, MessagesStreamToChat};

fn check(events: &[Event]) {
    for e in events {
        assert!(
            e.data == "[DONE]" || serde_json::from_str::<serde_json::Value>(&e.data).is_ok(),
            "not JSON: {}",
            e.data
        );
        let _ = e.to_sse();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if pick & 1 == 0 {
        let mut c = ChatStreamToMessages::new("client-model");
        for line in text.split('\n') {
            match c.on_chunk(line) {
                Ok(events) => check(&events),
                Err(_) => return,
            }
        }
        if let Ok((events, _)) = c.finish() {
            check(&events);
        }
    } else {
        let mut c = MessagesStreamToChat::new("client-model", pick & 2 == 2);
        for line in text.split('\n') {
            let (name, data) = match line.split_once('\t') {
                Some((n, d)) => (Some(n), d),
                None => (None, line),
            };
            match c.on_event(name, data) {
                Ok(events) => check(&events),
                Err(_) => return,
            }
        }
        if let Ok((events, _)) = c.finish() {
            check(&events);
        }
    }
});
