//! One recipient's local delivery: find the Maildir, refuse loops, add the delivery headers, write.
//!
//! Follows qmail-local: the delivered copy starts with `Return-Path:` (RFC 5321 §4.4, added at
//! final delivery) and `Delivered-To:`, and a message that already carries our `Delivered-To:`
//! line for this recipient is looping and fails for good (qmail's #5.4.6).

use std::path::{Path, PathBuf};

use crate::delivery::maildir::{self, MaildirError};
use crate::envelope::Envelope;
use crate::mailbox::maildir_for;
use crate::relay::verp::verp_sender;

/// How one local delivery ended. The strings are reasons for the log and, when permanent, for
/// the bounce: one line, ending in an enhanced status code (RFC 3463) as qmail writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOutcome {
    /// Written and durable; the message's path in the Maildir's `new/`.
    Delivered(PathBuf),
    /// Try again later (full disk, quota, I/O error, ...).
    Temporary(String),
    /// Will never work: bounce it.
    Permanent(String),
}

/// The reason given for a looping message, qmail-local's wording.
pub const LOOPING: &str = "This message is looping: it already has my Delivered-To line. (#5.4.6)";

/// Delivers `message` (as received: CRLF line ends) for `recipient` into its Maildir under
/// `mail_root`.
pub async fn deliver_local(
    mail_root: &Path,
    hostname: &str,
    envelope: &Envelope,
    recipient: &str,
    message: &[u8],
) -> LocalOutcome {
    let maildir = match maildir_for(mail_root, recipient) {
        Ok(path) => path,
        Err(e) => {
            return LocalOutcome::Permanent(format!(
                "Sorry, that is not a valid local mailbox ({e}). (#5.1.3)"
            ));
        }
    };
    if has_delivered_to(message, recipient) {
        return LocalOutcome::Permanent(LOOPING.to_string());
    }
    let prefix = delivery_prefix(&envelope.sender, recipient);
    match maildir::deliver(&maildir, hostname, prefix.as_bytes(), message).await {
        Ok(path) => LocalOutcome::Delivered(path),
        Err(e) => {
            // The full error names paths; it goes to the log, while the outcome (which may end
            // up in a bounce to a stranger) only says what kind of trouble it was.
            log::warn!("local delivery to {recipient} failed: {e}");
            outcome_for(&e)
        }
    }
}

fn outcome_for(e: &MaildirError) -> LocalOutcome {
    if !e.is_temporary() {
        return LocalOutcome::Permanent(
            "Sorry, this mailbox is misconfigured and cannot accept mail. (#5.2.1)".to_string(),
        );
    }
    let reason = match e.errno() {
        Some(libc::EDQUOT) => "Recipient's mailbox is over quota. (#4.2.2)",
        Some(libc::ENOSPC) => "Mail system is out of disk space. (#4.3.1)",
        _ => "Unable to write to the mailbox. (#4.3.0)",
    };
    LocalOutcome::Temporary(reason.to_string())
}

/// The header lines qmail-local puts on top of a delivered message. CR and LF are dropped from
/// the addresses so that nothing from the envelope can start a header line of its own. A VERP
/// sender (`prefix-@domain-@[]`) shows as this recipient's own return path, as qmail does:
/// that is the address a reply to the bounce-handling address must reach.
pub fn delivery_prefix(sender: &str, recipient: &str) -> String {
    let clean = |s: &str| s.replace(['\r', '\n'], "");
    let return_path = verp_sender(sender, recipient).unwrap_or_else(|| sender.to_string());
    format!(
        "Return-Path: <{}>\nDelivered-To: {}\n",
        clean(&return_path),
        clean(recipient)
    )
}

