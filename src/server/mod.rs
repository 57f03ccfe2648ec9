//! Running the server: bind every listener, drop root (see `privileges`), take the data
//! directory's lock, start one shard per CPU, let each open its slice of the queue and adopt its
//! listeners, and on SIGTERM/SIGINT shut everything down in order.
//!
//! Signals, as a qmail operator expects them:
//!
//! | signal          | effect |
//! |-----------------|--------|
//! | SIGTERM, SIGINT | graceful shutdown, exit 0; a second one exits at once (128 + signal) |
//! | SIGALRM         | retry every deferred recipient now (qmail-send's ALRM; `ringmail queue flush`) |
//! | SIGHUP          | reload the configuration file (see `reload`: what changes, what needs a restart) and reopen the log file |
//! | SIGUSR1         | reopen the log file (for logrotate's `postrotate`) |
//! | SIGPIPE         | ignored: a client that resets its connection costs one write an `EPIPE` |

mod listeners;
pub mod privileges;
mod relay;
pub mod reload;
pub(crate) mod shard;

use crate::config::Config;
use log::info;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the server could not start or did not stop cleanly.
#[derive(Debug)]
pub enum ServerError {
    /// The data directory could not be created or locked (another instance holds it).
    DataDir(String),
    /// A listen address could not be bound.
    Listen(String),
    /// TLS certificate or key unusable.
    Tls(String),
    /// A shard failed (queue unreadable, listener lost, panic).
    Shard(String),
    /// The log file could not be opened.
    Log(String),
    /// The resolver could not be set up (no usable nameserver).
    Dns(String),
    /// A setting is wrong for this host (e.g. `server.user` does not exist): the operator
    /// fixes `key` in the configuration file.
    Config { key: &'static str, message: String },
    /// Dropping root failed or did not hold: the server refuses to run.
    Privileges(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::DataDir(m) => write!(f, "data directory: {m}"),
            ServerError::Listen(m) => write!(f, "listen: {m}"),
            ServerError::Tls(m) => write!(f, "tls: {m}"),
            ServerError::Shard(m) => write!(f, "shard: {m}"),
            ServerError::Dns(m) => write!(f, "dns: {m}"),
            ServerError::Config { key, message } => write!(f, "{key}: {message}"),
            ServerError::Privileges(m) => write!(f, "privileges: {m}"),
            ServerError::Log(m) => write!(f, "log: {m}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Concrete listen addresses (port 0 already resolved to a real port) for each service.
#[derive(Debug, Clone)]
pub struct ListenPlan {
    pub smtp: Vec<SocketAddr>,
    pub pop3: Vec<SocketAddr>,
    pub pop3s: Vec<SocketAddr>,
    pub smtps: Vec<SocketAddr>,
    pub submission: Vec<SocketAddr>,
}

/// What every shard starts from; built once on the main thread, shared read-only.
pub struct Setup {
    pub config: Config,
    pub listen: ListenPlan,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Threads for work that would block a shard: password hashing, checkpassword programs,
    /// maildir listings.
    pub blocking: crate::blocking::BlockingPool,
    /// Control requests (flush, pause, ...) from the control socket; shard `i` serves
    /// `control[i]`.
    pub control: Vec<flume::Receiver<crate::control::ControlMessage>>,
    /// The DNS resolver (on the sidecar thread), shared by every shard's destination owner.
    pub resolver: crate::dns::Resolver,
    /// Every shard's listening sockets, bound before the privilege drop; shard `i` takes its
    /// own once.
    pub listeners: listeners::BoundListeners,
    /// Redis on the sidecar, when `[redis] url` is set (shared shaping limits).
    pub redis: Option<crate::redis_client::RedisClient>,
    /// Backoff suspensions in force, published by the owner shards (queue status, metrics).
    pub suspensions: Arc<crate::relay::suspensions::SuspensionBoard>,
    /// Requests from the HTTP control plane (injection commits, metrics); shard `i` serves
    /// `http[i]`.
    pub http: Vec<flume::Receiver<crate::http::ShardRequest>>,
    /// The settings SIGHUP may change (and the certificate); shards read them at session start.
    pub live: Arc<reload::Reloadable>,
    /// Per-client-IP session and message counters for the whole server (`crate::abuse`).
    pub ip_table: Arc<crate::abuse::IpTable>,
    /// Messages from the injection socket (`ringmail sendmail`); shard `i` serves `inject[i]`.
    pub inject: Vec<flume::Receiver<crate::inject::ShardInject>>,
    /// Suppression list, DKIM keys, unsubscribe secret, feedback address (`delivery::prepare`).
    pub deliverability: Arc<crate::delivery::prepare::Deliverability>,
    /// The failed-login counters of SMTP AUTH and POP3, shared by every shard.
    pub login_limiter: crate::auth::limiter::SharedLimiter,
    /// Which certificate TLS uses, for the startup lines.
    pub tls_source: TlsSource,
}

/// Where the TLS certificate came from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// `[tls] cert`.
    Configured(std::path::PathBuf),
    /// The self-signed certificate in the data directory (`tls::self_signed`).
    SelfSigned {
        cert: std::path::PathBuf,
        created: bool,
    },
    /// No certificate: no STARTTLS, SMTPS, STLS or POP3S.
    None,
}

/// Runs the server until it is told to stop. Returns once every shard has shut down.
pub fn run(config: Config) -> Result<(), ServerError> {
    run_from(config, None)
}

/// [`run`] for a configuration read from `path`, which SIGHUP reads again (`reload`).
pub fn run_from(mut config: Config, path: Option<std::path::PathBuf>) -> Result<(), ServerError> {
    crate::logging::init(&log_settings(&config)).map_err(|e| {
        ServerError::Log(format!(
            "cannot open {}: {e}",
            config.server.log_file.display()
        ))
    })?;
    // Every way out of `run` (the last line, an error, a panic unwinding) flushes the log.
    let _flush_log = crate::logging::FlushOnDrop;
    crate::tls::install_default_provider();
    // Read before the privilege drop: a private key is often readable by root only. (A reload
    // on SIGHUP would run unprivileged and needs the key readable by server.user.)
    let configured_tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(
            crate::tls::load_server_config(cert, key)
                .map_err(|e| ServerError::Tls(e.to_string()))?,
        ),
        _ => None,
    };

    // DKIM keys and the unsubscribe secret are read before the drop too (root-only files); a
    // bad one stops startup, naming the file.
    let dkim = crate::dkim::DkimKeys::load(&config.dkim).map_err(|e| ServerError::Config {
        key: "dkim.keys",
        message: e.to_string(),
    })?;
    let unsubscribe = crate::unsubscribe::Unsubscriber::load(&config.unsubscribe)
        .map_err(|message| ServerError::Config {
            key: "unsubscribe.secret_file",
            message,
        })?
        .map(Arc::new);

    // Root: who to become, and the data directory made theirs. Then the ports (below 1024 need
    // root), then the drop, before any thread exists or any listener accepts (privileges.rs).
    let identity = privileges::Identity::for_config(&config.server)?;
    let data_dir = &config.server.data_dir;
    privileges::make_data_dir(data_dir, &identity)?;
    // glommio's file calls resolve relative paths against no directory at all (EBADF), so every
    // path the shards use is made absolute once, here.
    config.server.data_dir = std::path::absolute(data_dir)
        .map_err(|e| ServerError::DataDir(format!("{}: {e}", data_dir.display())))?;
    let shard_count = match config.server.shards {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    if let Some(socket) = crate::inject::socket_path(&config) {
        crate::inject::prepare_socket_dir(&socket, &config.server.data_dir, &identity)
            .map_err(ServerError::DataDir)?;
    }
    let listen = listeners::resolve(&config)?;
    let bound = listeners::bind_all(&listen, shard_count)?;
    // The HTTP control plane's socket and token, also while still root (src/http/).
    let http_listener = match config.http.listen_address() {
        Some(addr) => Some(crate::http::bind(&addr).map_err(ServerError::Listen)?),
        None => None,
    };
    let http_token = crate::http::read_token(&config).map_err(|message| ServerError::Config {
        key: "http.token_file",
        message,
    })?;
    // Delivery as system users keeps one small root process (local::helper), started now.
    let as_users = config.local.system_users || config.local.assign.is_some();
    if as_users && matches!(identity, privileges::Identity::Drop(_)) {
        crate::local::helper::start(config.local.min_uid).map_err(|e| {
            ServerError::Privileges(format!("cannot start the local-delivery helper: {e}"))
        })?;
    }
    identity.drop_privileges()?;
    crate::metrics::init(shard_count);

    // From here on the server is unprivileged; it creates and opens its files only now.
    let data_dir = &config.server.data_dir;
    privileges::check_data_dir(
        data_dir,
        &config.queue_dir(),
        &config.mail_root(),
        &identity,
    )?;
    let _lock =
        shards::DirLock::acquire(data_dir).map_err(|e| ServerError::DataDir(e.to_string()))?;
    crate::durable_dir::create_dir_all(&config.mail_root()).map_err(|e| {
        ServerError::DataDir(format!(
            "cannot create {}: {e}",
            config.mail_root().display()
        ))
    })?;
    let (tls, tls_source) = choose_certificate(&config, configured_tls)?;
    let login_limiter = crate::auth::limiter::SharedLimiter::new(login_limits(&config));

    let suppression =
        crate::suppression::SuppressionList::open(&crate::suppression::path(data_dir))
            .map_err(ServerError::DataDir)?;
    // `ringmail suppress` appends to the file; the running server picks it up from there.
    suppression.watch();
    let deliverability = Arc::new(crate::delivery::prepare::Deliverability {
        dkim,
        unsubscribe,
        suppression,
        auto_on_hard_bounce: config.suppression.auto_on_hard_bounce,
        feedback_address: (!config.feedback.address.is_empty())
            .then(|| config.feedback.address.to_ascii_lowercase()),
    });

    let blocking = crate::blocking::BlockingPool::new(
        "ringmail-blocking",
        config.server.blocking_threads,
        config.server.blocking_queue,
    );
    // The sidecar thread runs the resolver and the control socket; both live until `run`
    // returns. The control socket is (re)created only now that the lock is ours, so a second
    // server never unlinks the first one's socket; it is dropped (removed) first.
    let sidecar = crate::sidecar::Sidecar::start()
        .map_err(|e| ServerError::Shard(format!("cannot start the sidecar thread: {e}")))?;
    let resolver = crate::dns::Resolver::start(&sidecar, &relay::dns_settings(&config))
        .map_err(|e| ServerError::Dns(e.to_string()))?;
    let redis = match config.redis.url.as_str() {
        "" => None,
        url => Some(
            crate::redis_client::RedisClient::start(
                &sidecar,
                url,
                std::time::Duration::from_millis(config.redis.timeout_ms),
            )
            .map_err(|message| ServerError::Config {
                key: "redis.url",
                message,
            })?,
        ),
    };
    let suspensions = crate::relay::suspensions::SuspensionBoard::new(shard_count);
    let (control_senders, control) = crate::control::channels(shard_count);
    let socket = crate::control::socket_path(data_dir);
    let board = Arc::clone(&suspensions);
    let control_server = crate::control::ControlServer::start_with_status_notes(
        &sidecar,
        &socket,
        control_senders,
        Arc::new(move || board.status_lines()),
    )
    .map_err(|e| ServerError::DataDir(format!("control socket {}: {e}", socket.display())))?;
    let (http_senders, http) = crate::http::channels(shard_count);
    let http_server = match http_listener {
        Some(listener) => Some(
            crate::http::HttpServer::start(
                &sidecar,
                listener,
                crate::http::HttpSettings::new(&config, http_token),
                &config,
                http_senders,
                control_server.requester(),
                crate::http::PlaneSources {
                    suspensions: Arc::clone(&suspensions),
                    deliverability: Arc::clone(&deliverability),
                },
            )
            .map_err(|e| ServerError::Listen(format!("http: {e}")))?,
        ),
        None => None,
    };
    let live = Arc::new(reload::Reloadable::new(
        reload::Live {
            config: config.clone(),
            tls: tls.clone(),
        },
        path.map(|p| std::path::absolute(&p).unwrap_or(p)),
    ));
    let (inject_senders, inject) = crate::inject::channels(shard_count);
    let _inject_server = match crate::inject::socket_path(&config) {
        Some(path) => Some(
            crate::inject::InjectServer::start(
                &sidecar,
                &path,
                crate::inject::server::InjectSettings::from_config(&config),
                inject_senders,
            )
            .map_err(|e| {
                ServerError::DataDir(format!("injection socket {}: {e}", path.display()))
            })?,
        ),
        None => None,
    };
    let setup = Arc::new(Setup {
        config,
        listen,
        tls,
        blocking,
        control,
        resolver,
        listeners: bound,
        redis,
        suspensions,
        login_limiter,
        tls_source,
        http,
        live: Arc::clone(&live),
        ip_table: Arc::new(crate::abuse::IpTable::new()),
        inject,
        deliverability,
    });

    let shard_setup = Arc::clone(&setup);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let set = shards::start::<crate::relay::owner::MeshMessage, _, _>(
        shards::ShardSetConfig {
            shard_count,
            pin_to_cpus: true,
            name: "ringmail".into(),
            mesh_capacity: 1024,
        },
        move |ctx| shard::run(ctx, Arc::clone(&shard_setup), ready_tx.clone()),
    )
    .map_err(|e| ServerError::Shard(e.to_string()))?;
    shards::install_signal_handlers_with(&set, signal_actions(&control_server, live))
        .map_err(|e| ServerError::Shard(e.to_string()))?;

    // Each shard reports once its queue is recovered and its listeners are bound; only then is
    // the server announced.
    let mut failure = None;
    for _ in 0..shard_count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                failure.get_or_insert(message);
            }
            Err(_) => break,
        }
    }
    if let Some(message) = failure {
        set.shutdown_handle().trigger();
        let _ = set.join();
        return Err(ServerError::Shard(message));
    }
    // Before `announce`, whose last line tells a waiting reader that startup is complete.
    if let Some(http) = &http_server {
        println!("ringmail: http listening on {}", http.local_addr());
    }
    announce(&setup, shard_count);

