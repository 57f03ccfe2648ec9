//! Fuzz target: any configuration text gives a Config or a list of errors, never a panic or a
//! hang. The error collection (remove the bad key, deserialize again), the span lookups that
//! name each error's line and key, and the operator wording all get fuzzed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = ringmail::config::check_str(text, "fuzz.toml") {
        assert!(!errors.is_empty(), "a failure names at least one error");
        let last_line = text.matches('\n').count() + 1;
        for e in &errors {
            if let Some(line) = e.line {
                assert!(
                    (1..=last_line).contains(&line),
                    "line {line} of {last_line}: {e}"
                );
            }
        }
        // load_str is the first of them.
        assert_eq!(
            ringmail::config::load_str(text, "fuzz.toml").err().as_ref(),
            errors.first()
        );
    }
});
