//! The `Received:` trace header we prepend (RFC 5321 4.4) and the hop count that detects mail
//! loops (RFC 5321 6.3).

use std::fmt::Write;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::clock::{rfc5322_date, unix_seconds};

/// The `with` protocol of the trace header (RFC 3848, RFC 6531 3.7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The client said HELO.
    Smtp,
    /// The client said EHLO.
    Esmtp,
    /// EHLO and SMTPUTF8 on MAIL FROM.
    Utf8Smtp,
    /// EHLO under TLS (RFC 3848 ESMTPS).
    Esmtps,
    /// EHLO after AUTH (RFC 3848 ESMTPA).
    Esmtpa,
    /// EHLO under TLS after AUTH (RFC 3848 ESMTPSA).
    Esmtpsa,
    /// The RFC 6531 3.7.3 forms of the three above.
    Utf8Smtps,
    Utf8Smtpa,
    Utf8Smtpsa,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Esmtp => "ESMTP",
            Protocol::Utf8Smtp => "UTF8SMTP",
            Protocol::Esmtps => "ESMTPS",
            Protocol::Esmtpa => "ESMTPA",
            Protocol::Esmtpsa => "ESMTPSA",
            Protocol::Utf8Smtps => "UTF8SMTPS",
            Protocol::Utf8Smtpa => "UTF8SMTPA",
            Protocol::Utf8Smtpsa => "UTF8SMTPSA",
        }
    }

    /// The protocol name for how the client greeted and how the session is secured.
    pub fn for_session(esmtp: bool, smtputf8: bool, tls: bool, authenticated: bool) -> Protocol {
        match (esmtp, smtputf8, tls, authenticated) {
            (false, ..) => Protocol::Smtp,
            (true, false, false, false) => Protocol::Esmtp,
            (true, false, true, false) => Protocol::Esmtps,
            (true, false, false, true) => Protocol::Esmtpa,
            (true, false, true, true) => Protocol::Esmtpsa,
            (true, true, false, false) => Protocol::Utf8Smtp,
            (true, true, true, false) => Protocol::Utf8Smtps,
            (true, true, false, true) => Protocol::Utf8Smtpa,
            (true, true, true, true) => Protocol::Utf8Smtpsa,
        }
    }
}

/// What the trace header says besides the protocol: the TLS parameters and the login.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceDetails<'a> {
    pub tls: Option<&'a super::TlsInfo>,
    pub user: Option<&'a str>,
}

/// Builds the header, CRLF-terminated:
///
/// ```text
/// Received: from <helo> ([<ip>])
///     by <hostname> (ringmail) with ESMTP
///     for <rcpt>; <date>
/// ```
///
/// `for` is given only for a single recipient, so one copy cannot disclose the others (Bcc).
pub fn received_header(
    helo: &str,
    remote: IpAddr,
    hostname: &str,
    protocol: Protocol,
    single_recipient: Option<&str>,
    now: SystemTime,
) -> String {
    received_header_with(
        helo,
        remote,
        hostname,
        protocol,
        TraceDetails::default(),
        single_recipient,
        now,
    )
}

/// [`received_header`] with TLS and login comments after the protocol:
///
/// ```text
///     by <hostname> (ringmail) with ESMTPSA
///     (version=TLS1_3 cipher=TLS13_AES_256_GCM_SHA384)
///     (authenticated as <user>)
/// ```
pub fn received_header_with(
    helo: &str,
    remote: IpAddr,
    hostname: &str,
    protocol: Protocol,
    details: TraceDetails,
    single_recipient: Option<&str>,
    now: SystemTime,
) -> String {
    let mut header = String::with_capacity(160);
    // RFC 5321 4.1.3 address literal: IPv6 addresses carry the "IPv6:" tag.
    let _ = match remote {
        IpAddr::V4(ip) => write!(header, "Received: from {helo} ([{ip}])\r\n"),
        IpAddr::V6(ip) => write!(header, "Received: from {helo} ([IPv6:{ip}])\r\n"),
    };
    let _ = write!(
        header,
        "\tby {hostname} (ringmail) with {}",
        protocol.as_str()
    );
    if let Some(tls) = details.tls {
        let _ = write!(
            header,
            "\r\n\t(version={} cipher={})",
            comment_safe(&tls.version),
            comment_safe(&tls.cipher)
        );
    }
    if let Some(user) = details.user {
        let _ = write!(header, "\r\n\t(authenticated as {})", comment_safe(user));
    }
    if let Some(rcpt) = single_recipient {
        let _ = write!(header, "\r\n\tfor <{rcpt}>");
    }
    let _ = write!(header, "; {}\r\n", rfc5322_date(unix_seconds(now)));
    header
}

