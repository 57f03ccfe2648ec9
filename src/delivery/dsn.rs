//! The machine-readable part of a bounce: the body of a `message/delivery-status` part
//! (RFC 3464 §2), one per-message block and one block per recipient.
//!
//! Everything written here is 7-bit ASCII with CRLF line ends (RFC 3464 §2.1: the fields are
//! RFC 5322-style header fields, and the part is sent with `Content-Transfer-Encoding: 7bit`).
//! Values come from the envelope and from remote servers, so each one is cleaned first: control
//! characters (CR and LF above all) become spaces, so no value can end its field and start
//! another; non-ASCII becomes `?`, except in addresses, which use RFC 6533's `utf-8` type.

use std::fmt::Write as _;

use crate::clock::rfc5322_date;
use crate::delivery::report::{Detail, StatusCode};

/// Longest `Diagnostic-Code` text kept (a remote reply, all lines joined). Folded at spaces, so
/// no line of the part is longer than RFC 5322 §2.1.1's 998 octets.
const MAX_DIAGNOSTIC: usize = 900;

/// Longest field line we aim for before folding (RFC 5322 §2.1.1 "SHOULD" be 78).
const FOLD_AT: usize = 78;

/// What the per-recipient blocks report (RFC 3464 §2.3.3 `Action:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up for good.
    Failed,
    /// Still being retried.
    Delayed,
}

/// The per-message fields (RFC 3464 §2.2).
pub struct MessageFields<'a> {
    /// Our host name (`Reporting-MTA: dns; HOST`, §2.2.2).
    pub reporting_mta: &'a str,
    /// When the original message was accepted (`Arrival-Date`, §2.2.5).
    pub arrival_date: u64,
}

/// The whole `message/delivery-status` body: the per-message block, then one block per
/// recipient, each preceded by an empty line (RFC 3464 §2.1). `last_attempt` is the
/// `Last-Attempt-Date` (§2.3.7) of every recipient.
pub fn delivery_status(
    message: &MessageFields<'_>,
    recipients: &[(String, Detail)],
    action: Action,
    last_attempt: u64,
) -> String {
    let mut out = String::new();
    field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", clean(message.reporting_mta)),
    );
    field(
        &mut out,
        "Arrival-Date",
        &rfc5322_date(message.arrival_date),
    );
    for (recipient, detail) in recipients {
        out.push_str("\r\n");
        field(&mut out, "Final-Recipient", &final_recipient(recipient));
        let action_word = match action {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        };
        field(&mut out, "Action", action_word);
        field(&mut out, "Status", &status(action, detail.code).to_string());
        if let Some(mta) = detail.remote_mta.as_deref().and_then(remote_mta_name) {
            field(&mut out, "Remote-MTA", &format!("dns; {mta}"));
        }
        if let Some(reply) = &detail.diagnostic {
            let reply = truncate(&clean(reply), MAX_DIAGNOSTIC).to_string();
            field(
                &mut out,
                "Diagnostic-Code",
                &format!("smtp; {}", reply.trim()),
            );
        }
        field(&mut out, "Last-Attempt-Date", &rfc5322_date(last_attempt));
    }
    out
}

/// RFC 3464 §2.3.4: a failure carries a 4.x.x or 5.x.x status (4.4.7, "gave up after the queue
/// lifetime", is a failure with a temporary code), a delay a 4.x.x one. A code of the wrong
/// class keeps its subject and detail and takes the class the action needs.
fn status(action: Action, code: StatusCode) -> StatusCode {
    let StatusCode(class, subject, detail) = code;
    match action {
        Action::Failed if class == 4 || class == 5 => code,
        Action::Failed => StatusCode(5, subject, detail),
        Action::Delayed => StatusCode(4, subject, detail),
    }
}

