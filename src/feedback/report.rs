//! Parsing an ARF report (RFC 5965 §2): a `multipart/report; report-type=feedback-report`
//! whose second part is the machine-readable `message/feedback-report` and whose third is the
//! original message (`message/rfc822`) or its header (`text/rfc822-headers`).
//!
//! The complaining recipient is `Original-Rcpt-To` (§3.2, optional), else the original
//! message's `To:` (what most feedback loops leave unredacted). The sending domain is the
//! original message's From: domain, else `Original-Mail-From`'s, else `Reported-Domain`.

use mail_parser::{MessageParser, MimeHeaders};

/// What one report says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// `abuse`, `fraud`, `other`, ... (`Feedback-Type`).
    pub feedback_type: String,
    /// The mailbox that complained, lowercase.
    pub recipient: String,
    /// The domain the complained-about mail was sent from, lowercase.
    pub sender_domain: Option<String>,
    pub source_ip: Option<String>,
}

/// The fields of the `message/feedback-report` part (RFC 5965 §3.1-3.3): `Name: value` lines.
fn report_field<'a>(report: &'a str, name: &str) -> Option<&'a str> {
    report.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

fn domain_of(address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Parses `message` as an ARF report.
pub fn parse_report(message: &[u8]) -> Result<Complaint, String> {
    let parsed = MessageParser::default()
        .parse(message)
        .ok_or("not a MIME message")?;
    let root = parsed.root_part();
    let is_report = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"))
    });
    if !is_report {
        return Err("not multipart/report; report-type=feedback-report".into());
    }
    let mut report = None;
    let mut original_to = None;
    let mut original_from = None;
    for part in parsed.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (ctype, subtype) = (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        );
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "feedback-report") => {
                report = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            ("message", "rfc822") | ("text", "rfc822-headers") => {
                let original = match part.message() {
                    Some(m) => m.clone(),
                    None => match MessageParser::default().parse_headers(part.contents()) {
                        Some(m) => m,
                        None => continue,
                    },
                };
                original_to = original
                    .to()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .map(str::to_ascii_lowercase);
                original_from = original
                    .from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .and_then(domain_of);
            }
            _ => {}
        }
    }
    let report = report.ok_or("no message/feedback-report part")?;
    let feedback_type = report_field(&report, "Feedback-Type")
        .ok_or("the report has no Feedback-Type")?
        .to_ascii_lowercase();
    let recipient = report_field(&report, "Original-Rcpt-To")
        .map(|r| {
            r.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_ascii_lowercase()
        })
        .or(original_to)
        .ok_or("neither Original-Rcpt-To nor the original message's To: names the recipient")?;
    let sender_domain = original_from
        .or_else(|| report_field(&report, "Original-Mail-From").and_then(domain_of))
        .or_else(|| report_field(&report, "Reported-Domain").map(|d| d.to_ascii_lowercase()));
    Ok(Complaint {
        feedback_type,
        recipient,
        sender_domain,
        source_ip: report_field(&report, "Source-IP").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 5965 Appendix B.1 (folded lines start with a tab here).
    pub const RFC5965_EXAMPLE: &str = "From: <abusedesk@example.com>\r\n\
Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n\
Subject: FW: Earn money\r\n\
To: <abuse@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report;\r\n\
\tboundary=\"part1_13d.2e68ed54_boundary\"\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
This is an email abuse report for an email message received from IP\r\n\
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <somespammer@example.net>\r\n\
Original-Rcpt-To: <user@example.com>\r\n\
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n\
Reporting-MTA: dns; mail.example.com\r\n\
Source-IP: 192.0.2.1\r\n\
Authentication-Results: mail.example.com;\r\n\
\tspf=fail smtp.mail=somespammer@example.com\r\n\
Reported-Domain: example.net\r\n\
Reported-Uri: http://example.net/earn_money.html\r\n\
Reported-Uri: mailto:user@example.com\r\n\
Removal-Recipient: user@example.com\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: inline\r\n\
\r\n\
From: <somespammer@example.net>\r\n\
Received: from mailserver.example.net (mailserver.example.net\r\n\
\t[192.0.2.1]) by example.com with ESMTP id M63d4137594e46;\r\n\
\tThu, 08 Mar 2005 14:00:00 -0400\r\n\
To: <Undisclosed Recipients>\r\n\
Subject: Earn money\r\n\
MIME-Version: 1.0\r\n\
Content-type: text/plain\r\n\
Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net\r\n\
Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n\
\r\n\
Spam Spam Spam\r\n\
Spam Spam Spam\r\n\
--part1_13d.2e68ed54_boundary--\r\n";

    #[test]
    fn the_rfc_example_names_its_recipient_and_domain() {
        let c = parse_report(RFC5965_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.recipient, "user@example.com");
        assert_eq!(c.sender_domain.as_deref(), Some("example.net"));
        assert_eq!(c.source_ip.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn without_original_rcpt_to_the_original_to_is_used() {
        let text = RFC5965_EXAMPLE
            .replace("Original-Rcpt-To: <user@example.com>\r\n", "")
            .replace("To: <Undisclosed Recipients>", "To: Bob <Bob@Example.org>");
        let c = parse_report(text.as_bytes()).unwrap();
        assert_eq!(c.recipient, "bob@example.org");
    }

    #[test]
    fn other_mail_is_not_a_report() {
        assert!(parse_report(b"From: a@b.c\r\nSubject: hi\r\n\r\nhello\r\n").is_err());
        let no_type = RFC5965_EXAMPLE.replace("Feedback-Type: abuse\r\n", "");
        assert!(parse_report(no_type.as_bytes()).is_err());
    }
}
