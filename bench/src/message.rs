//! Builds the test messages: RFC 5322 headers plus filler to a target size, ready for DATA.

use std::time::{SystemTime, UNIX_EPOCH};

/// Filler text; 76 characters per line, never starting with `.`, so it needs no dot-stuffing.
const FILLER: &[u8] =
    b"The quick brown fox jumps over the lazy dog while ringmail-load measures it.";

/// Line ending for the message text: CRLF on the wire, LF in Maildir files on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eol {
    Crlf,
    Lf,
}

impl Eol {
    fn bytes(self) -> &'static [u8] {
        match self {
            Eol::Crlf => b"\r\n",
            Eol::Lf => b"\n",
        }
    }
}

/// The message text (headers, blank line, body), about `size` bytes long (never shorter than
/// its headers), not yet dot-stuffed.
pub fn build(from: &str, to: &[String], number: u64, size: usize, date: &str, eol: Eol) -> Vec<u8> {
    let nl = eol.bytes();
    let mut out = Vec::with_capacity(size + 256);
    let headers = [
        format!("From: <{from}>"),
        format!("To: {}", angle_list(to)),
        format!("Subject: ringmail-load message {number}"),
        format!("Date: {date}"),
        format!(
            "Message-ID: <{number}.{}@ringmail-load.test>",
            std::process::id()
        ),
    ];
    for header in headers {
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(nl);
    }
    out.extend_from_slice(nl);
    while out.len() < size {
        let room = size - out.len();
        if room <= nl.len() {
            out.extend_from_slice(nl);
            break;
        }
        let take = (room - nl.len()).min(FILLER.len());
        out.extend_from_slice(&FILLER[..take]);
        out.extend_from_slice(nl);
    }
    out
}

fn angle_list(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Dot-stuffs CRLF message text and appends the end-of-data line (RFC 5321 §4.5.2), so the whole
/// thing can go out in one write. A missing final CRLF is added first.
pub fn for_data(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    let mut at_line_start = true;
    for &b in text {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The current time as an RFC 5322 §3.3 date in UTC, e.g. `Wed, 25 Nov 2026 16:38:09 +0000`.
pub fn date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc5322_date(secs)
}

/// Formats seconds since the epoch as an RFC 5322 date in UTC.
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let rem = unix % 86_400;
    // Civil-from-days (H. Hinnant's algorithm), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_795_624_689, "Wed, 25 Nov 2026 16:38:09 +0000"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc5322_date(secs), want);
        }
    }

    #[test]
    fn builds_messages_of_the_requested_size() {
        let to = vec!["u1@example.test".to_string()];
        for size in [0, 100, 300, 1024, 1025, 102_400] {
            for eol in [Eol::Crlf, Eol::Lf] {
                let msg = build(
                    "a@b.test",
                    &to,
                    7,
                    size,
                    "Thu, 01 Jan 1970 00:00:00 +0000",
                    eol,
                );
                let head_len = msg
                    .windows(2)
                    .position(|w| w == b"\n\n" || w == b"\r\n")
                    .unwrap();
                assert!(head_len > 0);
                if size > 300 {
                    assert_eq!(msg.len(), size, "size {size} {eol:?}");
                }
                assert!(msg.ends_with(eol.bytes()));
                if eol == Eol::Lf {
                    assert!(!msg.contains(&b'\r'));
                }
            }
        }
    }

    #[test]
    fn dot_stuffs_and_terminates() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".a\r\n..b\r\nc.\r\n", b"..a\r\n...b\r\nc.\r\n.\r\n"),
            (b"no newline", b"no newline\r\n.\r\n"),
            (b"", b".\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(for_data(input), *want, "{input:?}");
        }
    }
}
