//! Running the server: take the data directory's lock, start one shard per CPU, let each open its
//! slice of the queue and its listeners, and on SIGTERM/SIGINT shut everything down in order.

mod listeners;
pub mod policy;
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
    /// The resolver could not be set up (no usable nameserver).
    Dns(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::DataDir(m) => write!(f, "data directory: {m}"),
            ServerError::Listen(m) => write!(f, "listen: {m}"),
            ServerError::Tls(m) => write!(f, "tls: {m}"),
            ServerError::Shard(m) => write!(f, "shard: {m}"),
            ServerError::Dns(m) => write!(f, "dns: {m}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Blocking-pool threads: enough to keep argon2 checks (tens of ms each) from queueing behind one
/// another on a small host.
const BLOCKING_THREADS: usize = 4;

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
}

/// Runs the server until it is told to stop. Returns once every shard has shut down.
pub fn run(mut config: Config) -> Result<(), ServerError> {
    crate::logging::init(crate::logging::parse_level(&config.server.log_level));
    crate::tls::install_default_provider();
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(
            crate::tls::load_server_config(cert, key)
                .map_err(|e| ServerError::Tls(e.to_string()))?,
        ),
        _ => None,
    };

    let data_dir = &config.server.data_dir;
    crate::durable_dir::create_dir_all(data_dir)
        .map_err(|e| ServerError::DataDir(format!("cannot create {}: {e}", data_dir.display())))?;
    // glommio's file calls resolve relative paths against no directory at all (EBADF), so every
    // path the shards use is made absolute once, here.
    config.server.data_dir = std::path::absolute(data_dir)
        .map_err(|e| ServerError::DataDir(format!("{}: {e}", data_dir.display())))?;
    let data_dir = &config.server.data_dir;
    let _lock =
        shards::DirLock::acquire(data_dir).map_err(|e| ServerError::DataDir(e.to_string()))?;
    crate::durable_dir::create_dir_all(&config.mail_root()).map_err(|e| {
        ServerError::DataDir(format!(
            "cannot create {}: {e}",
            config.mail_root().display()
        ))
    })?;

    let listen = listeners::resolve(&config)?;
    let blocking = crate::blocking::BlockingPool::new(BLOCKING_THREADS);
    let shard_count = match config.server.shards {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    // The sidecar thread runs the resolver and the control socket; both live until `run`
    // returns. The control socket is (re)created only now that the lock is ours, so a second
    // server never unlinks the first one's socket; it is dropped (removed) first.
    let sidecar = crate::sidecar::Sidecar::start()
        .map_err(|e| ServerError::Shard(format!("cannot start the sidecar thread: {e}")))?;
    let resolver = crate::dns::Resolver::start(&sidecar, &relay::dns_settings(&config))
        .map_err(|e| ServerError::Dns(e.to_string()))?;
    let (control_senders, control) = crate::control::channels(shard_count);
    let socket = crate::control::socket_path(data_dir);
    let _control = crate::control::ControlServer::start(&sidecar, &socket, control_senders)
        .map_err(|e| ServerError::DataDir(format!("control socket {}: {e}", socket.display())))?;
    let setup = Arc::new(Setup {
        config,
        listen,
        tls,
        blocking,
        control,
        resolver,
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
    shards::install_signal_handlers(&set).map_err(|e| ServerError::Shard(e.to_string()))?;

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
