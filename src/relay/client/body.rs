//! The message as sent after DATA: CRLF line endings, dot-stuffed, ended by `.\r\n`.
//!
//! RFC 5321 §2.3.8: lines end in CRLF and a bare CR or LF must not be sent, so each is turned
//! into CRLF (BDAT bodies are queued as they came, possibly with bare LF). §4.5.2: a line that
//! starts with `.` gets one more. §4.1.1.4: the data ends with `CRLF.CRLF`, so a message not
//! ending in a line break gets one first.

/// Appends `body` encoded for DATA, terminator included, to `out`. One pass: a vectorised scan
/// for the next CR or LF, then a bulk copy of the line up to it.
pub fn encode_data(body: &[u8], out: &mut Vec<u8>) {
    // Stuffed dots and converted line ends are rare: a little slack avoids most regrowth.
    out.reserve(body.len() + body.len() / 64 + 8);
    let mut rest = body;
    let mut at_line_start = true;
    while !rest.is_empty() {
        if at_line_start && rest.first() == Some(&b'.') {
            out.push(b'.');
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            None => {
                out.extend_from_slice(rest);
                at_line_start = false;
                break;
            }
            Some(i) => {
                let (line, tail) = rest.split_at(i);
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
                // CRLF is one line end; a lone CR or a lone LF is one too.
                rest = match tail {
                    [b'\r', b'\n', after @ ..] => after,
                    [_, after @ ..] => after,
                    [] => tail,
                };
                at_line_start = true;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The encoded form, for callers that want a fresh buffer.
pub fn encoded(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_data(body, &mut out);
    out
}

/// Reverses [`encode_data`] (for tests and the test receiver): strips the terminator and
/// one leading dot per line.
pub fn unstuff(wire: &[u8]) -> Vec<u8> {
    let body = wire.strip_suffix(b".\r\n").unwrap_or(wire);
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"..x\r\n", b"...x\r\n.\r\n"),
            (b"x.\r\n.y", b"x.\r\n..y\r\n.\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
            (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
            (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
            (b"a\n\rb", b"a\r\n\r\nb\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&encoded(input)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn unstuff_reverses_crlf_bodies() {
        for body in [&b""[..], b"a\r\n", b".\r\n..x\r\nend\r\n", b"x\r\n.\r\n"] {
            assert_eq!(unstuff(&encoded(body)), body);
        }
    }
}
