//! What a server's EHLO reply advertises (RFC 5321 §4.1.1.1: one extension keyword per line
//! after the first, keywords case-insensitive).

use super::reply::Reply;

/// The extensions the client uses; everything else is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: `Some(0)` means SIZE without a fixed limit.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                // A SIZE whose argument is not a number is treated as "no fixed limit".
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::client::reply::parse_reply;

    #[test]
    fn parses_keywords() {
        let wire = b"250-mx.example hello\r\n250-pipelining\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
                     250-SMTPUTF8\r\n250-STARTTLS\r\n250-AUTH PLAIN\r\n250 ENHANCEDSTATUSCODES\r\n";
        let (reply, _) = parse_reply(wire).unwrap();
        let caps = Capabilities::from_ehlo(&reply);
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                size: Some(1000),
                eightbitmime: true,
                smtputf8: true,
                starttls: true,
                enhanced_status_codes: true,
            }
        );
        let (reply, _) = parse_reply(b"250-mx\r\n250 SIZE\r\n").unwrap();
        assert_eq!(Capabilities::from_ehlo(&reply).size, Some(0));
        // The greeting line is the server's name, never a keyword.
        let (reply, _) = parse_reply(b"250 PIPELINING\r\n").unwrap();
        assert!(!Capabilities::from_ehlo(&reply).pipelining);
    }
}