/// Whether the message's header section already has `Delivered-To: <recipient>`. The field name
/// and the address are compared case-insensitively; the scan stops at the first empty line, so
/// it never reads the body.
pub fn has_delivered_to(message: &[u8], recipient: &str) -> bool {
    const NAME: &[u8] = b"delivered-to";
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let mut parts = line.splitn(2, |&b| b == b':');
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        // RFC 5322 §4.5.3 (obsolete syntax) allows white space before the colon.
        if !name.trim_ascii_end().eq_ignore_ascii_case(NAME) {
            continue;
        }
        let value = value.trim_ascii();
        let value = value
            .strip_prefix(b"<")
            .and_then(|v| v.strip_suffix(b">"))
            .unwrap_or(value);
        if value.eq_ignore_ascii_case(recipient.as_bytes()) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    fn envelope(sender: &str) -> Envelope {
        Envelope {
            sender: sender.to_string(),
            recipients: vec!["bob@example.test".to_string()],
            received_at: 0,
            smtputf8: false,
            body_8bit: false,
        }
    }

    fn deliver(root: &Path, sender: &str, rcpt: &str, message: &[u8]) -> LocalOutcome {
        let (root, sender, rcpt, message) = (
            root.to_path_buf(),
            sender.to_string(),
            rcpt.to_string(),
            message.to_vec(),
        );
        LocalExecutorBuilder::default()
            .make()
            .expect("executor")
            .run(async move {
                deliver_local(&root, "mx.test", &envelope(&sender), &rcpt, &message).await
            })
    }

    #[test]
    fn finds_delivered_to() {
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
            // In the body it does not count: the scan stops at the empty line.
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
    fn prefix_is_qmail_style_and_cannot_inject() {
        assert_eq!(
            delivery_prefix("a@x.test", "b@y.test"),
            "Return-Path: <a@x.test>\nDelivered-To: b@y.test\n"
        );
        assert_eq!(
            delivery_prefix("", "b@y.test"),
            "Return-Path: <>\nDelivered-To: b@y.test\n"
        );
        assert_eq!(
            delivery_prefix("a\r\nBcc: c@z@x", "b@y"),
            "Return-Path: <aBcc: c@z@x>\nDelivered-To: b@y\n"
        );
        // qmail's VERP: the return path names this recipient.
        assert_eq!(
            delivery_prefix("list-@lists.test-@[]", "Bob+x@y.test"),
            "Return-Path: <list-Bob+x=y.test@lists.test>\nDelivered-To: Bob+x@y.test\n"
        );
        assert_eq!(
            delivery_prefix("list-@lists.test-@[]", "\"b c\"@y.test"),
            "Return-Path: <list-@lists.test>\nDelivered-To: \"b c\"@y.test\n"
        );
        assert_eq!(
            delivery_prefix("#@[]", "postmaster@y.test"),
            "Return-Path: <#@[]>\nDelivered-To: postmaster@y.test\n"
        );
    }

    #[test]
    fn delivers_with_prefix() {
        let root = tempfile::tempdir().expect("tempdir");
        let outcome = deliver(
            root.path(),
            "alice@x.test",
            "Bob@Example.TEST",
            b"Subject: hi\r\n\r\nbody\r\n",
        );
        let LocalOutcome::Delivered(path) = outcome else {
            panic!("not delivered: {outcome:?}");
        };
        assert!(path.starts_with(root.path().join("example.test/bob/Maildir/new")));
        assert_eq!(
            std::fs::read(path).expect("read"),
            b"Return-Path: <alice@x.test>\nDelivered-To: Bob@Example.TEST\nSubject: hi\n\nbody\n"
        );
    }

    #[test]
    fn loop_detection_on_and_off() {
        let root = tempfile::tempdir().expect("tempdir");
        let looping = b"Delivered-To: bob@example.test\r\nSubject: x\r\n\r\nhi\r\n";
        assert_eq!(
            deliver(root.path(), "a@x.test", "bob@example.test", looping),
            LocalOutcome::Permanent(LOOPING.to_string())
        );
        // The same message for someone else is not a loop.
        assert!(matches!(
            deliver(root.path(), "a@x.test", "carol@example.test", looping),
            LocalOutcome::Delivered(_)
        ));
    }

    #[test]
    fn bad_addresses_and_mailboxes_are_permanent() {
        let root = tempfile::tempdir().expect("tempdir");
        for rcpt in ["no-at-sign", "../etc@x.test", "@x.test"] {
            let outcome = deliver(root.path(), "a@x.test", rcpt, b"x\r\n");
            assert!(
                matches!(&outcome, LocalOutcome::Permanent(r) if r.contains("#5.1.3")),
                "{rcpt}: {outcome:?}"
            );
        }
        std::fs::create_dir_all(root.path().join("x.test/file")).expect("mkdir");
        std::fs::write(root.path().join("x.test/file/Maildir"), b"").expect("write");
        let outcome = deliver(root.path(), "a@x.test", "file@x.test", b"x\r\n");
        assert!(
            matches!(&outcome, LocalOutcome::Permanent(r) if r.contains("#5.2.1")),
            "{outcome:?}"
        );
    }

    #[test]
    fn maps_temporary_errors() {
        let io = |errno| MaildirError::Io {
            step: "write",
            path: PathBuf::from("/m"),
            source: std::io::Error::from_raw_os_error(errno),
        };
        let table = [
            (libc::EDQUOT, "#4.2.2"),
            (libc::ENOSPC, "#4.3.1"),
            (libc::EIO, "#4.3.0"),
        ];
        for (errno, code) in table {
            assert!(
                matches!(outcome_for(&io(errno)), LocalOutcome::Temporary(r) if r.ends_with(&format!("({code})"))),
                "errno {errno}"
            );
        }
    }
}
