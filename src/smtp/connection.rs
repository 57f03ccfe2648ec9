//! The SMTP connection driver: the only code that touches an SMTP socket. It moves bytes between
//! the socket and the sans-IO [`Session`], makes accepted messages durable through the queue
//! before the session may say 250, and hands them to the scheduler. Before the greeting it
//! applies the abuse defences (access rules, per-IP limits, DNSBL, early talkers: see
//! `crate::abuse`), and it logs every refusal the session made.

use crate::abuse::pace::PaceLimits;
use crate::abuse::{AccessRules, ClientPolicy, IpTable, Pace, PaceVerdict, refusals};
use crate::auth::limiter::SharedLimiter;
use crate::auth::{CheckOutcome, LoginFailure, PasswordChecker, log_login};
use crate::blocking::BlockingPool;
use crate::delivery::scheduler::Scheduler;
use crate::pop3::connection::PlaintextPolicy;
use crate::queue::ShardQueue;
use crate::relay::access::RcptPolicy;
use crate::server::reload::ShardView;
use crate::smtp::sasl::Credentials;
use crate::smtp::{
    Context, PeerInfo, Progress, Reply, Session, SessionOptions, SmtpConfig, TlsInfo, reply,
};
use crate::tls::TlsStream;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{debug, info, warn};
use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Per-connection limits enforced by the driver (the session enforces the protocol's own).
pub struct ConnectionLimits {
    pub max_sessions: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
}

/// The SMTP settings a reload (SIGHUP) may change; a session keeps the ones it started with.
pub struct SmtpSettings {
    pub config: Rc<SmtpConfig>,
    pub policy: Rc<RcptPolicy>,
    pub limits: ConnectionLimits,
    pub access: AccessRules,
    pub dnsbl_zones: Vec<String>,
    /// How long the 220 waits; a client that talks first is refused.
    pub greeting_delay: Duration,
    pub pace: PaceLimits,
    /// The certificate: `Some` offers STARTTLS and serves SMTPS (reloaded on SIGHUP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `Some` offers AUTH (RFC 4954) where its plaintext rule allows.
    pub auth: Option<SmtpAuth>,
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

/// Limit on a TLS handshake, so a silent client cannot hold a session slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything an SMTP connection on one shard shares with the others on that shard.
pub struct SmtpShard {
    pub settings: ShardView<SmtpSettings>,
    pub queue: Rc<ShardQueue>,
    pub scheduler: Rc<Scheduler>,
    pub shutdown: shards::ShutdownSignal,
    /// Per-IP sessions and message rates, shared by every shard.
    pub ip_table: Arc<IpTable>,
    /// For the DNSBL lookups.
    pub resolver: crate::dns::Resolver,
    sessions: Cell<usize>,
}

impl SmtpShard {
    pub fn new(
        settings: ShardView<SmtpSettings>,
        queue: Rc<ShardQueue>,
        scheduler: Rc<Scheduler>,
        shutdown: shards::ShutdownSignal,
        ip_table: Arc<IpTable>,
        resolver: crate::dns::Resolver,
    ) -> SmtpShard {
        SmtpShard {
            settings,
            queue,
            scheduler,
            shutdown,
            ip_table,
            resolver,
            sessions: Cell::new(0),
        }
    }

    /// Open sessions on this shard.
    pub fn open_sessions(&self) -> usize {
        self.sessions.get()
    }
}

/// Counts a session against the shard's limit for as long as it lives (the per-IP count is
/// the server's: `crate::abuse::IpSessionGuard`).
struct SessionSlot {
    shard: Rc<SmtpShard>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.shard.sessions.set(self.shard.sessions.get() - 1);
    }
}

/// Refuses a connection before or instead of the greeting: logs it, sends the reply.
async fn refuse(stream: &mut TcpStream, ip: IpAddr, command: &str, reply: Reply) {
    refusals::log(ip, command, &reply);
    let _ = stream.write_all(reply.to_wire().as_bytes()).await;
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

/// Logs the refusals the session made since the last call.
fn log_refusals(session: &mut Session, ip: IpAddr) {
    for refusal in session.take_refusals() {
        refusals::log(ip, &refusal.command, &refusal.reply);
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
    let settings = shard.settings.get();
    let _ = stream.set_write_timeout(Some(settings.limits.command_timeout));
    let host = &settings.config.hostname;
    let ip = remote.ip();
    let peer = PeerInfo {
        remote,
        local,
        // Set by the session once AUTH succeeds (RFC 4954), which lets the client relay.
        authenticated: false,
    };

    // Access rules, then the shard's and the server's per-IP session limits.
    let terms = settings.access.terms_for(ip);
    if let Some(text) = &terms.deny {
        return refuse(&mut stream, ip, "connect", reply::access_denied(text)).await;
    }
    if shard.sessions.get() >= settings.limits.max_sessions {
        return refuse(
            &mut stream,
            ip,
            "connect",
            reply::too_many_connections(host),
        )
        .await;
    }
    let Some(_ip_slot) = shard.ip_table.open_session(ip, terms.max_sessions) else {
        return refuse(&mut stream, ip, "connect", reply::too_many_from_ip(host)).await;
    };
    shard.sessions.set(shard.sessions.get() + 1);
    let _slot = SessionSlot {
        shard: Rc::clone(&shard),
    };
    debug!("smtp {remote}: connected");

    // DNSBL lookups run during the greeting delay.
    let dnsbl = (!settings.dnsbl_zones.is_empty()
        && AccessRules::wants_dnsbl(&terms, ip, settings.policy.may_relay(&peer)))
    .then(|| {
        glommio::spawn_local(crate::abuse::dnsbl::check(
            shard.resolver.clone(),
            ip,
            settings.dnsbl_zones.clone(),
        ))
    });
    // An SMTPS client speaks first (its TLS ClientHello): no pregreet test there.
    if !settings.greeting_delay.is_zero() && !listener.implicit_tls() {
        // Postscreen's pregreet test: a client that talks before the 220 is not waiting for
        // replies, as a real MTA does (RFC 5321 3.1).
        let mut buf = vec![0u8; 4096];
        let early = futures_lite::future::or(async { Some(stream.read(&mut buf).await) }, async {
            glommio::timer::sleep(settings.greeting_delay).await;
            None
        })
        .await;
        match early {
            None => {}
            Some(Ok(n)) if n > 0 => {
                let first_line = buf[..n].split(|&b| b == b'\n').next().unwrap_or_default();
                let said = refusals::Refusal::new(first_line, reply::EARLY_TALKER);
                return refuse(&mut stream, ip, &said.command, said.reply).await;
            }
            Some(_) => return,
        }
    }
    if let Some(lookup) = dnsbl
        && let Some(listing) = lookup.await
    {
        let reply = reply::dnsbl_listed(ip, &listing.zone);
        return refuse(&mut stream, ip, "connect", reply).await;
    }

    // The client's own message size limit, if an access rule gives one.
    let config = if terms.max_message_size == settings.config.max_message_size {
        Rc::clone(&settings.config)
    } else {
        Rc::new(SmtpConfig {
            max_message_size: terms.max_message_size,
            ..(*settings.config).clone()
        })
    };
    let policy = ClientPolicy {
        rules: Rc::clone(&settings.policy),
        relay: terms.relay,
        ip_table: Arc::clone(&shard.ip_table),
        messages_per_minute: terms.messages_per_minute,
        hostname: host.clone(),
    };
    let conn = Conn {
        shard: &shard,
        settings: &settings,
        config,
        policy,
        peer,
        listener,
    };
    if listener.implicit_tls() {
        // RFC 8314 3.3: the handshake comes first, then the greeting under TLS.
        let Some(mut tls) = conn.handshake(stream).await else {
            return;
        };
        let session = conn.session(Some(tls_info(&tls)));
        conn.drive(&mut tls, session, true).await;
        return;
    }
    let session = conn.session(None);
    if let Next::StartTls = conn.drive(&mut stream, session, true).await {
        let Some(mut tls) = conn.handshake(stream).await else {
            return;
        };
        // RFC 3207 4.2: forget everything the client said before; it must EHLO again.
        let session = conn.session(Some(tls_info(&tls)));
        conn.drive(&mut tls, session, false).await;
    }
}

/// One connection's fixed facts, for the drive loop.
struct Conn<'a> {
    shard: &'a Rc<SmtpShard>,
    settings: &'a SmtpSettings,
    /// The session settings, with this client's message size limit.
    config: Rc<SmtpConfig>,
    policy: ClientPolicy,
    peer: PeerInfo,
    listener: SmtpListener,
}

impl Conn<'_> {
    /// A fresh session for this listener, plaintext or under TLS.
    fn session(&self, tls: Option<TlsInfo>) -> Session {
        let settings = self.settings;
        let under_tls = tls.is_some();
        let (auth, auth_after_starttls, sender_login_match, local_domains) = match &settings.auth {
            Some(a) => {
                let cleartext_ok = a.plaintext.allows(self.peer.remote.ip());
                (
                    under_tls || cleartext_ok,
                    !under_tls && !cleartext_ok && settings.tls.is_some(),
                    a.sender_login_match,
                    Rc::clone(&a.local_domains),
                )
            }
            None => (false, false, false, Rc::from(Vec::new())),
        };
        let options = SessionOptions {
            starttls: settings.tls.is_some(),
            tls,
            auth,
            auth_after_starttls,
            require_auth: self.listener == SmtpListener::Submission,
            sender_login_match,
            local_domains,
        };
        Session::with_options(Rc::clone(&self.config), self.peer, options)
    }

    /// The server side of the TLS handshake, bounded in time; `None` (logged) if it failed.
    async fn handshake(&self, stream: TcpStream) -> Option<TlsStream<TcpStream>> {
        let config = self.settings.tls.clone()?;
        let remote = self.peer.remote;
        let handshake = crate::tls::accept(config, stream);
        let result = futures_lite::future::or(async { Some(handshake.await) }, async {
            glommio::timer::sleep(HANDSHAKE_TIMEOUT).await;
            None
        })
        .await;
        match result {
            Some(Ok(tls)) => Some(tls),
            Some(Err(e)) => {
                info!("smtp {remote}: TLS handshake failed: {e}");
                None
            }
            None => {
                info!("smtp {remote}: TLS handshake timed out");
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
        let remote = self.peer.remote;
        let ip = remote.ip();
        let host = &self.config.hostname;
        let policy = &self.policy;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pace = Pace::new(self.settings.pace);
        let mut out = Vec::with_capacity(1024);
        if greet {
            session.greeting(&mut out);
        }
        loop {
            crate::metrics::count_smtp_syntax_errors(&out);
            if stream.write_all(&out).await.is_err() {
                return Next::Done;
            }
            out.clear();
            let Some(timeout) = pace.read_timeout(Instant::now(), session.in_data()) else {
                let what = "(incomplete command line)";
                timed_out(stream, &mut session, ip, what, host).await;
                return Next::Done;
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
                    let what = if session.partial_command() {
                        "(incomplete command line)"
                    } else if session.in_data() {
                        "(message content)"
                    } else {
                        info!("smtp {remote}: timeout");
                        ""
                    };
                    timed_out(stream, &mut session, ip, what, host).await;
                    return Next::Done;
                }
                Wake::Read(Err(e)) => {
                    debug!("smtp {remote}: read error: {e}");
                    return Next::Done;
                }
                Wake::Read(Ok(n)) => n,
            };
            let cx = Context {
                now: SystemTime::now(),
                policy,
            };
            let mut progress = session.receive(&buf[..read], &cx, &mut out);
            if progress == Progress::NeedMore
                && pace.after_read(
                    Instant::now(),
                    read,
                    session.partial_command(),
                    session.in_data(),
                ) == PaceVerdict::TooSlow
            {
                let reply = reply::data_too_slow(host);
                refusals::log(ip, "(message content)", &reply);
                reply.write_to(&mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return Next::Done;
            }
            loop {
                log_refusals(&mut session, ip);
                match progress {
                    Progress::NeedMore => break,
                    Progress::Close => {
                        crate::metrics::count_smtp_syntax_errors(&out);
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
                        let outcome = authenticate(self.settings, ip, credentials).await;
                        let cx = Context {
                            now: SystemTime::now(),
                            policy,
                        };
                        progress = session.auth_checked(outcome, &cx, &mut out);
                    }
                    Progress::Commit(envelope, message) => {
                        let user = session.authenticated_user();
                        let result = commit(shard, remote, user, *envelope, message).await;
                        let cx = Context {
                            now: SystemTime::now(),
                            policy,
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
async fn authenticate(
    settings: &SmtpSettings,
    ip: IpAddr,
    credentials: Credentials,
) -> CheckOutcome {
    let Some(auth) = &settings.auth else {
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

/// A read timed out (or a command line ran out of time): 421 4.4.2 and close. `what` names
/// what was being waited for when that is worth a refusal line; empty for a plain idle client.
async fn timed_out<S: SmtpStream>(
    stream: &mut S,
    session: &mut Session,
    ip: IpAddr,
    what: &str,
    host: &str,
) {
    if !what.is_empty() {
        refusals::log(ip, what, &reply::timeout(host));
    }
    let mut out = Vec::new();
    session.timeout(&mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
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
            crate::metrics::message_accepted(crate::metrics::Source::Smtp, message.len());
            shard.scheduler.submit(id, envelope, message);
            Ok(id.to_string())
        }
        Err(e) => {
            log::error!("smtp {remote}: cannot queue a message: {e}");
            crate::metrics::smtp_refused(crate::metrics::Refusal::QueueError);
            Err("queue write failed, try again later".to_string())
        }
    }
}
