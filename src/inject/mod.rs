//! Local injection: how `ringmail sendmail` (and any program on the box) hands a message to the
//! running server, with the same durability promise as SMTP.
//!
//! ```text
//! ringmail sendmail ──inject.sock──▶ sidecar (tokio): server.rs ──flume──▶ shard N: serve_shard
//!  (client.rs, blocking)            peer uid (SO_PEERCRED), caps,          recipient policy, then
//!                                   sender check, Received: line           the queue's group commit
//!                                                                          ◀── "ok <queue id>" after fdatasync
//! ```
//!
//! # Security model
//!
//! - **Who may inject**: whoever may connect to the socket (`inject.socket`, mode 0666: every
//!   local user, as every local user may run /usr/sbin/sendmail). To narrow it, put the socket
//!   in a directory only some users can enter. Remote clients never reach it: it is a Unix
//!   socket.
//! - **Who they are**: the kernel says (SO_PEERCRED), not the client. The server records the
//!   uid in the message's first `Received:` line (`Received: (ringmail invoked by uid 1000);`,
//!   qmail-inject's wording), so a forged sender is always traceable to an account.
//! - **What sender they may claim**: `ringmail sendmail` uses the caller's login at
//!   `inject.default_host` unless `-f` says otherwise. With `inject.sender_check = "any"` (the
//!   default, as qmail and Postfix do) any sender is accepted; with `"login"` a caller other
//!   than root and the server's own user may only use their login name as the local part (any
//!   domain), never the null sender: EX_NOPERM (77) otherwise.
//! - **Where it may send**: anywhere, as a relay client may (a local user is trusted to send
//!   mail out); recipients still pass the same checks as SMTP RCPT (`crate::relay::access`):
//!   unknown local users (with `unknown_users = "reject"`), routing characters and unsafe
//!   mailbox names are refused, and the message is refused whole.
//! - **Caps**: the message size is `smtp.max_message_size`, recipients `smtp.max_recipients`,
//!   hops `smtp.max_hops`; the head is capped at [`protocol::MAX_HEAD`]; a client has
//!   [`server::CLIENT_TIMEOUT`] per read; at most 64 injections are read and committed at
//!   once (more wait their turn), so local users cannot make the server hold unbounded mail.
//!
//! # Protocol
//!
//! One message per connection. The client writes a head, a blank line, and exactly `size`
//! octets of message (CRLF line ends, as in SMTP DATA after dot-unstuffing):
//!
//! ```text
//! ringmail-inject 1
//! sender alice@example.test        (empty after the space: the null sender)
//! recipient bob@example.test       (one line per recipient, at least one)
//! size 1234
//!
//! <1234 octets>
//! ```
//!
//! The server answers one line and closes: `ok <queue id>` only once the message is durable
//! (fdatasync'd by the shard's group commit), or `tempfail|nouser|dataerr|noperm <why>`.

pub mod client;
pub mod protocol;
pub mod server;

use crate::envelope::Envelope;
use crate::smtp::connection::SmtpShard;
use crate::smtp::{PeerInfo, RcptVerdict, RecipientPolicy, count_hops, reply};
use log::{error, info};
use protocol::{Outcome, Reply};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;

pub use server::InjectServer;

/// Requests queued per shard before the socket server waits for room.
const SHARD_CHANNEL_CAPACITY: usize = 256;

/// Where the injection socket of `config` is: `inject.socket`, relative to the data directory
/// unless absolute; `None` when injection is turned off (`socket = ""`).
pub fn socket_path(config: &crate::config::Config) -> Option<PathBuf> {
    let socket = &config.inject.socket;
    (!socket.as_os_str().is_empty()).then(|| config.server.data_dir.join(socket))
}

/// Started as root, makes the directory that holds the injection socket usable by the account
/// the server becomes, before the privilege drop: created when missing (mode 0755, owned by
/// that account), or given to that account when it is an empty directory owned by root (what
/// systemd's `RuntimeDirectory=` makes). Any other directory is left alone; binding in it then
/// fails after the drop, and the error names it. The data directory is `make_data_dir`'s.
pub fn prepare_socket_dir(
    socket: &std::path::Path,
    data_dir: &std::path::Path,
    identity: &crate::server::privileges::Identity,
) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    let crate::server::privileges::Identity::Drop(account) = identity else {
        return Ok(());
    };
    let Some(dir) = socket
        .parent()
        .filter(|d| *d != data_dir && !d.as_os_str().is_empty())
    else {
        return Ok(());
    };
    let failed = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", dir.display());
    let created = match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            let empty = std::fs::read_dir(dir)
                .map(|mut entries| entries.next().is_none())
                .unwrap_or(false);
            if !(meta.is_dir() && meta.uid() == 0 && empty) {
                return Ok(());
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| failed("create", e))?;
            true
        }
        Err(e) => return Err(failed("examine", e)),
    };
    // Through a descriptor opened without following symlinks, as make_data_dir does.
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|e| failed("open", e))?;
    std::os::unix::fs::fchown(
        &handle,
        Some(account.uid.as_raw()),
        Some(account.gid.as_raw()),
    )
    .map_err(|e| failed(&format!("give to user {}", account.user), e))?;
    log::info!(
        "{} directory {} for the injection socket, owned by {}",
        if created { "created" } else { "took over" },
        dir.display(),
        account.user
    );
    Ok(())
}

