//! The POP3 connection driver: the only code that touches the socket. It frames lines, feeds the
//! sans-IO [`Session`], and performs its actions: password checks and Maildir work on the
//! blocking pool, message reads with glommio's async `BufferedFile`, STLS and POP3S handshakes,
//! the idle timer. One loop, generic over the stream, serves plaintext and TLS alike.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::io::BufferedFile;
use glommio::net::TcpStream;
use rustls::ServerConfig;

use super::line::{Line, LineBuffer};
use super::maildir_store::{Mailbox, StoreError};
use super::reply;
use super::session::{Action, AuthOutcome, OpenError, Session, SessionConfig};
use super::wire::WireEncoder;
use crate::auth::limiter::{LimiterConfig, SharedLimiter};
use crate::auth::{CheckOutcome, LoginFailure, PasswordChecker, apop, log_login};
use crate::blocking::BlockingPool;

/// Who may use USER/PASS and AUTH PLAIN without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextPolicy {
    /// Everyone (only sensible behind another encryption layer).
    Always,
    /// Nobody: STLS or POP3S first.
    Never,
    /// Loopback clients only (the embedded default).
    LoopbackOnly,
}

impl PlaintextPolicy {
    /// Whether a client at `ip` may send a password without TLS.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            PlaintextPolicy::Always => true,
            PlaintextPolicy::Never => false,
            PlaintextPolicy::LoopbackOnly => ip.is_loopback(),
        }
    }
}

/// RFC 1939 §3: the autologout timer must be at least 10 minutes. Config validation should
/// refuse smaller `idle_timeout`s (the driver does not clamp, so tests can use short ones).
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Settings for the POP3 service, the same on every shard.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    /// Used in the APOP timestamp (RFC 1939 §7).
    pub hostname: String,
    /// Where Maildirs live (`crate::mailbox::maildir_for`).
    pub mail_root: PathBuf,
    pub plaintext_auth: PlaintextPolicy,
    /// RFC 1939 §3 autologout timer: at least 10 minutes. Config validation enforces the floor;
    /// the driver uses whatever it is given (tests use short ones).
    pub idle_timeout: Duration,
    /// Delay before every failed-login reply (also applied to refused, rate-limited logins).
    pub failed_login_delay: Duration,
    /// Limit on TLS handshakes, so a silent client cannot hold a connection.
    pub handshake_timeout: Duration,
    /// APOP secrets file (`crate::auth::apop`); `None` disables APOP logins.
    pub apop_secrets: Option<PathBuf>,
    /// Advertised as RFC 2449 LOGIN-DELAY (not enforced).
    pub login_delay: Option<u32>,
    pub limiter: LimiterConfig,
}

impl Pop3Settings {
    /// Defaults for a host name and mail root: loopback-only plaintext, 10 minute idle timeout,
    /// 1 second failed-login delay.
    pub fn new(hostname: impl Into<String>, mail_root: impl Into<PathBuf>) -> Self {
        Pop3Settings {
            hostname: hostname.into(),
            mail_root: mail_root.into(),
            plaintext_auth: PlaintextPolicy::LoopbackOnly,
            idle_timeout: Duration::from_secs(600),
            failed_login_delay: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(30),
            apop_secrets: None,
            login_delay: None,
            limiter: LimiterConfig::default(),
        }
    }
}

/// Everything one shard's POP3 connections share. Build one per shard (it is `!Send`).
pub struct Pop3Shard {
    pub settings: Pop3Settings,
    /// `Some` enables STLS and POP3S.
    pub tls: Option<Arc<ServerConfig>>,
    pub checker: PasswordChecker,
    pub pool: BlockingPool,
    /// The server's failed-login counters (see `crate::auth::limiter`); shared with every
    /// shard and with SMTP AUTH once [`Pop3Shard::with_limiter`] is given the server's.
    pub limiter: SharedLimiter,
}

impl Pop3Shard {
    pub fn new(
        settings: Pop3Settings,
        tls: Option<Arc<ServerConfig>>,
        checker: PasswordChecker,
        pool: BlockingPool,
    ) -> Self {
        let limiter = SharedLimiter::new(settings.limiter);
        Pop3Shard {
            settings,
            tls,
            checker,
            pool,
            limiter,
        }
    }
}

