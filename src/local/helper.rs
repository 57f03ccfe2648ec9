//! The small privileged part of local delivery: how a server that has dropped root still
//! delivers as each system user, and never runs a user's program as root.
//!
//! ```text
//! ringmail serve (root) ──spawn before the drop──▶ ringmail local-helper (stays root)
//!      │ drops to server.user                          │ one request at a time from the socket:
//!      │                                               │ uid ≥ local.min_uid, uid ≠ 0, gid ≠ 0?
//!  local-delivery thread ──request over a socketpair──▶│ spawn `ringmail local-helper --run-one`
//!      ◀──────────────────────── reply (by id) ────────│   as that uid/gid (no supplementary groups)
//!                                                      └─▶ the child does the one operation as the
//!                                                          user (read a .qmail, append an mbox,
//!                                                          write a Maildir file, run a program)
//! ```
//!
//! The helper is a fresh process (`/proc/self/exe local-helper`, started with `std::process`
//! before the server drops root), not a fork of a threaded server. It reads nothing but
//! requests, does no delivery itself, and refuses any uid below `[local] min_uid` (so never
//! root or a system account); the child it starts for each request changes its ids before
//! `exec` (std's `Command::uid`/`gid`, which also clears the supplementary groups), checks
//! again that it is not root, and does exactly one operation. The network-facing server never
//! regains root: the worst it can ask of the helper is a delivery as some ordinary user, which
//! is what it is for. The helper exits when the server closes its end of the socket.
//!
//! Frames on the socket and on a child's stdin/stdout are a 4-byte big-endian length and a
//! payload of fields (`u8`, `u32`, `u64`, and byte strings with a `u32` length), see [`Op`]
//! and [`Reply`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::local::{mbox, program};

/// The largest frame accepted: a message plus its headers (the queue caps messages well
/// below this).
const MAX_FRAME: usize = 1 << 30;

/// One operation, done as a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read a file (a `.qmail`), at most `dotqmail::MAX_FILE_LEN + 1` bytes.
    Read { path: PathBuf },
    /// Append an mbox entry (see `mbox::append`).
    Mbox {
        path: PathBuf,
        entry: Vec<u8>,
        lock_timeout: Duration,
    },
    /// Write one Maildir file durably (see `sync_maildir`).
    Maildir {
        dir: PathBuf,
        hostname: String,
        contents: Vec<u8>,
    },
    /// Run a delivery program (see `program::run`).
    Program {
        command: String,
        cwd: PathBuf,
        env: Vec<(String, String)>,
        stdin: Vec<u8>,
        timeout: Duration,
    },
}

/// The answer to one operation: a code (0 is success; the others depend on the operation, see
/// `run_op`), an errno (0 for none) and a text (contents, a path, a reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u8,
    pub errno: u32,
    pub text: Vec<u8>,
}

impl Reply {
    fn ok(text: Vec<u8>) -> Reply {
        Reply {
            code: 0,
            errno: 0,
            text,
        }
    }

    fn error(code: u8, errno: Option<i32>, text: impl Into<Vec<u8>>) -> Reply {
        Reply {
            code,
            errno: errno.unwrap_or(0) as u32,
            text: text.into(),
        }
    }
}

// ---- encoding -------------------------------------------------------------------------------

struct Fields(Vec<u8>);

impl Fields {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
}

struct Parse<'a>(&'a [u8]);

impl<'a> Parse<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short frame"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> io::Result<u64> {
        let hi = u64::from(self.u32()?);
        Ok(hi << 32 | u64::from(self.u32()?))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
    }
    fn path(&mut self) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(self.bytes()?)))
    }
}

fn path_bytes(path: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes()
}

