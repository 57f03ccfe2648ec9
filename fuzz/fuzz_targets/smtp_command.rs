//! Fuzz target: the SMTP command-line parser never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let _ = ringmail::smtp::parse_command(line);
});
