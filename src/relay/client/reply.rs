//! The SMTP client's reply parser (sans-IO): bytes from the server in, one [`Reply`] out.
//!
//! A reply is one or more lines `ddd-text` ending with a line `ddd text` (RFC 5321 §4.2.1), all
//! with the same code. Each line may carry an RFC 3463 enhanced status code after the basic one
//! (RFC 2034 §3); it is taken from the first line and stripped from every line that repeats it.

use crate::delivery::report::StatusCode;
use std::fmt;

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 says 512; real servers send
/// longer ones, so allow some slack while still bounding what a hostile server can make us hold.
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply (an EHLO reply has one per extension).
pub const MAX_LINES: usize = 100;

/// One reply from the server, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<StatusCode>,
    /// The text of each line, without code, enhanced code or line ending.
    pub lines: Vec<String>,
}

/// Why bytes are not (yet) a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// No complete reply yet: read more bytes. Allocates nothing.
    NeedMore,
    /// A line longer than [`MAX_LINE`], or more than [`MAX_LINES`] lines: the server is at fault.
    TooLong,
    /// Not an SMTP reply (no 3-digit code, codes differ between lines, bad separator).
    Garbage,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::NeedMore => "incomplete reply",
            ReplyError::TooLong => "reply too long",
            ReplyError::Garbage => "malformed reply",
        })
    }
}

impl std::error::Error for ReplyError {}

