//! The outbound SMTP client: talks to one remote server, one transaction at a time.
//!
//! - `reply`: parses the server's replies (sans-IO).
//! - `capabilities`: what EHLO advertised.
//! - `checks`: what is refused before sending (SIZE, SMTPUTF8, unsafe addresses).
//! - `body`: the message as sent after DATA (CRLF, dot-stuffed, terminated).
//! - `session`: the protocol as a state machine, no I/O: greeting, EHLO/HELO, STARTTLS,
//!   pipelined or one-at-a-time transactions, per-recipient results.
//! - `outcome`: per-recipient results and connection errors, and their `Detail` for reports.
//! - `tls_config`: the verifying and the accept-anything rustls client configs.
//! - `connection`: the driver, the only code touching the socket: TCP, TLS, timeouts.

pub mod body;
pub mod capabilities;
mod checks;
pub mod connection;
pub mod outcome;
pub mod reply;
pub mod session;
#[cfg(test)]
mod session_tests;
mod tls_config;

pub use connection::{Bind, ClientSettings, SmtpClient, connect, connect_from};
pub use outcome::{ClientError, ClientErrorKind, RecipientResult, Stage};
pub use reply::{Reply, ReplyError, parse_reply};
pub use session::{Outgoing, TlsMode};