    set.join().map_err(|e| ServerError::Shard(e.to_string()))?;
    info!("ringmail stopped");
    Ok(())
}

/// What SIGALRM, SIGHUP and SIGUSR1 do (the table in the module header). Each only hands work
/// off, so the signal thread is free for the next signal at once.
fn signal_actions(
    control: &crate::control::ControlServer,
    live: Arc<reload::Reloadable>,
) -> Vec<shards::SignalAction> {
    use shards::SignalAction;
    let requester = control.requester();
    vec![
        SignalAction::new(libc::SIGALRM, move || {
            requester.submit(crate::control::ControlRequest::Flush, "signal ALRM")
        }),
        SignalAction::new(libc::SIGHUP, move || {
            crate::logging::reopen(libc::SIGHUP);
            live.on_sighup();
        }),
        SignalAction::new(libc::SIGUSR1, || crate::logging::reopen(libc::SIGUSR1)),
    ]
}

/// The configured certificate, else the self-signed one (made now on first start: after the
/// privilege drop and with the data directory locked, so it belongs to the user that reads it),
/// else none.
fn choose_certificate(
    config: &Config,
    configured: Option<Arc<rustls::ServerConfig>>,
) -> Result<(Option<Arc<rustls::ServerConfig>>, TlsSource), ServerError> {
    if let Some(tls) = configured {
        let cert = config.tls.cert.clone().unwrap_or_default();
        return Ok((Some(tls), TlsSource::Configured(cert)));
    }
    if !config.tls.self_signed {
        return Ok((None, TlsSource::None));
    }
    let tls_err = |e: crate::tls::TlsError| ServerError::Tls(e.to_string());
    let made = crate::tls::self_signed::ensure(&config.self_signed_dir(), &config.server.hostname)
        .map_err(tls_err)?;
    let tls = crate::tls::load_server_config(&made.cert, &made.key).map_err(tls_err)?;
    Ok((
        Some(tls),
        TlsSource::SelfSigned {
            cert: made.cert,
            created: made.created,
        },
    ))
}

