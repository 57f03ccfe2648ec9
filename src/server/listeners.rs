//! Listen addresses: checked, then bound for every shard before the privilege drop.
//!
//! Every shard listens on each address with `SO_REUSEPORT`, and the kernel would then silently
//! share a port with any other process that did the same. So first each address is bound once
//! here, plainly (no `SO_REUSEPORT`): if that fails, someone else has the port and we say so.
//! Port 0 becomes the free port the kernel picked, so tests can ask for "any port".
//!
//! Then one `SO_REUSEPORT` socket per shard per address is bound and set listening on the main
//! thread, while the process may still be root (ports below 1024 need it), and each shard
//! adopts its own set when it starts, after the drop. The kernel queues connections from the
//! moment a socket listens, but no byte of them is read until a shard, no longer root, accepts.

use super::{ListenPlan, ServerError};
use crate::config::Config;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// The backlog of every listener (DESIGN.md: short queues stall clients for seconds).
const BACKLOG: u32 = 1024;

/// Resolves and checks every configured listen address.
pub fn resolve(config: &Config) -> Result<ListenPlan, ServerError> {
    Ok(ListenPlan {
        smtp: resolve_list("smtp", &config.smtp.listen)?,
        pop3: resolve_list("pop3", &config.pop3.listen)?,
        pop3s: resolve_list("pop3s", &config.pop3.pop3s_listen)?,
        smtps: resolve_list("smtps", &config.smtp.smtps_listen)?,
        submission: resolve_list("submission", &config.submission.listen)?,
    })
}

fn resolve_list(service: &str, list: &[String]) -> Result<Vec<SocketAddr>, ServerError> {
    list.iter()
        .map(|text| {
            // The configuration loader already checked that these parse.
            let addr: SocketAddr = text
                .parse()
                .map_err(|_| ServerError::Listen(format!("{service}: `{text}` is not ip:port")))?;
            let probe = TcpListener::bind(addr).map_err(|e| listen_error(service, addr, &e))?;
            probe
                .local_addr()
                .map_err(|e| ServerError::Listen(format!("{service} on {addr}: {e}")))
        })
        .collect()
}

fn listen_error(service: &str, addr: SocketAddr, e: &std::io::Error) -> ServerError {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => " (another program, or another ringmail, listens there)",
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need ringmail to be started as root, or CAP_NET_BIND_SERVICE)"
        }
        _ => "",
    };
    ServerError::Listen(format!("{service} cannot listen on {addr}: {e}{hint}"))
}

/// One shard's listening sockets, bound before the privilege drop.
#[derive(Debug, Default)]
pub struct ShardListeners {
    pub smtp: Vec<(SocketAddr, TcpListener)>,
    pub pop3: Vec<(SocketAddr, TcpListener)>,
    pub pop3s: Vec<(SocketAddr, TcpListener)>,
    pub smtps: Vec<(SocketAddr, TcpListener)>,
    pub submission: Vec<(SocketAddr, TcpListener)>,
}

/// Every shard's listeners, waiting for their shard to take them.
///
/// The mutex is touched once per shard at startup, never while serving.
#[derive(Debug)]
pub struct BoundListeners {
    per_shard: Mutex<Vec<Option<ShardListeners>>>,
}

impl BoundListeners {
    /// Shard `shard`'s listeners; `None` if taken already (each shard takes its own once).
    pub fn take(&self, shard: usize) -> Option<ShardListeners> {
        let mut per_shard = self
            .per_shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        per_shard.get_mut(shard).and_then(Option::take)
    }
}

/// Binds one listening `SO_REUSEPORT` socket per shard for every address in `plan`.
pub fn bind_all(plan: &ListenPlan, shard_count: usize) -> Result<BoundListeners, ServerError> {
    let mut per_shard = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        per_shard.push(Some(ShardListeners {
            smtp: bind_list("smtp", &plan.smtp)?,
            pop3: bind_list("pop3", &plan.pop3)?,
            pop3s: bind_list("pop3s", &plan.pop3s)?,
            smtps: bind_list("smtps", &plan.smtps)?,
            submission: bind_list("submission", &plan.submission)?,
        }));
    }
    Ok(BoundListeners {
        per_shard: Mutex::new(per_shard),
    })
}

fn bind_list(
    service: &str,
    addrs: &[SocketAddr],
) -> Result<Vec<(SocketAddr, TcpListener)>, ServerError> {
    addrs
        .iter()
        .map(|addr| {
            shards::bind_std_listener(*addr, BACKLOG)
                .map(|listener| (*addr, listener))
                .map_err(|e| listen_error(service, *addr, &e))
        })
        .collect()
}
