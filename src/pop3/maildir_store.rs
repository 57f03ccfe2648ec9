//! One user's Maildir as POP3 sees it: locked for the session, listed once, changed only at UPDATE.
//!
//! - **Listing**: files in `new/` and `cur/` (not `tmp/`, not dot-files), ordered by
//!   modification time then name, so message numbers follow delivery order.
//! - **UIDL** is the Maildir unique name (the file name before the `:` info), which never changes
//!   when the file moves `new/` → `cur/` or gains flags, so it is stable across sessions and
//!   restarts (RFC 1939 §7). A name that is not 1-70 octets of 0x21..=0x7E is replaced by its
//!   MD5 in hex.
//! - **Sizes** are RFC 1939 §5 sizes (`pop3::wire::message_size`: CRLF line ends, without the
//!   byte-stuffing RETR adds). Computing one reads the whole file, so each is computed once and
//!   cached in `<Maildir>/ringmail-pop3.sizes`: a version line ([`SIZE_CACHE_VERSION`]), then
//!   `<unique name> <size>` per line, rewritten by temp file + rename; a lost, corrupt or
//!   older-version cache only costs a recount. (Version 1 had no version line and counted the
//!   stuffing dots, so a cache without the current line is ignored.) Maildir files never change
//!   after delivery, so entries never go stale; entries for vanished messages are dropped on
//!   rewrite.
//! - **Locking**: an exclusive `File::try_lock` (flock on Linux) on
//!   `<Maildir>/ringmail-pop3.lock`, held for the session. flock locks belong to the open file
//!   description, so they exclude a second session on another shard or in another process
//!   alike; local delivery takes no lock (Maildir delivery is safe against readers) and its new
//!   mail shows in the next session.
//! - **UPDATE** ([`Mailbox::commit`]): deleted messages are unlinked; retrieved ones move from
//!   `new/` to `cur/` with the `:2,S` (seen) info, per the Maildir convention; the directories
//!   that changed are fsynced. Moving at UPDATE rather than at RETR keeps paths fixed during
//!   the session and leaves the Maildir untouched if the connection drops.
//! - A Maildir that does not exist is an empty mailbox (no lock is taken: there is nothing to
//!   delete).
//!
//! These functions use blocking std I/O: the driver runs `open` and `commit` on the blocking
//! pool. RETR reads message bodies with glommio's async `BufferedFile` in the driver.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::session::MessageInfo;
use super::wire::message_size;
use crate::mailbox::{MailboxError, maildir_for};

/// The lock file's name inside the Maildir.
pub const LOCK_FILE: &str = "ringmail-pop3.lock";
/// The size cache's name inside the Maildir.
pub const SIZE_CACHE: &str = "ringmail-pop3.sizes";
/// The size cache's first line. A cache without it (written by an older ringmail, whose sizes
/// counted the stuffing dots) is discarded and recounted.
pub const SIZE_CACHE_VERSION: &str = "ringmail-pop3.sizes v2 rfc1939";

/// Why the store failed.
#[derive(Debug)]
pub enum StoreError {
    /// The user name is not an address with a safe mailbox path (the caller's fault).
    BadAddress(MailboxError),
    /// Another session holds this mailbox's lock.
    InUse,
    /// The filesystem failed (our side).
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::BadAddress(e) => write!(f, "bad mailbox address: {e}"),
            StoreError::InUse => f.write_str("mailbox is locked by another session"),
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
struct Stored {
    /// Directory holding it: `new` or `cur`.
    in_new: bool,
    /// The file name as found.
    name: String,
    /// The file's length when listed (Maildir files never change after delivery).
    file_len: u64,
    info: MessageInfo,
}

/// An open, locked mailbox.
#[derive(Debug)]
pub struct Mailbox {
    maildir: PathBuf,
    /// Held until the mailbox is dropped; closing the file releases the flock.
    _lock: Option<File>,
    messages: Vec<Stored>,
}

/// The unique part of a Maildir file name (before the `:2,flags` info).
fn unique_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(u, _)| u)
}

/// RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
fn uidl_for(unique: &str) -> String {
    let valid =
        (1..=70).contains(&unique.len()) && unique.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        unique.to_string()
    } else {
        Md5::digest(unique.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn lock(maildir: &Path) -> Result<File, StoreError> {
    let path = maildir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::InUse),
        Err(TryLockError::Error(source)) => Err(StoreError::Io { path, source }),
    }
}

fn read_cache(maildir: &Path) -> HashMap<String, u64> {
    let Ok(text) = fs::read_to_string(maildir.join(SIZE_CACHE)) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(SIZE_CACHE_VERSION) {
        return HashMap::new();
    }
    lines
        .filter_map(|l| {
            let (uid, size) = l.split_once(' ')?;
            Some((uid.to_string(), size.parse().ok()?))
        })
        .collect()
}

fn write_cache(maildir: &Path, messages: &[Stored]) -> io::Result<()> {
    let tmp = maildir.join(format!("{SIZE_CACHE}.tmp"));
    let mut out = format!("{SIZE_CACHE_VERSION}\n");
    for m in messages {
        out.push_str(unique_name(&m.name));
        out.push(' ');
        out.push_str(&m.info.size.to_string());
        out.push('\n');
    }
    let mut f = File::create(&tmp)?;
    f.write_all(out.as_bytes())?;
    drop(f);
    fs::rename(&tmp, maildir.join(SIZE_CACHE))
}

