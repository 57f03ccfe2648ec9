//! The one error type of the load generator's protocol clients.

use std::fmt;
use std::io;

/// Why a client operation against the server under test failed.
#[derive(Debug)]
pub enum ClientError {
    /// The network or the OS failed (connect refused, timeout, reset).
    Io(io::Error),
    /// The server closed the connection in the middle of a reply.
    Closed,
    /// The server sent a line longer than the cap we allow for it.
    LineTooLong(usize),
    /// The server sent bytes that are not a valid reply for the protocol.
    Malformed(String),
    /// The server answered with a well-formed but unexpected reply (its text is kept).
    Rejected(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "I/O error: {e}"),
            ClientError::Closed => f.write_str("server closed the connection"),
            ClientError::LineTooLong(cap) => write!(f, "server line longer than {cap} bytes"),
            ClientError::Malformed(line) => write!(f, "malformed reply: {line:?}"),
            ClientError::Rejected(reply) => write!(f, "unexpected reply: {reply}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}