impl Pop3Shard {
    /// Counts failed logins in `limiter` (the server-wide one) instead of its own.
    pub fn with_limiter(mut self, limiter: SharedLimiter) -> Self {
        self.limiter = limiter;
        self
    }
}

/// Flush the output buffer once it holds this much, even mid-message.
const FLUSH_AT: usize = 64 * 1024;
/// The most a message read asks for at once: most messages are smaller and take one read;
/// bigger ones stream in reads of this size. It also bounds the output buffer per connection
/// (under FLUSH_AT plus twice this, if every line were empty or dot-stuffed).
const MAX_READ: u64 = 256 * 1024;

/// What ended a drive loop.
enum Next {
    Done,
    StartTls,
}

/// `f`, or `None` once `dur` has passed.
async fn with_timeout<T>(dur: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::sleep(dur).await;
        None
    })
    .await
}

/// RFC 1939 §7: `<process-ID.clock@hostname>`, unique per connection.
fn apop_timestamp(hostname: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("<{}.{nanos}.{n}@{hostname}>", std::process::id())
}

/// Serves one POP3 connection to the end. With `implicit_tls` (POP3S, RFC 8314) the TLS
/// handshake comes first; otherwise the client may upgrade with STLS (RFC 2595).
pub async fn serve(stream: TcpStream, shared: Rc<Pop3Shard>, implicit_tls: bool) {
    let peer = stream
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    // One reply per write is already batched; Nagle would only add latency (DESIGN.md).
    let _ = stream.set_nodelay(true);
    let allow_plain = match shared.settings.plaintext_auth {
        PlaintextPolicy::Always => true,
        PlaintextPolicy::Never => false,
        PlaintextPolicy::LoopbackOnly => peer.is_loopback(),
    };
    let config = |tls_active| SessionConfig {
        allow_plaintext_auth: allow_plain,
        tls_available: shared.tls.is_some(),
        tls_active,
        login_delay: shared.settings.login_delay,
    };
    // RFC 1939 §7: the timestamp invites APOP, so offer it only when a secrets file exists.
    let timestamp = shared
        .settings
        .apop_secrets
        .as_ref()
        .map(|_| apop_timestamp(&shared.settings.hostname));
    let mut conn = Conn {
        shared: &shared,
        peer,
        mailbox: None,
        out: Vec::new(),
    };
    let result = if implicit_tls {
        match conn.handshake(stream).await {
            Some(mut tls) => {
                let session = Session::new(config(true), timestamp);
                conn.out.extend_from_slice(&session.greeting());
                conn.drive(&mut tls, session).await.map(|_| ())
            }
            None => Ok(()),
        }
    } else {
        let mut stream = stream;
        let session = Session::new(config(false), timestamp.clone());
        conn.out.extend_from_slice(&session.greeting());
        match conn.drive(&mut stream, session).await {
            Ok(Next::StartTls) => match conn.handshake(stream).await {
                // RFC 2595 §4: after the handshake, forget everything: a fresh session, an
                // empty input buffer, no greeting (the client sends CAPA).
                Some(mut tls) => conn
                    .drive(&mut tls, Session::new(config(true), timestamp))
                    .await
                    .map(|_| ()),
                None => Ok(()),
            },
            Ok(Next::Done) => Ok(()),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = result {
        log::debug!("pop3 {peer}: connection ended: {e}");
    }
    // Dropping `conn` drops any open Mailbox: the lock is released, nothing is deleted.
}

struct Conn<'a> {
    shared: &'a Pop3Shard,
    peer: IpAddr,
    /// Open in TRANSACTION; taken by UPDATE.
    mailbox: Option<Mailbox>,
    /// Replies not yet written: flushed when input runs dry, so pipelined commands
    /// (RFC 2449 PIPELINING) get their replies in one write.
    out: Vec<u8>,
}

impl Conn<'_> {
    async fn handshake(&mut self, stream: TcpStream) -> Option<crate::tls::TlsStream<TcpStream>> {
        let config = self.shared.tls.clone()?;
        match with_timeout(
            self.shared.settings.handshake_timeout,
            crate::tls::accept(config, stream),
        )
        .await
        {
            Some(Ok(tls)) => Some(tls),
            Some(Err(e)) => {
                log::debug!("pop3 {}: TLS handshake failed: {e}", self.peer);
                None
            }
            None => None,
        }
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        if !self.out.is_empty() {
            io.write_all(&self.out).await?;
            self.out.clear();
        }
        io.flush().await
    }

    /// Reads, frames and dispatches until the session closes, the peer goes away, or STLS.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        mut session: Session,
    ) -> io::Result<Next> {
        let mut lines = LineBuffer::new();
        let mut chunk = vec![0u8; 4096];
        loop {
            while let Some(line) = lines.next_line() {
                let actions = match line {
                    Line::Complete(l) => session.handle_line(&l, !lines.is_empty()),
                    Line::TooLong => session.line_too_long(),
                };
                if let Some(next) = self.perform(io, &mut session, actions).await? {
                    return Ok(next);
                }
            }
            self.flush(io).await?;
            let idle = self.shared.settings.idle_timeout;
            match with_timeout(idle, io.read(&mut chunk)).await {
                Some(Ok(0)) => return Ok(Next::Done),
                Some(Ok(n)) => lines.push(chunk.get(..n).unwrap_or_default()),
                Some(Err(e)) => return Err(e),
                None => {
                    let actions = session.timed_out();
                    return self
                        .perform(io, &mut session, actions)
                        .await
                        .map(|n| n.unwrap_or(Next::Done));
                }
            }
        }
    }

    /// Performs actions in order, feeding results back into the session.
    async fn perform<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        session: &mut Session,
        actions: Vec<Action>,
    ) -> io::Result<Option<Next>> {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(bytes) => self.out.extend_from_slice(&bytes),
                Action::CheckPassword { user, secret } => {
                    let checker = self.shared.checker.clone();
                    let u = user.clone();
                    let outcome = self
                        .login(&user, "USER", move || checker.check(&u, &secret))
                        .await;
                    queue.extend(session.auth_result(outcome));
                }
                Action::CheckApop {
                    user,
                    timestamp,
                    digest,
                } => {
                    let secrets = self.shared.settings.apop_secrets.clone();
                    let u = user.clone();
                    let outcome = self
                        .login(&user, "APOP", move || match secrets {
                            Some(path) => match apop::check(&path, &u, &timestamp, &digest) {
                                Ok(true) => CheckOutcome::Accepted,
                                Ok(false) => CheckOutcome::Rejected,
                                Err(_) => CheckOutcome::TempFail,
                            },
                            None => CheckOutcome::Rejected,
                        })
                        .await;
                    queue.extend(session.auth_result(outcome));
                }
                Action::OpenMailbox { user } => {
                    let root = self.shared.settings.mail_root.clone();
                    let opened = self
                        .shared
                        .pool
                        .run(move || Mailbox::open(&root, &user))
                        .await;
                    let result = match opened {
                        Ok(Ok(mb)) => {
                            let listing = mb.listing();
                            self.mailbox = Some(mb);
                            Ok(listing)
                        }
                        Ok(Err(StoreError::InUse)) => Err(OpenError::InUse),
                        Ok(Err(e)) => {
                            log::warn!("pop3 {}: {e}", self.peer);
                            Err(OpenError::Unavailable)
                        }
                        Err(_) => Err(OpenError::Unavailable),
                    };
                    queue.extend(session.mailbox_opened(result));
                }
                Action::StartTls => {
                    self.out.extend_from_slice(&reply::STLS_OK.to_bytes());
                    self.flush(io).await?;
                    return Ok(Some(Next::StartTls));
                }
                Action::SendMessage {
                    index,
                    top_lines,
                    status,
                } => {
                    self.send_message(io, index, top_lines, &status).await?;
                }
                Action::Commit { deleted, retrieved } => {
                    let ok = match self.mailbox.take() {
                        Some(mb) => {
                            let r = self
                                .shared
                                .pool
                                .run(move || mb.commit(&deleted, &retrieved))
                                .await;
                            match r {
                                Ok(Ok(())) => true,
                                Ok(Err(e)) => {
                                    log::warn!("pop3 {}: commit: {e}", self.peer);
                                    false
                                }
                                Err(_) => false,
                            }
                        }
                        None => true,
                    };
                    queue.extend(session.committed(ok));
                }
                Action::Close => {
                    self.flush(io).await?;
                    let _ = io.close().await;
                    return Ok(Some(Next::Done));
                }
            }
        }
        Ok(None)
    }

    /// Runs a password check off the shard, with rate limiting and the failure delay.
    /// `method` names the login for the log: `USER` (USER/PASS and AUTH PLAIN) or `APOP`.
    async fn login(
        &mut self,
        user: &str,
        method: &str,
        check: impl FnOnce() -> CheckOutcome + Send + 'static,
    ) -> AuthOutcome {
        let blocked = self
            .shared
            .limiter
            .is_blocked(self.peer, user, Instant::now());
        let outcome = if blocked {
            // Same reply and delay as a wrong password: a blocked client learns nothing.
            CheckOutcome::Rejected
        } else {
            // A full blocking queue means a flood of logins: this one gets a temporary
            // failure at once rather than a place in an ever longer line (see crate::blocking).
            match self.shared.pool.try_run(check) {
                Ok(checked) => checked.await.unwrap_or(CheckOutcome::TempFail),
                Err(e) => {
                    log::warn!("pop3 {}: login of {user} not checked: {e}", self.peer);
                    CheckOutcome::TempFail
                }
            }
        };
        let logged = match outcome {
            CheckOutcome::Accepted => Ok(()),
            CheckOutcome::Rejected if blocked => Err(LoginFailure::RateLimited),
            CheckOutcome::Rejected => Err(LoginFailure::BadCredentials),
            CheckOutcome::TempFail => Err(LoginFailure::Temporary),
        };
        log_login("pop3", self.peer, method, user, logged);
        match outcome {
            CheckOutcome::Accepted => AuthOutcome::Accepted,
            CheckOutcome::Rejected => {
                self.shared
                    .limiter
                    .record_failure(self.peer, user, Instant::now());
                glommio::timer::sleep(self.shared.settings.failed_login_delay).await;
                AuthOutcome::Rejected
            }
            CheckOutcome::TempFail => {
                glommio::timer::sleep(self.shared.settings.failed_login_delay).await;
                AuthOutcome::TempFail
            }
        }
    }

    /// RETR/TOP: status line, the message encoded for the wire, the terminator.
    async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        index: usize,
        top_lines: Option<usize>,
        status: &[u8],
    ) -> io::Result<()> {
        let path = self.mailbox.as_ref().and_then(|mb| mb.message_path(index));
        // Read exactly the bytes the listing saw (the sizes LIST reported were computed from
        // them), without a further read to find the end.
        let file_len = self
            .mailbox
            .as_ref()
            .and_then(|mb| mb.file_len(index))
            .unwrap_or(0);
        let file = match path {
            Some(p) => BufferedFile::open(&p).await.ok(),
            None => None,
        };
        let Some(file) = file else {
            self.out
                .extend_from_slice(&reply::MESSAGE_UNAVAILABLE.to_bytes());
            return Ok(());
        };
        // Replies to pipelined commands pile up in `out`; bound it before adding a message. A
        // message that fits is written whole with its terminator, in one write.
        if self.out.len() >= FLUSH_AT {
            io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.out.extend_from_slice(status);
        let mut enc = WireEncoder::new(top_lines);
        let mut pos = 0u64;
        let result = loop {
            let want = file_len.saturating_sub(pos).min(MAX_READ);
            if want == 0 {
                break Ok(());
            }
            // `want` is at most MAX_READ, which fits any usize.
            let chunk = match file.read_at(pos, want as usize).await {
                Ok(c) => c,
                // The +OK is out: the only honest thing left is to drop the connection.
                Err(e) => break Err(io::Error::other(e.to_string())),
            };
            if chunk.is_empty() {
                break Ok(());
            }
            enc.encode(&chunk, &mut self.out);
            pos += chunk.len() as u64;
            if enc.is_done() || pos >= file_len {
                break Ok(());
            }
            // More to read: write what we have rather than hold a big message in memory.
            if self.out.len() >= FLUSH_AT {
                if let Err(e) = io.write_all(&self.out).await {
                    break Err(e);
                }
                self.out.clear();
            }
        };
        let _ = file.close().await;
        result?;
        enc.finish(&mut self.out);
        self.out.extend_from_slice(b".\r\n");
        Ok(())
    }
}
