//! Queue control on the running server (qmailctl, postqueue/postsuper): flush, delete, bounce,
//! pause, resume, status, over a Unix socket at `<data_dir>/control.sock`.
//!
//! # Where each part runs
//!
//! ```text
//! ringmail queue flush ──control.sock──▶ sidecar (tokio): ControlServer ──flume──▶ shard N: serve_shard
//!  (client.rs, blocking)                 (server.rs: parse, fan out,               └▶ ControlHandler
//!                                         gather, summarize.rs)                       (the scheduler)
//! ```
//!
//! The server itself sends `flush` on SIGALRM (qmail-send's behaviour) through a
//! [`ControlRequester`], the same fan-out without a socket.
//!
//! The socket is bound only after the data directory's lock is held (so a second server that
//! fails to lock never unlinks the first one's socket), with mode 0600, and removed at shutdown.
//!
//! # Protocol
//!
//! One request per connection. The client writes one line (at most [`MAX_REQUEST_LINE`] bytes,
//! ending in `\n`; a trailing `\r` is ignored, and a last line without `\n` counts if the client
//! half-closes). The server answers with one status line, `ok TEXT` or `err TEXT`, then zero or
//! more detail lines, then closes the connection: the reply is everything up to EOF.
//!
//! | request        | goes to                  | success reply                                   |
//! |----------------|--------------------------|-------------------------------------------------|
//! | `flush`        | every shard              | `ok flushed 12 recipients`                      |
//! | `pause`        | every shard              | `ok delivery paused on 2 shards`                |
//! | `resume`       | every shard              | `ok delivery resumed on 2 shards`               |
//! | `status`       | every shard              | `ok running, 12 recipients pending` + per shard `shard 0: running, 5 pending`, then one line per backoff suspension in force |
//! | `delete ID`    | the shard named in `ID`  | `ok deleted 1a.0.3: 2 recipients dropped`       |
//! | `bounce ID`    | the shard named in `ID`  | `ok bounced 1a.0.3: 2 recipients returned to the sender` |
//!
//! Errors: `err unknown command`, `err request line too long (limit 1024 bytes)`,
//! `err no such message 1a.0.3`, `err shard 1: did not answer within 10 s`,
//! `err shards 0, 1: delivery control is not available in this build`. When some shards
//! succeeded and others failed, the detail lines say what the successful ones did.
//!
//! Command words are case-insensitive; `ID` is a [`MessageId`] as `ringmail queue list` prints it
//! (`<hex segment>.<shard>.<index>`).
//!
//! # The shard side
//!
//! Each shard spawns [`serve_shard`] on its executor with a [`ControlHandler`] (implemented by
//! the scheduler); requests arrive as [`ControlMessage`]s, each carrying a one-shot reply sender.

pub mod client;
pub mod protocol;
mod server;
mod summary;

pub use server::{ControlRequester, ControlServer, SHARD_TIMEOUT, StatusNotes};

use crate::queue::MessageId;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

/// The socket's file name inside the data directory.
pub const SOCKET_FILE: &str = "control.sock";

/// The longest request line accepted, without its newline. Requests are a word and an id, so
/// 1 KiB is generous; anything longer is a confused or hostile client.
pub const MAX_REQUEST_LINE: usize = 1024;

/// Requests queued per shard before the control server waits: a shard works through them one
/// at a time, and operators issue them by hand.
const SHARD_CHANNEL_CAPACITY: usize = 16;

/// Where the control socket of the server using `data_dir` lives.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// What the operator asked for, as one shard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// Retry every deferred recipient now, ignoring its retry schedule.
    Flush,
    /// Stop starting deliveries (those under way finish); mail is still accepted and queued.
    Pause,
    /// Start delivering again after `Pause`.
    Resume,
    /// Drop a message: its pending recipients are marked failed, no bounce is sent.
    Delete(MessageId),
    /// Give up on a message: its pending recipients bounce to the sender ("deleted by the
    /// postmaster").
    Bounce(MessageId),
    /// Whether delivery is paused and how many recipients are pending.
    Status,
}

/// One shard's answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardReply {
    /// Done; `count` is the recipients affected (flushed, dropped, bounced; 0 for pause/resume).
    Done { count: u64 },
    /// The message named in `Delete`/`Bounce` is not in this shard's queue (or is finished).
    NotFound,
    /// The request could not be carried out; the text says why, for the operator.
    Failed(String),
    /// The answer to `Status`.
    Status { paused: bool, pending: u64 },
}

/// A request travelling to a shard, with the one-shot channel its reply goes back on.
#[derive(Debug)]
pub struct ControlMessage {
    pub request: ControlRequest,
    pub reply: flume::Sender<ShardReply>,
}

/// What a shard does with control requests; the scheduler implements it. The future runs on the
/// shard's own executor, so it may hold `Rc`s and await glommio I/O.
pub trait ControlHandler {
    fn handle(&self, request: ControlRequest) -> Pin<Box<dyn Future<Output = ShardReply> + '_>>;
}

/// The per-shard request channels: the senders go to [`ControlServer::start`], receiver `i` to
/// shard `i`'s [`serve_shard`].
pub fn channels(
    shards: usize,
) -> (
    Vec<flume::Sender<ControlMessage>>,
    Vec<flume::Receiver<ControlMessage>>,
) {
    (0..shards)
        .map(|_| flume::bounded(SHARD_CHANNEL_CAPACITY))
        .unzip()
}

/// Answers control requests on one shard until every sender is gone. Requests are handled one
/// at a time, in arrival order, so `pause` then `flush` from one operator mean what they say.
pub async fn serve_shard(
    requests: flume::Receiver<ControlMessage>,
    handler: Rc<dyn ControlHandler>,
) {
    while let Ok(message) = requests.recv_async().await {
        let reply = handler.handle(message.request).await;
        // The control server may have given up waiting (timeout); nothing to do then.
        let _ = message.reply.send(reply);
    }
}

#[cfg(test)]
mod tests;
