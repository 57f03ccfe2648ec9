//! Decisions the client makes before sending anything: a message too big for the peer's SIZE
//! (RFC 1870 §6), SMTPUTF8 needed but not offered (RFC 6531 §3.4: no downgrade), and addresses
//! that are unsafe to put on a command line.

use super::capabilities::Capabilities;
use super::outcome::{RecipientResult, Stage};
use super::reply::Reply;
use super::session::Outgoing;
use crate::delivery::report::StatusCode;

/// Fills `results` (one slot per recipient, `None` = still to send) with the local refusals.
/// Returns whether MAIL must carry the SMTPUTF8 parameter.
pub fn local_checks(
    caps: &Capabilities,
    msg: &Outgoing<'_>,
    results: &mut [Option<RecipientResult>],
) -> bool {
    let all = |results: &mut [Option<RecipientResult>], reply: Reply| {
        for slot in results.iter_mut() {
            slot.get_or_insert(refused(reply.clone()));
        }
    };
    if !safe_address(msg.sender) {
        let why = "sender address contains control characters";
        all(results, local(553, StatusCode(5, 1, 7), why));
        return false;
    }
    // SIZE 0 means "no fixed limit" (RFC 1870 §4).
    if let Some(limit) = caps.size.filter(|&n| n > 0)
        && msg.body.len() as u64 > limit
    {
        let why = format!("message too big for the server (SIZE {limit})");
        all(results, local(552, StatusCode(5, 3, 4), why));
        return false;
    }
    let sender_utf8 = !msg.sender.is_ascii();
    let any_rcpt_utf8 = msg.recipients.iter().any(|r| !r.is_ascii());
    let needs_utf8 = msg.smtputf8 || sender_utf8 || any_rcpt_utf8;
    let no_utf8 = local(
        553,
        StatusCode(5, 6, 7),
        "the message needs SMTPUTF8 but the server does not offer it",
    );
    // A UTF-8 sender or header section concerns every recipient; a UTF-8 recipient only itself.
    if needs_utf8 && !caps.smtputf8 && (msg.smtputf8 || sender_utf8) {
        all(results, no_utf8);
        return false;
    }
    for (slot, rcpt) in results.iter_mut().zip(msg.recipients) {
        if !safe_address(rcpt) {
            let why = "recipient address contains control characters";
            *slot = Some(refused(local(553, StatusCode(5, 1, 3), why)));
        } else if !rcpt.is_ascii() && !caps.smtputf8 {
            *slot = Some(refused(no_utf8.clone()));
        }
    }
    needs_utf8 && caps.smtputf8
}

/// Nothing that could end the command line early or smuggle a second command (CR, LF, NUL and
/// other controls), nor angle brackets that would end the path (RFC 5321 §4.1.2).
fn safe_address(addr: &str) -> bool {
    !addr.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

fn refused(reply: Reply) -> RecipientResult {
    RecipientResult {
        reply,
        stage: Stage::Local,
    }
}

/// A reply made here, with its enhanced code.
pub fn local(code: u16, status: StatusCode, text: impl Into<String>) -> Reply {
    Reply::new(code, Some(status), text)
}
