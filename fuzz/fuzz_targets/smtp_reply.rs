//! Fuzz target: the SMTP client's reply parser never panics, and a parsed reply never claims
//! more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((reply, used)) = ringmail::relay::client::parse_reply(data) {
        assert!(used <= data.len());
        let _ = reply.to_string();
    }
    // The body encoder too: it must end with the terminator, whatever the input.
    let encoded = ringmail::relay::client::body::encoded(data);
    assert!(encoded.ends_with(b".\r\n"));
});
