//! One shard's life: recover its queue, start its scheduler, adopt its listeners, serve, and on
//! shutdown stop accepting, answer open sessions 421, let deliveries in flight land, and sync
//! the queue.

use super::Setup;
use super::reload::{Live, ShardView};
use crate::auth::PasswordChecker;
use crate::auth::limiter::SharedLimiter;
use crate::blocking::BlockingPool;
use crate::config::{Config, LongLinesSetting, PlaintextAuth};
use crate::delivery::scheduler::{Scheduler, SchedulerSettings};
use crate::delivery::transport::LocalTransport;
use crate::pop3::connection::{PlaintextPolicy, Pop3Settings, Pop3Shard};
use crate::queue::{QueueOptions, ShardQueue};
use crate::relay::access::RcptPolicy;
use crate::relay::destination::Owner;
use crate::relay::owner::{MeshMessage, RelayTransport, serve_inbox};
use crate::smtp::connection::{ConnectionLimits, SmtpAuth, SmtpListener, SmtpSettings, SmtpShard};
use crate::smtp::{LongLines, SmtpConfig};
use log::{error, info, warn};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// How long shutdown waits for open sessions to take their 421 and deliveries to land.
const SESSION_DRAIN: Duration = Duration::from_secs(10);

/// The shard's entry point, called by the shards runtime on the shard's own thread. Reports on
/// `ready` once it serves (or why it could not start).
pub async fn run(
    ctx: shards::ShardContext<MeshMessage>,
    setup: Arc<Setup>,
    ready: Sender<Result<(), String>>,
) {
    let id = ctx.id();
    crate::metrics::enter_shard(id);
    let shutdown = ctx.shutdown();
    let running = match start(&ctx, &setup, shutdown.clone()).await {
        Ok(running) => running,
        Err(message) => {
            let _ = ready.send(Err(format!("shard {id}: {message}")));
            return;
        }
    };
    crate::metrics::set_ready(id, true);
    let _ = ready.send(Ok(()));
    shutdown.wait().await;
    crate::metrics::set_ready(id, false);
    running.stop().await;
}

/// A shard that is serving.
struct Running {
    queue: Rc<ShardQueue>,
    scheduler: Rc<Scheduler>,
    smtp: Rc<SmtpShard>,
    accept_loops: Vec<glommio::task::JoinHandle<()>>,
}

