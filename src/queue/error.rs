//! The queue's one error type: every variant says which file or message and what went wrong.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::MessageId;

/// Why a queue operation failed. `Clone` so that every caller of a failed group commit gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// A file operation on the queue directory failed (disk full, permissions, a vanished
    /// directory). The host's fault, not the caller's.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we were doing ("opening", "writing", "renaming", ...).
        op: &'static str,
        /// The OS error kind.
        kind: io::ErrorKind,
        /// The OS error text.
        message: String,
    },
    /// A write or `fdatasync` of a batch failed. Linux reports a writeback error only once, so
    /// the segment is sealed and never written again; the batch's callers must not report
    /// success (SMTP: answer 451, the client retries).
    SyncFailed {
        /// The segment file that failed.
        path: PathBuf,
        /// The OS error text.
        message: String,
    },
    /// The message's segment failed an earlier sync; its state can no longer be appended to.
    /// Restarting recovers whatever reached the disk.
    SegmentFailed {
        /// The segment id.
        segment: u64,
    },
    /// The record would exceed the on-disk length field (4 GiB). The caller's size cap should
    /// have refused it long before.
    TooLarge {
        /// Record size in bytes.
        size: u64,
        /// Largest record the format can hold.
        limit: u64,
    },
    /// The envelope cannot be stored: no recipients, or an address longer than 65,535 bytes.
    BadEnvelope(&'static str),
    /// No queued message has this id on this shard (never committed, not yet durable, or its
    /// segment was retired after every recipient finished).
    UnknownMessage(MessageId),
    /// The message has fewer recipients than the index given.
    NoSuchRecipient {
        /// The message.
        id: MessageId,
        /// The index asked for.
        recipient: usize,
    },
    /// The recipient already reached a final state (Delivered or Failed); final is final.
    AlreadyFinal {
        /// The message.
        id: MessageId,
        /// The recipient index.
        recipient: usize,
    },
    /// `move_forward` refused: the message cannot be moved now (not yet durable, finished,
    /// already being moved, or in the active segment). The caller's mistake or a race; the
    /// message itself is unharmed.
    NotMovable {
        /// The message.
        id: MessageId,
        /// Why not.
        why: &'static str,
    },
    /// A stored record did not verify when read back (bad magic, CRC, length or payload).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// What did not fit.
        what: String,
    },
    /// Another `ShardQueue` (in this process or another) has this shard's queue open.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// `close()` was called; the queue takes no more writes.
    Closed,
}

impl QueueError {
    /// Wraps an I/O error (std or glommio) with the file and the operation.
    pub(crate) fn io(path: &Path, op: &'static str, err: impl Into<io::Error>) -> QueueError {
        let err: io::Error = err.into();
        QueueError::Io {
            path: path.to_path_buf(),
            op,
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Io {
                path, op, message, ..
            } => write!(f, "queue: {op} {}: {message}", path.display()),
            QueueError::SyncFailed { path, message } => write!(
                f,
                "queue: writing or syncing {} failed, segment sealed: {message}",
                path.display()
            ),
            QueueError::SegmentFailed { segment } => {
                write!(
                    f,
                    "queue: segment {segment:x} failed earlier and takes no writes"
                )
            }
            QueueError::TooLarge { size, limit } => {
                write!(
                    f,
                    "queue: record of {size} bytes exceeds the {limit}-byte limit"
                )
            }
            QueueError::BadEnvelope(why) => write!(f, "queue: envelope not storable: {why}"),
            QueueError::UnknownMessage(id) => write!(f, "queue: no message {id}"),
            QueueError::NoSuchRecipient { id, recipient } => {
                write!(f, "queue: message {id} has no recipient {recipient}")
            }
            QueueError::AlreadyFinal { id, recipient } => {
                write!(f, "queue: recipient {recipient} of {id} is already final")
            }
            QueueError::NotMovable { id, why } => {
                write!(f, "queue: cannot move {id}: {why}")
            }
            QueueError::Corrupt { path, offset, what } => write!(
                f,
                "queue: corrupt record in {} at offset {offset}: {what}",
                path.display()
            ),
            QueueError::Locked { path } => write!(
                f,
                "queue: {} is locked: another ringmail has this queue open",
                path.display()
            ),
            QueueError::Closed => f.write_str("queue: closed"),
        }
    }
}

impl std::error::Error for QueueError {}
