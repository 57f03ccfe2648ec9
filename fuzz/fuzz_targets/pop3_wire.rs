//! Fuzz target: the RETR encoder's output is the same however the file is split into reads, its
//! length is what LIST reports, and it can never contain the terminator `CRLF.CRLF` early
//! (every line starting with `.` is stuffed, so a client can't be fooled into ending early).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::pop3::wire::{WireEncoder, encode_all, wire_size};

fuzz_target!(|data: &[u8]| {
    let (split, file) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first) + 1, rest),
        None => return,
    };
    let whole = encode_all(file, None);
    assert_eq!(whole.len() as u64, wire_size(file));
    let mut chunked = Vec::new();
    let mut encoder = WireEncoder::new(None);
    for piece in file.chunks(split) {
        encoder.encode(piece, &mut chunked);
    }
    encoder.finish(&mut chunked);
    assert_eq!(chunked, whole);
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(&whole);
    assert!(
        !framed.windows(5).any(|w| w == b"\r\n.\r\n"),
        "unstuffed terminator"
    );
});