async fn start(
    ctx: &shards::ShardContext<MeshMessage>,
    setup: &Setup,
    shutdown: shards::ShutdownSignal,
) -> Result<Running, String> {
    let id = ctx.id();
    let config = &setup.config;
    let options = QueueOptions {
        segment_size: config.queue.segment_size_mib * 1024 * 1024,
        compact_after_secs: config.queue.compact_after_secs,
    };
    let (queue, recovered) = ShardQueue::open(&config.queue_dir(), id as u16, options)
        .await
        .map_err(|e| format!("cannot open the queue: {e}"))?;
    if !recovered.is_empty() {
        info!(
            "shard {id}: recovered {} unfinished messages from the queue",
            recovered.len()
        );
    }
    // This shard's share of remote delivery: the destinations it owns, fed from the mesh.
    let owner = Owner::new(
        super::relay::owner_settings(config, ctx.count())?,
        setup.resolver.clone(),
        shutdown.clone(),
        super::relay::shaping(setup, id)?,
    );
    glommio::spawn_local(serve_inbox(ctx.clone(), Rc::clone(&owner))).detach();
    let http_owner = Rc::clone(&owner);
    let scheduler = Scheduler::new(
        Rc::clone(&queue),
        SchedulerSettings {
            hostname: config.server.hostname.clone(),
            queue_lifetime: config.queue.queue_lifetime_secs,
            concurrency: config.queue.delivery_concurrency,
            memory_budget: (config.queue.memory_budget_mib as usize).saturating_mul(1 << 20),
            delay_notice: config.queue.delay_notice_secs,
            host_backoff: config.relay.host_backoff_secs,
        },
        crate::relay::Router::from_config(config)?,
        LocalTransport::from_config(config, Rc::clone(&queue)),
        RelayTransport::new(ctx.clone()).with_shaping(
            crate::relay::shaping::ShapingRules::from_config(&config.relay),
            crate::relay::pools::Pools::from_config(&config.relay),
            setup.resolver.clone(),
        ),
        Some(crate::delivery::prepare::ShardDeliverability::new(
            Arc::clone(&setup.deliverability),
            setup.blocking.clone(),
        )),
    );
    scheduler.resume(recovered);

    // Settings SIGHUP may change are read through `setup.live` (super::reload).
    let (smtp_blocking, smtp_limiter) = (setup.blocking.clone(), setup.login_limiter.clone());
    let smtp = Rc::new(SmtpShard::new(
        ShardView::new(Arc::clone(&setup.live), move |live, _| {
            smtp_settings(live, &smtp_blocking, &smtp_limiter)
        }),
        Rc::clone(&queue),
        Rc::clone(&scheduler),
        shutdown.clone(),
        Arc::clone(&setup.ip_table),
        setup.resolver.clone(),
    ));

    // Bound on the main thread before the privilege drop (super::listeners); this shard adopts
    // its own sockets and only now starts accepting on them.
    let listeners = setup
        .listeners
        .take(id)
        .ok_or_else(|| "no listening sockets were bound for this shard".to_string())?;
    let mut accept_loops = Vec::new();
    for (addr, listener) in listeners.smtp {
        let smtp = Rc::clone(&smtp);
        accept_loops.push(listen(addr, listener, &shutdown, move |stream| {
            let session = crate::smtp::connection::serve(stream, Rc::clone(&smtp));
            glommio::spawn_local(counted(crate::metrics::Listener::Smtp, session)).detach();
        }));
    }
    for (sockets, kind) in [
        (listeners.smtps, SmtpListener::Smtps),
        (listeners.submission, SmtpListener::Submission),
    ] {
        for (addr, listener) in sockets {
            let smtp = Rc::clone(&smtp);
            accept_loops.push(listen(addr, listener, &shutdown, move |stream| {
                let session = crate::smtp::connection::serve_as(stream, Rc::clone(&smtp), kind);
                glommio::spawn_local(session).detach();
            }));
        }
    }
    let blocking = setup.blocking.clone();
    let limiter = setup.login_limiter.clone();
    let pop3 = Rc::new(ShardView::new(Arc::clone(&setup.live), move |live, _| {
        pop3_shard(live, blocking.clone(), limiter.clone())
    }));
    for (sockets, implicit_tls) in [(listeners.pop3, false), (listeners.pop3s, true)] {
        for (addr, listener) in sockets {
            let pop3 = Rc::clone(&pop3);
            accept_loops.push(listen(addr, listener, &shutdown, move |stream| {
                let session = crate::pop3::connection::serve(stream, pop3.get(), implicit_tls);
                let listener = if implicit_tls {
                    crate::metrics::Listener::Pop3s
                } else {
                    crate::metrics::Listener::Pop3
                };
                glommio::spawn_local(counted(listener, session)).detach();
            }));
        }
    }
    // Messages from the injection socket (crate::inject), committed like SMTP's.
    if let Some(requests) = setup.inject.get(id).cloned() {
        glommio::spawn_local(crate::inject::serve_shard(requests, Rc::clone(&smtp))).detach();
    }
    // Queue control from the control socket (crate::control); the scheduler will answer it.
    if let Some(requests) = setup.control.get(id).cloned() {
        glommio::spawn_local(crate::control::serve_shard(requests, scheduler.clone())).detach();
    }
    // The HTTP control plane's requests: injected messages to commit, metrics to report.
    if let Some(requests) = setup.http.get(id).cloned() {
        let serve = crate::http::serve_shard(
            requests,
            Rc::clone(&queue),
            Rc::clone(&scheduler),
            http_owner,
        );
        glommio::spawn_local(serve).detach();
    }
    Ok(Running {
        queue,
        scheduler,
        smtp,
        accept_loops,
    })
}

/// The POP3 service's per-shard state. POP3 sessions need no draining at shutdown: a session
/// that ends without QUIT deletes nothing (RFC 1939 §6). After a reload, the failed-login
/// counters of the `previous` state carry over.
fn pop3_shard(live: &Live, blocking: BlockingPool, limiter: SharedLimiter) -> Pop3Shard {
    let config = &live.config;
    let mut settings = Pop3Settings::new(config.server.hostname.clone(), config.mail_root());
    settings.plaintext_auth = match config.pop3.allow_plaintext_auth {
        PlaintextAuth::Never => PlaintextPolicy::Never,
        PlaintextAuth::Loopback => PlaintextPolicy::LoopbackOnly,
        PlaintextAuth::Always => PlaintextPolicy::Always,
    };
    settings.idle_timeout = Duration::from_secs(config.pop3.idle_timeout_secs);
    settings.apop_secrets = config.pop3.apop_secrets.clone();
    settings.failed_login_delay = Duration::from_millis(config.auth.failure_delay_ms);
    Pop3Shard::new(
        settings,
        live.tls.clone(),
        password_checker(config),
        blocking,
    )
    .with_limiter(limiter)
}

/// The password checker of SMTP AUTH and POP3: a checkpassword program, or the built-in database.
fn password_checker(config: &Config) -> PasswordChecker {
    match config.checkpassword().split_first() {
        Some((program, args)) => PasswordChecker::Checkpassword {
            program: program.into(),
            args: args.to_vec(),
        },
        None => PasswordChecker::Builtin {
            passwd: config.passwd_path(),
        },
    }
}

/// SMTP AUTH with POP3's password checker and the server's failed-login limiter.
fn smtp_auth(
    config: &Config,
    blocking: &BlockingPool,
    limiter: &SharedLimiter,
) -> Option<SmtpAuth> {
    let auth = SmtpAuth {
        checker: password_checker(config),
        pool: blocking.clone(),
        limiter: limiter.clone(),
        failure_delay: Duration::from_millis(config.auth.failure_delay_ms),
        plaintext: plaintext_policy(config.submission.allow_plaintext_auth),
        sender_login_match: config.submission.sender_login_match,
        local_domains: config.local.domains.clone().into(),
    };
    Some(auth)
}

