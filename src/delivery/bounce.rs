//! The notices sent back about a message that could not be delivered: bounces (failures) and
//! delay notices, as RFC 3464 delivery status notifications.
//!
//! A notice is a `multipart/report; report-type=delivery-status` message (RFC 6522 §3) with
//! three parts: qmail's plain-text explanation (a `<recipient>:` paragraph per recipient), the
//! `message/delivery-status` part that programs read (RFC 3464 §2, written by
//! [`crate::delivery::dsn`]), and the original header section as `text/rfc822-headers`
//! (RFC 6522 §4), capped at [`MAX_QUOTED`], so the sender can tell which message it was.
//!
//! Who gets it (qmail-send's rules):
//!
//! | original envelope sender | failure notice | delay notice |
//! |---|---|---|
//! | a normal address | to the sender, from `<>` | to the sender, from `<>` |
//! | a VERP sender `prefix-@domain-@[]` | to the recipient's VERP address when one recipient is listed, else to `prefix-@domain` (the `@[]` marker is never an address) | the same |
//! | `<>` (a bounce failed) | a double bounce to `postmaster@HOST`, from [`DOUBLE_BOUNCE_SENDER`] | none |
//! | [`DOUBLE_BOUNCE_SENDER`] (a double bounce failed) | none: the caller drops and logs it | none |
//!
//! Bounces go out with the null reverse path (RFC 5321 §4.5.5) so that no one answers them
//! with another bounce; a failed bounce still reaches a person (the postmaster) once, and the
//! double bounce's `#@[]` sender marks it so that it never bounces again. The notice's
//! recipient goes through routing like any other: it need not be local. Every notice carries
//! `Auto-Submitted: auto-replied` (RFC 3834 §5) so that auto-responders leave it alone.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use crate::clock::rfc5322_date;
use crate::delivery::dsn::{self, Action, MessageFields};
use crate::delivery::report::Detail;
use crate::envelope::Envelope;
use crate::relay::verp;

/// At most this much of the original message goes back to the sender.
pub const MAX_QUOTED: usize = 64 * 1024;

/// The envelope sender of a double bounce (qmail's). An empty address literal, so no one can
/// send from it or deliver to it; a message with this sender is never bounced again.
pub const DOUBLE_BOUNCE_SENDER: &str = "#@[]";

/// At most this much of one recipient's reason goes into the text part.
const MAX_REASON: usize = 4096;

/// Counts notices made by this process, so two in the same second get different Message-IDs.
static BOUNCES: AtomicU64 = AtomicU64::new(0);

/// Which notice to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    /// The recipients failed for good (RFC 3464 `Action: failed`).
    Failure,
    /// The recipients are still being retried (RFC 3464 `Action: delayed`, a 4.x.x status):
    /// a warning, nothing is given up.
    Delay,
}

/// Builds the notice about `recipients` (address and what happened) of the message
/// `original_message` sent with `original`. Returns the notice's envelope (`received_at =
/// now`) and its bytes (CRLF line ends), or `None` when no notice is due: `recipients` is
/// empty, or the rules in the module header say nobody is told (the caller drops and logs).
pub fn build_dsn(
    hostname: &str,
    original: &Envelope,
    original_message: &[u8],
    recipients: &[(String, Detail)],
    kind: BounceKind,
    now: u64,
) -> Option<(Envelope, Vec<u8>)> {
    if recipients.is_empty() {
        return None;
    }
    let notice = Notice::for_sender(hostname, &original.sender, recipients, kind)?;
    let text = notice_text(hostname, &notice, kind, recipients);
    let (action, subject) = match kind {
        BounceKind::Failure => (Action::Failed, "failure notice"),
        BounceKind::Delay => (Action::Delayed, "delay notice (still trying)"),
    };
    let fields = MessageFields {
        reporting_mta: hostname,
        arrival_date: original.received_at,
    };
    let status = dsn::delivery_status(&fields, recipients, action, now);
    let headers = header_section(original_message);
    let body = MimePart::new(
        // RFC 6522 §3: the report-type parameter names the second part's type.
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", text),
            // RFC 3464 §2.1: 7-bit fields, sent as they are (a Content-Transfer-Encoding
            // header makes mail-builder write the bytes unencoded; dsn.rs made them ASCII).
            MimePart::new(
                "message/delivery-status",
                BodyPart::Binary(Cow::Owned(status.into_bytes())),
            )
            .transfer_encoding("7bit"),
            MimePart::new(
                "text/rfc822-headers",
                BodyPart::Binary(Cow::Borrowed(headers)),
            )
            .inline(),
        ],
    );
    let host = dsn::clean(hostname);
    let bytes = MessageBuilder::new()
        .from(format!("MAILER-DAEMON@{host}"))
        // Envelope addresses never hold CR or LF when they come through SMTP; dropping any
        // control character anyway keeps a damaged queue record from adding a header field.
        .to(notice.to.replace(|c: char| c.is_control(), ""))
        .subject(subject)
        .header("Date", Raw::new(rfc5322_date(now)))
        .message_id(MessageId::new(message_id(&host, now)))
        // RFC 3834 §5: tells auto-responders not to answer a bounce.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
        .ok()?;
    let envelope = Envelope {
        sender: notice.sender.to_string(),
        smtputf8: !notice.to.is_ascii(),
        recipients: vec![notice.to],
        received_at: now,
        body_8bit: !bytes.is_ascii(),
    };
    Some((envelope, bytes))
}

