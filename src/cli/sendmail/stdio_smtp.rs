//! `sendmail -bs`: the server's own sans-IO SMTP session (`crate::smtp::Session`) driven over
//! stdin and stdout instead of a socket. Each message the session completes is injected through
//! the socket, and the session's 250 carries the server's queue id, so the reply means what it
//! means over TCP: the message is durable.
//!
//! The client is a local user, so it may relay (as `crate::inject` allows). RCPT gets early
//! answers from the address checks that need no server (syntax, routing characters, unsafe
//! mailbox names at local domains); the server checks every recipient again when the message
//! is injected, and a refusal then is answered 554 (permanent) or 451 (temporary).

use crate::address::{AddressError, mailbox_key};
use crate::config::Config;
use crate::inject::protocol::Outcome;
use crate::relay::Router;
use crate::smtp::{
    Context, PeerInfo, Progress, RcptVerdict, RecipientPolicy, Session, SmtpConfig, reply,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::SystemTime;

/// RCPT checks that need no server: see the module docs.
struct LocalChecks {
    router: Option<Router>,
}

impl RecipientPolicy for LocalChecks {
    fn check_recipient(&self, _peer: &PeerInfo, address: &str) -> RcptVerdict {
        match mailbox_key(address) {
            Ok(_) => RcptVerdict::Accept,
            // Routing in the local part is refused for everyone (crate::relay::access).
            Err(AddressError::UnsafeLocalPart(why)) if why.contains("routing") => {
                RcptVerdict::BadAddress
            }
            Err(_) => {
                let domain = crate::address::split(address)
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                let local = self
                    .router
                    .as_ref()
                    .is_some_and(|r| r.is_local_domain(&domain));
                if local {
                    RcptVerdict::BadAddress
                } else {
                    RcptVerdict::Accept
                }
            }
        }
    }
}

fn smtp_config(config: &Config) -> SmtpConfig {
    SmtpConfig {
        // A local program speaking SMTP on a pipe may write ahead; only network clients that
        // do are suspect.
        forbid_text_before_354: false,
        ..crate::server::shard::smtp_config(config)
    }
}

/// Drops the session's own `Received:` field from the front of `message`: it would name a
/// loopback peer that never was; the injection server's line (with the caller's uid) is the
/// true trace.
fn without_session_trace(message: &[u8]) -> &[u8] {
    if !message.starts_with(b"Received: ") {
        return message;
    }
    let mut pos = 0;
    while let Some(end) = message[pos..].windows(2).position(|w| w == b"\r\n") {
        pos += end + 2;
        if !matches!(message.get(pos), Some(b' ' | b'\t')) {
            return &message[pos..];
        }
    }
    message
}

pub fn run(config: &Config, socket: &Path) -> ExitCode {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let peer = PeerInfo {
        remote: loopback,
        local: loopback,
        authenticated: true,
    };
    let policy = LocalChecks {
        router: Router::from_config(config).ok(),
    };
    let mut session = Session::new(Rc::new(smtp_config(config)), peer);
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut out = Vec::with_capacity(1024);
    session.greeting(&mut out);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::from(74);
        }
        out.clear();
        let read = match stdin.read(&mut buf) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return ExitCode::from(74),
        };
        let cx = Context {
            now: SystemTime::now(),
            policy: &policy,
        };
        let mut progress = session.receive(&buf[..read], &cx, &mut out);
        loop {
            match progress {
                Progress::NeedMore => break,
                // -bs offers neither STARTTLS nor AUTH (Session::new), so the session never
                // asks for either; were it to, ending the session is the safe answer.
                Progress::Close | Progress::StartTls | Progress::Authenticate(_) => {
                    let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
                    return ExitCode::SUCCESS;
                }
                Progress::Commit(envelope, message) => {
                    let answer = crate::inject::client::inject(
                        socket,
                        &envelope.sender,
                        &envelope.recipients,
                        without_session_trace(&message),
                    );
                    let cx = Context {
                        now: SystemTime::now(),
                        policy: &policy,
                    };
                    progress = match answer.outcome {
                        Outcome::Queued => session.committed(Ok(answer.text), &cx, &mut out),
                        Outcome::TempFail => session.committed(Err(answer.text), &cx, &mut out),
                        _ => session.commit_refused(
                            reply::commit_refused(&answer.text),
                            &cx,
                            &mut out,
                        ),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_the_first_trace_field() {
        assert_eq!(
            without_session_trace(b"Received: from x\r\n\tby y; date\r\nSubject: s\r\n\r\nb\r\n"),
            b"Subject: s\r\n\r\nb\r\n"
        );
        assert_eq!(
            without_session_trace(b"Subject: s\r\n\r\nb\r\n"),
            b"Subject: s\r\n\r\nb\r\n"
        );
    }
}