/// The failed-login limits from `[auth]`.
fn login_limits(config: &Config) -> crate::auth::limiter::LimiterConfig {
    crate::auth::limiter::LimiterConfig {
        window: std::time::Duration::from_secs(config.auth.failure_window_secs),
        max_per_ip: config.auth.max_failures_per_ip,
        max_per_user: config.auth.max_failures_per_user,
        ..Default::default()
    }
}

/// The logger's settings from `[server]`.
fn log_settings(config: &Config) -> crate::logging::LogSettings {
    let server = &config.server;
    crate::logging::LogSettings {
        level: crate::logging::parse_level(&server.log_level),
        file: (!server.log_file.as_os_str().is_empty()).then(|| server.log_file.clone()),
        format: match server.log_format {
            crate::config::LogFormatSetting::Text => crate::logging::LogFormat::Text,
            crate::config::LogFormatSetting::Json => crate::logging::LogFormat::Json,
        },
    }
}

/// Tells the operator (on stdout, which tests read too) where ringmail listens and where mail goes.
fn announce(setup: &Setup, shard_count: usize) {
    let config = &setup.config;
    for addr in &setup.listen.smtp {
        println!("ringmail: smtp listening on {addr}");
    }
    for addr in &setup.listen.pop3 {
        println!("ringmail: pop3 listening on {addr}");
    }
    for addr in &setup.listen.pop3s {
        println!("ringmail: pop3s listening on {addr}");
    }
    if let Some(socket) = crate::inject::socket_path(config) {
        println!("ringmail: injection socket {}", socket.display());
    }
    for addr in &setup.listen.smtps {
        println!("ringmail: smtps listening on {addr}");
    }
    for addr in &setup.listen.submission {
        println!("ringmail: submission listening on {addr}");
    }
    match &setup.tls_source {
        TlsSource::Configured(cert) => {
            println!("ringmail: tls certificate {}", cert.display());
        }
        TlsSource::SelfSigned { cert, created } => {
            let how = if *created { "created now" } else { "reused" };
            println!(
                "ringmail: tls certificate {} (self-signed for {}, {how}; set [tls] cert and key for a real one)",
                cert.display(),
                config.server.hostname
            );
        }
        TlsSource::None => {
            println!("ringmail: tls off (no [tls] certificate, self_signed = false)");
        }
    }
    println!(
        "ringmail: mail for {} goes to {}/<domain>/<user>/Maildir",
        config.local.domains.join(", "),
        config.mail_root().display()
    );
    println!(
        "ringmail: queue in {}, {shard_count} shards; stop with SIGTERM or Ctrl-C",
        config.queue_dir().display()
    );
    info!(
        "ringmail started: {shard_count} shards, hostname {}",
        config.server.hostname
    );
}
