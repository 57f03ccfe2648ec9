//! Compaction: moving a surviving message out of an old segment into the active one, so that a
//! few deferred messages do not keep whole segments (disk space, recovery time) alive.
//!
//! A move is one durable step: a `Moved` record in the active segment's log carrying the
//! envelope, the bytes, the recipients' current states and the old copy's id, group-committed
//! like any message. Until it is durable the old copy is the message; once it is, the old copy
//! counts as finished (in memory now, and in recovery because the moved record names it), and
//! its segment may retire as soon as nothing else lives there.
//!
//! Recovery only sees what is on disk, so a moved record must outlive the old copy's segment:
//! a segment holding moved records (`Segment::links`) retires only once every older segment
//! they point into is gone from disk. Links only point backwards (the active segment is the
//! newest), so this waits on no cycle, and a chain A -> B -> C keeps B's record (which finishes
//! A) on disk for as long as A's segment is.
//!
//! While a move is in flight, `record` on the old id waits for it and then records on the new
//! copy, so an outcome reached during the move is neither lost with the old copy nor missing
//! from the new one.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::io::BufferedFile;

use super::record::{self, HEADER_LEN, Kind, MAX_PAYLOAD, MovedFrom};
use super::segment::{MessageEntry, Segment};
use super::{MessageId, QueueError, RecipientState, ShardQueue};

