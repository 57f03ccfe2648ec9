//! The control protocol's wire format, sans-IO: request lines to [`ControlRequest`]s, and
//! [`Reply`]s to and from text. The module header of `control` documents the conversation.

use super::{ControlRequest, MAX_REQUEST_LINE};
use crate::queue::{BadMessageId, MessageId};
use std::fmt;

/// Why a request line is not a request. Always the client's fault; each becomes an `err` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No newline within [`MAX_REQUEST_LINE`] bytes.
    TooLong,
    /// A blank line (or nothing before EOF).
    Empty,
    /// The first word is no command we know (garbage, binary, a typo).
    UnknownCommand,
    /// `delete`/`bounce` without an id.
    MissingId(&'static str),
    /// Something after the last argument a command takes.
    ExtraArguments(&'static str),
    /// The id does not parse.
    BadId(BadMessageId),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "request line too long (limit {MAX_REQUEST_LINE} bytes)"),
            Self::Empty => f.write_str("empty request"),
            Self::UnknownCommand => f.write_str("unknown command"),
            Self::MissingId(command) => write!(f, "{command} needs a message id"),
            Self::ExtraArguments(command) => write!(f, "too many arguments for {command}"),
            Self::BadId(e) => write!(f, "bad message id: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses what a client sent: `input` is at most `MAX_REQUEST_LINE + 1` bytes read from the
/// socket. Up to the first `\n` is the request; without one, the input is the request if it fits
/// (the client half-closed after an unterminated line), and too long if it does not.
pub fn parse_request(input: &[u8]) -> Result<ControlRequest, RequestError> {
    let line = match input.iter().position(|&b| b == b'\n') {
        Some(end) => &input[..end],
        None => input,
    };
    if line.len() > MAX_REQUEST_LINE {
        return Err(RequestError::TooLong);
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Non-UTF-8 bytes can be no command; reporting them as unknown echoes nothing back.
    let line = std::str::from_utf8(line).map_err(|_| RequestError::UnknownCommand)?;
    let mut words = line.split_ascii_whitespace();
    let Some(command) = words.next() else {
        return Err(RequestError::Empty);
    };
    let command = command.to_ascii_lowercase();
    let request = match command.as_str() {
        "flush" => no_arguments("flush", ControlRequest::Flush, &mut words)?,
        "pause" => no_arguments("pause", ControlRequest::Pause, &mut words)?,
        "resume" => no_arguments("resume", ControlRequest::Resume, &mut words)?,
        "status" => no_arguments("status", ControlRequest::Status, &mut words)?,
        "delete" => ControlRequest::Delete(one_id("delete", &mut words)?),
        "bounce" => ControlRequest::Bounce(one_id("bounce", &mut words)?),
        _ => return Err(RequestError::UnknownCommand),
    };
    Ok(request)
}

fn no_arguments<'a>(
    name: &'static str,
    request: ControlRequest,
    rest: &mut impl Iterator<Item = &'a str>,
) -> Result<ControlRequest, RequestError> {
    match rest.next() {
        None => Ok(request),
        Some(_) => Err(RequestError::ExtraArguments(name)),
    }
}

fn one_id<'a>(
    name: &'static str,
    rest: &mut impl Iterator<Item = &'a str>,
) -> Result<MessageId, RequestError> {
    let id = rest.next().ok_or(RequestError::MissingId(name))?;
    if rest.next().is_some() {
        return Err(RequestError::ExtraArguments(name));
    }
    id.parse().map_err(RequestError::BadId)
}

/// The request line a client sends for `request` (with its newline).
pub fn format_request(request: &ControlRequest) -> String {
    match request {
        ControlRequest::Flush => "flush\n".into(),
        ControlRequest::Pause => "pause\n".into(),
        ControlRequest::Resume => "resume\n".into(),
        ControlRequest::Status => "status\n".into(),
        ControlRequest::Delete(id) => format!("delete {id}\n"),
        ControlRequest::Bounce(id) => format!("bounce {id}\n"),
    }
}

/// The server's answer: a status line and detail lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `ok` or `err`.
    pub ok: bool,
    /// The rest of the status line.
    pub text: String,
    /// Lines after the status line (per-shard status, what succeeded beside a failure).
    pub details: Vec<String>,
}

