//! The control socket's server, on the sidecar's tokio runtime: accept a connection, read one
//! capped request line, fan the request out to the shards over flume, gather their answers
//! under one deadline, write the reply, close.

use super::protocol::{Reply, format_request, parse_request};
use super::summary::{ShardAnswer, summarize};
use super::{ControlMessage, ControlRequest, MAX_REQUEST_LINE};
use crate::sidecar::Sidecar;
use log::{info, warn};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long the shards together have to answer one request before the client is told which
/// did not. A shard answers between two of its own tasks, so anything near this is a stuck shard.
pub const SHARD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to send its request line once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

type Shards = Arc<[flume::Sender<ControlMessage>]>;

/// Lines the server adds to every `status` reply, from state outside the shards' schedulers
/// (the relay's backoff suspensions). Called on the sidecar; it must not block.
pub type StatusNotes = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// The listening control socket. Dropping it stops accepting and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    /// The socket file's (device, inode), so Drop removes only the file it created.
    identity: (u64, u64),
    accept: tokio::task::JoinHandle<()>,
    requester: ControlRequester,
}

/// Sends a request to the shards exactly as the socket does (same fan-out, deadline and
/// summary), for the server's own use: SIGALRM is `flush` without a client. `Send + Sync`, and
/// [`ControlRequester::submit`] never blocks, so a signal thread may call it.
#[derive(Clone)]
pub struct ControlRequester {
    shards: Shards,
    shard_timeout: Duration,
    runtime: tokio::runtime::Handle,
}

impl ControlRequester {
    /// Starts `request` on the sidecar and returns at once; the outcome is logged as
    /// `ORIGIN: TEXT` (e.g. `signal ALRM: flushed 3 recipients`).
    pub fn submit(&self, request: ControlRequest, origin: &'static str) {
        let shards = Arc::clone(&self.shards);
        let timeout = self.shard_timeout;
        // After the sidecar has stopped (the server is exiting) the task is simply dropped.
        self.runtime.spawn(async move {
            let reply = dispatch(&request, &shards, timeout).await;
            let asked = format_request(&request);
            if reply.ok {
                info!("{origin}: {}", reply.text);
            } else {
                warn!("{origin}: {} failed: {}", asked.trim_end(), reply.text);
            }
        });
    }
}

impl ControlRequester {
    /// Sends `request` to the shards and returns their summarized answer (the HTTP queue API
    /// uses this; the outcome is logged like a control-socket request, as `ORIGIN: ...`).
    pub async fn request(&self, request: ControlRequest, origin: &str) -> Reply {
        let reply = dispatch(&request, &self.shards, self.shard_timeout).await;
        let status = if reply.ok { "ok" } else { "err" };
        let asked = format_request(&request);
        info!("{origin}: {}: {status} {}", asked.trim_end(), reply.text);
        reply
    }
}

impl ControlServer {
    /// Binds `socket_path` (mode 0600) and serves it on the sidecar; `shards[i]` reaches shard
    /// `i`. Whatever is at `socket_path` is removed first: the caller must hold the data
    /// directory's lock, which makes any file there a leftover of a server that died.
    pub fn start(
        sidecar: &Sidecar,
        socket_path: &Path,
        shards: Vec<flume::Sender<ControlMessage>>,
    ) -> io::Result<ControlServer> {
        ControlServer::start_with_timeout(sidecar, socket_path, shards, SHARD_TIMEOUT)
    }

    /// [`ControlServer::start`], with `notes` added to every `status` reply.
    pub fn start_with_status_notes(
        sidecar: &Sidecar,
        socket_path: &Path,
        shards: Vec<flume::Sender<ControlMessage>>,
        notes: StatusNotes,
    ) -> io::Result<ControlServer> {
        ControlServer::start_full(sidecar, socket_path, shards, SHARD_TIMEOUT, notes)
    }

    /// [`ControlServer::start`] with another shard deadline (tests use a short one).
    pub fn start_with_timeout(
        sidecar: &Sidecar,
        socket_path: &Path,
        shards: Vec<flume::Sender<ControlMessage>>,
        shard_timeout: Duration,
    ) -> io::Result<ControlServer> {
        ControlServer::start_full(
            sidecar,
            socket_path,
            shards,
            shard_timeout,
            Arc::new(Vec::new),
        )
    }

