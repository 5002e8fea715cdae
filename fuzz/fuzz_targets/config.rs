//! Config loading (`config::from_text`, what `config::load` runs on the file's text): any
//! YAML text is either a validated config or a list of problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmgate::config::env::Environment;
use llmgate::config::{Overrides, from_text};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Environment = [("FUZZ_KEY", "sk-fuzz")].into_iter().collect();
    match from_text(text, "fuzz.yaml", &Overrides::default(), &env) {
        Ok(_) => {}
        Err(e) => assert!(!e.0.is_empty(), "an error names at least one problem"),
    }
});