impl Reply {
    /// A reply made here rather than received (local decisions, tests).
    pub fn new(code: u16, enhanced: Option<StatusCode>, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// 2xx (and 3xx, "go on": 354 to DATA, 334 to AUTH).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx: try again later (RFC 5321 §4.2.1).
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx, and anything outside 2xx-4xx: will never work as it is.
    pub fn is_permanent(&self) -> bool {
        !self.is_positive() && !self.is_transient()
    }

    /// The text of all lines joined with spaces.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The enhanced code, or one derived from the basic code (RFC 3463 §3 classes; a few basic
    /// codes have an obvious subject, e.g. 552 is RFC 5321's "exceeded storage allocation").
    pub fn status(&self) -> StatusCode {
        if let Some(code) = self.enhanced {
            return code;
        }
        match self.code {
            200..=399 => StatusCode(2, 0, 0),
            421 => StatusCode(4, 4, 2),
            450 | 451 => StatusCode(4, 0, 0),
            452 => StatusCode(4, 3, 1),
            400..=499 => StatusCode(4, 0, 0),
            550 | 551 | 553 => StatusCode(5, 1, 1),
            552 => StatusCode(5, 3, 4),
            _ => StatusCode(5, 0, 0),
        }
    }
}

impl fmt::Display for Reply {
    /// `550 5.1.1 text text2`, the form Diagnostic-Code and the logs use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(code) = self.enhanced {
            write!(f, " {code}")?;
        }
        for line in &self.lines {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// Parses one reply from the start of `buf`: the reply and how many bytes it took.
pub fn parse_reply(buf: &[u8]) -> Result<(Reply, usize), ReplyError> {
    // First pass: find the end of the reply without allocating, so that `NeedMore` is cheap
    // when a reply arrives a few bytes at a time.
    let mut pos = 0;
    let mut count = 0;
    let mut first_code = None;
    let end = loop {
        let rest = buf.get(pos..).ok_or(ReplyError::NeedMore)?;
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            return Err(if rest.len() >= MAX_LINE {
                ReplyError::TooLong
            } else {
                ReplyError::NeedMore
            });
        };
        if nl + 1 > MAX_LINE {
            return Err(ReplyError::TooLong);
        }
        count += 1;
        if count > MAX_LINES {
            return Err(ReplyError::TooLong);
        }
        let line = strip_eol(rest.get(..nl).unwrap_or_default());
        let (code, last) = line_head(line)?;
        if *first_code.get_or_insert(code) != code {
            return Err(ReplyError::Garbage);
        }
        pos += nl + 1;
        if last {
            break pos;
        }
    };
    let code = first_code.ok_or(ReplyError::Garbage)?;
    let mut enhanced = None;
    let mut lines = Vec::with_capacity(count);
    for (i, raw) in buf
        .get(..end)
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .take(count)
        .enumerate()
    {
        let text = strip_eol(raw).get(4..).unwrap_or_default();
        let text = String::from_utf8_lossy(text);
        let (found, rest) = split_enhanced(&text, code);
        if i == 0 {
            enhanced = found;
        }
        // Strip the code only where it is the reply's own; keep text that merely looks like one.
        let line = match found {
            Some(c) if Some(c) == enhanced => rest,
            _ => &text,
        };
        lines.push(line.to_string());
    }
    Ok((
        Reply {
            code,
            enhanced,
            lines,
        },
        end,
    ))
}

fn strip_eol(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The code of one line and whether it is the last (`ddd ` or a bare `ddd`) line.
fn line_head(line: &[u8]) -> Result<(u16, bool), ReplyError> {
    let (digits, sep) = match line {
        [a, b, c] => ([*a, *b, *c], b' '),
        [a, b, c, sep, ..] => ([*a, *b, *c], *sep),
        _ => return Err(ReplyError::Garbage),
    };
    // RFC 5321 §4.2: first digit 2-5, then 0-5, then 0-9.
    let [a, b, c] = digits;
    if !(b'2'..=b'5').contains(&a) || !(b'0'..=b'5').contains(&b) || !c.is_ascii_digit() {
        return Err(ReplyError::Garbage);
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    match sep {
        b' ' => Ok((code, true)),
        b'-' => Ok((code, false)),
        _ => Err(ReplyError::Garbage),
    }
}

/// Splits `5.1.1 rest` into the enhanced code and the rest, when its class matches the basic
/// code's first digit (RFC 3463 §2: the class must agree).
fn split_enhanced(text: &str, code: u16) -> (Option<StatusCode>, &str) {
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    match word.parse::<StatusCode>() {
        Ok(status) if u16::from(status.0) == code / 100 => (Some(status), rest),
        _ => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, code, enhanced code, lines, bytes used.
    type Case = (
        &'static [u8],
        u16,
        Option<StatusCode>,
        &'static [&'static str],
        usize,
    );

    #[test]
    fn parses_replies() {
        let cases: &[Case] = &[
            (
                b"220 mx.example ESMTP\r\n",
                220,
                None,
                &["mx.example ESMTP"],
                22,
            ),
            (
                b"250 2.1.0 ok\r\n",
                250,
                Some(StatusCode(2, 1, 0)),
                &["ok"],
                14,
            ),
            (b"250\r\n", 250, None, &[""], 5),
            (b"250 \r\n", 250, None, &[""], 6),
            (b"354 go\n", 354, None, &["go"], 7),
            (
                b"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\nextra",
                250,
                None,
                &["mx", "PIPELINING", "SIZE 10"],
                37,
            ),
            (
                b"550-5.1.1 no\r\n550 5.1.1 such user\r\n",
                550,
                Some(StatusCode(5, 1, 1)),
                &["no", "such user"],
                35,
            ),
            // A class that disagrees with the code is text, not an enhanced code.
            (b"550 2.1.1 odd\r\n", 550, None, &["2.1.1 odd"], 15),
            (b"451 4.3.0\r\n", 451, Some(StatusCode(4, 3, 0)), &[""], 11),
        ];
        for (input, code, enhanced, lines, used) in cases {
            let (reply, n) = parse_reply(input).unwrap();
            assert_eq!(reply.code, *code, "{input:?}");
            assert_eq!(reply.enhanced, *enhanced, "{input:?}");
            assert_eq!(reply.lines, *lines, "{input:?}");
            assert_eq!(n, *used, "{input:?}");
        }
    }

    #[test]
    fn rejects_garbage_and_waits_for_more() {
        let cases: &[(&[u8], ReplyError)] = &[
            (b"", ReplyError::NeedMore),
            (b"250", ReplyError::NeedMore),
            (b"250-first\r\n", ReplyError::NeedMore),
            (b"250-first\r\n250 sec", ReplyError::NeedMore),
            (b"hello\r\n", ReplyError::Garbage),
            (b"25\r\n", ReplyError::Garbage),
            (b"250x\r\n", ReplyError::Garbage),
            (b"650 no\r\n", ReplyError::Garbage),
            (b"250-a\r\n251 b\r\n", ReplyError::Garbage),
            (b"\r\n", ReplyError::Garbage),
        ];
        for (input, err) in cases {
            assert_eq!(parse_reply(input).unwrap_err(), *err, "{input:?}");
        }
        let long = vec![b'2'; MAX_LINE];
        assert_eq!(parse_reply(&long).unwrap_err(), ReplyError::TooLong);
        let many = "250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(
            parse_reply(many.as_bytes()).unwrap_err(),
            ReplyError::TooLong
        );
    }

    #[test]
    fn display_and_classes() {
        let (reply, _) = parse_reply(b"550-5.1.1 text\r\n550 5.1.1 text2\r\n").unwrap();
        assert_eq!(reply.to_string(), "550 5.1.1 text text2");
        assert!(reply.is_permanent() && !reply.is_transient() && !reply.is_positive());
        assert!(Reply::new(451, None, "x").is_transient());
        assert!(Reply::new(354, None, "x").is_positive());
        assert_eq!(Reply::new(552, None, "x").status(), StatusCode(5, 3, 4));
        assert_eq!(Reply::new(450, None, "x").status(), StatusCode(4, 0, 0));
        assert_eq!(Reply::new(554, None, "x").status(), StatusCode(5, 0, 0));
    }
}