/// A request: `id`, `uid`, `gid`, then the operation.
pub fn encode_request(id: u64, uid: u32, gid: u32, op: &Op) -> Vec<u8> {
    let mut f = Fields(Vec::new());
    f.u64(id).u32(uid).u32(gid);
    match op {
        Op::Read { path } => {
            f.u8(0).bytes(path_bytes(path));
        }
        Op::Mbox {
            path,
            entry,
            lock_timeout,
        } => {
            f.u8(1)
                .bytes(path_bytes(path))
                .bytes(entry)
                .u64(lock_timeout.as_millis() as u64);
        }
        Op::Maildir {
            dir,
            hostname,
            contents,
        } => {
            f.u8(2)
                .bytes(path_bytes(dir))
                .bytes(hostname.as_bytes())
                .bytes(contents);
        }
        Op::Program {
            command,
            cwd,
            env,
            stdin,
            timeout,
        } => {
            f.u8(3)
                .bytes(command.as_bytes())
                .bytes(path_bytes(cwd))
                .u32(env.len() as u32);
            for (k, v) in env {
                f.bytes(k.as_bytes()).bytes(v.as_bytes());
            }
            f.bytes(stdin).u64(timeout.as_millis() as u64);
        }
    }
    f.0
}

/// The inverse of [`encode_request`].
pub fn decode_request(frame: &[u8]) -> io::Result<(u64, u32, u32, Op)> {
    let mut p = Parse(frame);
    let (id, uid, gid) = (p.u64()?, p.u32()?, p.u32()?);
    let op = match p.u8()? {
        0 => Op::Read { path: p.path()? },
        1 => Op::Mbox {
            path: p.path()?,
            entry: p.bytes()?,
            lock_timeout: Duration::from_millis(p.u64()?),
        },
        2 => Op::Maildir {
            dir: p.path()?,
            hostname: p.string()?,
            contents: p.bytes()?,
        },
        3 => {
            let command = p.string()?;
            let cwd = p.path()?;
            let count = p.u32()? as usize;
            let mut env = Vec::with_capacity(count.min(256));
            for _ in 0..count {
                env.push((p.string()?, p.string()?));
            }
            Op::Program {
                command,
                cwd,
                env,
                stdin: p.bytes()?,
                timeout: Duration::from_millis(p.u64()?),
            }
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown operation {other}"),
            ));
        }
    };
    Ok((id, uid, gid, op))
}

fn encode_reply(id: u64, reply: &Reply) -> Vec<u8> {
    let mut f = Fields(Vec::new());
    f.u64(id).u8(reply.code).u32(reply.errno).bytes(&reply.text);
    f.0
}

fn decode_reply(frame: &[u8]) -> io::Result<(u64, Reply)> {
    let mut p = Parse(frame);
    Ok((
        p.u64()?,
        Reply {
            code: p.u8()?,
            errno: p.u32()?,
            text: p.bytes()?,
        },
    ))
}

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u32).to_be_bytes())?;
    out.write_all(payload)?;
    out.flush()
}

/// `None` at a clean end of input.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut payload = vec![0; len];
    input.read_exact(&mut payload)?;
    Ok(Some(payload))
}

// ---- the operations, done by the child as the user -----------------------------------------

/// Does `op` as whoever we are. Reply codes: `Read` 0 contents, 1 not found, 2 error; `Mbox`
/// 0 done, 1 lock timeout, 2 error; `Maildir` 0 path, 1 permanent error, 2 temporary error;
/// `Program` 0 delivered, 1 delivered-and-stop, 2 permanent, 3 temporary (text: the reason).
pub fn run_op(op: Op) -> Reply {
    match op {
        Op::Read { path } => {
            let mut contents = Vec::new();
            let read = std::fs::File::open(&path).and_then(|f| {
                f.take(crate::local::dotqmail::MAX_FILE_LEN as u64 + 1)
                    .read_to_end(&mut contents)
            });
            match read {
                Ok(_) => Reply::ok(contents),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Reply::error(1, e.raw_os_error(), "")
                }
                Err(e) => Reply::error(2, e.raw_os_error(), e.to_string()),
            }
        }
        Op::Mbox {
            path,
            entry,
            lock_timeout,
        } => match mbox::append(&path, &entry, lock_timeout) {
            Ok(()) => Reply::ok(Vec::new()),
            Err(mbox::MboxError::LockTimeout) => Reply::error(1, None, "lock timeout"),
            Err(e) => Reply::error(2, e.errno(), e.to_string()),
        },
        Op::Maildir {
            dir,
            hostname,
            contents,
        } => match crate::delivery::maildir::deliver_blocking(&dir, &hostname, &contents) {
            Ok(path) => Reply::ok(path_bytes(&path).to_vec()),
            Err(e) if !e.is_temporary() => Reply::error(1, e.errno(), e.to_string()),
            Err(e) => Reply::error(2, e.errno(), e.to_string()),
        },
        Op::Program {
            command,
            cwd,
            env,
            stdin,
            timeout,
        } => {
            let job = program::ProgramJob {
                command,
                cwd,
                env,
                stdin,
                timeout,
                ids: None,
            };
            match program::run(&job) {
                program::ProgramOutcome::Delivered => Reply::ok(Vec::new()),
                program::ProgramOutcome::DeliveredStop => Reply::error(1, None, ""),
                program::ProgramOutcome::Permanent(r) => Reply::error(2, None, r),
                program::ProgramOutcome::Temporary(r) => Reply::error(3, None, r),
            }
        }
    }
}