/// A login name inside a header comment: parentheses, backslashes and control characters
/// would end the comment or the field (RFC 5322 3.2.2), so they become `_`.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '(' | ')' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Counts `Received:` and `Delivered-To:` fields in the header section (up to the first empty
/// line) of a message. Field names are case-insensitive and may be followed by white space
/// before the colon (RFC 5322 4.5 obsolete syntax).
pub fn count_hops(message: &[u8]) -> usize {
    let mut hops = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if is_field(line, b"received") || is_field(line, b"delivered-to") {
            hops += 1;
        }
    }
    hops
}

fn is_field(line: &[u8], name: &[u8]) -> bool {
    match line.get(..name.len()) {
        Some(head) if head.eq_ignore_ascii_case(name) => line[name.len()..]
            .iter()
            .find(|&&b| b != b' ' && b != b'\t')
            .is_some_and(|&b| b == b':'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_header() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_624_291);
        let cases = [
            (
                "127.0.0.1".parse().unwrap(),
                Protocol::Esmtp,
                Some("a@b.test"),
                "Received: from c.test ([127.0.0.1])\r\n\tby mx.test (ringmail) with ESMTP\r\n\
                 \tfor <a@b.test>; Wed, 25 Nov 2026 16:31:31 +0000\r\n",
            ),
            (
                "::1".parse().unwrap(),
                Protocol::Smtp,
                None,
                "Received: from c.test ([IPv6:::1])\r\n\tby mx.test (ringmail) with SMTP; \
                 Wed, 25 Nov 2026 16:31:31 +0000\r\n",
            ),
        ];
        for (ip, proto, rcpt, want) in cases {
            let ip: IpAddr = ip;
            assert_eq!(
                received_header("c.test", ip, "mx.test", proto, rcpt, now),
                want
            );
        }
    }

    #[test]
    fn formats_tls_and_login() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_624_291);
        let tls = crate::smtp::TlsInfo {
            version: "TLS1_3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        };
        let details = TraceDetails {
            tls: Some(&tls),
            user: Some("bob(x)\r\n"),
        };
        let protocol = Protocol::for_session(true, false, true, true);
        assert_eq!(
            received_header_with(
                "c.test",
                "127.0.0.1".parse().unwrap(),
                "mx.test",
                protocol,
                details,
                None,
                now
            ),
            "Received: from c.test ([127.0.0.1])\r\n\tby mx.test (ringmail) with ESMTPSA\r\n\
             \t(version=TLS1_3 cipher=TLS13_AES_256_GCM_SHA384)\r\n\
             \t(authenticated as bob_x___); Wed, 25 Nov 2026 16:31:31 +0000\r\n"
        );
        let names: Vec<&str> = [
            (false, true, true, true),
            (true, false, false, false),
            (true, false, true, false),
            (true, false, false, true),
            (true, true, true, true),
        ]
        .iter()
        .map(|&(e, u, t, a)| Protocol::for_session(e, u, t, a).as_str())
        .collect();
        assert_eq!(names, ["SMTP", "ESMTP", "ESMTPS", "ESMTPA", "UTF8SMTPSA"]);
    }

    #[test]
    fn counts_hops_in_header_only() {
        let cases: &[(&[u8], usize)] = &[
            (b"", 0),
            (b"Subject: x\r\n\r\nReceived: in body\r\n", 0),
            (
                b"Received: a\r\n\tcontinued\r\nRECEIVED : b\r\nDelivered-To: c\r\n\r\n",
                3,
            ),
            (b"Received-SPF: pass\r\nX-Received: a\r\n\r\n", 0),
            (b"Received: a\nreceived:b\n\nReceived: c\n", 2),
        ];
        for (message, hops) in cases {
            assert_eq!(
                count_hops(message),
                *hops,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }
}