/// Who a notice goes to, and from which envelope sender.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Notice {
    sender: &'static str,
    to: String,
    double: bool,
}

impl Notice {
    /// The table in the module header.
    fn for_sender(
        hostname: &str,
        sender: &str,
        recipients: &[(String, Detail)],
        kind: BounceKind,
    ) -> Option<Notice> {
        if sender == DOUBLE_BOUNCE_SENDER {
            return None;
        }
        if sender.is_empty() {
            return match kind {
                BounceKind::Delay => None,
                BounceKind::Failure => Some(Notice {
                    sender: DOUBLE_BOUNCE_SENDER,
                    to: format!("postmaster@{hostname}"),
                    double: true,
                }),
            };
        }
        let to = match (verp::is_verp(sender), recipients) {
            (false, _) => sender.to_string(),
            // One recipient: its own VERP address, so the list learns who failed.
            (true, [(recipient, _)]) => verp::verp_sender(sender, recipient)?,
            (true, _) => verp::verp_base(sender)?.to_string(),
        };
        Some(Notice {
            sender: "",
            to,
            double: false,
        })
    }
}

/// qmail-send's text, one `<recipient>:` paragraph per recipient.
fn notice_text(
    hostname: &str,
    notice: &Notice,
    kind: BounceKind,
    recipients: &[(String, Detail)],
) -> String {
    let host = dsn::clean(hostname);
    let mut text = format!("Hi. This is the ringmail program at {host}.\r\n");
    text.push_str(match (notice.double, kind) {
        (true, _) => {
            "I couldn't deliver a failure notice (a bounce, sent with the null sender <>) to\r\n\
             the following addresses, so it comes to you, the postmaster, instead.\r\n\
             This is a permanent error; I've given up.\r\n"
        }
        (false, BounceKind::Failure) => {
            "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
             This is a permanent error; I've given up. Sorry it didn't work out.\r\n"
        }
        (false, BounceKind::Delay) => {
            "I haven't been able to deliver your message to the following addresses yet.\r\n\
             This is a temporary error; I'm still trying, so you need not send it again.\r\n\
             If I have to give up, I'll send you another notice.\r\n"
        }
    });
    for (recipient, detail) in recipients {
        // Reasons may come from a remote server's reply (`MTA said: 550 ...`): normalise every
        // line end to CRLF and keep a stray CR from reaching the wire (RFC 5322 §2.3 allows CR
        // only before LF).
        let reason = reason_text(detail);
        let reason = truncate_chars(&reason, MAX_REASON)
            .replace('\r', "")
            .replace('\n', "\r\n");
        let recipient = recipient.replace(|c: char| c.is_control(), "");
        text.push_str(&format!("\r\n<{recipient}>:\r\n{reason}\r\n"));
    }
    text.push_str(match notice.double {
        true => "\r\n--- The headers of the bounce are attached.\r\n",
        false => "\r\n--- The headers of your message are attached.\r\n",
    });
    text
}