/// Wakes `record` calls waiting for a move to settle.
#[derive(Default)]
pub(crate) struct Settled {
    /// Bumped at every settled move, so a waiter knows whether anything happened.
    count: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Settled {
    fn seen(&self) -> u64 {
        self.count.get()
    }

    fn notify(&self) {
        self.count.set(self.count.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn wait_past(&self, seen: u64) {
        poll_fn(|cx| {
            if self.count.get() != seen {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Where a message's record lies, for reading it back.
struct OldRecord {
    file: Rc<BufferedFile>,
    path: Rc<PathBuf>,
    offset: u64,
    len: u64,
}

/// Whether an entry can be moved (the segment is checked separately).
fn movable(entry: &MessageEntry) -> bool {
    entry.durable
        && !entry.finished
        && !entry.finishing
        && !entry.moving
        && !entry.states.is_empty()
}

impl ShardQueue {
    /// Moves a message forward: appends a copy (envelope, bytes, current recipient states, and
    /// the id it replaces) to the active segment and returns the new id once it is durable.
    /// From then on the old id is finished; use the new one (`record` on the old id follows
    /// the move while the old segment is still known).
    ///
    /// Refused for a message that is unknown (`UnknownMessage`), not yet durable, finished,
    /// already being moved or in the active segment (`NotMovable`), or in a failed segment
    /// (`SegmentFailed`). On any error the old copy stays the message.
    pub async fn move_forward(&self, id: MessageId) -> Result<MessageId, QueueError> {
        let me = self.me.upgrade().ok_or(QueueError::Closed)?;
        // Its own task, as in `commit`: once the old entry is marked moving, the move must
        // settle (and wake waiting `record`s) even if the caller gives up.
        glommio::spawn_local(async move { me.move_task(id).await })
            .detach()
            .await
            .unwrap_or(Err(QueueError::Closed))
    }

    async fn move_task(&self, id: MessageId) -> Result<MessageId, QueueError> {
        let old = self.begin_move(id)?;
        match self.append_moved(id, old).await {
            Ok((new, batch)) => self.settle_move(id, new, batch).await,
            Err(e) => {
                self.end_move(id);
                Err(e)
            }
        }
    }

    /// Checks that `id` may move and marks it moving; returns where its record is.
    fn begin_move(&self, id: MessageId) -> Result<OldRecord, QueueError> {
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Err(QueueError::Closed);
        }
        let active = inner.active;
        let seg = inner.writable_segment(self.shard, id)?;
        let entry = seg
            .messages
            .get_mut(id.index as usize)
            .filter(|e| !e.states.is_empty())
            .ok_or(QueueError::UnknownMessage(id))?;
        let refuse = |why| Err(QueueError::NotMovable { id, why });
        if !entry.durable {
            return refuse("it is not durable yet");
        }
        if entry.finished || entry.finishing {
            return refuse("it is finished");
        }
        if entry.moving {
            return refuse("it is being moved");
        }
        // Moving within the active segment frees nothing, and a link must point backwards.
        if active == Some(id.segment) || !seg.sealed {
            return refuse("it is in the active segment");
        }
        entry.moving = true;
        Ok(OldRecord {
            file: seg.log.clone(),
            path: seg.log_path.clone(),
            offset: entry.offset,
            len: entry.record_len,
        })
    }

    /// Reads the old record back, verifies it, and queues the moved record in the active
    /// segment; returns the new id and the batch to wait for.
    async fn append_moved(
        &self,
        id: MessageId,
        old: OldRecord,
    ) -> Result<(MessageId, u64), QueueError> {
        let corrupt = |what: &str| QueueError::Corrupt {
            path: old.path.to_path_buf(),
            offset: old.offset,
            what: what.to_string(),
        };
        let buf = old
            .file
            .read_at(old.offset, old.len as usize)
            .await
            .map_err(|e| QueueError::io(&old.path, "reading", e))?;
        let (header, payload) = record::decode(&buf).map_err(|e| corrupt(e.describe()))?;
        if header.kind == Kind::State
            || header.segment != id.segment
            || header.seq != u64::from(id.index)
        {
            return Err(corrupt("record is not this message"));
        }
        let message =
            record::decode_any_message(header.kind, payload).map_err(|e| corrupt(e.describe()))?;
        let recipients = message.envelope.recipients.len();
        let from = MovedFrom {
            segment: id.segment,
            index: id.index,
        };
        // The copy is the old payload byte for byte (envelope and bytes), behind a new prefix.
        let payload_len =
            (record::moved_prefix_len(recipients) + message.message_payload.len()) as u64;
        if payload_len > MAX_PAYLOAD {
            return Err(QueueError::TooLarge {
                size: payload_len,
                limit: MAX_PAYLOAD,
            });
        }
        let record_len = HEADER_LEN as u64 + payload_len;
        loop {
            // States are read and the record queued with no await in between, so the copy
            // carries exactly the states in memory now (`record` waits while we are moving).
            let states = self.moving_states(id, recipients, &old.path)?;
            let prefix = record::encode_moved_prefix(from, &states);
            let parts = [&prefix[..], message.message_payload];
            let appended =
                self.try_append(Kind::Moved, &parts, record_len, states, Some(id.segment))?;
            if let Some((segment, index, batch)) = appended {
                let new = MessageId {
                    shard: self.shard,
                    segment,
                    index,
                };
                return Ok((new, batch));
            }
            self.roll_over(record_len).await?;
        }
    }

    /// The current states of a message being moved, which must match its envelope.
    fn moving_states(
        &self,
        id: MessageId,
        recipients: usize,
        path: &Path,
    ) -> Result<Vec<RecipientState>, QueueError> {
        let inner = self.inner.borrow();
        let entry = inner
            .segments
            .get(&id.segment)
            .and_then(|s| s.messages.get(id.index as usize))
            .filter(|e| e.moving)
            .ok_or(QueueError::UnknownMessage(id))?;
        if entry.states.len() != recipients {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                offset: entry.offset,
                what: format!("message {id} has a different recipient count on disk"),
            });
        }
        Ok(entry.states.clone())
    }

    /// Waits for the moved record's batch. Durable: the new copy becomes visible and the old
    /// one finished (which may retire its segment). Failed: the new copy never existed (its
    /// segment is sealed, as for a failed commit) and the old one stays the message.
    async fn settle_move(
        &self,
        old: MessageId,
        new: MessageId,
        batch: u64,
    ) -> Result<MessageId, QueueError> {
        let result = self.batcher.wait(batch).await;
        let retire = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            let durable = result.is_ok();
            if let Some(seg) = inner.segments.get_mut(&new.segment) {
                if durable {
                    if let Some(entry) = seg.messages.get_mut(new.index as usize) {
                        entry.durable = true;
                    }
                } else {
                    seg.finish(new.index);
                    seg.failed = true;
                    seg.seal();
                }
            }
            let mut retire = false;
            if let Some(seg) = inner.segments.get_mut(&old.segment) {
                let mut was_finished = false;
                if let Some(entry) = seg.messages.get_mut(old.index as usize) {
                    entry.moving = false;
                    if durable {
                        entry.moved_to = Some(new);
                        was_finished = entry.finished;
                    }
                }
                if durable {
                    if was_finished {
                        // Not expected (nothing finishes a moving message), but the new copy
                        // is pending all the same.
                        inner.messages_pending += 1;
                    } else {
                        // One pending message before and after: no change to messages_pending.
                        seg.finish(old.index);
                    }
                    retire = seg.sealed && seg.unfinished == 0;
                }
            }
            if durable {
                inner.moved += 1;
            }
            retire
        };
        self.moves.notify();
        result?;
        if retire {
            // The move is durable whatever happens here: report the new id, log the rest
            // (recovery retires what a failed rename left).
            if let Err(e) = self.retire_ready().await {
                log::error!(
                    "queue {}: retiring after moving {old} to {new}: {e}",
                    self.dir.display()
                );
            }
        }
        Ok(new)
    }

    /// A move ended before its record was queued: the old copy is the message again.
    fn end_move(&self, id: MessageId) {
        if let Some(entry) = self
            .inner
            .borrow_mut()
            .segments
            .get_mut(&id.segment)
            .and_then(|s| s.messages.get_mut(id.index as usize))
        {
            entry.moving = false;
        }
        self.moves.notify();
    }

    /// The id under which `id`'s states are recorded now: itself, or the copy it was moved to
    /// (after waiting for a move in flight).
    pub(super) async fn follow_moves(&self, mut id: MessageId) -> Result<MessageId, QueueError> {
        loop {
            let seen = self.moves.seen();
            let next = {
                let inner = self.inner.borrow();
                let entry = inner
                    .segments
                    .get(&id.segment)
                    .filter(|_| id.shard == self.shard)
                    .and_then(|s| s.messages.get(id.index as usize));
                match entry {
                    Some(e) if e.moving => None,
                    Some(MessageEntry {
                        moved_to: Some(to), ..
                    }) => Some(*to),
                    _ => return Ok(id),
                }
            };
            match next {
                Some(to) => id = to,
                None => self.moves.wait_past(seen).await,
            }
        }
    }

    /// The compaction policy, asked when the scheduler defers a message: whether moving it
    /// forward is worth a copy. True when the message can move (durable, unfinished, in a
    /// sealed segment that has not failed) and its segment is either
    ///
    /// - **mostly dead**: live record bytes under a quarter of its log. Moving the survivors
    ///   copies at most a quarter of what retiring the segment then frees; or
    /// - **old**: sealed at least `compact_after_secs` ago (recovered segments: log last
    ///   written), with live bytes under three quarters of its log. By then first attempts are
    ///   over and what is left waits for retries that can take days; moving it bounds disk use
    ///   and recovery time by the live mail (about 4/3 of it in old segments) rather than by
    ///   the history. The three-quarters bound keeps a segment that is nearly all live (a
    ///   backlog to one dead destination, a dedicated segment of one big message) from being
    ///   copied again every `compact_after_secs` for no space gained.
    ///
    /// A sealed segment's live share only falls, so once one message of it should move, all
    /// its survivors should: a sweep empties the segments it starts on, and a segment kept
    /// only for its links (see the module doc) does not wait on one that never empties.
    pub fn should_move(&self, id: MessageId) -> bool {
        let now = crate::clock::now_unix();
        let inner = self.inner.borrow();
        let Some(seg) = inner
            .segments
            .get(&id.segment)
            .filter(|_| id.shard == self.shard)
        else {
            return false;
        };
        inner.active != Some(seg.id)
            && seg.messages.get(id.index as usize).is_some_and(movable)
            && self.worth_compacting(seg, now)
    }

    /// Up to `limit` messages that `should_move`, oldest segment first: for the scheduler's
    /// periodic sweep (which decides when to run it and how many moves to have in flight).
    pub fn compactable(&self, limit: usize) -> Vec<MessageId> {
        let now = crate::clock::now_unix();
        let inner = self.inner.borrow();
        let mut out = Vec::new();
        for seg in inner.segments.values() {
            if inner.active == Some(seg.id) || !self.worth_compacting(seg, now) {
                continue;
            }
            for (index, entry) in seg.messages.iter().enumerate() {
                if out.len() >= limit {
                    return out;
                }
                if movable(entry) {
                    out.push(MessageId {
                        shard: self.shard,
                        segment: seg.id,
                        index: index as u32,
                    });
                }
            }
        }
        out
    }

    /// The segment half of `should_move` (see there for the rule and why).
    fn worth_compacting(&self, seg: &Segment, now: u64) -> bool {
        if !seg.sealed || seg.failed || seg.unfinished == 0 {
            return false;
        }
        let (live, size) = (u128::from(seg.live_bytes), u128::from(seg.log_end));
        let mostly_dead = live * 4 < size;
        let old = now.saturating_sub(seg.sealed_at) >= self.opts.compact_after_secs;
        mostly_dead || (old && live * 4 < size * 3)
    }
}
