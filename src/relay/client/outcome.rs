//! What the SMTP client reports: each recipient's result, or why the whole attempt failed, and
//! how either becomes the scheduler's `DeliveryStatus` + `Detail`.

use super::reply::Reply;
use crate::delivery::report::{DeliveryStatus, Detail, StatusCode};
use std::fmt;

/// Where in the conversation something was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    /// EHLO or HELO.
    Helo,
    StartTls,
    Mail,
    Rcpt,
    /// The DATA command, the body, or the reply to the end of data.
    Data,
    /// Decided here without asking the server (SIZE, SMTPUTF8, a bad address).
    Local,
}

/// How one recipient fared in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    /// The reply that decided it (made up here for [`Stage::Local`]).
    pub reply: Reply,
    pub stage: Stage,
}

/// Why a connection or a transaction failed as a whole; every recipient shares it.
#[derive(Debug)]
pub struct ClientError {
    pub stage: Stage,
    pub kind: ClientErrorKind,
}

/// One variant per cause; the comment says who is at fault.
#[derive(Debug)]
pub enum ClientErrorKind {
    /// The TCP connection could not be made (network or peer).
    Connect(std::io::Error),
    /// The peer did not answer in time (peer or network).
    Timeout,
    /// Reading or writing failed, or the peer closed the connection (peer or network).
    Io(String),
    /// The peer's bytes are not SMTP, or it broke the protocol (peer).
    Protocol(String),
    /// TLS failed after the handshake, or a TLS config problem (either side).
    Tls(String),
    /// The TLS handshake after STARTTLS failed. With opportunistic TLS the caller may retry
    /// the host in plaintext (RFC 7435 §3).
    TlsHandshake(String),
    /// The peer refused us as a whole: greeting 554, HELO refused, 421 (peer's policy).
    Rejected(Reply),
    /// Verify mode, and the peer does not offer STARTTLS or refused it (peer vs. our policy).
    TlsRequired,
}

impl ClientError {
    pub fn new(stage: Stage, kind: ClientErrorKind) -> ClientError {
        ClientError { stage, kind }
    }

    /// The recipients' outcome when the whole attempt failed: a server's refusal keeps its own
    /// class; anything else is a temporary network or TLS problem (RFC 3463 §3.5, §3.8).
    pub fn detail(&self, remote_mta: &str) -> (DeliveryStatus, Detail) {
        let (code, text) = match &self.kind {
            ClientErrorKind::Rejected(reply) => {
                return reply_detail(reply, remote_mta);
            }
            ClientErrorKind::Connect(e) => (StatusCode(4, 4, 1), format!("connect failed: {e}")),
            ClientErrorKind::Timeout => (
                StatusCode(4, 4, 2),
                format!("timed out waiting for the server ({:?})", self.stage),
            ),
            ClientErrorKind::Io(e) => (StatusCode(4, 4, 2), format!("connection lost: {e}")),
            ClientErrorKind::Protocol(e) => (StatusCode(4, 5, 0), format!("protocol error: {e}")),
            ClientErrorKind::Tls(e) | ClientErrorKind::TlsHandshake(e) => {
                (StatusCode(4, 7, 5), format!("TLS failed: {e}"))
            }
            ClientErrorKind::TlsRequired => (
                StatusCode(4, 7, 5),
                "TLS is required but the server does not offer STARTTLS".to_string(),
            ),
        };
        let detail = Detail {
            code,
            text,
            remote_mta: Some(remote_mta.to_string()),
            diagnostic: None,
            note: None,
        };
        (DeliveryStatus::Deferred { counts: true }, detail)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.stage)?;
        match &self.kind {
            ClientErrorKind::Connect(e) => write!(f, "connect failed: {e}"),
            ClientErrorKind::Timeout => f.write_str("timed out"),
            ClientErrorKind::Io(e) => write!(f, "I/O error: {e}"),
            ClientErrorKind::Protocol(e) => write!(f, "protocol error: {e}"),
            ClientErrorKind::Tls(e) => write!(f, "TLS error: {e}"),
            ClientErrorKind::TlsHandshake(e) => write!(f, "TLS handshake failed: {e}"),
            ClientErrorKind::Rejected(reply) => write!(f, "rejected: {reply}"),
            ClientErrorKind::TlsRequired => f.write_str("TLS required but not offered"),
        }
    }
}

impl std::error::Error for ClientError {}

impl RecipientResult {
    /// 2xx => Delivered, 4xx => Deferred, 5xx => Failed, with the reply as the diagnostic
    /// (none for decisions made here, since no server said it).
    pub fn detail(&self, remote_mta: &str) -> (DeliveryStatus, Detail) {
        let (status, mut detail) = reply_detail(&self.reply, remote_mta);
        if self.stage == Stage::Local {
            detail.diagnostic = None;
        }
        (status, detail)
    }
}

fn reply_detail(reply: &Reply, remote_mta: &str) -> (DeliveryStatus, Detail) {
    let status = if reply.is_positive() {
        DeliveryStatus::Delivered
    } else if reply.is_transient() {
        DeliveryStatus::Deferred { counts: true }
    } else {
        DeliveryStatus::Failed
    };
    let detail = Detail {
        code: reply.status(),
        text: reply.text(),
        remote_mta: Some(remote_mta.to_string()),
        diagnostic: Some(reply.to_string()),
        note: None,
    };
    (status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details() {
        let mta = "mx.example [192.0.2.1]";
        let r = |code, enh| RecipientResult {
            reply: Reply::new(code, enh, "text"),
            stage: Stage::Rcpt,
        };
        let (s, d) = r(250, None).detail(mta);
        assert_eq!(s, DeliveryStatus::Delivered);
        assert_eq!(d.code, StatusCode(2, 0, 0));
        let (s, d) = r(451, Some(StatusCode(4, 2, 0))).detail(mta);
        assert_eq!(s, DeliveryStatus::Deferred { counts: true });
        assert_eq!(d.code, StatusCode(4, 2, 0));
        assert_eq!(d.diagnostic.as_deref(), Some("451 4.2.0 text"));
        let (s, d) = r(552, None).detail(mta);
        assert_eq!((s, d.code), (DeliveryStatus::Failed, StatusCode(5, 3, 4)));
        let local = RecipientResult {
            stage: Stage::Local,
            ..r(552, Some(StatusCode(5, 3, 4)))
        };
        assert_eq!(local.detail(mta).1.diagnostic, None);
        let err = ClientError::new(Stage::Greeting, ClientErrorKind::Timeout);
        let (s, d) = err.detail(mta);
        assert_eq!(s, DeliveryStatus::Deferred { counts: true });
        assert_eq!((d.code, d.diagnostic), (StatusCode(4, 4, 2), None));
        let err = ClientError::new(Stage::StartTls, ClientErrorKind::TlsRequired);
        assert_eq!(err.detail(mta).1.code, StatusCode(4, 7, 5));
        let err = ClientError::new(
            Stage::Greeting,
            ClientErrorKind::Rejected(Reply::new(554, None, "go away")),
        );
        assert_eq!(err.detail(mta).0, DeliveryStatus::Failed);
    }
}
