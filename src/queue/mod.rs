//! The durable queue: per-shard append-only segments, group commit, recovery, recipient state.
//!
//! # Files
//!
//! `<dir>/shard-<n>/` belongs to shard `n` alone. In it:
//!
//! | file | holds |
//! |---|---|
//! | `lock` | locked while a `ShardQueue` has the shard open |
//! | `generation` | how many times this shard's queue was opened (written at each open) |
//! | `seg-<id>.log` | message records (envelope + bytes) and moved records (the same, plus the id of the older copy they replace and the recipient states they carry), preallocated to `segment_size` |
//! | `seg-<id>.state` | recipient-state records for the messages of `seg-<id>.log` |
//! | `free-<id>.log`, `free-<id>.state` | a retired segment's files, waiting to be recycled |
//!
//! Every record carries magic, length, segment id, sequence, generation and CRC32C
//! (see `record`). A file's content is its *valid prefix*: records from the start whose
//! header, CRC, segment id and sequence (0, 1, 2, ...) fit, with generations never
//! decreasing. Everything after the first misfit is garbage (a torn batch, preallocated
//! zeros, or a recycled file's old records) and is overwritten by the next appends.
//!
//! # State table
//!
//! A message, and each of its recipients, is in one of these states. Each arrow is one
//! atomic durable step; nothing is reported to a caller before its step is durable.
//!
//! | from | step (atomic, durable) | to |
//! |---|---|---|
//! | queue closed | `generation.tmp` written + `fsync` + rename to `generation` + directory `fsync` | opened with a new generation |
//! | (none) | message record appended to the active `.log`, batch `fdatasync`'d | **queued**: every recipient `Pending{0, 0}` |
//! | recipient `Pending` | state record `Deferred{attempts, next}` appended to `.state`, synced | recipient `Pending{attempts, next}` |
//! | recipient `Pending` | state record `Delivered` / `Failed` appended, synced | recipient final |
//! | queued, all recipients final | (no I/O: the last state record was the step; counted only once that record's batch is synced) | **finished** |
//! | queued in a sealed segment (old copy) | moved record (envelope, bytes, current states, old id) appended to the active `.log`, batch `fdatasync`'d | new copy **queued** with the carried states; old copy **finished** (moved) |
//! | active segment, full | new segment's names renamed/created + directory `fsync` | old segment **sealed** (in memory only) |
//! | sealed segment, all messages finished, no older segment its moved records point into left | rename `.log` then `.state` to `free-*` + directory `fsync` | **retired** (files free) |
//! | free files | rename to `seg-<new id>.*` + directory `fsync` | new, empty segment |
//!
//! A crash between any two steps leaves a state recovery understands: a torn batch was never
//! acknowledged and is cut off; a half-done retire (log renamed, state not) leaves a state file
//! without a log, treated as free; a recycled file's old records carry the old id and are not
//! read. Final states are terminal: `record` refuses to change them.
//!
//! A move (compaction, see `compact`) has one durable step, the moved record: recovery counts
//! every copy that a moved record in a valid prefix replaces as finished. A crash before it is
//! durable (a torn record is cut off) leaves the old copy live; after, the new one; never
//! both, never neither. The old copy's segment has no final state for it, so the segment
//! holding the moved record is kept until the old copy's segment is gone from disk (links only
//! point backwards, to older segments): A -> B -> C keeps B's record for as long as A's
//! segment exists. While a move is in flight, `record` on the old id waits for it, then records
//! on the new copy.
//!
//! Recovery (`ShardQueue::open`) rebuilds every index from the files, retires segments whose
//! messages are all finished (replaced copies included), and keeps appending to the newest
//! segment after its valid prefix with a new generation, so old intact records beyond the cut
//! can never be mistaken for new.
//!
//! # Failure
//!
//! A failed write or `fdatasync` fails the whole batch and seals every segment it touched: Linux
//! reports a writeback error once, after which the page cache may claim data the disk lacks.
//! Messages already durable in it stay readable; their states can only be recorded after a
//! restart (recovery reads what really reached the disk).
//!
//! # Limits
//!
//! A message whose record exceeds `segment_size` gets a dedicated segment of exactly its size,
//! sealed at once; records are limited to 4 GiB by the length field (`QueueError::TooLarge`).

