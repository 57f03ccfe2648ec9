//! One segment's two files (`seg-<id>.log` for messages, `seg-<id>.state` for recipient states)
//! and its in-memory index; creating, recycling and retiring them, each step durable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{BufferedFile, Directory, OpenOptions};

use super::RecipientState;
use super::recover::{LOG_EXT, STATE_EXT, ScannedSegment, free_path, segment_path};
use super::{MessageId, QueueError};

/// Smallest preallocation of a state file.
const MIN_STATE_PREALLOC: u64 = 64 * 1024;

/// A message's place in its segment and its recipients' states.
#[derive(Debug)]
pub(crate) struct MessageEntry {
    pub offset: u64,
    pub record_len: u64,
    pub states: Vec<RecipientState>,
    /// Its batch was synced; before that, nobody may see it.
    pub durable: bool,
    /// Every recipient is final, or a durable newer copy replaces it (`moved_to`), or its
    /// commit failed and it never existed.
    pub finished: bool,
    /// A moved record for it is being written: `record` waits, then follows `moved_to`.
    pub moving: bool,
    /// Every recipient is final in memory, but the last final state record is not durable
    /// yet: not finished (its segment must not retire), not movable either.
    pub finishing: bool,
    /// The newer copy that replaced it (compaction), while this entry is still known.
    pub moved_to: Option<MessageId>,
}

impl MessageEntry {
    /// A message entry as a new record makes it: not durable until its batch is synced.
    pub fn new(offset: u64, record_len: u64, states: Vec<RecipientState>) -> MessageEntry {
        MessageEntry {
            offset,
            record_len,
            states,
            durable: false,
            finished: false,
            moving: false,
            finishing: false,
            moved_to: None,
        }
    }
}

/// A retired file pair waiting for reuse: its old id and which of the two files exist.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FreeFiles {
    pub id: u64,
    pub log: bool,
    pub state: bool,
}

/// One live segment.
pub(crate) struct Segment {
    pub id: u64,
    pub log: Rc<BufferedFile>,
    pub log_path: Rc<PathBuf>,
    pub state: Rc<BufferedFile>,
    pub state_path: Rc<PathBuf>,
    /// Where the next message record goes (reserved, maybe not yet written).
    pub log_end: u64,
    pub next_log_seq: u64,
    pub state_end: u64,
    pub next_state_seq: u64,
    /// Bytes of message records this segment takes before it is sealed.
    pub capacity: u64,
    /// No more message records: a newer segment is active.
    pub sealed: bool,
    /// A write or sync failed: no more records of any kind.
    pub failed: bool,
    /// Indexed by record sequence.
    pub messages: Vec<MessageEntry>,
    /// Messages not finished (in-flight commits included).
    pub unfinished: usize,
    /// Record bytes of those messages: what compaction would have to copy to free the log.
    pub live_bytes: u64,
    /// Older segments holding copies that this segment's moved records replace. This segment
    /// must outlive them on disk: its records are what makes those copies finished there.
    pub links: BTreeSet<u64>,
    /// When it was sealed (Unix seconds; for a recovered segment, when its log was last
    /// written). The age rule of compaction counts from here.
    pub sealed_at: u64,
}

impl Segment {
    /// Counts message `index` as finished (it was not): fewer live messages and bytes.
    pub fn finish(&mut self, index: u32) {
        if let Some(entry) = self.messages.get_mut(index as usize) {
            entry.finished = true;
            self.unfinished -= 1;
            self.live_bytes -= entry.record_len;
        }
    }

    /// Seals it: no more message records.
    pub fn seal(&mut self) {
        if !self.sealed {
            self.sealed = true;
            self.sealed_at = crate::clock::now_unix();
        }
    }
}

impl Segment {
    /// Makes a new, empty segment: renames a free file pair into place when there is one
    /// (no allocation, no discard), otherwise creates and preallocates new files; then syncs
    /// the directory so the names survive a crash.
    pub async fn create(
        dir: &Path,
        id: u64,
        capacity: u64,
        recycle: Option<FreeFiles>,
    ) -> Result<Segment, QueueError> {
        let log_path = segment_path(dir, id, LOG_EXT);
        let state_path = segment_path(dir, id, STATE_EXT);
        let mut reused = (false, false);
        if let Some(free) = recycle {
            if free.log {
                rename(&free_path(dir, free.id, LOG_EXT), &log_path).await?;
                reused.0 = true;
            }
            if free.state {
                rename(&free_path(dir, free.id, STATE_EXT), &state_path).await?;
                reused.1 = true;
            }
        }
        let log = open_rw(&log_path).await?;
        if !reused.0 {
            preallocate(&log, &log_path, capacity).await?;
        }
        let state = open_rw(&state_path).await?;
        if !reused.1 {
            preallocate(&state, &state_path, (capacity / 16).max(MIN_STATE_PREALLOC)).await?;
        }
        sync_dir(dir).await?;
        Ok(Segment {
            id,
            log: Rc::new(log),
            log_path: Rc::new(log_path),
            state: Rc::new(state),
            state_path: Rc::new(state_path),
            log_end: 0,
            next_log_seq: 0,
            state_end: 0,
            next_state_seq: 0,
            capacity,
            sealed: false,
            failed: false,
            messages: Vec::new(),
            unfinished: 0,
            live_bytes: 0,
            links: BTreeSet::new(),
            sealed_at: 0,
        })
    }

