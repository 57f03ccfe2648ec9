//! The injection socket's wire format, sans-IO: the request head (envelope and size), and the
//! one-line reply. The module header of `inject` documents the conversation.

use std::fmt;

/// The first line of every request: the protocol and its version.
pub const MAGIC: &str = "ringmail-inject 1";

/// The longest request head (every line up to and including the blank line). A head is an
/// envelope: 1,000 recipients of 256 octets fit.
pub const MAX_HEAD: usize = 300 * 1024;

/// The envelope and size of one message to inject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// The envelope sender; `""` is the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    /// The message's size in octets; exactly that many follow the head.
    pub size: u64,
}

/// Why a request head is not one. The client is at fault in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not `ringmail-inject 1` first: another program, or another version.
    NotThisProtocol,
    /// No blank line within [`MAX_HEAD`] octets.
    TooLong,
    /// A line we do not understand (the text names it).
    BadLine(String),
    /// No `size`, no `sender`, or no recipient.
    Missing(&'static str),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::NotThisProtocol => write!(f, "not a `{MAGIC}` request"),
            HeadError::TooLong => write!(f, "request head longer than {MAX_HEAD} octets"),
            HeadError::BadLine(line) => write!(f, "bad request line `{line}`"),
            HeadError::Missing(what) => write!(f, "request without {what}"),
        }
    }
}

impl std::error::Error for HeadError {}

/// The head's bytes, ready to send before the message.
pub fn format_head(head: &Head) -> Vec<u8> {
    let mut out = format!("{MAGIC}\nsender {}\n", head.sender);
    for rcpt in &head.recipients {
        out.push_str(&format!("recipient {rcpt}\n"));
    }
    out.push_str(&format!("size {}\n\n", head.size));
    out.into_bytes()
}

/// Parses a head from the start of `input`: `Ok(None)` until its blank line has arrived, then
/// the head and the number of octets it took.
pub fn parse_head(input: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let Some(end) = input.windows(2).position(|w| w == b"\n\n") else {
        return if input.len() > MAX_HEAD {
            Err(HeadError::TooLong)
        } else {
            Ok(None)
        };
    };
    if end + 2 > MAX_HEAD {
        return Err(HeadError::TooLong);
    }
    let text = std::str::from_utf8(&input[..end])
        .map_err(|_| HeadError::BadLine("(not UTF-8)".to_string()))?;
    let mut lines = text.split('\n');
    if lines.next() != Some(MAGIC) {
        return Err(HeadError::NotThisProtocol);
    }
    let mut sender = None;
    let mut recipients = Vec::new();
    let mut size = None;
    for line in lines {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "sender" if sender.is_none() => sender = Some(value.to_string()),
            "recipient" if !value.is_empty() => recipients.push(value.to_string()),
            "size" if size.is_none() => {
                size = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| HeadError::BadLine(shown(line)))?,
                )
            }
            _ => return Err(HeadError::BadLine(shown(line))),
        }
    }
    let head = Head {
        sender: sender.ok_or(HeadError::Missing("a sender line"))?,
        size: size.ok_or(HeadError::Missing("a size line"))?,
        recipients,
    };
    if head.recipients.is_empty() {
        return Err(HeadError::Missing("recipients"));
    }
    Ok(Some((head, end + 2)))
}

/// A line as it may be echoed back: at most 80 characters, control characters flattened.
fn shown(line: &str) -> String {
    line.chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// How an injection ended, as the server says it; each kind maps to one sysexits code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Durable in the queue; the text is the queue id.
    Queued,
    /// Try again later (queue write failed, server busy or stopping): EX_TEMPFAIL (75).
    TempFail,
    /// A recipient that does not exist here: EX_NOUSER (67).
    NoUser,
    /// The message or an address is malformed, too big or looping: EX_DATAERR (65).
    DataErr,
    /// This user may not send as that sender (`inject.sender_check`): EX_NOPERM (77).
    NoPerm,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Queued => "ok",
            Outcome::TempFail => "tempfail",
            Outcome::NoUser => "nouser",
            Outcome::DataErr => "dataerr",
            Outcome::NoPerm => "noperm",
        }
    }

    /// The sysexits(3) code a sendmail-compatible command exits with.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Queued => 0,
            Outcome::TempFail => 75,
            Outcome::NoUser => 67,
            Outcome::DataErr => 65,
            Outcome::NoPerm => 77,
        }
    }
}

