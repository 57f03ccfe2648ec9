//! Appending one message to an mbox file, as qmail-local's `mailfile` does.
//!
//! The entry is qmail's: a `From sender date` line, `Return-Path:` and `Delivered-To:`, the
//! message with every line that matches `>*From ` quoted by one more `>` (the mboxrd rule:
//! reversible, and what qmail writes), and one empty line after it.
//!
//! The file is locked with both `fcntl` (POSIX record lock, what mutt, procmail and Python's
//! `fcntl.lockf` take) and `flock` (what other mail readers take); on Linux the two are
//! independent, so holding both keeps out either kind of writer. A held lock is waited for up to
//! a timeout, then the delivery is deferred. The entry is written at the end of the file, then
//! `fsync`'d; if anything fails after the first byte, the file is truncated back to where it
//! ended, so a reader never sees half a message and a retry does not duplicate one.
//!
//! Blocking: runs on a local-delivery thread, never on a shard.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a held lock is tried again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// Why an mbox delivery failed; every one is temporary, as in qmail.
#[derive(Debug)]
pub enum MboxError {
    /// Another process held the lock for the whole timeout.
    LockTimeout,
    /// A system call failed (`step` says which).
    Io {
        step: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for MboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MboxError::LockTimeout => f.write_str("timeout while waiting for the mailbox lock"),
            MboxError::Io { step, source } => write!(f, "{step} failed: {source}"),
        }
    }
}

impl std::error::Error for MboxError {}

impl MboxError {
    /// The errno, when the failure has one (`EDQUOT`, `ENOSPC`, ...).
    pub fn errno(&self) -> Option<i32> {
        match self {
            MboxError::LockTimeout => None,
            MboxError::Io { source, .. } => source.raw_os_error(),
        }
    }
}

/// The bytes of one mbox entry: `From ` line, the `prefix` header lines (LF-terminated), the
/// message with CRLF made LF and `>*From ` lines quoted, and a closing empty line.
pub fn entry(sender: &str, date: &str, prefix: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + prefix.len() + 128);
    // qmail writes `MAILER-DAEMON` for the null sender; spaces would end the address early.
    let sender = if sender.is_empty() {
        "MAILER-DAEMON".to_string()
    } else {
        sender.replace([' ', '\t', '\r', '\n'], "")
    };
    out.extend_from_slice(format!("From {sender} {date}\n").as_bytes());
    out.extend_from_slice(prefix);
    let mut ended_with_newline = true;
    for line in message.split_inclusive(|&b| b == b'\n') {
        let text = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"));
        let body = text.unwrap_or(line);
        if body
            .iter()
            .position(|&b| b != b'>')
            .is_some_and(|i| body[i..].starts_with(b"From "))
        {
            out.push(b'>');
        }
        out.extend_from_slice(body);
        ended_with_newline = text.is_some();
        if ended_with_newline {
            out.push(b'\n');
        }
    }
    if !ended_with_newline {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Appends `entry` (see [`entry`]) to the mbox at `path`, creating it (mode 0600) if missing.
/// Returns once it is on disk.
pub fn append(path: &Path, entry: &[u8], lock_timeout: Duration) -> Result<(), MboxError> {
    let io = |step| move |source| MboxError::Io { step, source };
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(io("open mailbox"))?;
    lock(&file, lock_timeout)?;
    // The lock is released when `file` is closed, on every path out.
    let end = file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
    let written = file
        .write_all(entry)
        .map_err(io("write"))
        .and_then(|()| file.sync_all().map_err(io("fsync")));
    if let Err(e) = written {
        // Take back whatever part of the entry reached the file: the next reader must not find
        // a message without its end, and the retry must not find half a copy before its own.
        if let Err(t) = file.set_len(end).and_then(|()| file.sync_all()) {
            log::error!(
                "mbox {}: cannot truncate back to {end} bytes after a failed write: {t}",
                path.display()
            );
        }
        return Err(e);
    }
    Ok(())
}

/// Takes an exclusive `fcntl` lock on the whole file, then `flock`, waiting up to `timeout`.
fn lock(file: &File, timeout: Duration) -> Result<(), MboxError> {
    use nix::fcntl::{FcntlArg, FlockArg, fcntl, flock};
    let fd = file.as_raw_fd();
    let whole = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let started = Instant::now();
    let busy = |e: nix::Error| matches!(e, nix::Error::EAGAIN | nix::Error::EACCES);
    loop {
        match fcntl(fd, FcntlArg::F_SETLK(&whole)) {
            Ok(_) => break,
            Err(e) if busy(e) && started.elapsed() < timeout => std::thread::sleep(LOCK_POLL),
            Err(e) if busy(e) => return Err(MboxError::LockTimeout),
            Err(e) => {
                return Err(MboxError::Io {
                    step: "fcntl lock",
                    source: e.into(),
                });
            }
        }
    }
    loop {
        match flock(fd, FlockArg::LockExclusiveNonblock) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EWOULDBLOCK) if started.elapsed() < timeout => {
                std::thread::sleep(LOCK_POLL)
            }
            Err(nix::Error::EWOULDBLOCK) => return Err(MboxError::LockTimeout),
            Err(e) => {
                return Err(MboxError::Io {
                    step: "flock",
                    source: e.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_quotes_from_lines_and_ends_with_a_blank_line() {
        let message = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From x\r\nFrom: not\r\n Fromage\r\nlast";
        let got = entry(
            "a@x.test",
            "Thu Dec  3 19:03:53 2026",
            b"Return-Path: <a@x.test>\n",
            message,
        );
        let want = "From a@x.test Thu Dec  3 19:03:53 2026\nReturn-Path: <a@x.test>\n\
                    Subject: x\n\n>From here\n>>From there\n>>>From x\nFrom: not\n Fromage\nlast\n\n";
        assert_eq!(String::from_utf8(got).unwrap(), want);
        let bounce = entry("", "D", b"", b"x\r\n");
        assert_eq!(bounce, b"From MAILER-DAEMON D\nx\n\n");
        let odd = entry("a b\r\n@x", "D", b"", b"");
        assert_eq!(odd, b"From ab@x D\n\n");
    }

    #[test]
    fn appends_and_creates_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Mailbox");
        append(&path, b"From a D\none\n\n", Duration::from_secs(1)).unwrap();
        append(&path, b"From b D\ntwo\n\n", Duration::from_secs(1)).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"From a D\none\n\nFrom b D\ntwo\n\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn waits_for_a_held_flock_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Mailbox");
        std::fs::write(&path, b"").unwrap();
        let holder = File::open(&path).unwrap();
        nix::fcntl::flock(holder.as_raw_fd(), nix::fcntl::FlockArg::LockExclusive).unwrap();
        let err = append(&path, b"x\n", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, MboxError::LockTimeout), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        drop(holder);
        append(&path, b"x\n", Duration::from_millis(200)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
    }

    #[test]
    fn a_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = append(dir.path(), b"x\n", Duration::from_millis(10)).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EISDIR));
    }
}