    /// Opens a recovered segment; new records go right after each file's valid prefix.
    pub async fn from_scan(
        dir: &Path,
        shard: u16,
        scanned: &ScannedSegment,
        capacity: u64,
    ) -> Result<Segment, QueueError> {
        let log_path = segment_path(dir, scanned.id, LOG_EXT);
        let state_path = segment_path(dir, scanned.id, STATE_EXT);
        let log = open_rw(&log_path).await?;
        let state = open_rw(&state_path).await?;
        let messages: Vec<MessageEntry> = scanned
            .messages
            .iter()
            .map(|m| MessageEntry {
                offset: m.offset,
                record_len: m.record_len,
                finished: m.is_finished(),
                states: m.states.clone(),
                durable: true,
                moving: false,
                finishing: false,
                moved_to: m.replaced_by.map(|(segment, index)| MessageId {
                    shard,
                    segment,
                    index,
                }),
            })
            .collect();
        let links = scanned
            .messages
            .iter()
            .filter_map(|m| m.replaces.map(|from| from.segment))
            .collect();
        Ok(Segment {
            id: scanned.id,
            log: Rc::new(log),
            log_path: Rc::new(log_path),
            state: Rc::new(state),
            state_path: Rc::new(state_path),
            log_end: scanned.log.valid_len,
            next_log_seq: scanned.log.next_seq,
            state_end: scanned.state.valid_len,
            next_state_seq: scanned.state.next_seq,
            capacity: capacity.max(scanned.log.valid_len),
            sealed: true,
            failed: false,
            unfinished: messages.iter().filter(|m| !m.finished).count(),
            live_bytes: messages
                .iter()
                .filter(|m| !m.finished)
                .map(|m| m.record_len)
                .sum(),
            links,
            sealed_at: scanned.modified,
            messages,
        })
    }
}

/// Retires segment `id`'s files: renamed to `free-<id>.*` for recycling when `keep`, removed
/// otherwise. The log goes first: a crash between the two steps leaves a state file without
/// its log, which recovery treats as free; the reverse order would resurrect every message.
pub(crate) async fn retire_files(dir: &Path, id: u64, keep: bool) -> Result<(), QueueError> {
    for ext in [LOG_EXT, STATE_EXT] {
        let from = segment_path(dir, id, ext);
        if keep {
            rename(&from, &free_path(dir, id, ext)).await?;
        } else {
            glommio::io::remove(&from)
                .await
                .map_err(|e| QueueError::io(&from, "removing", e))?;
        }
    }
    sync_dir(dir).await
}

/// Renames a file (no directory sync; callers batch that).
pub(crate) async fn rename(from: &Path, to: &Path) -> Result<(), QueueError> {
    glommio::io::rename(from, to)
        .await
        .map_err(|e| QueueError::io(from, "renaming", e))
}

/// `fsync`s a directory so that creates and renames in it are durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| QueueError::io(dir, "opening directory", e))?;
    d.sync()
        .await
        .map_err(|e| QueueError::io(dir, "syncing directory", e))?;
    d.close()
        .await
        .map_err(|e| QueueError::io(dir, "closing directory", e))
}

/// Opens (creating if missing) for reading and writing, buffered: no O_DIRECT, so none of the
/// DMA read traps apply and the page cache serves `read_message` of fresh messages.
async fn open_rw(path: &Path) -> Result<BufferedFile, QueueError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(|e| QueueError::io(path, "opening", e))
}

/// Reserves the blocks up front so appends do not allocate (and `fdatasync` has less metadata
/// to write). The file reads as zeros past the records, which recovery's magic check rejects.
async fn preallocate(file: &BufferedFile, path: &Path, size: u64) -> Result<(), QueueError> {
    file.pre_allocate(size, false)
        .await
        .map_err(|e| QueueError::io(path, "preallocating", e))
}