mod commit;
mod compact;
mod error;
mod open;
/// Public for the `queue_record` fuzz target (`fuzz/`); nothing outside the queue writes records.
pub mod record;
mod recover;
mod scan;
mod segment;
mod types;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::envelope::Envelope;

use commit::Batcher;
use compact::Settled;
use record::{HEADER_LEN, Kind, MAX_PAYLOAD, StateChange};
use segment::{FreeFiles, MessageEntry, Segment};

pub use error::QueueError;
pub use scan::scan;
pub use types::{
    BadMessageId, MessageId, Outcome, QueueOptions, QueueStats, QueuedMessage, RecipientState,
};

/// How many retired file pairs are kept for recycling; beyond that they are removed.
const FREE_KEPT: usize = 4;

/// Mutable state of one shard's queue (touched only between awaits).
struct Inner {
    segments: BTreeMap<u64, Segment>,
    /// Removed from `segments`, files not yet durably renamed: still on disk for whoever
    /// links to them (see `Segment::links`).
    retiring: BTreeSet<u64>,
    active: Option<u64>,
    free: Vec<FreeFiles>,
    next_segment_id: u64,
    closed: bool,
    messages_pending: u64,
    commits: u64,
    moved: u64,
}

impl Inner {
    /// The segment holding `id`, to record or move it: an id of another shard or an unknown
    /// segment is `UnknownMessage`; a segment that failed a write takes nothing more until a
    /// restart (`SegmentFailed`).
    fn writable_segment(&mut self, shard: u16, id: MessageId) -> Result<&mut Segment, QueueError> {
        let seg = self
            .segments
            .get_mut(&id.segment)
            .filter(|_| id.shard == shard)
            .ok_or(QueueError::UnknownMessage(id))?;
        if seg.failed {
            return Err(QueueError::SegmentFailed { segment: seg.id });
        }
        Ok(seg)
    }
}

/// One shard's queue. `!Send`: it lives on its shard's executor and uses glommio file I/O.
pub struct ShardQueue {
    /// Itself, so that settling a batch can run as a task that outlives a caller who gives up.
    me: std::rc::Weak<ShardQueue>,
    /// Held (locked) while the queue is open.
    _lock: std::fs::File,
    dir: PathBuf,
    shard: u16,
    opts: QueueOptions,
    generation: u64,
    inner: RefCell<Inner>,
    batcher: Batcher,
    /// Serializes rollovers (creating a segment awaits; concurrent commits wait here).
    rollover: glommio::sync::Semaphore,
    /// Signalled whenever a move settles, for `record` calls waiting on a moving message.
    moves: Settled,
}

