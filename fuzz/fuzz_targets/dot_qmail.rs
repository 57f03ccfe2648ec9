//! Fuzz target: any `.qmail` file, aliases file or aliases index gives instructions or an
//! error naming a line, never a panic; parsed instructions print back to lines that parse to
//! the same instructions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::local::{aliases, dotqmail};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = dotqmail::parse(data) {
        for (_, instruction) in &parsed.lines {
            let again = dotqmail::parse(instruction.to_string().as_bytes()).expect("reparses");
            assert_eq!(again.lines.first().map(|(_, i)| i), Some(instruction));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("/fuzz/aliases");
    let _ = aliases::parse(path, text, &mut |_| Ok("a@b\n".into()));
    let _ = aliases::parse_index(text);
});
