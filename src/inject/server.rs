//! The injection socket's server, on the sidecar's tokio runtime: accept, learn the peer's uid
//! from the kernel, read one capped request, check it, add the `Received:` line, hand it to a
//! shard, and answer only once the shard has made it durable.

use super::ShardInject;
use super::protocol::{Head, Outcome, Reply, parse_head};
use crate::config::{Config, SenderCheck};
use crate::envelope::Envelope;
use crate::sidecar::Sidecar;
use crate::smtp::{Command, parse_command};
use log::{info, warn};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a client may take over each read of its request.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a shard may take to commit: a group commit is milliseconds; this is a stuck disk.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Injections read and committed at once; more connections wait for a turn. Each may hold a
/// message of up to `smtp.max_message_size` in memory, so this bounds what local users can make
/// the server hold.
const MAX_IN_FLIGHT: usize = 64;

/// What the socket server checks, from the configuration.
#[derive(Debug, Clone)]
pub struct InjectSettings {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub sender_check: SenderCheck,
}

impl InjectSettings {
    pub fn from_config(config: &Config) -> InjectSettings {
        InjectSettings {
            hostname: config.server.hostname.clone(),
            max_message_size: config.smtp.max_message_size as u64,
            max_recipients: config.smtp.max_recipients,
            sender_check: config.inject.sender_check,
        }
    }
}

struct Shared {
    settings: InjectSettings,
    shards: Vec<flume::Sender<ShardInject>>,
    next_shard: AtomicUsize,
    in_flight: tokio::sync::Semaphore,
}

/// The listening injection socket. Dropping it stops accepting and removes the socket file.
pub struct InjectServer {
    path: PathBuf,
    identity: (u64, u64),
    accept: tokio::task::JoinHandle<()>,
}

