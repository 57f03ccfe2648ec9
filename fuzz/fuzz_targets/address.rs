//! Fuzz target: canonical addresses. `mailbox_key` never panics and never yields a name that
//! could escape the mail root or carry routing; canonicalising is idempotent and never changes
//! which mailbox an address names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::address::{canonical_address, mailbox_key};

fuzz_target!(|bytes: &[u8]| {
    let Ok(address) = std::str::from_utf8(bytes) else {
        return;
    };
    let canonical = canonical_address(address);
    assert_eq!(canonical_address(&canonical), canonical);
    if let Ok(key) = mailbox_key(address) {
        for part in [&key.local, &key.domain] {
            assert!(!part.is_empty() && !part.starts_with('.') && !part.contains(".."));
            assert!(!part.contains(['/', '\\', '\0', '@', '"', '%', '!']));
        }
        assert_eq!(mailbox_key(&canonical), Ok(key));
    }
});