    fn start_full(
        sidecar: &Sidecar,
        socket_path: &Path,
        shards: Vec<flume::Sender<ControlMessage>>,
        shard_timeout: Duration,
        notes: StatusNotes,
    ) -> io::Result<ControlServer> {
        // Connecting needs write permission on the socket file: 0600 keeps it to our own user.
        let (listener, meta) = crate::sidecar::bind_unix_socket(sidecar, socket_path, 0o600)?;
        let shards: Shards = shards.into();
        let requester = ControlRequester {
            shards: Arc::clone(&shards),
            shard_timeout,
            runtime: sidecar.handle().clone(),
        };
        let accept = sidecar
            .handle()
            .spawn(accept_loop(listener, shards, shard_timeout, notes));
        Ok(ControlServer {
            path: socket_path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
            accept,
            requester,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that sends requests to the shards without a client (see [`ControlRequester`]).
    pub fn requester(&self) -> ControlRequester {
        self.requester.clone()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.accept.abort();
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|meta| (meta.dev(), meta.ino()) == self.identity)
            .unwrap_or(false);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    shards: Shards,
    shard_timeout: Duration,
    notes: StatusNotes,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&shards),
                    shard_timeout,
                    Arc::clone(&notes),
                ));
            }
            Err(e) => {
                // EMFILE and friends: pause instead of spinning.
                warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: one request, one reply.
async fn serve_connection(
    mut stream: UnixStream,
    shards: Shards,
    shard_timeout: Duration,
    notes: StatusNotes,
) {
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => Reply::err(format!(
            "no request line within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
        // The client went away before asking anything.
        Ok(Err(_)) => return,
        Ok(Ok(bytes)) => match parse_request(&bytes) {
            Err(e) => Reply::err(e.to_string()),
            Ok(request) => {
                let mut reply = dispatch(&request, &shards, shard_timeout).await;
                if request == ControlRequest::Status {
                    reply.details.extend(notes());
                }
                let status = if reply.ok { "ok" } else { "err" };
                let asked = format_request(&request);
                info!("control: {}: {status} {}", asked.trim_end(), reply.text);
                reply
            }
        },
    };
    // The client may be gone by now; it then never sees the reply, and there is no one to tell.
    let _ = stream.write_all(reply.encode().as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to and including the first newline, or EOF, but never more than one byte past
/// [`MAX_REQUEST_LINE`] (which `parse_request` then reports as too long).
async fn read_request(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut limited = stream.take(MAX_REQUEST_LINE as u64 + 1);
    let mut line = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        let n = limited.read(&mut chunk).await?;
        let Some(read) = chunk.get(..n).filter(|read| !read.is_empty()) else {
            return Ok(line);
        };
        line.extend_from_slice(read);
        if read.contains(&b'\n') {
            return Ok(line);
        }
    }
}

/// Sends `request` to the shards it concerns and gathers their answers under one deadline.
async fn dispatch(request: &ControlRequest, shards: &Shards, timeout: Duration) -> Reply {
    let deadline = tokio::time::Instant::now() + timeout;
    let targets: Vec<usize> = match request {
        // The id names the shard whose queue holds the message; one that does not exist has
        // no such message.
        ControlRequest::Delete(id) | ControlRequest::Bounce(id) => {
            let shard = usize::from(id.shard());
            if shard < shards.len() {
                vec![shard]
            } else {
                Vec::new()
            }
        }
        _ => (0..shards.len()).collect(),
    };
    // Everything is sent before anything is awaited, so the shards work in parallel.
    let mut waiting = Vec::with_capacity(targets.len());
    for shard in targets {
        let Some(sender) = shards.get(shard) else {
            continue;
        };
        let (reply, reply_rx) = flume::bounded(1);
        let message = ControlMessage {
            request: *request,
            reply,
        };
        let sent = match tokio::time::timeout_at(deadline, sender.send_async(message)).await {
            Err(_) => Err(ShardAnswer::TimedOut),
            Ok(Err(_)) => Err(ShardAnswer::Gone),
            Ok(Ok(())) => Ok(reply_rx),
        };
        waiting.push((shard, sent));
    }
    let mut answers = Vec::with_capacity(waiting.len());
    for (shard, sent) in waiting {
        let answer = match sent {
            Err(answer) => answer,
            Ok(reply_rx) => match tokio::time::timeout_at(deadline, reply_rx.recv_async()).await {
                Err(_) => ShardAnswer::TimedOut,
                // The shard dropped the request without answering.
                Ok(Err(_)) => ShardAnswer::Gone,
                Ok(Ok(reply)) => ShardAnswer::Replied(reply),
            },
        };
        answers.push((shard, answer));
    }
    summarize(request, &answers, timeout)
}