impl InjectServer {
    /// Binds `socket_path` (mode 0666: see the security model in `inject`) and serves it on the
    /// sidecar. As for the control socket, the caller holds the data directory's lock, so a file
    /// already there is a dead server's leftover and is replaced.
    pub fn start(
        sidecar: &Sidecar,
        socket_path: &Path,
        settings: InjectSettings,
        shards: Vec<flume::Sender<ShardInject>>,
    ) -> io::Result<InjectServer> {
        // Mode 0666: any local user may inject (see the security model in `inject`).
        let (listener, meta) = crate::sidecar::bind_unix_socket(sidecar, socket_path, 0o666)?;
        let shared = Arc::new(Shared {
            settings,
            shards,
            next_shard: AtomicUsize::new(0),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        });
        let accept = sidecar.handle().spawn(accept_loop(listener, shared));
        Ok(InjectServer {
            path: socket_path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
            accept,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InjectServer {
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

async fn accept_loop(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            Err(e) => {
                warn!("inject socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: one message, one reply line.
async fn serve_connection(mut stream: UnixStream, shared: Arc<Shared>) {
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let uid = cred.uid();
    let Ok(_turn) = shared.in_flight.acquire().await else {
        return;
    };
    let reply = match handle(&mut stream, &shared, uid).await {
        Ok(reply) | Err(reply) => reply,
    };
    if reply.outcome != Outcome::Queued {
        info!(
            "inject from uid {uid}: refused: {}",
            reply.encode().trim_end()
        );
    }
    let _ = stream.write_all(reply.encode().as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn handle(stream: &mut UnixStream, shared: &Shared, uid: u32) -> Result<Reply, Reply> {
    let settings = &shared.settings;
    let data_err = |text: String| Reply::new(Outcome::DataErr, text);
    let (head, mut message) = read_head(stream).await?;
    if head.size > settings.max_message_size {
        return Err(data_err(format!(
            "message of {} octets is over the limit of {} (smtp.max_message_size)",
            head.size, settings.max_message_size
        )));
    }
    // The whole request is read before anything else is refused: a Unix socket closed with
    // unread input resets the connection, and the client would never see why.
    read_body(stream, &mut message, head.size as usize).await?;
    if head.recipients.len() > settings.max_recipients {
        return Err(data_err(format!(
            "{} recipients are over the limit of {} (smtp.max_recipients)",
            head.recipients.len(),
            settings.max_recipients
        )));
    }
    let envelope = envelope_of(&head, &settings.hostname).map_err(data_err)?;
    check_sender(settings.sender_check, uid, &envelope.sender).await?;
    check_line_ends(&message).map_err(data_err)?;

    // qmail-inject's trace line: who ran the injecting program, as the kernel says.
    let received = format!(
        "Received: (ringmail invoked by uid {uid}); {}\r\n",
        crate::clock::rfc5322_date(envelope.received_at)
    );
    let mut full = Vec::with_capacity(received.len() + message.len());
    full.extend_from_slice(received.as_bytes());
    full.extend_from_slice(&message);

    let shard = shared.next_shard.fetch_add(1, Ordering::Relaxed) % shared.shards.len().max(1);
    let tempfail = |why: &str| Reply::new(Outcome::TempFail, why.to_string());
    let sender = shared
        .shards
        .get(shard)
        .ok_or_else(|| tempfail("no shard is serving injection"))?;
    let (reply, reply_rx) = flume::bounded(1);
    let request = ShardInject {
        envelope,
        message: full,
        uid,
        reply,
    };
    match tokio::time::timeout(COMMIT_TIMEOUT, sender.send_async(request)).await {
        Ok(Ok(())) => {}
        _ => return Err(tempfail("the server is busy or stopping, try again later")),
    }
    match tokio::time::timeout(COMMIT_TIMEOUT, reply_rx.recv_async()).await {
        Ok(Ok(reply)) => Ok(reply),
        // Gone or too slow: the message may or may not be queued; the client must not assume
        // it was (it would then be lost), so it is a temporary failure, as for SMTP.
        _ => Err(tempfail("no answer from the queue, try again later")),
    }
}

/// Reads up to the end of the head; returns it and whatever message octets came with it.
async fn read_head(stream: &mut UnixStream) -> Result<(Head, Vec<u8>), Reply> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = read_some(stream, &mut chunk).await?;
        if n == 0 {
            return Err(Reply::new(
                Outcome::DataErr,
                "the request ended before its head did",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(None) => continue,
            Ok(Some((head, used))) => {
                let rest = buf.split_off(used);
                return Ok((head, rest));
            }
            Err(e) => return Err(Reply::new(Outcome::DataErr, e.to_string())),
        }
    }
}

/// Reads the rest of the message: exactly `size` octets in all.
async fn read_body(
    stream: &mut UnixStream,
    message: &mut Vec<u8>,
    size: usize,
) -> Result<(), Reply> {
    if message.len() > size {
        return Err(Reply::new(
            Outcome::DataErr,
            "more message octets than its size",
        ));
    }
    message.reserve(size - message.len());
    let mut chunk = vec![0u8; 64 * 1024];
    while message.len() < size {
        let want = (size - message.len()).min(chunk.len());
        let n = read_some(stream, &mut chunk[..want]).await?;
        if n == 0 {
            return Err(Reply::new(
                Outcome::DataErr,
                format!("the message ended after {} of {size} octets", message.len()),
            ));
        }
        message.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

async fn read_some(stream: &mut UnixStream, buf: &mut [u8]) -> Result<usize, Reply> {
    match tokio::time::timeout(CLIENT_TIMEOUT, stream.read(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(Reply::new(Outcome::TempFail, format!("read failed: {e}"))),
        Err(_) => Err(Reply::new(
            Outcome::TempFail,
            format!("nothing received for {} s", CLIENT_TIMEOUT.as_secs()),
        )),
    }
}

/// The envelope, each address checked exactly as SMTP's MAIL and RCPT parse it and put in its
/// canonical form (`crate::address`).
fn envelope_of(head: &Head, hostname: &str) -> Result<Envelope, String> {
    let sender = match parse_command(format!("MAIL FROM:<{}>", head.sender).as_bytes()) {
        Ok(Command::Mail(mail)) => crate::address::canonical_address(&mail.address),
        _ => return Err(format!("bad sender address <{}>", head.sender)),
    };
    let mut recipients = Vec::with_capacity(head.recipients.len());
    for rcpt in &head.recipients {
        let address = match parse_command(format!("RCPT TO:<{rcpt}>").as_bytes()) {
            Ok(Command::Rcpt(r)) if r.address == "postmaster" => format!("postmaster@{hostname}"),
            Ok(Command::Rcpt(r)) => crate::address::canonical_address(&r.address),
            _ => return Err(format!("bad recipient address <{rcpt}>")),
        };
        // One copy per mailbox, as a list of To and Cc often names someone twice.
        if !recipients.contains(&address) {
            recipients.push(address);
        }
    }
    let smtputf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
    Ok(Envelope {
        sender,
        recipients,
        received_at: crate::clock::now_unix(),
        smtputf8,
        body_8bit: false,
    })
}

/// Every line ends in CRLF (the client converts): a bare CR or LF would be stored and relayed
/// as it is, which SMTP refuses for the same reason (smuggling).
fn check_line_ends(message: &[u8]) -> Result<(), String> {
    let mut previous = 0u8;
    for (i, &b) in message.iter().enumerate() {
        let next = message.get(i + 1).copied();
        if (b == b'\n' && previous != b'\r') || (b == b'\r' && next != Some(b'\n')) {
            return Err("the message has a bare CR or LF (lines must end in CRLF)".into());
        }
        previous = b;
    }
    Ok(())
}

/// `inject.sender_check = "login"`: the caller's login name must be the sender's local part.
async fn check_sender(check: SenderCheck, uid: u32, sender: &str) -> Result<(), Reply> {
    if check == SenderCheck::Any || uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    // getpwuid may read files or ask NSS: off the runtime's thread.
    let login = tokio::task::spawn_blocking(move || {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name)
    })
    .await
    .ok()
    .flatten();
    let local = crate::address::mailbox_key(sender).map(|key| key.local);
    match (login, local) {
        (Some(login), Ok(local)) if local == login.to_lowercase() => Ok(()),
        (login, _) => Err(Reply::new(
            Outcome::NoPerm,
            format!(
                "uid {uid} ({}) may not send as <{sender}> (inject.sender_check = \"login\")",
                login.as_deref().unwrap_or("no login name")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_must_be_crlf() {
        assert!(check_line_ends(b"a\r\nb\r\n").is_ok());
        assert!(check_line_ends(b"").is_ok());
        assert!(check_line_ends(b"a\nb\r\n").is_err());
        assert!(check_line_ends(b"a\rb\r\n").is_err());
        assert!(check_line_ends(b"a\r").is_err());
    }

    #[test]
    fn envelopes_are_parsed_like_smtp_and_canonical() {
        let head = Head {
            sender: "\"alice\"@example.test".into(),
            recipients: vec![
                "\"Bob\"@example.test".into(),
                "Bob@example.test".into(),
                "postmaster".into(),
            ],
            size: 0,
        };
        let envelope = envelope_of(&head, "mx.test").unwrap();
        assert_eq!(envelope.sender, "alice@example.test");
        assert_eq!(
            envelope.recipients,
            vec!["Bob@example.test", "postmaster@mx.test"]
        );
        let bad = Head {
            recipients: vec!["not an address".into()],
            ..head.clone()
        };
        assert!(envelope_of(&bad, "mx.test").is_err());
        let null = Head {
            sender: String::new(),
            ..head
        };
        assert_eq!(envelope_of(&null, "mx.test").unwrap().sender, "");
    }
}
