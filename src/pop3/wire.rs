//! Maildir file bytes to the bytes RETR and TOP send: CRLF line ends and dot-stuffing
//! (RFC 1939 §3), computed incrementally so messages stream in chunks.
//!
//! Local delivery writes Maildir files with bare LF line ends (the Maildir convention); files with
//! CRLF are accepted too. The same encoder computes the sizes LIST and STAT report: RFC 1939
//! §5 defines a message's size as its octets with CRLF line ends *before* byte-stuffing, so the
//! size is what RETR sends between its `+OK` line and the terminating `.CRLF` less one octet per
//! stuffed line, which is what a client holds once it has removed the stuffing (fetchmail and
//! others compare the two).

use std::io;

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
    /// Stuffing dots written so far: the wire bytes less these are the RFC 1939 size.
    stuffed: u64,
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
            stuffed: 0,
        }
    }

    /// How many stuffing dots the encoder has written: a client removes them again, so they
    /// are not part of the message's size (RFC 1939 §5).
    pub fn stuffed(&self) -> u64 {
        self.stuffed
    }

    /// True once TOP has emitted everything it will; the caller may stop reading.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn data(&mut self, b: u8, out: &mut Vec<u8>) {
        // RFC 1939 §3: a line starting with the termination octet is byte-stuffed.
        if self.at_line_start && b == b'.' {
            out.push(b'.');
            self.stuffed += 1;
        }
        out.push(b);
        self.at_line_start = false;
        self.line_len += 1;
    }

    /// Encodes a chunk of file bytes, appending wire bytes to `out`.
    ///
    /// RETR takes the line-at-a-time path ([`Self::encode_lines`]); TOP, which must count lines
    /// and stop early, goes byte by byte. Both give the same bytes (tested below).
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.top.is_some() {
            self.encode_bytewise(input, out);
        } else {
            self.encode_lines(input, out);
        }
    }

    /// The RETR path: finds each LF with a word-at-a-time search (std's `memchr`, reached
    /// through `BufRead::read_until` on a slice) and copies whole lines. A line that already
    /// ends in CRLF is copied as is; an LF-only line gets its CR; a line starting with '.' gets
    /// one more. Per line that is one search and one copy instead of a branch per byte.
    fn encode_lines(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // LF files grow by one CR per line; a guess that avoids most regrowth.
        out.reserve(input.len() + input.len() / 32 + 2);
        let mut rest = input;
        while let Some(&first) = rest.first() {
            if self.pending_cr {
                // A CR ended the previous chunk: only the next byte says what it was.
                self.encode_bytewise(&rest[..1], out);
                rest = &rest[1..];
                continue;
            }
            if self.at_line_start && first == b'.' {
                // RFC 1939 §3: a line starting with the termination octet is byte-stuffed.
                out.push(b'.');
                self.stuffed += 1;
            }
            let start = out.len();
            // Reading from a slice cannot fail; it appends up to and including the LF.
            let taken = io::BufRead::read_until(&mut rest, b'\n', out).unwrap_or(0);
            if taken == 0 {
                break;
            }
            let copied = out.get(start..).unwrap_or_default();
            match copied {
                [.., b'\r', b'\n'] => {}
                [.., b'\n'] => {
                    out.pop();
                    out.extend_from_slice(b"\r\n");
                }
                // No LF left in this chunk: a partial line, whose trailing CR may yet turn out
                // to be half of a CRLF.
                [.., b'\r'] => {
                    out.pop();
                    self.pending_cr = true;
                    self.line_len += taken - 1;
                    self.at_line_start &= taken == 1;
                    continue;
                }
                _ => {
                    self.line_len += taken;
                    self.at_line_start = false;
                    continue;
                }
            }
            self.at_line_start = true;
            self.line_len = 0;
        }
    }

    /// The reference encoder, one byte at a time (TOP, and a chunk-boundary CR).
    fn encode_bytewise(&mut self, input: &[u8], out: &mut Vec<u8>) {
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

/// The size LIST and STAT report (RFC 1939 §5): the message with CRLF line ends, without the
/// byte-stuffing RETR adds on the wire.
pub fn message_size(file_bytes: &[u8]) -> u64 {
    let mut enc = WireEncoder::whole();
    let mut out = Vec::with_capacity(file_bytes.len() + file_bytes.len() / 16 + 2);
    enc.encode(file_bytes, &mut out);
    enc.finish(&mut out);
    out.len() as u64 - enc.stuffed()
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
        // Two lines of `want` start with a stuffed dot: `.a` and `..`.
        let stuffed = want.windows(3).filter(|w| w == b"\n..").count() as u64;
        assert_eq!(stuffed, 2);
        assert_eq!(message_size(input), want.len() as u64 - stuffed);
    }

    #[test]
    fn size_is_unstuffed_crlf_octets() {
        // RFC 1939 §5: CRLF line ends counted, stuffing dots not.
        let cases: &[(&[u8], u64)] = &[
            (b"a\nb\n", 6),
            (b"a\r\nb\r\n", 6),
            (b".\n.\n..\n.x\n", 14),
            (
                b"S: x\n\n.one\n.two\n.three\n.four\n",
                6 + 2 + 6 + 6 + 8 + 7,
            ),
            (b"no newline", 12),
            (b"", 0),
        ];
        for (input, want) in cases {
            assert_eq!(
                message_size(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            let mut enc = WireEncoder::whole();
            let mut out = Vec::new();
            enc.encode(input, &mut out);
            enc.finish(&mut out);
            let dots = input
                .split(|&b| b == b'\n')
                .filter(|l| l.first() == Some(&b'.'))
                .count();
            assert_eq!(enc.stuffed(), dots as u64);
            assert_eq!(out.len() as u64 - enc.stuffed(), *want);
        }
    }

    #[test]
    fn line_path_matches_bytewise_reference() {
        // A small LCG over an alphabet dense in the bytes that matter: every mix of CR, LF and
        // '.' at line starts and chunk edges, split into chunks of varying sizes.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let alphabet = b"\r\n.ab";
        for _ in 0..2000 {
            let len = next() % 40;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            let mut reference = WireEncoder::whole();
            let mut want = Vec::new();
            reference.encode_bytewise(&input, &mut want);
            reference.finish(&mut want);
            let mut enc = WireEncoder::whole();
            let mut got = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = (next() % 7 + 1).min(rest.len());
                enc.encode(&rest[..n], &mut got);
                rest = &rest[n..];
            }
            enc.finish(&mut got);
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(&input));
        }
    }
}
