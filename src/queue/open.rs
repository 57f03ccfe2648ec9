//! Opening one shard's queue: its directory, a new generation, recovery from the files, retiring
//! what is finished, and choosing the segment new messages go to.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::rc::Rc;

use super::commit::Batcher;
use super::compact::Settled;
use super::recover::{self, STATE_EXT, free_path, segment_path};
use super::segment::{self, FreeFiles, Segment};
use super::{Inner, MessageId, QueueError, QueueOptions, QueuedMessage, ShardQueue};

/// Smallest accepted segment size (smaller is all rollover).
const MIN_SEGMENT_SIZE: u64 = 64 * 1024;

impl ShardQueue {
    /// Opens (creating if needed) `<dir>/shard-<shard>/`, recovers, and returns every message
    /// that still has a non-final recipient, with its states. Runs inside a glommio executor.
    ///
    /// Recovery reads with plain blocking std I/O: it happens once, before the shard serves.
    pub async fn open(
        dir: &Path,
        shard: u16,
        opts: QueueOptions,
    ) -> Result<(Rc<ShardQueue>, Vec<QueuedMessage>), QueueError> {
        let opts = QueueOptions {
            segment_size: opts.segment_size.max(MIN_SEGMENT_SIZE),
            ..opts
        };
        let shard_dir = dir.join(format!("shard-{shard}"));
        // Each new level synced into its parent (queue/ into the data directory too): a
        // segment in a directory whose name is lost is lost with it.
        crate::durable_dir::create_dir_all(&shard_dir)
            .map_err(|e| QueueError::io(&shard_dir, "creating", e))?;
        let lock = take_lock(&shard_dir)?;
        let generation = bump_generation(&shard_dir)?;
        segment::sync_dir(&shard_dir).await?;

        let listing = recover::scan_shard(&shard_dir)?;
        let mut free: Vec<FreeFiles> = listing
            .free
            .iter()
            .map(|&(id, log, state)| FreeFiles { id, log, state })
            .collect();
        // A retire interrupted between its two renames: finish it.
        for &id in &listing.orphan_states {
            segment::rename(
                &segment_path(&shard_dir, id, STATE_EXT),
                &free_path(&shard_dir, id, STATE_EXT),
            )
            .await?;
            match free.iter_mut().find(|f| f.id == id) {
                Some(f) => f.state = true,
                None => free.push(FreeFiles {
                    id,
                    log: false,
                    state: true,
                }),
            }
        }
        if !listing.orphan_states.is_empty() {
            segment::sync_dir(&shard_dir).await?;
        }

        let mut segments = BTreeMap::new();
        let mut pending = Vec::new();
        for scanned in &listing.segments {
            for (index, m) in scanned.messages.iter().enumerate() {
                if m.is_finished() {
                    continue;
                }
                pending.push(QueuedMessage {
                    id: MessageId {
                        shard,
                        segment: scanned.id,
                        index: index as u32,
                    },
                    envelope: m.envelope.clone(),
                    size: m.size,
                    states: m.states.clone(),
                });
            }
            let seg = Segment::from_scan(&shard_dir, shard, scanned, opts.segment_size).await?;
            segments.insert(scanned.id, seg);
        }
        // New messages continue the newest segment after its valid prefix.
        let active = segments.keys().next_back().copied();
        if let Some(seg) = active.and_then(|a| segments.get_mut(&a)) {
            seg.sealed = false;
        }

        let queue = Rc::new_cyclic(|me| ShardQueue {
            me: me.clone(),
            _lock: lock,
            dir: shard_dir,
            shard,
            opts,
            generation,
            inner: RefCell::new(Inner {
                segments,
                retiring: BTreeSet::new(),
                active,
                free,
                // Ids of segments made during earlier opens may be gone from the directory
                // (retired, then removed); the generation keeps new ids above all of them.
                next_segment_id: (listing.max_id + 1).max(generation << 24),
                closed: false,
                messages_pending: pending.len() as u64,
                commits: 0,
                moved: 0,
            }),
            batcher: Batcher::new(),
            rollover: glommio::sync::Semaphore::new(1),
            moves: Settled::default(),
        });
        // Segments whose messages are all finished (moved copies included), oldest first so
        // that a segment's links are gone before it is considered.
        queue.retire_ready().await?;
        // Have an active segment ready, so the first commit does not wait for one.
        queue.roll_over(0).await?;
        Ok((queue, pending))
    }
}

/// Takes an exclusive lock on `<shard dir>/lock` for as long as the queue lives: two writers on
/// one shard's files would interleave records. (glommio's `SO_REUSEPORT` listeners let a second
/// server start silently; this is where it stops.) The lock is released when the file closes.
fn take_lock(dir: &Path) -> Result<fs::File, QueueError> {
    let path = dir.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| QueueError::io(&path, "opening", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(QueueError::Locked { path }),
        Err(fs::TryLockError::Error(e)) => Err(QueueError::io(&path, "locking", e)),
    }
}

/// Reads, increments and durably rewrites `<shard dir>/generation` (write a temporary file,
/// sync it, rename it over; the caller syncs the directory). Startup only: blocking std I/O.
fn bump_generation(dir: &Path) -> Result<u64, QueueError> {
    let path = dir.join("generation");
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| QueueError::Corrupt {
                path: path.clone(),
                offset: 0,
                what: "generation is not a number".into(),
            })?,
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(QueueError::io(&path, "reading", e)),
    };
    let generation = previous + 1;
    let tmp = dir.join("generation.tmp");
    let mut file = fs::File::create(&tmp).map_err(|e| QueueError::io(&tmp, "creating", e))?;
    writeln!(file, "{generation}").map_err(|e| QueueError::io(&tmp, "writing", e))?;
    file.sync_all()
        .map_err(|e| QueueError::io(&tmp, "syncing", e))?;
    fs::rename(&tmp, &path).map_err(|e| QueueError::io(&tmp, "renaming", e))?;
    Ok(generation)
}
