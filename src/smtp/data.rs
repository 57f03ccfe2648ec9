//! The DATA body scanner: finds the end of data, undoes dot-stuffing and notes what is wrong
//! with the message, across arbitrary chunk boundaries (RFC 5321 4.1.1.4, 4.5.2).
//!
//! Only CRLF "." CRLF ends the data. A bare CR or LF anywhere marks the message bad (it will be
//! refused once the real end arrives), so `\n.\n`, `\r.\r`, `\n.\r\n`, `\r\n.\n` and `\r\n.\r`
//! can never end it: that is the SMTP smuggling defence (a downstream server that reads the line
//! ends differently would see a second message).

/// Longest text line in octets, without its CRLF (RFC 5321 4.5.3.1.6, RFC 5322 2.1.1).
pub const MAX_LINE: usize = 998;

/// What the scanner expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The first byte of a line (the previous line ended in CRLF, or data just began).
    LineStart,
    /// More of a line.
    Text,
    /// The LF of a CRLF.
    Lf,
    /// A line that began with `.`: its second byte.
    AfterDot,
    /// `.` CR at a line start: LF here ends the data.
    FinalLf,
}

/// What was wrong with a message, known once its data has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataFindings {
    /// A CR not followed by LF, or an LF not preceded by CR.
    pub bare_line_ending: bool,
    /// More than the size limit; the excess was discarded.
    pub oversized: bool,
    /// A line longer than [`MAX_LINE`] octets.
    pub long_line: bool,
}

/// Scans a DATA body; create one per DATA command.
#[derive(Debug, Clone)]
pub struct DataScanner {
    expect: Expect,
    line_len: usize,
    size: usize,
    max_size: usize,
    findings: DataFindings,
}

impl DataScanner {
    /// A scanner that keeps at most `max_size` octets of (unstuffed) body.
    pub fn new(max_size: usize) -> DataScanner {
        DataScanner {
            expect: Expect::LineStart,
            line_len: 0,
            size: 0,
            max_size,
            findings: DataFindings::default(),
        }
    }

    /// Scans `input`, appending the unstuffed body to `body`. Returns how many octets were used
    /// and whether the end of data was found; after the end, the rest of `input` is untouched
    /// (pipelined commands).
    pub fn scan(&mut self, input: &[u8], body: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match self.expect {
                Expect::Text => {
                    // The hot path: copy the run of text up to the next CR or LF at once.
                    let rest = &input[i..];
                    let run = rest
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(rest.len());
                    self.emit(body, &rest[..run]);
                    self.grow_line(run);
                    i += run;
                    if let Some(&end) = rest.get(run) {
                        i += 1;
                        if end == b'\r' {
                            self.expect = Expect::Lf;
                        } else {
                            self.bare(body, b"\n");
                        }
                    }
                    continue;
                }
                Expect::LineStart => {
                    self.line_len = 0;
                    match byte {
                        b'.' => {
                            self.grow_line(1);
                            self.expect = Expect::AfterDot;
                        }
                        b'\r' => self.expect = Expect::Lf,
                        b'\n' => {
                            self.bare(body, b"\n");
                            self.expect = Expect::Text;
                        }
                        _ => {
                            self.expect = Expect::Text;
                            continue;
                        }
                    }
                }
                Expect::Lf => {
                    if byte == b'\n' {
                        self.emit(body, b"\r\n");
                        self.expect = Expect::LineStart;
                    } else {
                        // The CR was bare; look at this byte again as text.
                        self.bare(body, b"\r");
                        self.expect = Expect::Text;
                        continue;
                    }
                }
                Expect::AfterDot => match byte {
                    // RFC 5321 4.5.2: the first dot of a line with more on it is removed.
                    b'\r' => self.expect = Expect::FinalLf,
                    _ => {
                        self.expect = Expect::Text;
                        if byte == b'.' {
                            self.emit(body, b".");
                            self.grow_line(1);
                        } else {
                            continue;
                        }
                    }
                },
                Expect::FinalLf => {
                    if byte == b'\n' {
                        return (i + 1, true);
                    }
                    // "." then a bare CR: not the end; the line is bad.
                    self.bare(body, b"\r");
                    self.expect = Expect::Text;
                    continue;
                }
            }
            i += 1;
        }
        (input.len(), false)
    }

    /// What was found so far (complete once `scan` reported the end).
    pub fn findings(&self) -> DataFindings {
        self.findings
    }

    fn emit(&mut self, body: &mut Vec<u8>, bytes: &[u8]) {
        if self.findings.oversized {
            return;
        }
        if self.size + bytes.len() > self.max_size {
            // Keep scanning for the end but store nothing more (RFC 1870 6.3: reply 552 after).
            self.findings.oversized = true;
            return;
        }
        self.size += bytes.len();
        body.extend_from_slice(bytes);
    }

    fn bare(&mut self, body: &mut Vec<u8>, bytes: &[u8]) {
        self.findings.bare_line_ending = true;
        self.emit(body, bytes);
    }

    fn grow_line(&mut self, octets: usize) {
        self.line_len += octets;
        if self.line_len > MAX_LINE {
            self.findings.long_line = true;
        }
    }
}

