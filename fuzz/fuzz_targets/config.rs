//! Fuzz target: any configuration text gives a Config or a ConfigError, never a panic (the
//! error's line lookup walks the text, so it gets fuzzed too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ringmail::config::load_str(text, "fuzz.toml");
    }
});