impl ShardQueue {
    /// Appends the message; returns only once it is durable (fdatasync'd). Concurrent callers
    /// on the same shard share one fdatasync (group commit: while one sync is in flight, new
    /// appends gather into the next batch).
    pub async fn commit(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<MessageId, QueueError> {
        let head = record::encode_envelope(envelope).map_err(QueueError::BadEnvelope)?;
        let payload_len = (head.len() + message.len()) as u64;
        if payload_len > MAX_PAYLOAD {
            return Err(QueueError::TooLarge {
                size: payload_len,
                limit: MAX_PAYLOAD,
            });
        }
        let record_len = HEADER_LEN as u64 + payload_len;
        let (segment, index, batch) = loop {
            let states = vec![
                RecipientState::Pending {
                    attempts: 0,
                    next_attempt: 0
                };
                envelope.recipients.len()
            ];
            let parts = [&head[..], message];
            if let Some(reserved) =
                self.try_append(Kind::Message, &parts, record_len, states, None)?
            {
                break reserved;
            }
            self.roll_over(record_len).await?;
        };
        let id = MessageId {
            shard: self.shard,
            segment,
            index,
        };
        let me = self.me.upgrade().ok_or(QueueError::Closed)?;
        // The rest runs as its own task: a caller that gives up (a dropped SMTP session) must
        // not leave the batch unled or the message half-known (on disk, unknown in memory).
        glommio::spawn_local(async move { me.settle_commit(id, batch).await })
            .detach()
            .await
            .unwrap_or(Err(QueueError::Closed))
    }

    /// Waits for a commit's batch and makes the message visible (or forgets it on failure).
    async fn settle_commit(&self, id: MessageId, batch: u64) -> Result<MessageId, QueueError> {
        let result = self.batcher.wait(batch).await;
        let mut inner = self.inner.borrow_mut();
        let Some(seg) = inner.segments.get_mut(&id.segment) else {
            return result.and(Err(QueueError::UnknownMessage(id)));
        };
        let Some(entry) = seg.messages.get_mut(id.index as usize) else {
            return result.and(Err(QueueError::UnknownMessage(id)));
        };
        match result {
            Ok(()) => {
                entry.durable = true;
                inner.messages_pending += 1;
                inner.commits += 1;
                Ok(id)
            }
            Err(e) => {
                // It never existed; it must not hold the segment back from retiring.
                seg.finish(id.index);
                seg.failed = true;
                seg.seal();
                Err(e)
            }
        }
    }

    /// Reserves room in the active segment and queues a message record (`Message` or `Moved`)
    /// whose recipients start in `states`; `None` when it does not fit. `link` is the older
    /// segment a moved record points into.
    fn try_append(
        &self,
        kind: Kind,
        parts: &[&[u8]],
        record_len: u64,
        states: Vec<RecipientState>,
        link: Option<u64>,
    ) -> Result<Option<(u64, u32, u64)>, QueueError> {
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Err(QueueError::Closed);
        }
        let Some(active) = inner.active else {
            return Ok(None);
        };
        let Some(seg) = inner.segments.get_mut(&active) else {
            return Ok(None);
        };
        let index = u32::try_from(seg.next_log_seq).ok();
        let Some(index) = index
            .filter(|_| !seg.sealed && !seg.failed && seg.log_end + record_len <= seg.capacity)
        else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        record::encode(
            kind,
            seg.id,
            seg.next_log_seq,
            self.generation,
            parts,
            &mut bytes,
        );
        let pos = seg.log_end;
        seg.log_end += record_len;
        seg.next_log_seq += 1;
        seg.unfinished += 1;
        seg.live_bytes += record_len;
        // Recorded before the record is durable: holding a segment a little longer is safe,
        // retiring it while a durable link depends on it is not.
        seg.links.extend(link);
        seg.messages
            .push(MessageEntry::new(pos, record_len, states));
        let batch = self.batcher.enqueue(&seg.log, &seg.log_path, pos, bytes);
        Ok(Some((seg.id, index, batch)))
    }

    /// Seals the active segment and makes a new one big enough for `record_len`.
    async fn roll_over(&self, record_len: u64) -> Result<(), QueueError> {
        let _permit = self
            .rollover
            .acquire_permit(1)
            .await
            .map_err(|_| QueueError::Closed)?;
        let (id, recycle, capacity, old) = {
            let mut inner = self.inner.borrow_mut();
            if inner.closed {
                return Err(QueueError::Closed);
            }
            if let Some(seg) = inner.active.and_then(|a| inner.segments.get(&a)) {
                // Someone else rolled over while we waited for the permit.
                if !seg.sealed && !seg.failed && seg.log_end + record_len <= seg.capacity {
                    return Ok(());
                }
            }
            let id = inner.next_segment_id;
            inner.next_segment_id += 1;
            // A dedicated segment for an oversized message; recycled files are for normal ones.
            let big = record_len > self.opts.segment_size;
            let recycle = if big { None } else { inner.free.pop() };
            (
                id,
                recycle,
                self.opts.segment_size.max(record_len),
                inner.active,
            )
        };
        let seg = Segment::create(&self.dir, id, capacity, recycle).await?;
        let old_done = {
            let mut inner = self.inner.borrow_mut();
            inner.segments.insert(id, seg);
            inner.active = Some(id);
            old.and_then(|o| inner.segments.get_mut(&o))
                .is_some_and(|s| {
                    s.seal();
                    s.unfinished == 0
                })
        };
        if old_done {
            self.retire_ready().await?;
        }
        Ok(())
    }

