//! Fuzz target: the RETR encoder's output is the same however the file is split into reads, its
//! length less its stuffing dots is what LIST reports (RFC 1939 §5), and it can never contain the terminator `CRLF.CRLF` early
//! (every line starting with `.` is stuffed, so a client can't be fooled into ending early).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::pop3::wire::{WireEncoder, encode_all, message_size};

fuzz_target!(|data: &[u8]| {
    let (split, file) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first) + 1, rest),
        None => return,
    };
    let whole = encode_all(file, None);
    let mut reference = WireEncoder::new(None);
    let mut out = Vec::new();
    reference.encode(file, &mut out);
    reference.finish(&mut out);
    assert_eq!(whole.len() as u64 - reference.stuffed(), message_size(file));
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