impl Mailbox {
    /// Opens and locks `address`'s Maildir under `mail_root` (see `crate::mailbox::maildir_for`).
    pub fn open(mail_root: &Path, address: &str) -> Result<Mailbox, StoreError> {
        let maildir = maildir_for(mail_root, address).map_err(StoreError::BadAddress)?;
        Self::open_dir(&maildir)
    }

    /// Opens and locks the Maildir at `maildir`.
    pub fn open_dir(maildir: &Path) -> Result<Mailbox, StoreError> {
        if !maildir.is_dir() {
            return Ok(Mailbox {
                maildir: maildir.to_path_buf(),
                _lock: None,
                messages: Vec::new(),
            });
        }
        let lock = lock(maildir)?;
        let cache = read_cache(maildir);
        let mut found = Vec::new();
        for (sub, in_new) in [("new", true), ("cur", false)] {
            let dir = maildir.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        path: dir,
                        source: e,
                    });
                }
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if name.starts_with('.') || !meta.is_file() {
                    continue;
                }
                let mtime = meta.modified().ok();
                found.push((mtime, name, in_new, meta.len()));
            }
        }
        found.sort();
        let mut dirty = false;
        let mut messages = Vec::with_capacity(found.len());
        for (_, name, in_new, file_len) in found {
            let unique = unique_name(&name);
            let size = match cache.get(unique) {
                Some(&size) => size,
                None => {
                    let path = maildir.join(if in_new { "new" } else { "cur" }).join(&name);
                    match fs::read(&path) {
                        Ok(bytes) => {
                            dirty = true;
                            message_size(&bytes)
                        }
                        // Removed by someone else since the listing: not part of this session.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(StoreError::Io { path, source: e }),
                    }
                }
            };
            let info = MessageInfo {
                uid: uidl_for(unique),
                size,
            };
            messages.push(Stored {
                in_new,
                name,
                file_len,
                info,
            });
        }
        if dirty || cache.len() != messages.len() {
            // Only a cache: failing to write it costs a recount next time, nothing more.
            if let Err(e) = write_cache(maildir, &messages) {
                log::warn!(
                    "pop3: cannot write size cache in {}: {e}",
                    maildir.display()
                );
            }
        }
        Ok(Mailbox {
            maildir: maildir.to_path_buf(),
            _lock: Some(lock),
            messages,
        })
    }

    /// The listing in message-number order (message n is index n-1).
    pub fn listing(&self) -> Vec<MessageInfo> {
        self.messages.iter().map(|m| m.info.clone()).collect()
    }

    /// The file holding message `index` (0-based).
    pub fn message_path(&self, index: usize) -> Option<PathBuf> {
        let m = self.messages.get(index)?;
        Some(
            self.maildir
                .join(if m.in_new { "new" } else { "cur" })
                .join(&m.name),
        )
    }

    /// The length of message `index`'s file (0-based) when it was listed, so RETR can read it
    /// in one go without a read to find the end.
    pub fn file_len(&self, index: usize) -> Option<u64> {
        self.messages.get(index).map(|m| m.file_len)
    }

    /// UPDATE state (RFC 1939 §6): unlink `deleted`, mark `retrieved` seen (moving them
    /// `new/` → `cur/`), fsync the directories that changed, then release the lock. Every step
    /// is attempted; the first error is returned.
    pub fn commit(self, deleted: &[usize], retrieved: &[usize]) -> Result<(), StoreError> {
        let mut first_err: Option<StoreError> = None;
        let mut note = |r: Result<(), StoreError>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        // Directories whose entries this commit changed (or tried to): only those need an
        // fsync. A session that re-reads already-seen mail changes nothing.
        let (mut new_changed, mut cur_changed) = (false, false);
        for &i in deleted {
            let (Some(m), Some(path)) = (self.messages.get(i), self.message_path(i)) else {
                continue;
            };
            if m.in_new {
                new_changed = true;
            } else {
                cur_changed = true;
            }
            note(match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(StoreError::Io { path, source: e })
                }
                _ => Ok(()),
            });
        }
        for &i in retrieved {
            if deleted.contains(&i) {
                continue;
            }
            let (Some(m), Some(from)) = (self.messages.get(i), self.message_path(i)) else {
                continue;
            };
            let (unique, flags) = match m.name.split_once(":2,") {
                Some((u, f)) => (u, f),
                None => (unique_name(&m.name), ""),
            };
            if !m.in_new && flags.contains('S') {
                continue;
            }
            let mut flags: Vec<char> = flags.chars().chain(['S']).collect();
            flags.sort_unstable();
            flags.dedup();
            let to_name = format!("{unique}:2,{}", flags.into_iter().collect::<String>());
            let to = self.maildir.join("cur").join(to_name);
            new_changed |= m.in_new;
            cur_changed = true;
            note(match fs::rename(&from, &to) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io {
                    path: from,
                    source: e,
                }),
                _ => Ok(()),
            });
        }
        for (sub, changed) in [("new", new_changed), ("cur", cur_changed)] {
            if changed {
                let dir = self.maildir.join(sub);
                note(
                    File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .map_err(io_err(&dir)),
                );
            }
        }
        drop(self);
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
#[path = "maildir_store_tests.rs"]
mod tests;