/// One recipient's reason, qmail-style: `MTA said: REPLY` for a remote failure, else the
/// text. The remote parts are one line each (a reply's lines arrive joined), so any line break
/// in them is a remote server's trick and becomes a space; the local text may span lines.
fn reason_text(detail: &Detail) -> String {
    let one_line = |s: &str| s.replace(|c: char| c.is_control(), " ");
    let reason = match (&detail.remote_mta, &detail.diagnostic) {
        (Some(mta), Some(reply)) => format!("{} said: {}", one_line(mta), one_line(reply)),
        (Some(mta), None) => format!("{}: {}", one_line(mta), detail.text),
        _ => detail.text.clone(),
    };
    match &detail.note {
        Some(note) => format!("{reason}\n{note}"),
        None => reason,
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate_chars(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
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
    use crate::delivery::report::StatusCode;
    use mail_parser::{MessageParser, MimeHeaders};

    fn original(sender: &str) -> Envelope {
        Envelope {
            sender: sender.to_string(),
            recipients: vec!["bob@x.test".to_string(), "carol@y.test".to_string()],
            received_at: 1_795_624_000,
            smtputf8: false,
            body_8bit: false,
        }
    }

    const MESSAGE: &[u8] =
        b"From: alice@a.test\r\nSubject: lunch\r\nMessage-ID: <m1@a.test>\r\n\r\nsecret body\r\n";
    const NOW: u64 = 1_795_624_291;

    /// One local failure and one remote one.
    fn failures() -> Vec<(String, Detail)> {
        vec![
            (
                "bob@x.test".to_string(),
                Detail::local(
                    StatusCode(5, 1, 1),
                    "Sorry, no mailbox here by that name. (#5.1.1)",
                ),
            ),
            (
                "carol@y.test".to_string(),
                Detail {
                    code: StatusCode(5, 2, 2),
                    text: "mailbox full".to_string(),
                    remote_mta: Some("mx.y.test [192.0.2.9]".to_string()),
                    diagnostic: Some("552 5.2.2 <carol@y.test>: mailbox full".to_string()),
                    note: None,
                },
            ),
        ]
    }

    fn build(sender: &str, listed: &[(String, Detail)], kind: BounceKind) -> (Envelope, String) {
        let (envelope, bytes) =
            build_dsn("mx.test", &original(sender), MESSAGE, listed, kind, NOW).expect("a DSN");
        (envelope, String::from_utf8(bytes).expect("utf-8"))
    }

    /// The header section of a message or part, split into (name, value) fields, folds joined.
    fn fields(section: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for line in section.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = out.last_mut() {
                    last.1.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                out.push((name.to_string(), value.trim().to_string()));
            }
        }
        out
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Parses a DSN with mail-parser and returns its three parts' content types and bodies.
    fn parts(dsn: &str) -> Vec<(String, String)> {
        let message = MessageParser::default()
            .parse(dsn.as_bytes())
            .expect("mail-parser reads it");
        let ct = message.content_type().expect("content type");
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let ids = message.root_part().sub_parts().expect("multipart");
        ids.iter()
            .map(|&id| {
                let part = message.part(id).expect("part");
                let ct = part.content_type().expect("part content type");
                let name = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
                let body = String::from_utf8_lossy(part.contents()).into_owned();
                (name, body)
            })
            .collect()
    }

    /// The per-recipient blocks of a `message/delivery-status` body (RFC 3464 §2.1).
    fn recipient_blocks(status: &str) -> Vec<Vec<(String, String)>> {
        let mut blocks = status
            .trim_end()
            .split("\r\n\r\n")
            .map(fields)
            .collect::<Vec<_>>();
        blocks.remove(0);
        blocks
    }

    #[test]
    fn failure_is_a_three_part_report() {
        let (envelope, dsn) = build("alice@a.test", &failures(), BounceKind::Failure);
        assert_eq!(envelope.sender, "");
        assert_eq!(envelope.recipients, vec!["alice@a.test".to_string()]);
        assert_eq!(envelope.received_at, NOW);
        assert!(!envelope.smtputf8 && !envelope.body_8bit);
        assert!(
            !dsn.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );

        let (head, _) = dsn.split_once("\r\n\r\n").expect("header end");
        let head = fields(head);
        assert_eq!(field(&head, "From"), ["<MAILER-DAEMON@mx.test>"]);
        assert_eq!(field(&head, "To"), ["<alice@a.test>"]);
        assert_eq!(field(&head, "Subject"), ["failure notice"]);
        assert_eq!(field(&head, "Auto-Submitted"), ["auto-replied"]);
        assert_eq!(field(&head, "Date"), ["Wed, 25 Nov 2026 16:31:31 +0000"]);
        assert!(field(&head, "Message-ID")[0].ends_with("@mx.test>"));

        let parts = parts(&dsn);
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );

        let text = &parts[0].1;
        assert!(text.contains("Hi. This is the ringmail program at mx.test.\r\n"));
        assert!(text.contains("This is a permanent error; I've given up."));
        assert!(
            text.contains("\r\n<bob@x.test>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n")
        );
        assert!(text.contains(
            "\r\n<carol@y.test>:\r\nmx.y.test [192.0.2.9] said: 552 5.2.2 <carol@y.test>: mailbox full\r\n"
        ));

        let status = &parts[1].1;
        let message_fields = fields(status.split("\r\n\r\n").next().unwrap_or(""));
        assert_eq!(field(&message_fields, "Reporting-MTA"), ["dns; mx.test"]);
        assert_eq!(
            field(&message_fields, "Arrival-Date"),
            ["Wed, 25 Nov 2026 16:26:40 +0000"]
        );
        let blocks = recipient_blocks(status);
        assert_eq!(blocks.len(), 2);
        assert_eq!(field(&blocks[0], "Final-Recipient"), ["rfc822; bob@x.test"]);
        assert_eq!(field(&blocks[0], "Action"), ["failed"]);
        assert_eq!(field(&blocks[0], "Status"), ["5.1.1"]);
        assert!(field(&blocks[0], "Remote-MTA").is_empty());
        assert!(field(&blocks[0], "Diagnostic-Code").is_empty());
        assert_eq!(
            field(&blocks[0], "Last-Attempt-Date"),
            ["Wed, 25 Nov 2026 16:31:31 +0000"]
        );
        assert_eq!(
            field(&blocks[1], "Final-Recipient"),
            ["rfc822; carol@y.test"]
        );
        assert_eq!(field(&blocks[1], "Action"), ["failed"]);
        assert_eq!(field(&blocks[1], "Status"), ["5.2.2"]);
        assert_eq!(field(&blocks[1], "Remote-MTA"), ["dns; mx.y.test"]);
        assert_eq!(
            field(&blocks[1], "Diagnostic-Code"),
            ["smtp; 552 5.2.2 <carol@y.test>: mailbox full"]
        );

        let headers = &parts[2].1;
        assert!(headers.contains("Subject: lunch\r\nMessage-ID: <m1@a.test>\r\n"));
        assert!(!dsn.contains("secret body"), "only headers go back");
    }

    #[test]
    fn delay_notice_says_still_trying() {
        let listed = vec![(
            "bob@x.test".to_string(),
            Detail::local(
                StatusCode(4, 2, 2),
                "Recipient's mailbox is over quota. (#4.2.2)",
            ),
        )];
        let (envelope, dsn) = build("alice@a.test", &listed, BounceKind::Delay);
        assert_eq!(envelope.sender, "");
        assert_eq!(envelope.recipients, vec!["alice@a.test".to_string()]);
        let parts = parts(&dsn);
        assert!(parts[0].1.contains("I'm still trying"));
        assert!(!parts[0].1.contains("given up"));
        let blocks = recipient_blocks(&parts[1].1);
        assert_eq!(field(&blocks[0], "Action"), ["delayed"]);
        assert_eq!(field(&blocks[0], "Status"), ["4.2.2"]);
        // Never a delay notice about a bounce or a double bounce.
        for sender in ["", DOUBLE_BOUNCE_SENDER] {
            let none = build_dsn(
                "mx.test",
                &original(sender),
                MESSAGE,
                &listed,
                BounceKind::Delay,
                NOW,
            );
            assert_eq!(none, None, "{sender:?}");
        }
    }

    #[test]
    fn who_gets_the_notice() {
        // (original sender, recipients listed, envelope sender and recipient of the notice)
        let one = &failures()[..1];
        let both = &failures()[..];
        type Case<'a> = (&'a str, &'a [(String, Detail)], Option<(&'a str, &'a str)>);
        let table: &[Case] = &[
            ("alice@a.test", both, Some(("", "alice@a.test"))),
            ("", both, Some((DOUBLE_BOUNCE_SENDER, "postmaster@mx.test"))),
            (DOUBLE_BOUNCE_SENDER, both, None),
            ("alice@a.test", &[], None),
            (
                "list-@lists.test-@[]",
                one,
                Some(("", "list-bob=x.test@lists.test")),
            ),
            ("list-@lists.test-@[]", both, Some(("", "list-@lists.test"))),
        ];
        for (sender, listed, want) in table {
            let got = build_dsn(
                "mx.test",
                &original(sender),
                MESSAGE,
                listed,
                BounceKind::Failure,
                NOW,
            );
            let got = got.map(|(envelope, _)| (envelope.sender, envelope.recipients));
            let want = want.map(|(sender, to)| (sender.to_string(), vec![to.to_string()]));
            assert_eq!(got, want, "{sender:?}");
        }
    }

    #[test]
    fn double_bounce_goes_to_the_postmaster() {
        let (_, dsn) = build("", &failures(), BounceKind::Failure);
        let (head, _) = dsn.split_once("\r\n\r\n").expect("header end");
        assert_eq!(field(&fields(head), "To"), ["<postmaster@mx.test>"]);
        let parts = parts(&dsn);
        assert!(parts[0].1.contains("the postmaster"));
        assert_eq!(recipient_blocks(&parts[1].1).len(), 2);
    }

    #[test]
    fn addresses_cannot_inject_fields() {
        let evil = "bob@x.test\r\nBcc: eve@evil.test\r\nAction: delivered\nStatus: 2.0.0";
        let listed = vec![(
            evil.to_string(),
            Detail {
                code: StatusCode(5, 1, 1),
                text: "no\r\nBcc: eve@evil.test".to_string(),
                remote_mta: Some("mx\r\nX-Evil: 1 [192.0.2.1]".to_string()),
                diagnostic: Some("550 no\r\nStatus: 2.0.0".to_string()),
                note: None,
            },
        )];
        let mut sender = original("alice@a.test\r\nBcc: eve@evil.test");
        sender.recipients = vec![evil.to_string()];
        let (_, bytes) = build_dsn(
            "mx.test",
            &sender,
            MESSAGE,
            &listed,
            BounceKind::Failure,
            NOW,
        )
        .expect("a DSN");
        let dsn = String::from_utf8(bytes).expect("utf-8");
        assert!(
            !dsn.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );
        let (head, _) = dsn.split_once("\r\n\r\n").expect("header end");
        let head = fields(head);
        assert!(field(&head, "Bcc").is_empty(), "{head:?}");
        assert_eq!(
            field(&head, "To"),
            ["<alice@a.testBcc: eve@evil.test>"],
            "one field, however odd"
        );
        let parts = parts(&dsn);
        for line in parts[1].1.split("\r\n").chain(parts[0].1.split("\r\n")) {
            assert!(!line.starts_with("Bcc:"), "{line:?}");
            assert!(!line.starts_with("X-Evil:"), "{line:?}");
            assert!(!line.starts_with("Status: 2"), "{line:?}");
        }
        let blocks = recipient_blocks(&parts[1].1);
        assert_eq!(blocks.len(), 1);
        assert_eq!(field(&blocks[0], "Action"), ["failed"]);
        assert_eq!(field(&blocks[0], "Status"), ["5.1.1"]);
        assert_eq!(blocks[0].len(), 6, "{:?}", blocks[0]);
    }

    /// An independent parser (Python's `email` package) sees the same structure.
    #[test]
    fn python_email_reads_it() {
        let (_, dsn) = build("alice@a.test", &failures(), BounceKind::Failure);
        let script = "import sys, email\n\
            m = email.message_from_bytes(sys.stdin.buffer.read())\n\
            print(m.get_content_type(), m.get_param('report-type'))\n\
            for p in m.get_payload():\n    print(p.get_content_type())\n\
            ds = m.get_payload()[1]\n\
            for block in ds.get_payload():\n    print(block.get('Action'), block.get('Status'))\n";
        let mut child = match std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!("python3 not available, skipping: {e}");
                return;
            }
        };
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dsn.as_bytes())
            .expect("write");
        let output = child.wait_with_output().expect("python3 runs");
        assert!(output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            "multipart/report delivery-status\n\
             text/plain\n\
             message/delivery-status\n\
             text/rfc822-headers\n\
             None None\n\
             failed 5.1.1\n\
             failed 5.2.2\n"
        );
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

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "h");
        assert_eq!(truncate_chars("héllo", 3), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
    }
}
