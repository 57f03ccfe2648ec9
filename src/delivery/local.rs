//! What every local delivery shares: its outcome, the header lines it adds, the loop rule, and
//! how a Maildir error reads. The delivery itself (instructions, extensions, each kind of line)
//! is `crate::local`.
//!
//! Follows qmail-local: the delivered copy starts with `Return-Path:` (RFC 5321 §4.4, added at
//! final delivery) and `Delivered-To:`, and a message that already carries our `Delivered-To:`
//! line for this recipient is looping and fails for good (qmail's #5.4.6).

use crate::delivery::maildir::MaildirError;
use crate::relay::verp::verp_sender;

/// How one local delivery ended. The strings are reasons for the log and, when permanent, for
/// the bounce: one line, ending in an enhanced status code (RFC 3463) as qmail writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOutcome {
    /// Written and durable; what was done (the Maildir file's path, the mbox, "program", ...).
    Delivered(String),
    /// Try again later (full disk, quota, I/O error, ...).
    Temporary(String),
    /// Will never work: bounce it.
    Permanent(String),
}

/// The reason given for a looping message, qmail-local's wording.
pub const LOOPING: &str = "This message is looping: it already has my Delivered-To line. (#5.4.6)";

/// A failed Maildir write as an outcome: permanent when the path can never work, else
/// temporary with the kind of trouble. The full error names paths; it goes to the log, while
/// the outcome (which may end up in a bounce to a stranger) only says what kind it was.
pub fn maildir_outcome(e: &MaildirError) -> LocalOutcome {
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

/// Whether the message's header section already has `Delivered-To: <recipient>` (read with
/// mail-parser, folded fields included: see `local::loops`).
pub fn has_delivered_to(message: &[u8], recipient: &str) -> bool {
    crate::local::loops::has_delivered_to(message, recipient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
                matches!(maildir_outcome(&io(errno)), LocalOutcome::Temporary(r) if r.ends_with(&format!("({code})"))),
                "errno {errno}"
            );
        }
    }
}