/// Whether raw (BDAT) content has a line longer than [`MAX_LINE`] octets before its line end.
pub fn has_long_line(content: &[u8]) -> bool {
    content.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() > MAX_LINE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` whole and byte by byte; both must agree.
    fn scan(input: &[u8], max: usize) -> (Vec<u8>, usize, bool, DataFindings) {
        let mut scanner = DataScanner::new(max);
        let mut body = Vec::new();
        let (used, done) = scanner.scan(input, &mut body);

        let mut slow = DataScanner::new(max);
        let mut slow_body = Vec::new();
        let mut slow_used = 0;
        let mut slow_done = false;
        for byte in input.chunks(1) {
            let (n, d) = slow.scan(byte, &mut slow_body);
            slow_used += n;
            if d {
                slow_done = true;
                break;
            }
        }
        // Once oversized, what was kept depends on chunking and no longer matters.
        if !scanner.findings().oversized {
            assert_eq!(slow_body, body, "byte-by-byte body differs for {input:?}");
        }
        assert_eq!(
            (slow_used, slow_done, slow.findings()),
            (used, done, scanner.findings()),
            "byte-by-byte differs for {input:?}"
        );
        (body, used, done, scanner.findings())
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf() {
        let ok = DataFindings::default();
        let bare = DataFindings {
            bare_line_ending: true,
            ..ok
        };
        #[rustfmt::skip]
        // input, body, used, done, findings
        type Case<'a> = (&'a [u8], &'a [u8], usize, bool, DataFindings);
        let cases: &[Case] = &[
            // input, body, used, done, findings
            (b".\r\n", b"", 3, true, ok),
            (b".\r\nQUIT\r\n", b"", 3, true, ok),
            (b"a\r\n.\r\n", b"a\r\n", 6, true, ok),
            (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n", 11, true, ok),
            (b"..\r\n.\r\n", b".\r\n", 7, true, ok),
            (b".b\r\n.\r\n", b"b\r\n", 7, true, ok),
            (b"a\r\n\r\n.\r\n", b"a\r\n\r\n", 8, true, ok),
            (b"a\r\n.", b"a\r\n", 4, false, ok),
            // Smuggling variants: none of them ends the data; all mark it bad.
            (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n", 10, true, bare),
            (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n", 10, true, bare),
            (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n", 11, true, bare),
            (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n", 11, true, bare),
            (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n", 11, true, bare),
            (b"a\n.\n", b"a\n.\n", 4, false, bare),
            (b"a\r\n.\r.\r\n", b"a\r\n\r.\r\n", 8, false, bare),
            (b"\n", b"\n", 1, false, bare),
            (b"\r\r\n.\r\n", b"\r\r\n", 6, true, bare),
        ];
        for (input, body, used, done, findings) in cases {
            assert_eq!(
                scan(input, 1000),
                (body.to_vec(), *used, *done, *findings),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_size_but_finds_the_end() {
        let mut input = b"0123456789\r\n".repeat(10);
        input.extend_from_slice(b".\r\nNOOP\r\n");
        let (body, used, done, findings) = scan(&input, 50);
        assert!(done && findings.oversized && body.len() <= 50);
        assert_eq!(used, input.len() - 6);
        let (body, _, _, findings) = scan(&input, 120);
        assert!(!findings.oversized);
        assert_eq!(body.len(), 120);
    }

    #[test]
    fn notes_long_lines() {
        for (len, long) in [(998, false), (999, true)] {
            let mut input = vec![b'x'; len];
            input.extend_from_slice(b"\r\n.\r\n");
            let (body, _, done, findings) = scan(&input, 10_000);
            assert!(done);
            assert_eq!(findings.long_line, long, "{len}");
            assert_eq!(body.len(), len + 2, "line kept intact");
            assert_eq!(has_long_line(&body), long);
        }
        // A stuffed dot counts: it is on the wire.
        let mut input = vec![b'.'; 999];
        input.extend_from_slice(b"\r\n.\r\n");
        assert!(scan(&input, 10_000).3.long_line);
    }
}