/// `Final-Recipient` (RFC 3464 §2.3.2): `rfc822; addr` for an ASCII address, RFC 6533 §3's
/// `utf-8; ` with the utf-8-addr-xtext encoding (7-bit, so it fits this part) otherwise.
fn final_recipient(address: &str) -> String {
    let address = address.replace(|c: char| c.is_control(), "");
    if address.is_ascii() {
        return format!("rfc822; {address}");
    }
    let mut encoded = String::with_capacity(address.len() + 16);
    for c in address.chars() {
        // QCHAR = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e: `+`, `=`, `\` and everything
        // outside printable ASCII go as \x{HEX} (uppercase, no leading zeros).
        if c.is_ascii_graphic() && !matches!(c, '+' | '=' | '\\') {
            encoded.push(c);
        } else {
            let _ = write!(encoded, "\\x{{{:X}}}", c as u32);
        }
    }
    format!("utf-8; {encoded}")
}

/// The host name out of `name [ip]`: RFC 3464 §2.3.5's `dns` MTA name is a domain name, so the
/// bracketed address is left out. A server known only by its address (`[ip]`) keeps the
/// literal, as Postfix does. `None` when nothing is left.
fn remote_mta_name(mta: &str) -> Option<String> {
    let mta = clean(mta);
    let mta = mta.trim();
    let name = match mta.split_once(" [") {
        Some((name, _)) if !name.trim().is_empty() => name.trim(),
        _ => mta,
    };
    (!name.is_empty()).then(|| name.to_string())
}

/// A value safe to put in a field: controls (CR, LF, TAB, ...) become spaces, non-ASCII `?`.
pub fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            c if c.is_control() => ' ',
            c if !c.is_ascii() => '?',
            c => c,
        })
        .collect()
}

/// At most `max` bytes of ASCII `text`.
fn truncate(text: &str, max: usize) -> &str {
    text.get(..max).unwrap_or(text)
}

