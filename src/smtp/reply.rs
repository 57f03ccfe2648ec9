//! Every reply the SMTP server sends, as data: code, enhanced status code (RFC 3463), text.
//!
//! Enhanced codes are sent on every reply except the greeting, the HELO/EHLO replies and 354, as
//! RFC 2034 section 3 requires once ENHANCEDSTATUSCODES is advertised; sending them after HELO
//! too is harmless and keeps one code path.

use std::borrow::Cow;
use std::io::Write;

/// One SMTP reply. A `text` containing `\n` is sent as a multi-line reply (`250-...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub text: Cow<'static, str>,
}

impl Reply {
    const fn fixed(code: u16, enhanced: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Borrowed(text),
        }
    }

    fn owned(code: u16, enhanced: &'static str, text: String) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Owned(text),
        }
    }

    /// Appends the reply in wire form, each line ending in CRLF (RFC 5321 4.2.1).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            // Writing into a Vec cannot fail.
            let _ = match self.enhanced {
                Some(enhanced) => write!(out, "{}{sep}{enhanced} {line}\r\n", self.code),
                None => write!(out, "{}{sep}{line}\r\n", self.code),
            };
        }
    }

    /// The reply as a string, for logs and tests.
    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Text that came from elsewhere (a policy, the queue) must not break the reply framing.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub fn greeting(host: &str) -> Reply {
    Reply {
        code: 220,
        enhanced: None,
        text: Cow::Owned(format!("{host} ESMTP ringmail")),
    }
}

/// The EHLO reply with our extensions, one per line (RFC 5321 4.1.1.1).
pub fn ehlo(host: &str, max_size: usize) -> Reply {
    Reply {
        code: 250,
        enhanced: None,
        text: Cow::Owned(format!(
            "{host}\nPIPELINING\nSIZE {max_size}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nCHUNKING"
        )),
    }
}

pub fn helo(host: &str) -> Reply {
    Reply {
        code: 250,
        enhanced: None,
        text: Cow::Owned(host.to_string()),
    }
}

