//! The SMTP connection driver: the only code that touches an SMTP socket. It moves bytes between
//! the socket and the sans-IO [`Session`], makes accepted messages durable through the queue
//! before the session may say 250, and hands them to the scheduler.

use crate::auth::limiter::SharedLimiter;
use crate::auth::{CheckOutcome, LoginFailure, PasswordChecker, log_login};
use crate::blocking::BlockingPool;
use crate::delivery::scheduler::Scheduler;
use crate::pop3::connection::PlaintextPolicy;
use crate::queue::ShardQueue;
use crate::smtp::sasl::Credentials;
use crate::smtp::{
    Context, PeerInfo, Progress, RecipientPolicy, Session, SessionOptions, SmtpConfig, TlsInfo,
};
use crate::tls::TlsStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{debug, info, warn};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Per-connection limits enforced by the driver (the session enforces the protocol's own).
pub struct ConnectionLimits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
}

/// Everything an SMTP connection on one shard shares with the others on that shard.
pub struct SmtpShard {
    pub config: Rc<SmtpConfig>,
    pub policy: Rc<dyn RecipientPolicy>,
    pub queue: Rc<ShardQueue>,
    pub scheduler: Rc<Scheduler>,
    pub limits: ConnectionLimits,
    pub shutdown: shards::ShutdownSignal,
    sessions: Cell<usize>,
    per_ip: RefCell<HashMap<IpAddr, usize>>,
    /// STARTTLS/SMTPS and AUTH; none until [`SmtpShard::with_security`].
    pub security: SmtpSecurity,
}

/// TLS and AUTH for a shard's SMTP listeners.
pub struct SmtpSecurity {
    /// `Some` offers STARTTLS and serves SMTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `Some` offers AUTH (RFC 4954) where its plaintext rule allows.
    pub auth: Option<SmtpAuth>,
    /// Limit on a TLS handshake, so a silent client cannot hold a session slot.
    pub handshake_timeout: Duration,
}

