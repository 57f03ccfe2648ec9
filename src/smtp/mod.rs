//! The SMTP server protocol (RFC 5321 plus PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
//! SMTPUTF8 and CHUNKING) as sans-IO code: bytes in, replies and complete messages out.
//!
//! The connection driver owns the socket and the clock; it feeds whatever it read to
//! [`Session::receive`], writes `out` back, and acts on the returned [`Progress`]:
//!
//! ```text
//! greeting(out) ─▶ write
//! loop: read ─▶ receive(bytes, cx, out) ─▶ write out ─▶ NeedMore: read again
//!                                                   ├▶ Commit(env, msg): queue it, then committed(result, cx, out)
//!                                                   └▶ Close: close the socket
//! ```
//!
//! - `command`: one command line to a [`Command`] (or a [`CommandError`]).
//! - `reply`: every reply the server sends, as data.
//! - `data`: the DATA body scanner (end of data, dot-unstuffing, bare CR/LF, limits).
//! - `received`: the `Received:` trace header and hop counting.
//! - `session`: the state machine that ties them together.

mod command;
pub mod connection;
mod data;
mod received;
pub mod reply;
pub mod sasl;
mod session;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_auth_tests;

pub use command::{Command, CommandError, MailFrom, RcptTo, parse_command};
pub use data::{DataFindings, DataScanner, has_long_line};
pub use received::{Protocol, TraceDetails, count_hops, received_header, received_header_with};
pub use reply::Reply;
pub use session::Session;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;

/// What one SMTP listener enforces and announces. Plain data, validated by the config layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Our name: in the greeting, the EHLO reply and the `by` clause of `Received:`.
    pub hostname: String,
    /// Largest message body accepted, in octets (RFC 1870 SIZE); larger gets 552 5.3.4.
    pub max_message_size: usize,
    /// Recipients per transaction; more get 452 4.5.3 (RFC 5321 4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// What to do with text lines longer than 998 octets plus CRLF (RFC 5322 2.1.1).
    pub long_lines: LongLines,
    /// More `Received:`/`Delivered-To:` header fields than this is a mail loop: 554 5.4.6.
    pub max_hops: usize,
    /// After this many protocol errors (bad, unknown or out-of-sequence commands) the session
    /// replies 421 4.7.0 and closes.
    pub max_errors: usize,
    /// Hard cap on command lines per session, whatever they are; then 421 4.7.0 and close.
    /// It bounds the work one connection can cause; a client that sends many messages simply
    /// reconnects.
    pub max_commands: usize,
    /// Refuse (554, close) a client that sends message text in the same write as DATA, before
    /// the 354 (RFC 2920 §3.1; Postfix's smtpd_forbid_unauth_pipelining). Off only for
    /// transcript tests that feed whole conversations at once.
    pub forbid_text_before_354: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".to_string(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            long_lines: LongLines::Keep,
            max_hops: 100,
            max_errors: 20,
            max_commands: 10_000,
            forbid_text_before_354: true,
        }
    }
}

/// Handling of message lines over 998 octets (plus CRLF). A line is never truncated or
/// rewrapped: that would break signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongLines {
    /// Reject the message with 550 5.6.0 once the end of data has arrived.
    Reject,
    /// Store the message exactly as received.
    Keep,
}

/// The two ends of the connection, for policy decisions and the `Received:` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The client has authenticated (RFC 4954 SMTP AUTH), which lets it relay. Always false
    /// until AUTH is implemented; the recipient policy already honours it.
    pub authenticated: bool,
}

/// Decides whether a recipient is accepted (local user? relaying allowed for this client?).
pub trait RecipientPolicy {
    /// Called for every RCPT TO; address is without brackets; the session already checked syntax.
    fn check_recipient(&self, peer: &PeerInfo, address: &str) -> RcptVerdict;

    /// Called for every MAIL FROM before it is accepted: `Some(reply)` refuses the transaction,
    /// and a 421 also ends the session (e.g. the client's message rate, `crate::abuse`). The
    /// default accepts.
    fn check_sender(&self, _peer: &PeerInfo, _now: SystemTime) -> Option<Reply> {
        None
    }
}

/// The negotiated TLS parameters, for the `Received:` header (RFC 3848 says only that the
/// protocol is ESMTPS; the version and cipher are a comment, as other MTAs add them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLS1_2` or `TLS1_3`.
    pub version: String,
    /// The IANA cipher suite name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// What the driver knows about one connection that the protocol needs: TLS, AUTH, submission.
/// The default is a plain port-25 session without STARTTLS or AUTH.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// A certificate is configured, so STARTTLS is offered while the session is plaintext.
    pub starttls: bool,
    /// The connection is under TLS (SMTPS, or after STARTTLS).
    pub tls: Option<TlsInfo>,
    /// AUTH is offered: a password checker exists and the connection is under TLS, or this
    /// client may send passwords in the clear (`submission.allow_plaintext_auth`).
    pub auth: bool,
    /// AUTH would be offered under TLS: a cleartext AUTH gets 538 5.7.11 (RFC 4954 6), not 503.
    pub auth_after_starttls: bool,
    /// Message submission (RFC 6409 4.3): MAIL needs a successful AUTH first (530 5.7.0).
    pub require_auth: bool,
    /// An authenticated client may use only sender addresses it owns (553 5.7.1): the login
    /// name itself, or, for a login without `@`, that local part at one of `local_domains`.
    pub sender_login_match: bool,
    pub local_domains: Rc<[String]>,
}

/// The answer of a [`RecipientPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    /// 250 2.1.5: the recipient joins the envelope.
    Accept,
    /// 550 5.1.1: no such local user.
    UnknownUser,
    /// 554 5.7.1: not a local domain and this client may not relay.
    RelayDenied,
    /// 553 5.1.3: an address form refused for every client: routing hidden in the local part
    /// (`%`, `!`, a quoted `@`) or a domain that is not a plain name.
    BadAddress,
    /// 553 5.1.2: a destination this server never delivers to (an address literal, or a
    /// domain the route step refuses).
    BadDestination,
    /// 451 4.3.0 with this text: try again later (e.g. a lookup failed).
    TempFail(String),
}

/// What a session needs from the outside world for one call: the time and the policy.
pub struct Context<'a> {
    pub now: SystemTime,
    pub policy: &'a dyn RecipientPolicy,
}

/// What the driver must do after a call into the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All input consumed; write `out` to the client and read more.
    NeedMore,
    /// A complete message: the driver makes it durable, then calls `committed`.
    /// Any pipelined bytes after the end of DATA stay buffered inside the session.
    /// The bytes are the message with our `Received:` header prepended, dot-unstuffed, with
    /// line ends exactly as received (CRLF for DATA; BDAT content is untouched).
    Commit(Box<crate::envelope::Envelope>, Vec<u8>),
    /// Write `out`, then close the connection (after QUIT, 421, too many errors...).
    Close,
    /// Write `out` (the 220 to STARTTLS), run the TLS handshake, then serve the connection with
    /// a new session: RFC 3207 4.2 says every state from before is forgotten. This session is
    /// finished.
    StartTls,
    /// Check these credentials (RFC 4954 AUTH), then call `auth_checked` with the outcome.
    Authenticate(sasl::Credentials),
}