pub const OK: Reply = Reply::fixed(250, "2.0.0", "Ok");
pub const SENDER_OK: Reply = Reply::fixed(250, "2.1.0", "Ok");
pub const RECIPIENT_OK: Reply = Reply::fixed(250, "2.1.5", "Ok");
/// RFC 3463 has no class 3, so the intermediate reply carries no enhanced code.
pub const START_DATA: Reply = Reply {
    code: 354,
    enhanced: None,
    text: Cow::Borrowed("End data with <CR><LF>.<CR><LF>"),
};
pub const BYE: Reply = Reply::fixed(221, "2.0.0", "Bye");
pub const VRFY: Reply = Reply::fixed(
    252,
    "2.5.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub const EXPN: Reply = Reply::fixed(502, "5.5.1", "Error: EXPN not available");
pub const HELP: Reply = Reply::fixed(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY",
);

pub fn queued(id: &str) -> Reply {
    Reply::owned(250, "2.0.0", format!("Ok: queued as {}", clean(id)))
}

pub fn queue_failed(reason: &str) -> Reply {
    Reply::owned(
        451,
        "4.3.0",
        format!("Error: queue file write error: {}", clean(reason)),
    )
}

/// RFC 3030 section 2: each non-final BDAT chunk gets its own reply.
pub fn chunk_received(size: u64) -> Reply {
    Reply::owned(250, "2.0.0", format!("{size} octets received"))
}

// Sequence errors (RFC 5321 4.3.2).
pub const NEED_HELO: Reply = Reply::fixed(503, "5.5.1", "Error: send HELO/EHLO first");
pub const NEED_MAIL: Reply = Reply::fixed(503, "5.5.1", "Error: need MAIL command");
pub const NESTED_MAIL: Reply = Reply::fixed(503, "5.5.1", "Error: nested MAIL command");
pub const NEED_RCPT: Reply = Reply::fixed(503, "5.5.1", "Error: need RCPT command");
pub const DATA_AFTER_BDAT: Reply = Reply::fixed(
    503,
    "5.5.1",
    "Error: DATA and BDAT cannot be mixed in one transaction",
);
pub const RCPT_AFTER_BDAT: Reply = Reply::fixed(503, "5.5.1", "Error: RCPT not allowed after BDAT");

// Syntax errors.
pub const UNKNOWN_COMMAND: Reply = Reply::fixed(500, "5.5.2", "Error: command not recognized");
pub const LINE_TOO_LONG: Reply = Reply::fixed(500, "5.5.2", "Error: line too long");
pub const NUL_IN_COMMAND: Reply = Reply::fixed(500, "5.5.2", "Error: NUL character in command");
pub const BAD_SENDER: Reply = Reply::fixed(501, "5.1.7", "Error: bad sender address syntax");
pub const BAD_RECIPIENT: Reply = Reply::fixed(501, "5.1.3", "Error: bad recipient address syntax");
pub const UNSUPPORTED_PARAMETER: Reply = Reply::fixed(555, "5.5.4", "Error: unsupported parameter");
pub const NEEDS_SMTPUTF8: Reply = Reply::fixed(
    553,
    "5.6.7",
    "Error: non-ASCII address requires SMTPUTF8 (RFC 6531)",
);

pub fn syntax(usage: &'static str) -> Reply {
    Reply::owned(501, "5.5.4", format!("Syntax: {usage}"))
}

// Limits.
pub const MESSAGE_TOO_BIG: Reply =
    Reply::fixed(552, "5.3.4", "Error: message size exceeds fixed limit");
pub const TOO_MANY_RECIPIENTS: Reply = Reply::fixed(452, "4.5.3", "Error: too many recipients");
pub const BARE_LINE_ENDING: Reply = Reply::fixed(
    554,
    "5.6.11",
    "Error: bare CR or LF in message (SMTP smuggling protection)",
);
pub const LONG_LINE: Reply = Reply::fixed(
    550,
    "5.6.0",
    "Error: message contains a line longer than 998 characters",
);
pub const TOO_MANY_HOPS: Reply = Reply::fixed(554, "5.4.6", "Error: too many hops");

// Recipient policy.
pub fn unknown_user(address: &str) -> Reply {
    Reply::owned(
        550,
        "5.1.1",
        format!(
            "<{}>: Recipient address rejected: User unknown",
            clean(address)
        ),
    )
}

pub fn relay_denied(address: &str) -> Reply {
    Reply::owned(
        554,
        "5.7.1",
        format!("<{}>: Relay access denied", clean(address)),
    )
}

/// Percent hack, bang path or quoted `@` (RFC 5321 §3.6.1 leaves them to us: we refuse them).
pub fn unroutable_address(address: &str) -> Reply {
    Reply::owned(
        553,
        "5.1.3",
        format!(
            "<{}>: Recipient address rejected: routing in the local part is not supported",
            clean(address)
        ),
    )
}

/// An address literal or a domain the route step refuses: accepting it would only bounce.
pub fn unroutable_destination(address: &str) -> Reply {
    Reply::owned(
        553,
        "5.1.2",
        format!(
            "<{}>: Recipient address rejected: domain not deliverable",
            clean(address)
        ),
    )
}

pub fn temp_fail(reason: &str) -> Reply {
    Reply::owned(451, "4.3.0", clean(reason))
}

// Closing the connection (RFC 5321 3.8: 421 may be sent at any time).
pub fn too_many_errors(host: &str) -> Reply {
    Reply::owned(421, "4.7.0", format!("{host} Error: too many errors"))
}

pub fn too_many_commands(host: &str) -> Reply {
    Reply::owned(421, "4.7.0", format!("{host} Error: too many commands"))
}

pub fn timeout(host: &str) -> Reply {
    Reply::owned(421, "4.4.2", format!("{host} Error: timeout exceeded"))
}

pub fn shutting_down(host: &str) -> Reply {
    Reply::owned(421, "4.3.2", format!("{host} Service shutting down"))
}

pub fn too_many_connections(host: &str) -> Reply {
    Reply::owned(421, "4.7.0", format!("{host} Error: too many connections"))
}

pub fn too_many_from_ip(host: &str) -> Reply {
    Reply::owned(
        421,
        "4.7.0",
        format!("{host} Error: too many connections from your IP address"),
    )
}

/// The EHLO reply with STARTTLS (RFC 3207) and AUTH (RFC 4954) added as the session allows.
pub fn ehlo_with(host: &str, max_size: usize, starttls: bool, auth: Option<&str>) -> Reply {
    let mut reply = ehlo(host, max_size);
    let text = reply.text.to_mut();
    if starttls {
        text.push_str("\nSTARTTLS");
    }
    if let Some(mechanisms) = auth {
        text.push_str("\nAUTH ");
        text.push_str(mechanisms);
    }
    reply
}

// STARTTLS (RFC 3207).
pub const READY_FOR_TLS: Reply = Reply::fixed(220, "2.0.0", "Ready to start TLS");
pub const TLS_NOT_OFFERED: Reply = Reply::fixed(502, "5.5.1", "Error: STARTTLS not available");
pub const TLS_ALREADY_ACTIVE: Reply = Reply::fixed(503, "5.5.1", "Error: TLS already active");
/// CVE-2011-0411: plaintext after STARTTLS would be read as if it came under TLS.
pub const PIPELINED_STARTTLS: Reply = Reply::fixed(
    554,
    "5.5.1",
    "Error: STARTTLS must be the last command in a pipeline",
);
pub const TRANSACTION_IN_PROGRESS: Reply =
    Reply::fixed(503, "5.5.1", "Error: MAIL transaction in progress");

// AUTH (RFC 4954).
/// An empty `text` is sent as `334 ` (RFC 4954 4: the space is required).
pub fn auth_challenge(challenge: &'static str) -> Reply {
    Reply {
        code: 334,
        enhanced: None,
        text: Cow::Borrowed(challenge),
    }
}
pub const AUTH_OK: Reply = Reply::fixed(235, "2.7.0", "Authentication successful");
/// The same reply for a wrong password, an unknown user and a rate-limited client.
pub const AUTH_FAILED: Reply = Reply::fixed(535, "5.7.8", "Error: authentication failed");
pub const AUTH_TEMP_FAILED: Reply = Reply::fixed(
    454,
    "4.7.0",
    "Temporary authentication failure, try again later",
);
pub const AUTH_NOT_OFFERED: Reply = Reply::fixed(503, "5.5.1", "Error: authentication not enabled");
pub const AUTH_NEEDS_TLS: Reply = Reply::fixed(
    538,
    "5.7.11",
    "Error: encryption required for authentication (STARTTLS first)",
);
pub const ALREADY_AUTHENTICATED: Reply = Reply::fixed(503, "5.5.1", "Error: already authenticated");
pub const UNKNOWN_MECHANISM: Reply =
    Reply::fixed(504, "5.5.4", "Error: unsupported authentication mechanism");
pub const AUTH_CANCELLED: Reply = Reply::fixed(501, "5.0.0", "Error: authentication cancelled");
pub const AUTH_BAD_BASE64: Reply =
    Reply::fixed(501, "5.5.2", "Error: cannot decode the response (base64)");
pub const AUTH_MALFORMED: Reply =
    Reply::fixed(501, "5.5.2", "Error: malformed authentication response");
/// RFC 6409 4.3 / RFC 4954 6.
pub const AUTH_REQUIRED: Reply = Reply::fixed(530, "5.7.0", "Error: authentication required");

/// Postfix's `reject_sender_login_mismatch`, with the reason in the text.
pub fn sender_not_owned(address: &str, user: &str) -> Reply {
    Reply::owned(
        553,
        "5.7.1",
        format!(
            "<{}>: Sender address rejected: not owned by user {}",
            clean(address),
            clean(user)
        ),
    )
}

// Abuse defences (crate::abuse).
/// RFC 2920 §3.1: DATA must be the last command of a group; text sent before the 354 is a
/// client that does not wait for replies (Postfix's smtpd_forbid_unauth_pipelining).
pub const TEXT_BEFORE_354: Reply = Reply::fixed(
    554,
    "5.5.0",
    "Error: SMTP protocol synchronization: message text sent before the 354 reply",
);

/// Postscreen's pregreet test: the client spoke before our 220.
pub const EARLY_TALKER: Reply = Reply::fixed(
    554,
    "5.5.1",
    "Error: protocol error: command sent before the greeting",
);

/// An access rule denies this client.
pub fn access_denied(text: &str) -> Reply {
    Reply::owned(554, "5.7.1", clean(text))
}

/// A DNS blocklist lists this client (the reply names the list, as Postfix's does).
pub fn dnsbl_listed(ip: std::net::IpAddr, zone: &str) -> Reply {
    Reply::owned(
        554,
        "5.7.1",
        format!(
            "Service unavailable; client [{ip}] blocked using {}",
            clean(zone)
        ),
    )
}

pub fn too_many_messages_from_ip(host: &str) -> Reply {
    Reply::owned(
        421,
        "4.7.0",
        format!("{host} Error: too many messages from your IP address, try again later"),
    )
}

/// DATA content arriving under `smtp.min_data_rate`.
pub fn data_too_slow(host: &str) -> Reply {
    Reply::owned(
        421,
        "4.4.2",
        format!("{host} Error: message content arriving too slowly"),
    )
}

/// `ringmail sendmail -bs`: the server refused for good a message the session had taken (its
/// own recipient or sender checks); the text is the server's reason.
pub fn commit_refused(reason: &str) -> Reply {
    Reply::owned(
        554,
        "5.7.0",
        format!("Error: message refused: {}", clean(reason)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let cases: &[(Reply, &str)] = &[
            (greeting("mx.test"), "220 mx.test ESMTP ringmail\r\n"),
            (OK, "250 2.0.0 Ok\r\n"),
            (queued("a\r\nb"), "250 2.0.0 Ok: queued as a  b\r\n"),
            (START_DATA, "354 End data with <CR><LF>.<CR><LF>\r\n"),
            (
                too_many_from_ip("mx"),
                "421 4.7.0 mx Error: too many connections from your IP address\r\n",
            ),
            (
                too_many_connections("mx"),
                "421 4.7.0 mx Error: too many connections\r\n",
            ),
            (
                ehlo("mx", 100),
                "250-mx\r\n250-PIPELINING\r\n250-SIZE 100\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
            ),
            (
                ehlo_with("mx", 100, true, Some("PLAIN LOGIN")),
                "250-mx\r\n250-PIPELINING\r\n250-SIZE 100\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
                 250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n",
            ),
            (auth_challenge(""), "334 \r\n"),
            (READY_FOR_TLS, "220 2.0.0 Ready to start TLS\r\n"),
        ];
        for (reply, wire) in cases {
            assert_eq!(reply.to_wire(), *wire);
        }
    }
}