impl Default for SmtpSecurity {
    fn default() -> Self {
        SmtpSecurity {
            tls: None,
            auth: None,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// How SMTP AUTH checks passwords; the checker and limiter are POP3's.
pub struct SmtpAuth {
    pub checker: PasswordChecker,
    pub pool: BlockingPool,
    /// The server-wide failed-login counters, shared with POP3.
    pub limiter: SharedLimiter,
    /// Delay before every failed AUTH is answered.
    pub failure_delay: Duration,
    /// Who may AUTH without TLS (`submission.allow_plaintext_auth`).
    pub plaintext: PlaintextPolicy,
    /// See [`SessionOptions::sender_login_match`].
    pub sender_login_match: bool,
    pub local_domains: Rc<[String]>,
}

impl SmtpShard {
    pub fn new(
        config: Rc<SmtpConfig>,
        policy: Rc<dyn RecipientPolicy>,
        queue: Rc<ShardQueue>,
        scheduler: Rc<Scheduler>,
        limits: ConnectionLimits,
        shutdown: shards::ShutdownSignal,
    ) -> SmtpShard {
        SmtpShard {
            config,
            policy,
            queue,
            scheduler,
            limits,
            shutdown,
            sessions: Cell::new(0),
            per_ip: RefCell::new(HashMap::new()),
            security: SmtpSecurity::default(),
        }
    }

    /// Offers TLS and AUTH as `security` says.
    pub fn with_security(mut self, security: SmtpSecurity) -> SmtpShard {
        self.security = security;
        self
    }

    /// Open sessions on this shard.
    pub fn open_sessions(&self) -> usize {
        self.sessions.get()
    }
}

/// Counts a session against the shard and IP limits for as long as it lives.
struct SessionSlot {
    shard: Rc<SmtpShard>,
    ip: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.shard.sessions.set(self.shard.sessions.get() - 1);
        let mut per_ip = self.shard.per_ip.borrow_mut();
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// What woke the connection loop.
enum Wake {
    Read(std::io::Result<usize>),
    Shutdown,
}

/// Serves one SMTP connection to its end. Errors end the connection; they are logged, never
/// propagated, since one client's trouble is not the server's.
pub async fn serve(stream: TcpStream, shard: Rc<SmtpShard>) {
    serve_as(stream, shard, SmtpListener::Smtp).await;
}

/// Serves one connection accepted by a listener of the given kind.
pub async fn serve_as(mut stream: TcpStream, shard: Rc<SmtpShard>, listener: SmtpListener) {
    let (Ok(remote), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shard.limits.command_timeout));
    let host = &shard.config.hostname;

    let over_ip = shard
        .per_ip
        .borrow()
        .get(&remote.ip())
        .copied()
        .unwrap_or(0)
        >= shard.limits.max_sessions_per_ip;
    if shard.sessions.get() >= shard.limits.max_sessions || over_ip {
        let reply = if over_ip {
            crate::smtp::reply::too_many_from_ip(host)
        } else {
            crate::smtp::reply::too_many_connections(host)
        };
        warn!("smtp {remote}: refused, too many sessions");
        let _ = stream.write_all(reply.to_wire().as_bytes()).await;
        return;
    }
    shard.sessions.set(shard.sessions.get() + 1);
    *shard.per_ip.borrow_mut().entry(remote.ip()).or_insert(0) += 1;
    let _slot = SessionSlot {
        shard: Rc::clone(&shard),
        ip: remote.ip(),
    };

    debug!("smtp {remote}: connected");
    let conn = Conn {
        shard: &shard,
        remote,
        local,
    };
    if listener.implicit_tls() {
        // RFC 8314 3.3: the handshake comes first, then the greeting under TLS.
        let Some(mut tls) = conn.handshake(stream).await else {
            return;
        };
        let session = conn.session(listener, Some(tls_info(&tls)));
        conn.drive(&mut tls, session, true).await;
        return;
    }
    let session = conn.session(listener, None);
    if let Next::StartTls = conn.drive(&mut stream, session, true).await {
        let Some(mut tls) = conn.handshake(stream).await else {
            return;
        };
        // RFC 3207 4.2: forget everything the client said before; it must EHLO again.
        let session = conn.session(listener, Some(tls_info(&tls)));
        conn.drive(&mut tls, session, false).await;
    }
}

/// Which kind of SMTP listener accepted a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpListener {
    /// Port 25 (2525 in the embedded default): STARTTLS offered when a certificate exists.
    Smtp,
    /// SMTPS, implicit TLS from the first byte (RFC 8314; `smtp.smtps_listen`).
    Smtps,
    /// Message submission (RFC 6409; `submission.listen`): AUTH before MAIL.
    Submission,
}

impl SmtpListener {
    fn implicit_tls(self) -> bool {
        self == SmtpListener::Smtps
    }
}

/// What ended a drive loop.
enum Next {
    Done,
    StartTls,
}

/// A stream the SMTP loop runs over: plain TCP or TLS over TCP. The socket's timeouts are set on
/// the TCP stream underneath.
pub trait SmtpStream: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
}

impl SmtpStream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl SmtpStream for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The negotiated version and cipher, named as in `Received:` (`TLS1_3`, IANA suite names).
fn tls_info(tls: &TlsStream<TcpStream>) -> TlsInfo {
    let conn = tls.get_ref().1;
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1_3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1_2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|suite| {
            let suite = suite.suite();
            suite
                .as_str()
                .map_or_else(|| format!("{suite:?}"), str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string());
    TlsInfo { version, cipher }
}

/// One connection's fixed facts, for the drive loop.
struct Conn<'a> {
    shard: &'a Rc<SmtpShard>,
    remote: SocketAddr,
    local: SocketAddr,
}

impl Conn<'_> {
    /// A fresh session for this listener, plaintext or under TLS.
    fn session(&self, listener: SmtpListener, tls: Option<TlsInfo>) -> Session {
        let security = &self.shard.security;
        let under_tls = tls.is_some();
        let (auth, auth_after_starttls, sender_login_match, local_domains) = match &security.auth {
            Some(a) => {
                let cleartext_ok = a.plaintext.allows(self.remote.ip());
                (
                    under_tls || cleartext_ok,
                    !under_tls && !cleartext_ok && security.tls.is_some(),
                    a.sender_login_match,
                    Rc::clone(&a.local_domains),
                )
            }
            None => (false, false, false, Rc::from(Vec::new())),
        };
        let options = SessionOptions {
            starttls: security.tls.is_some(),
            tls,
            auth,
            auth_after_starttls,
            require_auth: listener == SmtpListener::Submission,
            sender_login_match,
            local_domains,
        };
        let peer = PeerInfo {
            remote: self.remote,
            local: self.local,
            // Set by the session once AUTH succeeds (RFC 4954), which lets the client relay.
            authenticated: false,
        };
        Session::with_options(Rc::clone(&self.shard.config), peer, options)
    }