    /// Appends a recipient's outcome durably (group-committed the same way). When every
    /// recipient of a message is final, the message is finished; when every message of a
    /// sealed segment is finished, the segment is retired.
    pub async fn record(
        &self,
        id: MessageId,
        recipient: usize,
        outcome: Outcome,
    ) -> Result<(), QueueError> {
        let state = RecipientState::from(outcome);
        // A message being moved takes its states along: wait for the move, then record on
        // the new copy (see `compact`).
        let id = self.follow_moves(id).await?;
        let (batch, previous, finished) = {
            let mut inner = self.inner.borrow_mut();
            if inner.closed {
                return Err(QueueError::Closed);
            }
            let seg = inner.writable_segment(self.shard, id)?;
            let entry = seg
                .messages
                .get_mut(id.index as usize)
                .filter(|e| e.durable && !e.states.is_empty())
                .ok_or(QueueError::UnknownMessage(id))?;
            let slot = entry
                .states
                .get_mut(recipient)
                .ok_or(QueueError::NoSuchRecipient { id, recipient })?;
            if slot.is_final() {
                return Err(QueueError::AlreadyFinal { id, recipient });
            }
            // Applied now, so a concurrent record() sees it; undone if the batch fails.
            let previous = std::mem::replace(slot, state);
            // The message only counts as finished once this record is durable (in
            // `settle_record`): counted now, a rollover meanwhile could retire the segment
            // while its last final state may still be lost or fail. Until then it is
            // `finishing`, which keeps compaction from moving it.
            let finished = entry.states.iter().all(|s| s.is_final());
            entry.finishing = finished;
            let payload = record::encode_state(&StateChange {
                index: id.index,
                recipient: recipient as u32,
                state,
            });
            let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
            record::encode(
                Kind::State,
                seg.id,
                seg.next_state_seq,
                self.generation,
                &[&payload],
                &mut bytes,
            );
            let pos = seg.state_end;
            seg.state_end += bytes.len() as u64;
            seg.next_state_seq += 1;
            let batch = self
                .batcher
                .enqueue(&seg.state, &seg.state_path, pos, bytes);
            (batch, previous, finished)
        };
        let me = self.me.upgrade().ok_or(QueueError::Closed)?;
        // As in `commit`: settling must not depend on the caller staying around.
        glommio::spawn_local(async move {
            me.settle_record(id, recipient, batch, previous, finished)
                .await
        })
        .detach()
        .await
        .unwrap_or(Err(QueueError::Closed))
    }

    /// Waits for a state record's batch; undoes the in-memory change if it failed. Once it is
    /// durable, a message whose recipients are now all final counts as finished, and the
    /// segment is retired if that was its last message: retiring never runs ahead of the final
    /// state records it depends on. (Batches are written in order and a failure poisons the
    /// state file, so this record being durable means every earlier one on the file is too.)
    async fn settle_record(
        &self,
        id: MessageId,
        recipient: usize,
        batch: u64,
        previous: RecipientState,
        finished: bool,
    ) -> Result<(), QueueError> {
        let result = self.batcher.wait(batch).await;
        let retire = {
            let mut inner = self.inner.borrow_mut();
            let Some(seg) = inner.segments.get_mut(&id.segment) else {
                return result;
            };
            if let Err(e) = result {
                seg.failed = true;
                seg.seal();
                if let Some(entry) = seg.messages.get_mut(id.index as usize) {
                    if let Some(slot) = entry.states.get_mut(recipient) {
                        *slot = previous;
                    }
                    entry.finishing = false;
                }
                return Err(e);
            }
            if finished {
                seg.finish(id.index);
            }
            let retire = finished && seg.sealed && seg.unfinished == 0;
            if finished {
                inner.messages_pending -= 1;
            }
            retire
        };
        if retire {
            self.retire_ready().await?;
        }
        Ok(())
    }

