//! POP3 (RFC 1939 with RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 SASL PLAIN): the sans-IO session,
//! the Maildir store it reads, and the connection driver that moves bytes between them.
//!
//! - `command`: one line of client input to a [`command::Command`].
//! - `reply`: every canned reply, as data.
//! - `line`: CRLF line framing with a length cap.
//! - `wire`: Maildir file bytes to the bytes RETR/TOP send (CRLF, dot-stuffed).
//! - `session`: the protocol state machine; returns [`session::Action`]s, does no I/O.
//! - `maildir_store`: listing, locking and UPDATE-state commits on one Maildir.
//! - `connection`: the driver: sockets, TLS, timers, password checks, the store.

pub mod command;
pub mod connection;
pub mod line;
pub mod maildir_store;
pub mod reply;
pub mod session;
pub mod wire;
