//! The data-directory lock: one running ringmail per data directory.
//!
//! `SO_REUSEPORT` lets a second server share the ports silently, so the lock, not the bind, is
//! what stops two instances from writing one queue. It is an exclusive `flock` on `<dir>/lock`
//! (released by the kernel when the process dies, so a crash never leaves it stale); the file
//! holds the holder's pid for the error message only. Read-only tools do not take it.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// Why the lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process (or another open of the file) holds it: the operator's problem to solve.
    Held { dir: PathBuf, pid: Option<u32> },
    /// The lock file could not be opened, locked or written.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Held { dir, pid } => {
                let who = match pid {
                    Some(pid) => format!("pid {pid}"),
                    None => "pid unknown".into(),
                };
                write!(
                    f,
                    "data directory {} is in use by another ringmail ({who}); \
                     stop it first or use another data_dir",
                    dir.display()
                )
            }
            Self::Io { path, source } => write!(f, "cannot lock {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Held { .. } => None,
        }
    }
}

/// Holds the data directory for as long as it lives.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the exclusive lock on `<dir>/lock` without waiting and writes our pid into it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // Never truncate on open: the file may belong to the running holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(DirLock { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Clear the pid while still holding the lock; the file stays (unlinking it would let
        // two processes lock two different inodes). Closing the file releases the flock.
        let _ = self.file.set_len(0);
    }
}

/// The pid a holder wrote, if it has written one yet (it writes right after locking).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_held_with_pid_then_free_after_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first lock");
        let written = std::fs::read_to_string(first.path()).expect("read lock file");
        assert_eq!(written.trim(), std::process::id().to_string());

        // flock is per open file description, so a second open in this process conflicts.
        match DirLock::acquire(dir.path()) {
            Err(LockError::Held { pid, dir: d }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(d, dir.path());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = DirLock::acquire(dir.path()).expect("lock after release");
        drop(again);
    }

    #[test]
    fn held_message_names_dir_and_pid() {
        let cases = [
            (
                Some(123),
                "data directory /x is in use by another ringmail (pid 123); stop it first or use another data_dir",
            ),
            (
                None,
                "data directory /x is in use by another ringmail (pid unknown); stop it first or use another data_dir",
            ),
        ];
        for (pid, want) in cases {
            let e = LockError::Held {
                dir: "/x".into(),
                pid,
            };
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn missing_directory_is_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(matches!(
            DirLock::acquire(&missing),
            Err(LockError::Io { .. })
        ));
    }
}
