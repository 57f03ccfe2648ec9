//! Delivered-To loop detection: a message that already carries `Delivered-To: <address>` for
//! the address we are about to deliver (or forward) to has been here before, and delivering it
//! again would loop forever (qmail-local's #5.4.6).
//!
//! The header section is read with `mail-parser`, so folded fields (`Delivered-To:` with the
//! address on a continuation line), obsolete white space before the colon and bare-LF messages
//! are read as any mail reader reads them; only this one field is parsed, the rest skipped.

use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// Whether the header section of `message` has a `Delivered-To:` field naming `address`
/// (compared case-insensitively, white space and angle brackets ignored). The body is never read.
pub fn has_delivered_to(message: &[u8], address: &str) -> bool {
    delivered_to(message)
        .iter()
        .any(|seen| seen.eq_ignore_ascii_case(address))
}

/// Every address in the message's `Delivered-To:` fields, unfolded, without white space or
/// angle brackets.
pub fn delivered_to(message: &[u8]) -> Vec<String> {
    let parser = MessageParser::new()
        .default_header_ignore()
        .header_raw(HeaderName::DeliveredTo);
    let Some(parsed) = parser.parse_headers(message) else {
        return Vec::new();
    };
    parsed
        .header_values(HeaderName::DeliveredTo)
        .filter_map(|value| match value {
            HeaderValue::Text(text) => Some(clean(text)),
            _ => None,
        })
        .collect()
}

/// The address of one field value: folding and other white space removed, `<>` stripped.
fn clean(value: &str) -> String {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .map(str::to_string)
        .unwrap_or(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_delivered_to_as_a_mail_reader_does() {
        let rcpt = "bob@example.test";
        let table: &[(&[u8], bool)] = &[
            (b"Subject: x\r\n\r\nbody\r\n", false),
            (b"Delivered-To: bob@example.test\r\n\r\n", true),
            (b"delivered-to:   BOB@Example.TEST  \r\n\r\n", true),
            (b"DELIVERED-TO: <bob@example.test>\n\n", true),
            (b"Delivered-To : bob@example.test\r\n\r\n", true),
            (b"Delivered-To: alice@example.test\r\n\r\n", false),
            (b"Delivered-To: bob@example.test.evil\r\n\r\n", false),
            (b"X-Delivered-To: bob@example.test\r\n\r\n", false),
            // Folded: the address on a continuation line.
            (
                b"Delivered-To:\r\n bob@example.test\r\nSubject: x\r\n\r\n",
                true,
            ),
            (b"Delivered-To:\n\tbob@example.test\n\n", true),
            // In the body it does not count.
            (
                b"Subject: x\r\n\r\nDelivered-To: bob@example.test\r\n",
                false,
            ),
            (
                b"Received: a\r\n  b\r\nDelivered-To: bob@example.test\r\n\r\n",
                true,
            ),
            (b"Delivered-To: bob@example.test", true),
            (b"", false),
        ];
        for (message, want) in table {
            assert_eq!(
                has_delivered_to(message, rcpt),
                *want,
                "{}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn lists_every_field() {
        let message =
            b"Delivered-To: a@x\r\nSubject: s\r\nDelivered-To: <b@y>\r\n\r\nDelivered-To: c@z\r\n";
        assert_eq!(delivered_to(message), ["a@x", "b@y"]);
    }
}
