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
//! | SIGHUP          | reopen the log file; the configuration is not reloaded (the log says so) |
//! | SIGUSR1         | reopen the log file (for logrotate's `postrotate`) |
//! | SIGPIPE         | ignored: a client that resets its connection costs one write an `EPIPE` |

mod listeners;
pub mod privileges;
mod relay;
mod shard;

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
}

/// Runs the server until it is told to stop. Returns once every shard has shut down.
pub fn run(mut config: Config) -> Result<(), ServerError> {
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
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(
            crate::tls::load_server_config(cert, key)
                .map_err(|e| ServerError::Tls(e.to_string()))?,
        ),
        _ => None,
    };

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
    let listen = listeners::resolve(&config)?;
    let bound = listeners::bind_all(&listen, shard_count)?;
    // Delivery as system users keeps one small root process (local::helper), started now.
    let as_users = config.local.system_users || config.local.assign.is_some();
    if as_users && matches!(identity, privileges::Identity::Drop(_)) {
        crate::local::helper::start(config.local.min_uid).map_err(|e| {
            ServerError::Privileges(format!("cannot start the local-delivery helper: {e}"))
        })?;
    }
    identity.drop_privileges()?;

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
    let (control_senders, control) = crate::control::channels(shard_count);
    let socket = crate::control::socket_path(data_dir);
    let control_server = crate::control::ControlServer::start(&sidecar, &socket, control_senders)
        .map_err(|e| {
        ServerError::DataDir(format!("control socket {}: {e}", socket.display()))
    })?;
    let setup = Arc::new(Setup {
        config,
        listen,
        tls,
        blocking,
        control,
        resolver,
        listeners: bound,
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
    shards::install_signal_handlers_with(&set, signal_actions(&control_server))
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
    announce(&setup, shard_count);

    set.join().map_err(|e| ServerError::Shard(e.to_string()))?;
    info!("ringmail stopped");
    Ok(())
}

/// What SIGALRM, SIGHUP and SIGUSR1 do (the table in the module header). Each only hands work
/// off, so the signal thread is free for the next signal at once.
fn signal_actions(control: &crate::control::ControlServer) -> Vec<shards::SignalAction> {
    use shards::SignalAction;
    let requester = control.requester();
    vec![
        SignalAction::new(libc::SIGALRM, move || {
            requester.submit(crate::control::ControlRequest::Flush, "signal ALRM")
        }),
        SignalAction::new(libc::SIGHUP, || crate::logging::reopen(libc::SIGHUP)),
        SignalAction::new(libc::SIGUSR1, || crate::logging::reopen(libc::SIGUSR1)),
    ]
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