fn plaintext_policy(setting: PlaintextAuth) -> PlaintextPolicy {
    match setting {
        PlaintextAuth::Never => PlaintextPolicy::Never,
        PlaintextAuth::Loopback => PlaintextPolicy::LoopbackOnly,
        PlaintextAuth::Always => PlaintextPolicy::Always,
    }
}

impl Running {
    async fn stop(self) {
        for handle in &self.accept_loops {
            handle.cancel();
        }
        self.scheduler.stop();
        // Sessions get their 421 (or finish a commit first); deliveries under way land and are
        // recorded, so nothing is delivered twice after the restart.
        let started = Instant::now();
        let busy = || self.smtp.open_sessions() + self.scheduler.attempts_in_flight();
        while busy() > 0 && started.elapsed() < SESSION_DRAIN {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        if busy() > 0 {
            warn!(
                "stopping with {} SMTP sessions and {} deliveries still under way; \
                 unrecorded deliveries are repeated after the restart",
                self.smtp.open_sessions(),
                self.scheduler.attempts_in_flight()
            );
        }
        if let Err(e) = self.queue.close().await {
            error!("queue did not close cleanly: {e}");
        }
    }
}

/// Adopts `listener` (bound to `addr` before the privilege drop) on this shard and starts its
/// accept loop, which hands every connection to `spawn` until shutdown.
fn listen(
    addr: SocketAddr,
    listener: std::net::TcpListener,
    shutdown: &shards::ShutdownSignal,
    spawn: impl Fn(glommio::net::TcpStream) + 'static,
) -> glommio::task::JoinHandle<()> {
    let listener = shards::adopt_listener(listener);
    log::debug!("accepting on {addr}");
    let shutdown = shutdown.clone();
    glommio::spawn_local(accept_loop(listener, shutdown, spawn)).detach()
}

/// Accepts connections until shutdown, handing each to `spawn`.
async fn accept_loop(
    listener: glommio::net::TcpListener,
    shutdown: shards::ShutdownSignal,
    spawn: impl Fn(glommio::net::TcpStream),
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => spawn(stream),
            Some(Err(e)) => {
                // EMFILE and friends: pause instead of spinning.
                warn!("accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The SMTP service's reloadable settings a configuration gives.
fn smtp_settings(live: &Live, blocking: &BlockingPool, limiter: &SharedLimiter) -> SmtpSettings {
    let config = &live.config;
    let smtp = &config.smtp;
    SmtpSettings {
        tls: live.tls.clone(),
        auth: smtp_auth(config, blocking, limiter),
        config: Rc::new(smtp_config(config)),
        policy: Rc::new(RcptPolicy::new(config)),
        limits: ConnectionLimits {
            max_sessions: smtp.max_sessions_per_shard,
            command_timeout: Duration::from_secs(smtp.command_timeout_secs),
            data_timeout: Duration::from_secs(smtp.data_timeout_secs),
        },
        access: crate::abuse::AccessRules::from_section(smtp),
        dnsbl_zones: smtp.dnsbl_zones.clone(),
        greeting_delay: Duration::from_millis(smtp.greeting_delay_ms),
        pace: crate::abuse::pace::PaceLimits {
            command_timeout: Duration::from_secs(smtp.command_timeout_secs),
            data_timeout: Duration::from_secs(smtp.data_timeout_secs),
            min_data_rate: smtp.min_data_rate,
            grace: Duration::from_secs(smtp.min_data_rate_grace_secs),
        },
    }
}

/// The SMTP session settings a configuration gives (also `ringmail sendmail -bs`'s).
pub(crate) fn smtp_config(config: &Config) -> SmtpConfig {
    SmtpConfig {
        hostname: config.server.hostname.clone(),
        max_message_size: config.smtp.max_message_size,
        max_recipients: config.smtp.max_recipients,
        long_lines: match config.smtp.long_lines {
            LongLinesSetting::Reject => LongLines::Reject,
            LongLinesSetting::Keep => LongLines::Keep,
        },
        max_hops: config.smtp.max_hops,
        max_errors: config.smtp.max_errors,
        max_commands: 100_000,
        forbid_text_before_354: true,
    }
}

/// Runs one connection's session, counted in /metrics as a connection and, while it lasts, an
/// open session of `listener`.
async fn counted(
    listener: crate::metrics::Listener,
    session: impl std::future::Future<Output = ()>,
) {
    crate::metrics::connection_opened(listener);
    crate::metrics::session_started(listener);
    struct Ended(crate::metrics::Listener);
    impl Drop for Ended {
        fn drop(&mut self) {
            crate::metrics::session_ended(self.0);
        }
    }
    let _ended = Ended(listener);
    session.await;
}