/// The text received is not a reply (no `ok`/`err` status line): not a ringmail control socket,
/// or a server from an incompatible version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReply(pub String);

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply from the control socket: {:?}", self.0)
    }
}

impl std::error::Error for BadReply {}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
            details: Vec::new(),
        }
    }

    pub fn err(text: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            text: text.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Reply {
        self.details = details;
        self
    }

    /// The bytes on the wire. Texts come partly from handlers, so line breaks and other control
    /// characters in them are flattened: one line must stay one line.
    pub fn encode(&self) -> String {
        let status = if self.ok { "ok" } else { "err" };
        let mut out = format!("{status} {}\n", one_line(&self.text));
        for line in &self.details {
            out.push_str(&one_line(line));
            out.push('\n');
        }
        out
    }

    /// Reads a reply back (the whole text up to EOF).
    pub fn decode(text: &str) -> Result<Reply, BadReply> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let (ok, rest) = if let Some(rest) = status_rest(first, "ok") {
            (true, rest)
        } else if let Some(rest) = status_rest(first, "err") {
            (false, rest)
        } else {
            let shown: String = first.chars().take(80).collect();
            return Err(BadReply(shown));
        };
        Ok(Reply {
            ok,
            text: rest.to_string(),
            details: lines.map(str::to_string).collect(),
        })
    }
}

/// `line` without its status word, if it starts with exactly that word.
fn status_rest<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(word)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(' ')
    }
}