/// The server's one-line answer: `ok QUEUE-ID`, or `KIND TEXT` for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub outcome: Outcome,
    pub text: String,
}

impl Reply {
    pub fn new(outcome: Outcome, text: impl Into<String>) -> Reply {
        Reply {
            outcome,
            text: text.into(),
        }
    }

    /// The line on the wire (control characters in the text flattened: one line stays one).
    pub fn encode(&self) -> String {
        format!("{} {}\n", self.outcome.word(), shown_all(&self.text))
    }

    /// Reads a reply back; `None` when it is not one.
    pub fn decode(text: &str) -> Option<Reply> {
        let line = text.lines().next()?;
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let outcome = [
            Outcome::Queued,
            Outcome::TempFail,
            Outcome::NoUser,
            Outcome::DataErr,
            Outcome::NoPerm,
        ]
        .into_iter()
        .find(|o| o.word() == word)?;
        Some(Reply::new(outcome, rest))
    }
}

fn shown_all(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip() {
        let head = Head {
            sender: "alice@example.test".into(),
            recipients: vec!["bob@example.test".into(), "\"b c\"@x.test".into()],
            size: 42,
        };
        let mut wire = format_head(&head);
        let head_len = wire.len();
        wire.extend_from_slice(b"message bytes");
        assert_eq!(parse_head(&wire), Ok(Some((head, head_len))));
        // The null sender.
        let null = Head {
            sender: String::new(),
            recipients: vec!["a@b".into()],
            size: 0,
        };
        let wire = format_head(&null);
        assert_eq!(parse_head(&wire).unwrap().unwrap().0, null);
    }

    #[test]
    fn partial_and_bad_heads() {
        assert_eq!(parse_head(b"ringmail-inject 1\nsender a@b\n"), Ok(None));
        assert_eq!(
            parse_head(b"EHLO x\r\n\n\n"),
            Err(HeadError::NotThisProtocol)
        );
        let cases: &[(&[u8], HeadError)] = &[
            (
                b"ringmail-inject 1\nsender a@b\nsize 1\n\n",
                HeadError::Missing("recipients"),
            ),
            (
                b"ringmail-inject 1\nrecipient a@b\nsize 1\n\n",
                HeadError::Missing("a sender line"),
            ),
            (
                b"ringmail-inject 1\nsender a@b\nrecipient a@b\n\n",
                HeadError::Missing("a size line"),
            ),
            (
                b"ringmail-inject 1\nsender a@b\nrecipient a@b\nsize -1\n\n",
                HeadError::BadLine("size -1".into()),
            ),
            (
                b"ringmail-inject 1\nsender a@b\nsender c@d\nrecipient a@b\nsize 1\n\n",
                HeadError::BadLine("sender c@d".into()),
            ),
            (
                b"ringmail-inject 1\nsender a@b\nrecipient a@b\nhack\x01\nsize 1\n\n",
                HeadError::BadLine("hack ".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_head(input).as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let long = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse_head(&long), Err(HeadError::TooLong));
    }

    #[test]
    fn replies_round_trip_and_stay_one_line() {
        for (reply, wire) in [
            (Reply::new(Outcome::Queued, "1a.0.3"), "ok 1a.0.3\n"),
            (
                Reply::new(Outcome::NoUser, "550 no such user\r\nok x"),
                "nouser 550 no such user  ok x\n",
            ),
        ] {
            assert_eq!(reply.encode(), wire);
            assert_eq!(Reply::decode(wire).map(|r| r.outcome), Some(reply.outcome));
        }
        assert_eq!(Reply::decode("220 smtp\r\n"), None);
        assert_eq!(Reply::decode(""), None);
        assert_eq!(Outcome::TempFail.exit_code(), 75);
    }
}
