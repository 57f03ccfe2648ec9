//! The SMTP connection driver: the only code that touches an SMTP socket. It moves bytes between
//! the socket and the sans-IO [`Session`], makes accepted messages durable through the queue
//! before the session may say 250, and hands them to the scheduler. Before the greeting it
//! applies the abuse defences (access rules, per-IP limits, DNSBL, early talkers: see
//! `crate::abuse`), and it logs every refusal the session made.

use crate::abuse::pace::PaceLimits;
use crate::abuse::{AccessRules, ClientPolicy, IpTable, Pace, PaceVerdict, refusals};
use crate::delivery::scheduler::Scheduler;
use crate::queue::ShardQueue;
use crate::relay::access::RcptPolicy;
use crate::server::reload::ShardView;
use crate::smtp::{Context, PeerInfo, Progress, Reply, Session, SmtpConfig, reply};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{debug, info};
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
}

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
pub async fn serve(mut stream: TcpStream, shard: Rc<SmtpShard>) {
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
        // Set once SMTP AUTH (RFC 4954) lands; until then nobody relays by password.
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
    let mut buf = vec![0u8; 64 * 1024];
    if !settings.greeting_delay.is_zero() {
        // Postscreen's pregreet test: a client that talks before the 220 is not waiting for
        // replies, as a real MTA does (RFC 5321 3.1).
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
    let mut session = Session::new(config, peer);
    let mut pace = Pace::new(settings.pace);
    let mut out = Vec::with_capacity(1024);
    session.greeting(&mut out);
    loop {
        crate::metrics::count_smtp_syntax_errors(&out);
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        let Some(timeout) = pace.read_timeout(Instant::now(), session.in_data()) else {
            let what = "(incomplete command line)";
            return timed_out(&mut stream, &mut session, ip, what, host).await;
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let wake =
            futures_lite::future::or(async { Wake::Read(stream.read(&mut buf).await) }, async {
                shard.shutdown.wait().await;
                Wake::Shutdown
            })
            .await;
        let read = match wake {
            Wake::Shutdown => {
                session.shutting_down(&mut out);
                let _ = stream.write_all(&out).await;
                return;
            }
            Wake::Read(Ok(0)) => {
                debug!("smtp {remote}: client closed the connection");
                return;
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
                return timed_out(&mut stream, &mut session, ip, what, host).await;
            }
            Wake::Read(Err(e)) => {
                debug!("smtp {remote}: read error: {e}");
                return;
            }
            Wake::Read(Ok(n)) => n,
        };
        let cx = Context {
            now: SystemTime::now(),
            policy: &policy,
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
            return;
        }
        loop {
            log_refusals(&mut session, ip);
            match progress {
                Progress::NeedMore => break,
                Progress::Close => {
                    crate::metrics::count_smtp_syntax_errors(&out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
                Progress::Commit(envelope, message) => {
                    let result = commit(&shard, remote, *envelope, message).await;
                    let cx = Context {
                        now: SystemTime::now(),
                        policy: &policy,
                    };
                    progress = session.committed(result, &cx, &mut out);
                }
            }
        }
    }
}

/// A read timed out (or a command line ran out of time): 421 4.4.2 and close. `what` names
/// what was being waited for when that is worth a refusal line; empty for a plain idle client.
async fn timed_out(
    stream: &mut TcpStream,
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
}

/// Makes a message durable, then starts its delivery. Returns the queue id for the 250 reply,
/// or the reason for a 451.
async fn commit(
    shard: &Rc<SmtpShard>,
    remote: std::net::SocketAddr,
    envelope: crate::envelope::Envelope,
    message: Vec<u8>,
) -> Result<String, String> {
    match shard.queue.commit(&envelope, &message).await {
        Ok(id) => {
            info!(
                "new msg {id}: from <{}> via {remote}, {} bytes, {} recipients",
                envelope.sender,
                message.len(),
                envelope.recipients.len()
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
