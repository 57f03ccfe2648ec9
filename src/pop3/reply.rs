//! Every POP3 reply ringmail sends, as data: status, optional RFC 2449 §8 response code, text.
//!
//! Response codes in use: `[IN-USE]` (RFC 2449 §8.1.2), `[LOGIN-DELAY]` is not used,
//! `[SYS/TEMP]`, `[SYS/PERM]` (RFC 3206 §4) and `[AUTH]` (RFC 3206 §5).

use std::borrow::Cow;

/// One status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `+OK` or `-ERR`.
    pub ok: bool,
    /// An RFC 2449 response code, written in brackets after the status.
    pub code: Option<&'static str>,
    /// Human-readable text.
    pub text: Cow<'static, str>,
}

impl Reply {
    const fn ok(text: &'static str) -> Self {
        Reply {
            ok: true,
            code: None,
            text: Cow::Borrowed(text),
        }
    }

    const fn err(code: Option<&'static str>, text: &'static str) -> Self {
        Reply {
            ok: false,
            code,
            text: Cow::Borrowed(text),
        }
    }

    /// The reply as sent, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(self.text.len() + 16);
        s.push_str(if self.ok { "+OK" } else { "-ERR" });
        if let Some(code) = self.code {
            s.push_str(" [");
            s.push_str(code);
            s.push(']');
        }
        if !self.text.is_empty() {
            s.push(' ');
            s.push_str(&self.text);
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

fn ok_owned(text: String) -> Reply {
    Reply {
        ok: true,
        code: None,
        text: Cow::Owned(text),
    }
}

/// The greeting (RFC 1939 §4), with the APOP timestamp (§7) only when APOP can succeed: a
/// timestamp tells clients to try APOP, which is pointless with no secrets configured.
pub fn greeting(timestamp: Option<&str>) -> Reply {
    match timestamp {
        Some(ts) => ok_owned(format!("ringmail POP3 server ready {ts}")),
        None => ok_owned("ringmail POP3 server ready".to_string()),
    }
}
pub const OK: Reply = Reply::ok("");
pub const USER_OK: Reply = Reply::ok("send PASS");
pub const NOOP: Reply = Reply::ok("");
pub const BYE: Reply = Reply::ok("ringmail POP3 server signing off");
pub const CAPA: Reply = Reply::ok("capability list follows");
pub const STLS_OK: Reply = Reply::ok("begin TLS negotiation");
pub const AUTH_LIST: Reply = Reply::ok("SASL mechanisms follow");
pub const LIST_FOLLOWS: Reply = Reply::ok("scan listing follows");
pub const UIDL_FOLLOWS: Reply = Reply::ok("unique-id listing follows");
pub const TOP_FOLLOWS: Reply = Reply::ok("top of message follows");

pub fn maildrop(count: usize, octets: u64) -> Reply {
    ok_owned(format!("maildrop has {count} messages ({octets} octets)"))
}
pub fn stat(count: usize, octets: u64) -> Reply {
    ok_owned(format!("{count} {octets}"))
}
pub fn scan_line(n: usize, size: u64) -> Reply {
    ok_owned(format!("{n} {size}"))
}
pub fn retr(size: u64) -> Reply {
    ok_owned(format!("{size} octets"))
}
pub fn deleted(n: usize) -> Reply {
    ok_owned(format!("message {n} deleted"))
}
pub fn signing_off(left: usize) -> Reply {
    ok_owned(format!(
        "ringmail POP3 server signing off ({left} messages left)"
    ))
}

pub const UNKNOWN_COMMAND: Reply = Reply::err(None, "unknown command");
pub const SYNTAX: Reply = Reply::err(None, "syntax error in arguments");
pub const LINE_TOO_LONG: Reply = Reply::err(None, "line too long");
pub const BAD_STATE: Reply = Reply::err(None, "command not valid in this state");
pub const PASS_WITHOUT_USER: Reply = Reply::err(None, "USER first");
pub const NO_SUCH_MESSAGE: Reply = Reply::err(None, "no such message");
pub const ALREADY_DELETED: Reply = Reply::err(None, "message already deleted");
pub const TOO_MANY_ERRORS: Reply = Reply::err(None, "too many errors, closing connection");
/// RFC 1939 §3: the autologout timer expired; the session does not enter UPDATE.
pub const IDLE_TIMEOUT: Reply = Reply::err(None, "autologout: idle for too long");
/// RFC 3206 §5 / RFC 2449: the same text whether the user exists or the password is wrong.
pub const AUTH_FAILED: Reply = Reply::err(Some("AUTH"), "authentication failed");
pub const AUTH_CANCELLED: Reply = Reply::err(None, "authentication cancelled");
pub const AUTH_BAD_RESPONSE: Reply = Reply::err(None, "malformed SASL response");
pub const AUTH_MECHANISM: Reply = Reply::err(None, "unsupported SASL mechanism");
pub const PLAINTEXT_REFUSED: Reply = Reply::err(
    Some("AUTH"),
    "plaintext authentication disallowed on this connection without TLS (use STLS)",
);
pub const AUTH_TEMP: Reply = Reply::err(Some("SYS/TEMP"), "authentication temporarily unavailable");
pub const IN_USE: Reply = Reply::err(Some("IN-USE"), "mailbox is locked by another POP3 session");
pub const MAILBOX_UNAVAILABLE: Reply =
    Reply::err(Some("SYS/TEMP"), "mailbox temporarily unavailable");
pub const MESSAGE_UNAVAILABLE: Reply =
    Reply::err(Some("SYS/TEMP"), "message temporarily unavailable");
pub const COMMIT_FAILED: Reply =
    Reply::err(Some("SYS/TEMP"), "some deleted messages were not removed");
pub const APOP_UNAVAILABLE: Reply = Reply::err(None, "APOP not available");
pub const STLS_UNAVAILABLE: Reply = Reply::err(None, "STLS not available");
pub const TLS_ACTIVE: Reply = Reply::err(None, "TLS already active");
/// CVE-2011-0411: commands pipelined behind STLS would be read as if they came over TLS.
pub const STLS_PIPELINED: Reply = Reply::err(
    Some("SYS/PERM"),
    "STLS must be the last command in a pipeline",
);

/// The RFC 2449 CAPA listing body (without the status line and terminator).
pub fn capa_lines(
    offer_plaintext_auth: bool,
    offer_stls: bool,
    login_delay: Option<u32>,
) -> Vec<String> {
    let mut lines = vec!["TOP".to_string(), "UIDL".to_string()];
    if offer_plaintext_auth {
        lines.push("USER".to_string());
        lines.push("SASL PLAIN".to_string());
    }
    lines.push("RESP-CODES".to_string());
    lines.push("AUTH-RESP-CODE".to_string());
    lines.push("PIPELINING".to_string());
    if let Some(delay) = login_delay {
        lines.push(format!("LOGIN-DELAY {delay}"));
    }
    if offer_stls {
        lines.push("STLS".to_string());
    }
    lines.push("IMPLEMENTATION ringmail".to_string());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_replies() {
        let cases: &[(Reply, &str)] = &[
            (OK, "+OK\r\n"),
            (
                IN_USE,
                "-ERR [IN-USE] mailbox is locked by another POP3 session\r\n",
            ),
            (stat(2, 320), "+OK 2 320\r\n"),
            (UNKNOWN_COMMAND, "-ERR unknown command\r\n"),
        ];
        for (reply, want) in cases {
            assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), *want);
        }
    }
}
