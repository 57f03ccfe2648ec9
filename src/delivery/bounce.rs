//! The failure notice sent back to a sender whose message could not be delivered (a bounce).
//!
//! qmail's wording in a MIME message: a `text/plain` part that lists each failed recipient and
//! why, and a `text/rfc822-headers` part (RFC 6522 §4) with the original header section, so the
//! sender can tell which message it was. Full DSNs (RFC 3464) come later. Bounces go out with the
//! null reverse path (RFC 5321 §4.5.5), and a message sent with the null path is never bounced,
//! so two mail systems cannot bounce a message back and forth.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use mail_builder::MessageBuilder;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use crate::clock::rfc5322_date;
use crate::envelope::Envelope;

/// At most this much of the original message goes back to the sender.
pub const MAX_QUOTED: usize = 64 * 1024;

/// Counts bounces made by this process, so two in the same second get different Message-IDs.
static BOUNCES: AtomicU64 = AtomicU64::new(0);

/// Builds the bounce for `failures` (recipient, reason) of the message `original_message` sent
/// with `original`. Returns the bounce's envelope (null sender, to the original sender,
/// `received_at = now`) and its bytes (CRLF line ends), or `None` when there is nobody to tell:
/// the original sender was the null sender, or `failures` is empty.
pub fn build_bounce(
    hostname: &str,
    original: &Envelope,
    original_message: &[u8],
    failures: &[(String, String)],
    now: u64,
) -> Option<(Envelope, Vec<u8>)> {
    if original.sender.is_empty() || failures.is_empty() {
        return None;
    }
    let text = notice_text(hostname, failures);
    let headers = header_section(original_message);
    let body = MimePart::new(
        "multipart/mixed",
        vec![
            MimePart::new("text/plain", text),
            MimePart::new(
                "text/rfc822-headers",
                BodyPart::Binary(Cow::Borrowed(headers)),
            )
            .inline(),
        ],
    );
    let bytes = MessageBuilder::new()
        .from(format!("MAILER-DAEMON@{hostname}"))
        .to(original.sender.as_str())
        .subject("failure notice")
        .header("Date", Raw::new(rfc5322_date(now)))
        .message_id(MessageId::new(message_id(hostname, now)))
        // RFC 3834 §5: tells auto-responders not to answer a bounce.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
        .ok()?;
    let envelope = Envelope {
        sender: String::new(),
        recipients: vec![original.sender.clone()],
        received_at: now,
        smtputf8: !original.sender.is_ascii(),
        body_8bit: !bytes.is_ascii(),
    };
    Some((envelope, bytes))
}

/// qmail-send's bounce text, one `<recipient>:` paragraph per failure.
fn notice_text(hostname: &str, failures: &[(String, String)]) -> String {
    let mut text = format!(
        "Hi. This is the ringmail program at {hostname}.\r\n\
         I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
         This is a permanent error; I've given up. Sorry it didn't work out.\r\n"
    );
    for (recipient, reason) in failures {
        // Reasons may come from a remote server's reply: normalise every line end to CRLF and
        // keep a stray CR from reaching the wire (RFC 5322 §2.3 allows CR only before LF).
        let reason = reason.replace('\r', "").replace('\n', "\r\n");
        let recipient = recipient.replace(['\r', '\n'], "");
        text.push_str(&format!("\r\n<{recipient}>:\r\n{reason}\r\n"));
    }
    text.push_str("\r\n--- The headers of your message are attached.\r\n");
    text
}

/// The original message's header section (through the empty line that ends it), or its first
/// [`MAX_QUOTED`] bytes cut at a line end when the header section is longer or never ends.
fn header_section(message: &[u8]) -> &[u8] {
    let limit = message.len().min(MAX_QUOTED);
    let mut end = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if end + line.len() > limit {
            break;
        }
        end += line.len();
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    // No line end within the cap: send the capped bytes rather than nothing.
    let end = if end == 0 { limit } else { end };
    message.get(..end).unwrap_or(message)
}

