//! The SMTP connection driver: the only code that touches an SMTP socket. It moves bytes between
//! the socket and the sans-IO [`Session`], makes accepted messages durable through the queue
//! before the session may say 250, and hands them to the scheduler.

use crate::delivery::scheduler::Scheduler;
use crate::queue::ShardQueue;
use crate::smtp::{Context, PeerInfo, Progress, RecipientPolicy, Session, SmtpConfig};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{debug, info, warn};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

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
        }
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
pub async fn serve(mut stream: TcpStream, shard: Rc<SmtpShard>) {
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
        crate::metrics::smtp_refused(crate::metrics::Refusal::TooManySessions);
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
    let mut session = Session::new(
        Rc::clone(&shard.config),
        PeerInfo {
            remote,
            local,
            // Set once SMTP AUTH (RFC 4954) lands; until then nobody relays by password.
            authenticated: false,
        },
    );
    let mut out = Vec::with_capacity(1024);
    session.greeting(&mut out);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        crate::metrics::count_smtp_replies(&out);
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        let timeout = if session.in_data() {
            shard.limits.data_timeout
        } else {
            shard.limits.command_timeout
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
                info!("smtp {remote}: timeout");
                crate::metrics::smtp_refused(crate::metrics::Refusal::Timeout);
                session.timeout(&mut out);
                let _ = stream.write_all(&out).await;
                return;
            }
            Wake::Read(Err(e)) => {
                debug!("smtp {remote}: read error: {e}");
                return;
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
                    crate::metrics::count_smtp_replies(&out);
                    let _ = stream.write_all(&out).await;
                    return;
                }
                Progress::Commit(envelope, message) => {
                    let result = commit(&shard, remote, *envelope, message).await;
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
