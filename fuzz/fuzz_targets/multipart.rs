//! Multipart bodies (`POST /v1/images/edits`): the host's scanner (`summarize` for image
//! edits) and the form-field rewrite plugins use, both on `llmgate_sdk::multipart`. Input:
//! the `Content-Type` header's value up to the first newline, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate::fuzzing::{Api, summarize};
use llmgate_sdk::multipart::rewrite_field;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"multipart/form-data; boundary=XyZ"[..], data),
    };
    let content_type = String::from_utf8_lossy(content_type);
    if let Ok(s) = summarize(Api::ImagesEdits, &content_type, body) {
        assert!(!s.model.is_empty(), "an accepted form names a model");
    }
    if let Some(out) = rewrite_field(&content_type, body, "model", "upstream-model") {
        // The rewritten body is still a form the scanner reads the same way, model aside.
        let before = summarize(Api::ImagesEdits, &content_type, body).is_ok();
        let after = summarize(Api::ImagesEdits, &content_type, &out);
        if before {
            let after = after.expect("a rewritten valid form stays valid");
            assert_eq!(after.model, "upstream-model");
        }
    }
});