fn message_id(hostname: &str, now: u64) -> String {
    let count = BOUNCES.fetch_add(1, Ordering::Relaxed);
    let random = std::collections::hash_map::RandomState::new().hash_one(count);
    format!(
        "{now}.{}.{count}.{:08x}.bounce@{hostname}",
        std::process::id(),
        random as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original(sender: &str) -> Envelope {
        Envelope {
            sender: sender.to_string(),
            recipients: vec!["bob@x.test".to_string(), "carol@y.test".to_string()],
            received_at: 100,
            smtputf8: false,
            body_8bit: false,
        }
    }

    const MESSAGE: &[u8] =
        b"From: alice@a.test\r\nSubject: lunch\r\nMessage-ID: <m1@a.test>\r\n\r\nsecret body\r\n";

    fn failures() -> Vec<(String, String)> {
        vec![
            (
                "bob@x.test".to_string(),
                "Sorry, no mailbox here by that name. (#5.1.1)".to_string(),
            ),
            (
                "carol@y.test".to_string(),
                "Remote said: 552 mailbox full\r\nsecond line\rx".to_string(),
            ),
        ]
    }

    /// Splits a message into its header section and body.
    fn split(message: &str) -> (&str, &str) {
        message.split_once("\r\n\r\n").expect("header end")
    }

    fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
        headers.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn never_bounces_a_bounce() {
        assert_eq!(
            build_bounce("mx.test", &original(""), MESSAGE, &failures(), 5),
            None
        );
        assert_eq!(
            build_bounce("mx.test", &original("alice@a.test"), MESSAGE, &[], 5),
            None
        );
    }

    #[test]
    fn bounce_contents() {
        let now = 1_795_624_291;
        let (envelope, bytes) = build_bounce(
            "mx.test",
            &original("alice@a.test"),
            MESSAGE,
            &failures(),
            now,
        )
        .expect("bounce");
        assert_eq!(envelope.sender, "");
        assert_eq!(envelope.recipients, vec!["alice@a.test".to_string()]);
        assert_eq!(envelope.received_at, now);
        assert!(!envelope.smtputf8 && !envelope.body_8bit);

        let text = String::from_utf8(bytes).expect("ascii");
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in bounce"
        );
        let (headers, body) = split(&text);
        assert_eq!(header(headers, "From"), Some("<MAILER-DAEMON@mx.test>"));
        assert_eq!(header(headers, "To"), Some("<alice@a.test>"));
        assert_eq!(header(headers, "Subject"), Some("failure notice"));
        assert_eq!(
            header(headers, "Date"),
            Some("Wed, 25 Nov 2026 16:31:31 +0000")
        );
        assert!(header(headers, "Message-ID").is_some_and(|id| id.ends_with("@mx.test>")));
        assert!(header(headers, "Content-Type").is_some_and(|ct| ct.contains("multipart/mixed")));

        assert!(body.contains("Hi. This is the ringmail program at mx.test.\r\n"));
        assert!(body.contains("This is a permanent error; I've given up."));
        assert!(
            body.contains("\r\n<bob@x.test>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n")
        );
        assert!(
            body.contains(
                "\r\n<carol@y.test>:\r\nRemote said: 552 mailbox full\r\nsecond linex\r\n"
            )
        );
        assert!(body.contains("Content-Type: text/rfc822-headers"));
        assert!(body.contains("Subject: lunch\r\nMessage-ID: <m1@a.test>\r\n"));
        assert!(!body.contains("secret body"), "only headers go back");
    }

    #[test]
    fn quotes_headers_within_the_cap() {
        let table: &[(&[u8], &[u8])] = &[
            (b"A: 1\r\n\r\nbody", b"A: 1\r\n\r\n"),
            (b"A: 1\n\nbody", b"A: 1\n\n"),
            (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"no line end", b"no line end"),
            (b"", b""),
        ];
        for (message, want) in table {
            assert_eq!(header_section(message), *want);
        }
        let mut long = b"X: 1\r\n".repeat(MAX_QUOTED);
        long.extend_from_slice(b"\r\nbody");
        let quoted = header_section(&long);
        assert!(quoted.len() <= MAX_QUOTED && quoted.ends_with(b"\r\n"));
        let endless = vec![b'x'; MAX_QUOTED * 2];
        assert_eq!(header_section(&endless).len(), MAX_QUOTED);
    }
}
