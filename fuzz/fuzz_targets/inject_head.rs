//! Fuzz target: the injection socket's request head parser and reply decoder never panic,
//! whatever a local user sends, and every head that parses survives a format/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::inject::protocol::{Reply, format_head, parse_head};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(Some((head, used))) = parse_head(bytes) {
        assert!(used <= bytes.len());
        let wire = format_head(&head);
        assert_eq!(parse_head(&wire), Ok(Some((head, wire.len()))));
    }
    if let Some(reply) = Reply::decode(&String::from_utf8_lossy(bytes)) {
        assert_eq!(reply.encode().lines().count(), 1);
    }
});
