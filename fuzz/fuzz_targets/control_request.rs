//! Fuzz target: the control socket's request parser and reply decoder never panic, whatever the
//! bytes, and every request that parses survives a format/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::control::protocol::{Reply, format_request, parse_request};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = parse_request(bytes) {
        assert_eq!(
            parse_request(format_request(&request).as_bytes()),
            Ok(request)
        );
    }
    if let Ok(reply) = Reply::decode(&String::from_utf8_lossy(bytes)) {
        // Encoding keeps it one status line plus its details.
        assert_eq!(reply.encode().lines().count(), 1 + reply.details.len());
    }
});
