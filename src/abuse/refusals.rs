//! The log record of a refusal: one line per refused connection, command or message, with the
//! client's address, the command and the reply, in a fixed shape that fail2ban can match:
//!
//! ```text
//! refused smtp [192.0.2.7]: RCPT TO:<x@remote.example>: 554 5.7.1 <x@remote.example>: Relay access denied
//! refused smtp [192.0.2.7]: connect: 554 5.7.1 Service unavailable; client [192.0.2.7] blocked using zen.example
//! ```
//!
//! The command is the client's line as sent (control characters replaced, cut at
//! [`MAX_COMMAND_SHOWN`] characters) or a word for what happened outside a command: `connect`,
//! `greeting` (talking early), `DATA`/`BDAT` (the content), `timeout`.

use crate::smtp::Reply;
use std::net::IpAddr;

/// Longest command text written into a log line.
pub const MAX_COMMAND_SHOWN: usize = 120;

/// One refusal the session made: the command it answered and the reply it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub command: String,
    pub reply: Reply,
}

impl Refusal {
    /// `command` as the client sent it, made safe for one log line.
    pub fn new(command: &[u8], reply: Reply) -> Refusal {
        let command = command.strip_suffix(b"\n").unwrap_or(command);
        let command = command.strip_suffix(b"\r").unwrap_or(command);
        Refusal {
            command: shown(command),
            reply,
        }
    }
}

fn shown(command: &[u8]) -> String {
    let text = String::from_utf8_lossy(command);
    let mut out: String = text
        .chars()
        .take(MAX_COMMAND_SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_COMMAND_SHOWN {
        out.push_str("...");
    }
    out
}

/// The log line's text (the logger adds time, thread and level).
pub fn line(ip: IpAddr, command: &str, reply: &Reply) -> String {
    let wire = reply.to_wire();
    // A multi-line reply is logged as its lines joined by " / ".
    let reply = wire.trim_end().replace("\r\n", " / ");
    format!("refused smtp [{}]: {command}: {reply}", shown_ip(ip))
}

/// The client as the log shows it: an IPv4-mapped IPv6 address as plain IPv4.
pub fn shown_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Logs one refusal at info level, and counts it in /metrics (`ringmail_refused_total`).
pub fn log(ip: IpAddr, command: &str, reply: &Reply) {
    log::info!("{}", line(ip, command, reply));
    crate::metrics::refused(crate::metrics::smtp_refusal_reason(
        command,
        reply.code,
        reply.enhanced,
        &reply.text,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply;

    #[test]
    fn one_line_with_ip_command_and_reply() {
        let ip: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let r = Refusal::new(
            b"RCPT TO:<x@remote.example>\r",
            reply::relay_denied("x@remote.example"),
        );
        assert_eq!(
            line(ip, &r.command, &r.reply),
            "refused smtp [192.0.2.7]: RCPT TO:<x@remote.example>: 554 5.7.1 \
             <x@remote.example>: Relay access denied"
        );
        let long = Refusal::new(&[b'A'; 300], reply::UNKNOWN_COMMAND);
        assert_eq!(long.command.len(), MAX_COMMAND_SHOWN + 3);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(
            line(v6, "connect", &reply::OK).starts_with("refused smtp [2001:db8::1]: connect: 250")
        );
    }
}
