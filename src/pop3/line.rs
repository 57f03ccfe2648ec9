//! CRLF line framing for POP3 input, capped so a peer cannot make us buffer without bound.

/// The longest line kept, CRLF included. RFC 2449 §4 caps commands at 255 octets; SASL
/// continuation lines (RFC 5034 §4) may be longer, so the framing cap is looser and the session
/// enforces the command cap itself.
pub const MAX_LINE: usize = 2048;

/// One framed line, or a line that went past [`MAX_LINE`] (its bytes were discarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line without its line end (CRLF or a bare LF, accepted as many servers do).
    Complete(Vec<u8>),
    /// The line was longer than [`MAX_LINE`]; everything up to its line end was dropped.
    TooLong,
}

/// Bytes received but not yet framed into lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Set while discarding the rest of an over-long line.
    discarding: bool,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when no input is waiting (used to refuse STLS with pipelined plaintext behind it).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Drops everything buffered (after a TLS handshake nothing from before it may be used).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// The next complete line, if one is buffered.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            match self.buf.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                    if self.discarding {
                        self.discarding = false;
                        return Some(Line::TooLong);
                    }
                    if line.len() > MAX_LINE {
                        return Some(Line::TooLong);
                    }
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some(Line::Complete(line));
                }
                None if self.buf.len() > MAX_LINE => {
                    self.buf.clear();
                    self.discarding = true;
                    continue;
                }
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lines() {
        let cases: &[(&[&[u8]], &[Line])] = &[
            (&[b"STAT\r\n"], &[Line::Complete(b"STAT".to_vec())]),
            (
                &[b"ST", b"AT\r", b"\nNOOP\n"],
                &[
                    Line::Complete(b"STAT".to_vec()),
                    Line::Complete(b"NOOP".to_vec()),
                ],
            ),
            (&[b"QUIT"], &[]),
        ];
        for (chunks, want) in cases {
            let mut lb = LineBuffer::new();
            let mut got = Vec::new();
            for c in *chunks {
                lb.push(c);
                while let Some(l) = lb.next_line() {
                    got.push(l);
                }
            }
            assert_eq!(&got, want);
        }
    }

    #[test]
    fn caps_long_lines() {
        let mut lb = LineBuffer::new();
        lb.push(&vec![b'a'; MAX_LINE + 10]);
        assert_eq!(lb.next_line(), None);
        lb.push(b"aaa\r\nNOOP\r\n");
        assert_eq!(lb.next_line(), Some(Line::TooLong));
        assert_eq!(lb.next_line(), Some(Line::Complete(b"NOOP".to_vec())));
        assert!(lb.is_empty());
    }
}