    /// Retires every segment that may go, oldest first, until none is left: sealed, not
    /// failed, all messages finished, and no older segment it links to still on disk (its
    /// moved records are what finishes their copies there). Retiring one can free another
    /// that links to it, hence the loop.
    async fn retire_ready(&self) -> Result<(), QueueError> {
        loop {
            let next = {
                let inner = self.inner.borrow();
                let on_disk =
                    |id: &u64| inner.segments.contains_key(id) || inner.retiring.contains(id);
                inner
                    .segments
                    .values()
                    .find(|s| {
                        s.sealed && !s.failed && s.unfinished == 0 && !s.links.iter().any(on_disk)
                    })
                    .map(|s| s.id)
            };
            match next {
                Some(id) => self.retire(id).await?,
                None => return Ok(()),
            }
        }
    }

    /// Retires a sealed segment whose messages are all finished: its files become free.
    async fn retire(&self, id: u64) -> Result<(), QueueError> {
        let keep = {
            let mut inner = self.inner.borrow_mut();
            // Whoever removes it from the map does the renames; nobody writes to it any more.
            if inner.segments.remove(&id).is_none() {
                return Ok(());
            }
            // Until the renames are durable (or forever, if they fail) its files may still be
            // found by a recovery: segments linking to it must wait.
            inner.retiring.insert(id);
            inner.free.len() < FREE_KEPT
        };
        segment::retire_files(&self.dir, id, keep).await?;
        let mut inner = self.inner.borrow_mut();
        inner.retiring.remove(&id);
        if keep {
            inner.free.push(FreeFiles {
                id,
                log: true,
                state: true,
            });
        }
        log::debug!("queue {}: retired segment {id:x}", self.dir.display());
        Ok(())
    }

    /// The message bytes of a queued message (for retries after the in-memory copy was
    /// dropped, and after recovery). Reads through the page cache with a positional read,
    /// never mmap: the active segment is still being written.
    pub async fn read_message(&self, id: MessageId) -> Result<Vec<u8>, QueueError> {
        let (file, path, offset, len) = {
            let inner = self.inner.borrow();
            let seg = inner
                .segments
                .get(&id.segment)
                .filter(|_| id.shard == self.shard)
                .ok_or(QueueError::UnknownMessage(id))?;
            let entry = seg
                .messages
                .get(id.index as usize)
                .filter(|e| e.durable)
                .ok_or(QueueError::UnknownMessage(id))?;
            (
                seg.log.clone(),
                seg.log_path.clone(),
                entry.offset,
                entry.record_len,
            )
        };
        let corrupt = |what: &str| QueueError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what: what.to_string(),
        };
        let buf = file
            .read_at(offset, len as usize)
            .await
            .map_err(|e| QueueError::io(&path, "reading", e))?;
        let (header, payload) = record::decode(&buf).map_err(|e| corrupt(e.describe()))?;
        if header.kind == Kind::State || header.segment != id.segment {
            return Err(corrupt("record is not this message"));
        }
        let message =
            record::decode_any_message(header.kind, payload).map_err(|e| corrupt(e.describe()))?;
        Ok(message.body.to_vec())
    }

    /// Flush and sync everything; after this, no more writes. Used at graceful shutdown.
    pub async fn close(&self) -> Result<(), QueueError> {
        self.inner.borrow_mut().closed = true;
        // Every caller waits for its own batch, but a caller may have been dropped mid-wait:
        // make sure whatever is queued reaches the disk.
        let last = self.batcher.last_batch();
        if last > 0 {
            let me = self.me.upgrade().ok_or(QueueError::Closed)?;
            glommio::spawn_local(async move { me.batcher.wait(last).await })
                .detach()
                .await
                .unwrap_or(Err(QueueError::Closed))?;
        }
        segment::sync_dir(&self.dir).await
    }

    /// Counters for `ringmail queue stat`, metrics and tests.
    pub fn stats(&self) -> QueueStats {
        let inner = self.inner.borrow();
        QueueStats {
            messages_pending: inner.messages_pending,
            segments: inner.segments.len() as u64,
            free_segments: inner.free.len() as u64,
            bytes: inner.segments.values().map(|s| s.log_end).sum(),
            commits: inner.commits,
            moved: inner.moved,
            batches: self.batcher.batches(),
            fdatasyncs: self.batcher.fdatasyncs(),
            generation: self.generation,
        }
    }

    /// The shard this queue belongs to.
    pub fn shard(&self) -> u16 {
        self.shard
    }
}

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod tests;