/// `text` with every control character (newlines included) replaced by a space.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> MessageId {
        text.parse().expect("test id")
    }

    #[test]
    fn parses_requests() {
        let long_ok = format!("flush{}\n", " ".repeat(MAX_REQUEST_LINE - 5));
        let cases: Vec<(Vec<u8>, Result<ControlRequest, RequestError>)> = vec![
            (b"flush\n".to_vec(), Ok(ControlRequest::Flush)),
            (b"flush\r\n".to_vec(), Ok(ControlRequest::Flush)),
            (b"FLUSH\n".to_vec(), Ok(ControlRequest::Flush)),
            (b"  pause  \n".to_vec(), Ok(ControlRequest::Pause)),
            (b"resume\n".to_vec(), Ok(ControlRequest::Resume)),
            (b"status\n".to_vec(), Ok(ControlRequest::Status)),
            // Unterminated, as from `printf flush | nc -U`.
            (b"status".to_vec(), Ok(ControlRequest::Status)),
            // Only the first line counts.
            (b"pause\nflush\n".to_vec(), Ok(ControlRequest::Pause)),
            (
                b"delete 1a.0.3\n".to_vec(),
                Ok(ControlRequest::Delete(id("1a.0.3"))),
            ),
            (
                b"bounce\t1a2b.1.7\r\n".to_vec(),
                Ok(ControlRequest::Bounce(id("1a2b.1.7"))),
            ),
            (long_ok.into_bytes(), Ok(ControlRequest::Flush)),
            (b"\n".to_vec(), Err(RequestError::Empty)),
            (b"".to_vec(), Err(RequestError::Empty)),
            (b" \r\n".to_vec(), Err(RequestError::Empty)),
            (b"flus\n".to_vec(), Err(RequestError::UnknownCommand)),
            (b"EHLO x\r\n".to_vec(), Err(RequestError::UnknownCommand)),
            (
                b"\xff\xfe\x00garbage\n".to_vec(),
                Err(RequestError::UnknownCommand),
            ),
            (b"flush\xff\n".to_vec(), Err(RequestError::UnknownCommand)),
            (
                b"flush now\n".to_vec(),
                Err(RequestError::ExtraArguments("flush")),
            ),
            (b"delete\n".to_vec(), Err(RequestError::MissingId("delete"))),
            (
                b"bounce \n".to_vec(),
                Err(RequestError::MissingId("bounce")),
            ),
            (
                b"delete 1a.0.3 1a.0.4\n".to_vec(),
                Err(RequestError::ExtraArguments("delete")),
            ),
            (
                b"delete 1a.0\n".to_vec(),
                Err(RequestError::BadId(BadMessageId)),
            ),
            (
                b"bounce zz.0.1\n".to_vec(),
                Err(RequestError::BadId(BadMessageId)),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_request(&input),
                want,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn over_long_lines_are_refused() {
        // What the server reads: at most one byte past the cap, so it sees no newline.
        let capped = vec![b'a'; MAX_REQUEST_LINE + 1];
        assert_eq!(parse_request(&capped), Err(RequestError::TooLong));
        let mut long_flush = b"flush".to_vec();
        long_flush.resize(MAX_REQUEST_LINE + 1, b' ');
        assert_eq!(parse_request(&long_flush), Err(RequestError::TooLong));
        // A newline past the cap does not rescue it.
        let mut with_newline = vec![b' '; MAX_REQUEST_LINE + 1];
        with_newline.push(b'\n');
        assert_eq!(parse_request(&with_newline), Err(RequestError::TooLong));
    }

    #[test]
    fn error_texts() {
        let cases = [
            (RequestError::UnknownCommand, "unknown command"),
            (RequestError::Empty, "empty request"),
            (
                RequestError::TooLong,
                "request line too long (limit 1024 bytes)",
            ),
            (
                RequestError::MissingId("delete"),
                "delete needs a message id",
            ),
            (
                RequestError::ExtraArguments("pause"),
                "too many arguments for pause",
            ),
            (
                RequestError::BadId(BadMessageId),
                "bad message id: not a message id (expected <hex>.<shard>.<index>)",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.to_string(), want);
        }
    }

    #[test]
    fn formatted_requests_parse_back() {
        for request in [
            ControlRequest::Flush,
            ControlRequest::Pause,
            ControlRequest::Resume,
            ControlRequest::Status,
            ControlRequest::Delete(id("1a.0.3")),
            ControlRequest::Bounce(id("ffff.12.0")),
        ] {
            let line = format_request(&request);
            assert!(line.ends_with('\n'));
            assert_eq!(parse_request(line.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn replies_encode_and_decode() {
        let cases = [
            (
                Reply::ok("flushed 12 recipients"),
                "ok flushed 12 recipients\n",
            ),
            (
                Reply::err("no such message 1a.0.3"),
                "err no such message 1a.0.3\n",
            ),
            (
                Reply::ok("running, 3 recipients pending").with_details(vec![
                    "shard 0: running, 1 pending".into(),
                    "shard 1: running, 2 pending".into(),
                ]),
                "ok running, 3 recipients pending\nshard 0: running, 1 pending\n\
                 shard 1: running, 2 pending\n",
            ),
        ];
        for (reply, wire) in cases {
            assert_eq!(reply.encode(), wire);
            assert_eq!(Reply::decode(wire), Ok(reply));
        }
    }

    #[test]
    fn handler_text_cannot_break_the_framing() {
        let reply = Reply::err("disk\nerr forged\r\x00").with_details(vec!["a\nb".into()]);
        assert_eq!(reply.encode(), "err disk err forged  \na b\n");
    }

    #[test]
    fn garbage_is_not_a_reply() {
        for text in ["", "okay\n", "220 mx.test ESMTP\n", "error x\n", "\n"] {
            assert!(Reply::decode(text).is_err(), "{text:?}");
        }
        assert_eq!(Reply::decode("ok"), Ok(Reply::ok("")));
        assert_eq!(Reply::decode("err x\r\n"), Ok(Reply::err("x")));
    }
}