// ---- the helper process ---------------------------------------------------------------------

/// `ringmail local-helper --run-one`: one request on stdin, done as the ids we were started
/// with, one reply on stdout.
pub fn run_one() -> io::Result<()> {
    let mut stdin = io::stdin().lock();
    let Some(frame) = read_frame(&mut stdin)? else {
        return Ok(());
    };
    let (id, _, _, op) = decode_request(&frame)?;
    let reply = if nix::unistd::getuid().is_root() || nix::unistd::geteuid().is_root() {
        Reply::error(3, None, "Refusing to deliver as root. (#4.3.0)")
    } else {
        run_op(op)
    };
    write_frame(&mut io::stdout().lock(), &encode_reply(id, &reply))
}

/// `ringmail local-helper --min-uid N`: serves requests from stdin (the server's socket)
/// until it closes, each in a child started as the request's user.
pub fn serve(min_uid: u32) -> io::Result<()> {
    let mut input = io::stdin().lock();
    let output = std::sync::Arc::new(Mutex::new(io::stdout()));
    let exe = std::env::current_exe()?;
    while let Some(frame) = read_frame(&mut input)? {
        let (id, uid, gid, _) = match decode_request(&frame) {
            Ok(parsed) => parsed,
            Err(e) => {
                eprintln!("ringmail local-helper: bad request: {e}");
                continue;
            }
        };
        let output = std::sync::Arc::clone(&output);
        let exe = exe.clone();
        std::thread::spawn(move || {
            let reply = if uid == 0 || gid == 0 || uid < min_uid {
                Reply::error(
                    3,
                    None,
                    format!(
                        "Refusing to deliver as uid {uid} gid {gid} (local.min_uid is {min_uid}). (#4.3.0)"
                    ),
                )
            } else {
                as_user(&exe, uid, gid, &frame).unwrap_or_else(|e| {
                    Reply::error(
                        3,
                        e.raw_os_error(),
                        format!("Unable to start a delivery as uid {uid}: {e}. (#4.3.0)"),
                    )
                })
            };
            let mut out = output.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = write_frame(&mut *out, &encode_reply(id, &reply));
        });
    }
    Ok(())
}

/// Runs one request in `exe local-helper --run-one` as `uid`/`gid`.
fn as_user(exe: &std::path::Path, uid: u32, gid: u32, frame: &[u8]) -> io::Result<Reply> {
    let mut child = Command::new(exe)
        .args(["local-helper", "--run-one"])
        .env_clear()
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    let frame = frame.to_vec();
    let feeder = std::thread::spawn(move || write_frame(&mut stdin, &frame));
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let reply = read_frame(&mut stdout);
    let _ = feeder.join();
    let status = child.wait()?;
    match reply? {
        Some(frame) => Ok(decode_reply(&frame)?.1),
        None => Err(io::Error::other(format!(
            "the delivery child ended ({status}) without a reply"
        ))),
    }
}

// ---- the server's side ----------------------------------------------------------------------