/// Appends `Name: value` CRLF, folding at spaces (RFC 5322 §2.2.3) so that lines stay near
/// [`FOLD_AT`] octets. `value` has been cleaned; a word longer than a line stays whole (the
/// caps above keep every line under 998 octets).
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut line = name.len() + 1;
    for (i, word) in value.split(' ').filter(|w| !w.is_empty()).enumerate() {
        if i > 0 && line + 1 + word.len() > FOLD_AT {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        out.push_str(word);
        line += 1 + word.len();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(code: StatusCode, mta: Option<&str>, diagnostic: Option<&str>) -> Detail {
        Detail {
            code,
            text: "text".to_string(),
            remote_mta: mta.map(str::to_string),
            diagnostic: diagnostic.map(str::to_string),
            note: None,
        }
    }

    #[test]
    fn writes_the_blocks() {
        let message = MessageFields {
            reporting_mta: "mx.test",
            arrival_date: 1_795_624_291,
        };
        let recipients = vec![
            (
                "bob@x.test".to_string(),
                detail(
                    StatusCode(5, 1, 1),
                    Some("mx.x.test [192.0.2.1]"),
                    Some("550 5.1.1 <bob@x.test>: no such user"),
                ),
            ),
            (
                "carol@y.test".to_string(),
                detail(StatusCode(5, 2, 2), None, None),
            ),
        ];
        let body = delivery_status(&message, &recipients, Action::Failed, 1_795_624_300);
        assert_eq!(
            body,
            "Reporting-MTA: dns; mx.test\r\n\
             Arrival-Date: Wed, 25 Nov 2026 16:31:31 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822; bob@x.test\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx.x.test\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <bob@x.test>: no such user\r\n\
             Last-Attempt-Date: Wed, 25 Nov 2026 16:31:40 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822; carol@y.test\r\n\
             Action: failed\r\n\
             Status: 5.2.2\r\n\
             Last-Attempt-Date: Wed, 25 Nov 2026 16:31:40 +0000\r\n"
        );
    }

    #[test]
    fn statuses_fit_the_action() {
        let table = [
            (Action::Failed, StatusCode(5, 1, 1), StatusCode(5, 1, 1)),
            (Action::Failed, StatusCode(4, 4, 7), StatusCode(4, 4, 7)),
            (Action::Failed, StatusCode(2, 0, 0), StatusCode(5, 0, 0)),
            (Action::Delayed, StatusCode(4, 2, 2), StatusCode(4, 2, 2)),
            (Action::Delayed, StatusCode(5, 1, 1), StatusCode(4, 1, 1)),
        ];
        for (action, code, want) in table {
            assert_eq!(status(action, code), want, "{action:?} {code}");
        }
    }

    #[test]
    fn remote_mta_names() {
        let table = [
            ("mx.x.test [192.0.2.1]", Some("mx.x.test")),
            ("mx.x.test", Some("mx.x.test")),
            ("[192.0.2.1]", Some("[192.0.2.1]")),
            (" [2001:db8::1]", Some("[2001:db8::1]")),
            ("", None),
            ("  ", None),
            ("mx\r\nBcc: x [1.2.3.4]", Some("mx  Bcc: x")),
        ];
        for (mta, want) in table {
            assert_eq!(remote_mta_name(mta).as_deref(), want, "{mta:?}");
        }
    }

    #[test]
    fn utf8_recipients_use_xtext() {
        assert_eq!(final_recipient("bob@x.test"), "rfc822; bob@x.test");
        assert_eq!(
            final_recipient("jö+a=b@dömain.test"),
            "utf-8; j\\x{F6}\\x{2B}a\\x{3D}b@d\\x{F6}main.test"
        );
        assert_eq!(final_recipient("a\r\nb@x"), "rfc822; ab@x");
    }

    #[test]
    fn values_cannot_start_a_field() {
        let message = MessageFields {
            reporting_mta: "mx.test\r\nX-Evil: 1",
            arrival_date: 0,
        };
        let recipients = vec![(
            "bob@x.test\r\nAction: delivered".to_string(),
            detail(
                StatusCode(5, 0, 0),
                Some("mx\r\nStatus: 2.0.0 [1.2.3.4]"),
                Some("550 no\r\nAction: delivered\nStatus: 2.0.0\rX: y\u{85}é"),
            ),
        )];
        let body = delivery_status(&message, &recipients, Action::Failed, 0);
        for line in body.split("\r\n") {
            assert!(!line.contains(['\r', '\n']), "{line:?}");
            assert!(line.is_ascii(), "{line:?}");
            // Every line is a field we wrote, a fold (starts with a space) or a block end.
            let known = [
                "Reporting-MTA:",
                "Arrival-Date:",
                "Final-Recipient:",
                "Action: failed",
                "Status: 5.0.0",
                "Remote-MTA:",
                "Diagnostic-Code:",
                "Last-Attempt-Date:",
            ];
            assert!(
                line.is_empty()
                    || line.starts_with(' ')
                    || known.iter().any(|k| line.starts_with(k)),
                "{line:?}"
            );
        }
        let starting = |name: &str| body.split("\r\n").filter(|l| l.starts_with(name)).count();
        assert_eq!(starting("Action:"), 1);
        assert_eq!(starting("Status:"), 1);
    }

    #[test]
    fn long_diagnostics_fold_and_stop() {
        let reply = format!("550 5.7.1 {}", "blocked ".repeat(500));
        let recipients = vec![(
            "bob@x.test".to_string(),
            detail(StatusCode(5, 7, 1), Some("mx"), Some(&reply)),
        )];
        let message = MessageFields {
            reporting_mta: "mx.test",
            arrival_date: 0,
        };
        let body = delivery_status(&message, &recipients, Action::Failed, 0);
        assert!(body.split("\r\n").all(|line| line.len() <= FOLD_AT));
        let diagnostic: String = body
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Diagnostic-Code:"))
            .take_while(|l| !l.starts_with("Last-Attempt-Date:"))
            .collect();
        assert!(
            diagnostic.len() <= MAX_DIAGNOSTIC + 40,
            "{}",
            diagnostic.len()
        );
        let word = "x".repeat(2000);
        let recipients = vec![(
            "bob@x.test".to_string(),
            detail(StatusCode(5, 7, 1), None, Some(&word)),
        )];
        let body = delivery_status(&message, &recipients, Action::Failed, 0);
        assert!(body.split("\r\n").all(|line| line.len() <= 998));
    }
}