/// A message on its way to a shard, with the one-shot channel its outcome goes back on.
#[derive(Debug)]
pub struct ShardInject {
    pub envelope: Envelope,
    /// The message with our `Received:` line first, CRLF line ends.
    pub message: Vec<u8>,
    /// Who injected it (for the log).
    pub uid: u32,
    pub reply: flume::Sender<Reply>,
}

/// The per-shard channels: senders to the socket server, receiver `i` to shard `i`.
pub fn channels(
    shards: usize,
) -> (
    Vec<flume::Sender<ShardInject>>,
    Vec<flume::Receiver<ShardInject>>,
) {
    (0..shards)
        .map(|_| flume::bounded(SHARD_CHANNEL_CAPACITY))
        .unzip()
}

/// Commits injected messages on one shard until the socket server is gone. Each message is its
/// own task, so messages injected together share one group commit, as SMTP's do.
pub async fn serve_shard(requests: flume::Receiver<ShardInject>, smtp: Rc<SmtpShard>) {
    while let Ok(request) = requests.recv_async().await {
        let smtp = Rc::clone(&smtp);
        glommio::spawn_local(async move {
            let ShardInject {
                envelope,
                message,
                uid,
                reply,
            } = request;
            let outcome = commit(&smtp, envelope, message, uid).await;
            // The client may have given up (timeout); the message is queued all the same.
            let _ = reply.send(outcome);
        })
        .detach();
    }
}

/// The peer the recipient policy sees for a local user: one that may relay, like an
/// authenticated client (see the security model above).
fn local_peer() -> PeerInfo {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    PeerInfo {
        remote: loopback,
        local: loopback,
        authenticated: true,
    }
}

/// Checks the recipients as RCPT would, then makes the message durable and starts its delivery.
async fn commit(smtp: &Rc<SmtpShard>, envelope: Envelope, message: Vec<u8>, uid: u32) -> Reply {
    let peer = local_peer();
    let settings = smtp.settings.get();
    let mut refused = Vec::new();
    let mut outcome = Outcome::DataErr;
    for rcpt in &envelope.recipients {
        let answer = match settings.policy.check_recipient(&peer, rcpt) {
            RcptVerdict::Accept => continue,
            RcptVerdict::UnknownUser => {
                outcome = Outcome::NoUser;
                reply::unknown_user(rcpt)
            }
            RcptVerdict::RelayDenied => reply::relay_denied(rcpt),
            RcptVerdict::BadAddress => reply::unroutable_address(rcpt),
            RcptVerdict::BadDestination => reply::unroutable_destination(rcpt),
            RcptVerdict::TempFail(why) => {
                return Reply::new(Outcome::TempFail, reply::temp_fail(&why).to_wire());
            }
        };
        refused.push(answer.to_wire().trim_end().to_string());
    }
    if !refused.is_empty() {
        return Reply::new(outcome, refused.join("; "));
    }
    if count_hops(&message) > settings.config.max_hops {
        return Reply::new(
            Outcome::DataErr,
            reply::TOO_MANY_HOPS.to_wire().trim_end().to_string(),
        );
    }
    match smtp.queue.commit(&envelope, &message).await {
        Ok(id) => {
            info!(
                "new msg {id}: from <{}> via local uid {uid}, {} bytes, {} recipients",
                envelope.sender,
                message.len(),
                envelope.recipients.len()
            );
            crate::metrics::message_accepted(crate::metrics::Source::Local, message.len());
            smtp.scheduler.submit(id, envelope, message);
            Reply::new(Outcome::Queued, id.to_string())
        }
        Err(e) => {
            error!("inject from uid {uid}: cannot queue a message: {e}");
            Reply::new(Outcome::TempFail, "queue write failed, try again later")
        }
    }
}