/// The server's connection to its helper. Calls block (they run on local-delivery threads).
pub struct HelperClient {
    writer: Mutex<UnixStream>,
    reader: Mutex<Option<UnixStream>>,
    waiting: Mutex<HashMap<u64, crossbeam_channel::Sender<Reply>>>,
    next_id: AtomicU64,
    reader_started: OnceLock<()>,
}

static HELPER: OnceLock<HelperClient> = OnceLock::new();

/// Starts the helper (call as root, before the privilege drop). Its reply reader thread is
/// started on the first call, after the drop.
pub fn start(min_uid: u32) -> io::Result<()> {
    let (ours, theirs) = UnixStream::pair()?;
    let exe = std::env::current_exe()?;
    let input: std::os::fd::OwnedFd = theirs.try_clone()?.into();
    let output: std::os::fd::OwnedFd = theirs.into();
    Command::new(exe)
        .args(["local-helper", "--min-uid", &min_uid.to_string()])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .stderr(Stdio::inherit())
        .spawn()?;
    let client = HelperClient {
        writer: Mutex::new(ours.try_clone()?),
        reader: Mutex::new(Some(ours)),
        waiting: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        reader_started: OnceLock::new(),
    };
    HELPER
        .set(client)
        .map_err(|_| io::Error::other("local-delivery helper already started"))
}

/// The helper, if this server started one (it was started as root).
pub fn client() -> Option<&'static HelperClient> {
    HELPER.get()
}

impl HelperClient {
    /// Does `op` as `uid`/`gid` through the helper and waits for the reply. Blocking.
    pub fn call(&'static self, uid: u32, gid: u32, op: &Op) -> io::Result<Reply> {
        self.reader_started.get_or_init(|| {
            let stream = self
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(stream) = stream {
                let spawned = std::thread::Builder::new()
                    .name("ringmail-helper-replies".into())
                    .spawn(move || self.read_replies(stream));
                if let Err(e) = spawned {
                    log::error!("cannot start the helper reply thread: {e}");
                }
            }
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tx);
        let frame = encode_request(id, uid, gid, op);
        let written = write_frame(
            &mut *self.writer.lock().unwrap_or_else(PoisonError::into_inner),
            &frame,
        );
        if let Err(e) = written {
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return Err(e);
        }
        rx.recv()
            .map_err(|_| io::Error::other("the local-delivery helper has gone away"))
    }

    fn read_replies(&self, mut stream: UnixStream) {
        while let Ok(Some(frame)) = read_frame(&mut stream) {
            let Ok((id, reply)) = decode_reply(&frame) else {
                continue;
            };
            let waiter = self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(reply);
            }
        }
        log::error!("the local-delivery helper has exited; system-user deliveries are deferred");
        // Every caller still waiting sees its sender dropped.
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let ops = [
            Op::Read {
                path: "/home/bob/.qmail".into(),
            },
            Op::Mbox {
                path: "/home/bob/Mailbox".into(),
                entry: b"From a D\nx\n\n".to_vec(),
                lock_timeout: Duration::from_secs(30),
            },
            Op::Maildir {
                dir: "/home/bob/Maildir".into(),
                hostname: "mx.test".into(),
                contents: b"x\n".to_vec(),
            },
            Op::Program {
                command: "id -u > out".into(),
                cwd: "/home/bob".into(),
                env: vec![("SENDER".into(), "a@x".into()), ("EXT".into(), "".into())],
                stdin: b"msg".to_vec(),
                timeout: Duration::from_secs(5),
            },
        ];
        for op in ops {
            let frame = encode_request(7, 1000, 1001, &op);
            assert_eq!(decode_request(&frame).unwrap(), (7, 1000, 1001, op.clone()));
            assert!(decode_request(&frame[..frame.len() - 1]).is_err());
        }
        let reply = Reply::error(2, Some(28), "no space");
        let frame = encode_reply(9, &reply);
        assert_eq!(decode_reply(&frame).unwrap(), (9, reply));
        let mut wire = Vec::new();
        write_frame(&mut wire, b"abc").unwrap();
        let mut cursor = io::Cursor::new(wire);
        assert_eq!(read_frame(&mut cursor).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_frame(&mut cursor).unwrap(), None);
    }
}
