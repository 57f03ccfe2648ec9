//! Checking listen addresses before the shards bind them.
//!
//! Every shard binds each address with `SO_REUSEPORT`, and the kernel would then silently share
//! a port with any other process that did the same. So first each address is bound once here,
//! plainly (no `SO_REUSEPORT`): if that fails, someone else has the port and we say so. Port 0
//! becomes the free port the kernel picked, so tests can ask for "any port".

use super::{ListenPlan, ServerError};
use crate::config::Config;
use std::net::{SocketAddr, TcpListener};

/// Resolves and checks every configured listen address.
pub fn resolve(config: &Config) -> Result<ListenPlan, ServerError> {
    Ok(ListenPlan {
        smtp: resolve_list("smtp", &config.smtp.listen)?,
        pop3: resolve_list("pop3", &config.pop3.listen)?,
        pop3s: resolve_list("pop3s", &config.pop3.pop3s_listen)?,
    })
}

fn resolve_list(service: &str, list: &[String]) -> Result<Vec<SocketAddr>, ServerError> {
    list.iter()
        .map(|text| {
            // The configuration loader already checked that these parse.
            let addr: SocketAddr = text
                .parse()
                .map_err(|_| ServerError::Listen(format!("{service}: `{text}` is not ip:port")))?;
            let probe = TcpListener::bind(addr).map_err(|e| {
                ServerError::Listen(format!("{service} cannot listen on {addr}: {e}"))
            })?;
            probe
                .local_addr()
                .map_err(|e| ServerError::Listen(format!("{service} on {addr}: {e}")))
        })
        .collect()
}