    /// The server side of the TLS handshake, bounded in time; `None` (logged) if it failed.
    async fn handshake(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let config = self.shard.security.tls.clone()?;
        let timeout = self.shard.security.handshake_timeout;
        let handshake = crate::tls::accept(config, stream);
        let result = futures_lite::future::or(async { Some(handshake.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match result {
            Some(Ok(tls)) => Some(tls),
            Some(Err(e)) => {
                info!("smtp {}: TLS handshake failed: {e}", self.remote);
                None
            }
            None => {
                info!("smtp {}: TLS handshake timed out", self.remote);
                None
            }
        }
    }

    /// Moves bytes between `stream` and `session` until the session ends, the client goes away,
    /// or STARTTLS. With `greet`, the 220 banner is sent first (not after STARTTLS).
    async fn drive<S: SmtpStream>(
        &self,
        stream: &mut S,
        mut session: Session,
        greet: bool,
    ) -> Next {
        let shard = self.shard;
        let remote = self.remote;
        let mut out = Vec::with_capacity(1024);
        if greet {
            session.greeting(&mut out);
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if stream.write_all(&out).await.is_err() {
                return Next::Done;
            }
            out.clear();
            let timeout = if session.in_data() {
                shard.limits.data_timeout
            } else {
                shard.limits.command_timeout
            };
            let _ = stream.tcp().set_read_timeout(Some(timeout));
            let wake = futures_lite::future::or(
                async { Wake::Read(stream.read(&mut buf).await) },
                async {
                    shard.shutdown.wait().await;
                    Wake::Shutdown
                },
            )
            .await;
            let read = match wake {
                Wake::Shutdown => {
                    session.shutting_down(&mut out);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.flush().await;
                    return Next::Done;
                }
                Wake::Read(Ok(0)) => {
                    debug!("smtp {remote}: client closed the connection");
                    return Next::Done;
                }
                Wake::Read(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    info!("smtp {remote}: timeout");
                    session.timeout(&mut out);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.flush().await;
                    return Next::Done;
                }
                Wake::Read(Err(e)) => {
                    debug!("smtp {remote}: read error: {e}");
                    return Next::Done;
                }
                Wake::Read(Ok(n)) => n,
            };
            let policy = Rc::clone(&shard.policy);
            let cx = Context {
                now: SystemTime::now(),
                policy: policy.as_ref(),
            };
            let mut progress = session.receive(&buf[..read], &cx, &mut out);
            loop {
                match progress {
                    Progress::NeedMore => break,
                    Progress::Close => {
                        let _ = stream.write_all(&out).await;
                        let _ = stream.flush().await;
                        let _ = stream.close().await;
                        return Next::Done;
                    }
                    Progress::StartTls => {
                        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                            return Next::Done;
                        }
                        return Next::StartTls;
                    }
                    Progress::Authenticate(credentials) => {
                        let outcome = authenticate(shard, remote.ip(), credentials).await;
                        let cx = Context {
                            now: SystemTime::now(),
                            policy: policy.as_ref(),
                        };
                        progress = session.auth_checked(outcome, &cx, &mut out);
                    }
                    Progress::Commit(envelope, message) => {
                        let user = session.authenticated_user();
                        let result = commit(shard, remote, user, *envelope, message).await;
                        let cx = Context {
                            now: SystemTime::now(),
                            policy: policy.as_ref(),
                        };
                        progress = session.committed(result, &cx, &mut out);
                    }
                }
            }
        }
    }
}

/// Checks SMTP AUTH credentials off the shard, as POP3 does: the server-wide failed-login
/// limiter first, the password check on the blocking pool, one log line, and the fixed delay
/// before any failure is answered (a blocked client gets the same reply and delay).
async fn authenticate(shard: &SmtpShard, ip: IpAddr, credentials: Credentials) -> CheckOutcome {
    let Some(auth) = &shard.security.auth else {
        return CheckOutcome::TempFail;
    };
    let Credentials {
        user,
        password,
        mechanism,
    } = credentials;
    let blocked = auth.limiter.is_blocked(ip, &user, Instant::now());
    let outcome = if blocked {
        CheckOutcome::Rejected
    } else {
        let checker = auth.checker.clone();
        let u = user.clone();
        match auth.pool.try_run(move || checker.check(&u, &password)) {
            Ok(checked) => checked.await.unwrap_or(CheckOutcome::TempFail),
            Err(e) => {
                warn!("smtp {ip}: login of {user:?} not checked: {e}");
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
    log_login("smtp", ip, mechanism.as_str(), &user, logged);
    if outcome == CheckOutcome::Rejected {
        auth.limiter.record_failure(ip, &user, Instant::now());
    }
    if outcome != CheckOutcome::Accepted {
        glommio::timer::sleep(auth.failure_delay).await;
    }
    outcome
}

/// Makes a message durable, then starts its delivery. Returns the queue id for the 250 reply,
/// or the reason for a 451.
async fn commit(
    shard: &Rc<SmtpShard>,
    remote: std::net::SocketAddr,
    user: Option<&str>,
    envelope: crate::envelope::Envelope,
    message: Vec<u8>,
) -> Result<String, String> {
    match shard.queue.commit(&envelope, &message).await {
        Ok(id) => {
            let login = user.map(|u| format!(", user \"{}\"", u.escape_debug()));
            info!(
                "new msg {id}: from <{}> via {remote}, {} bytes, {} recipients{}",
                envelope.sender,
                message.len(),
                envelope.recipients.len(),
                login.unwrap_or_default()
            );
            shard.scheduler.submit(id, envelope, message);
            Ok(id.to_string())
        }
        Err(e) => {
            log::error!("smtp {remote}: cannot queue a message: {e}");
            Err("queue write failed, try again later".to_string())
        }
    }
}
