//! Maildir file bytes to the bytes RETR and TOP send: CRLF line ends and dot-stuffing
//! (RFC 1939 §3), computed incrementally so messages stream in chunks.
//!
//! Local delivery writes Maildir files with bare LF line ends (the Maildir convention); files with
//! CRLF are accepted too. The same encoder computes the sizes LIST and STAT report, so a size
//! always equals the octets RETR sends between its `+OK` line and the terminating `.CRLF`.

/// Streaming encoder for one message.
#[derive(Debug, Clone)]
pub struct WireEncoder {
    at_line_start: bool,
    pending_cr: bool,
    /// Octets in the current line so far (not counting a pending CR).
    line_len: usize,
    /// `Some(n)` for TOP: the header section then `n` body lines (RFC 1939 §7).
    top: Option<TopState>,
    done: bool,
}

#[derive(Debug, Clone)]
struct TopState {
    in_headers: bool,
    body_lines_left: usize,
}

impl WireEncoder {
    /// An encoder for the whole message (RETR).
    pub fn whole() -> Self {
        Self::new(None)
    }

    /// An encoder that stops after the headers and `body_lines` lines of body (TOP).
    pub fn top(body_lines: usize) -> Self {
        Self::new(Some(body_lines))
    }

    /// `None` for RETR, `Some(n)` for TOP with `n` body lines.
    pub fn new(top_lines: Option<usize>) -> Self {
        WireEncoder {
            at_line_start: true,
            pending_cr: false,
            line_len: 0,
            top: top_lines.map(|n| TopState {
                in_headers: true,
                body_lines_left: n,
            }),
            done: false,
        }
    }

    /// True once TOP has emitted everything it will; the caller may stop reading.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn data(&mut self, b: u8, out: &mut Vec<u8>) {
        // RFC 1939 §3: a line starting with the termination octet is byte-stuffed.
        if self.at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        self.at_line_start = false;
        self.line_len += 1;
    }

    /// Encodes a chunk of file bytes, appending wire bytes to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.done {
                return;
            }
            match b {
                b'\r' => {
                    if self.pending_cr {
                        self.data(b'\r', out);
                    }
                    self.pending_cr = true;
                }
                b'\n' => {
                    self.pending_cr = false;
                    out.extend_from_slice(b"\r\n");
                    let empty = self.line_len == 0;
                    self.at_line_start = true;
                    self.line_len = 0;
                    self.end_of_line(empty);
                }
                _ => {
                    if self.pending_cr {
                        self.pending_cr = false;
                        self.data(b'\r', out);
                    }
                    self.data(b, out);
                }
            }
        }
    }

    fn end_of_line(&mut self, empty: bool) {
        if let Some(top) = &mut self.top {
            if top.in_headers {
                if empty {
                    top.in_headers = false;
                    self.done = top.body_lines_left == 0;
                }
            } else {
                top.body_lines_left = top.body_lines_left.saturating_sub(1);
                self.done = top.body_lines_left == 0;
            }
        }
    }

    /// Ends the message: a last line without a line end gets CRLF. The `.CRLF` terminator is
    /// not written here (it is not part of the message's size).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            self.data(b'\r', out);
        }
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
        self.done = true;
    }
}

/// The wire size of a whole message: what LIST and STAT report.
pub fn wire_size(file_bytes: &[u8]) -> u64 {
    let mut enc = WireEncoder::whole();
    let mut out = Vec::with_capacity(file_bytes.len() + file_bytes.len() / 16 + 2);
    enc.encode(file_bytes, &mut out);
    enc.finish(&mut out);
    out.len() as u64
}

/// Encodes a whole buffer at once (tests and small messages).
pub fn encode_all(file_bytes: &[u8], top_lines: Option<usize>) -> Vec<u8> {
    let mut enc = WireEncoder::new(top_lines);
    let mut out = Vec::new();
    enc.encode(file_bytes, &mut out);
    enc.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_messages() {
        let cases: &[(&[u8], Option<usize>, &[u8])] = &[
            (b"a\nb\n", None, b"a\r\nb\r\n"),
            (b"a\r\nb\r\n", None, b"a\r\nb\r\n"),
            (b"a\n.b\n..\n.\n", None, b"a\r\n..b\r\n...\r\n..\r\n"),
            (b"no newline", None, b"no newline\r\n"),
            (b"", None, b""),
            (b"bare\rcr\n", None, b"bare\rcr\r\n"),
            (b"ends in cr\r", None, b"ends in cr\r\r\n"),
            (
                b"S: x\nT: y\n\nl1\nl2\nl3\n",
                Some(0),
                b"S: x\r\nT: y\r\n\r\n",
            ),
            (
                b"S: x\n\nl1\n.l2\nl3\n",
                Some(2),
                b"S: x\r\n\r\nl1\r\n..l2\r\n",
            ),
            (b"S: x\r\n\r\nl1\r\n", Some(5), b"S: x\r\n\r\nl1\r\n"),
            (b"S: x\n", Some(1), b"S: x\r\n"),
        ];
        for (input, top, want) in cases {
            assert_eq!(
                encode_all(input, *top),
                want.to_vec(),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunking_does_not_change_output() {
        let input = b"H: 1\r\n\r\n.a\r\nb\rc\n..\nlast\r";
        let want = encode_all(input, None);
        for split in 0..input.len() {
            let mut enc = WireEncoder::whole();
            let mut out = Vec::new();
            enc.encode(&input[..split], &mut out);
            enc.encode(&input[split..], &mut out);
            enc.finish(&mut out);
            assert_eq!(out, want, "split at {split}");
        }
        assert_eq!(wire_size(input), want.len() as u64);
    }
}
