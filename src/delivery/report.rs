//! What a transport (local or remote) reports for each recipient it tried: the plain data that
//! the scheduler records in the queue and that a bounce (RFC 3464 DSN) is written from.

use std::fmt;

/// How one recipient's delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientReport {
    pub status: DeliveryStatus,
    pub detail: Detail,
}

/// The three ends of an attempt (RFC 3464 `Action:` delivered / delayed / failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The recipient has the message (a Maildir, or a remote server's 250).
    Delivered,
    /// Try again later. `counts` is false when nothing was really tried (every host of the
    /// destination is in its downed-host backoff): the retry schedule does not advance.
    Deferred { counts: bool },
    /// Will never work: bounce it.
    Failed,
}

/// Why, in words for the log and for a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// RFC 3463 status, e.g. `5.1.1` (`Status:` in the DSN).
    pub code: StatusCode,
    /// One line for humans, qmail-style, e.g. `Sorry, no mailbox here by that name. (#5.1.1)`.
    pub text: String,
    /// The remote server, as `name [ip]` (`Remote-MTA:`); `None` for local delivery.
    pub remote_mta: Option<String>,
    /// The remote's reply, all lines joined with spaces, e.g. `550 5.1.1 <x@y>: no such user`
    /// (`Diagnostic-Code: smtp; ...`); `None` when no server answered.
    pub diagnostic: Option<String>,
    /// Our own last word after the rest, e.g. why we gave up (qmail's "I'm not going to try
    /// again; this message has been in the queue too long.").
    pub note: Option<String>,
}

impl Detail {
    /// A detail with no remote involved.
    pub fn local(code: StatusCode, text: impl Into<String>) -> Detail {
        Detail {
            code,
            text: text.into(),
            remote_mta: None,
            diagnostic: None,
            note: None,
        }
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.remote_mta, &self.diagnostic) {
            (Some(mta), Some(reply)) => write!(f, "{mta} said: {reply}")?,
            (Some(mta), None) => write!(f, "{mta}: {}", self.text)?,
            _ => f.write_str(&self.text)?,
        }
        match &self.note {
            Some(note) => write!(f, " {note}"),
            None => Ok(()),
        }
    }
}

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(pub u8, pub u16, pub u16);

impl StatusCode {
    /// Finds the last `(#c.s.d)` qmail-style code in `text`, or `None`.
    pub fn from_qmail_text(text: &str) -> Option<StatusCode> {
        let start = text.rfind("(#")? + 2;
        let end = start + text[start..].find(')')?;
        text[start..end].parse().ok()
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl std::str::FromStr for StatusCode {
    type Err = ();

    fn from_str(s: &str) -> Result<StatusCode, ()> {
        let mut parts = s.split('.');
        let (Some(c), Some(sub), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(());
        };
        let class: u8 = c.parse().map_err(|_| ())?;
        if ![2, 4, 5].contains(&class) || sub.len() > 3 || d.len() > 3 {
            return Err(());
        }
        Ok(StatusCode(
            class,
            sub.parse().map_err(|_| ())?,
            d.parse().map_err(|_| ())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_parse_and_print() {
        assert_eq!("5.1.1".parse(), Ok(StatusCode(5, 1, 1)));
        assert_eq!("4.4.7".parse::<StatusCode>().unwrap().to_string(), "4.4.7");
        for bad in ["", "5.1", "3.1.1", "5.1.1.1", "5.x.1", "5.1234.1"] {
            assert!(bad.parse::<StatusCode>().is_err(), "{bad}");
        }
        assert_eq!(
            StatusCode::from_qmail_text("This message is looping. (#5.4.6)"),
            Some(StatusCode(5, 4, 6))
        );
        assert_eq!(StatusCode::from_qmail_text("no code"), None);
    }
}
