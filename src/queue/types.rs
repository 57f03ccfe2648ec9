//! The queue's plain data types: message ids, outcomes, recipient states, options, stats.

use std::fmt;
use std::str::FromStr;

use crate::envelope::Envelope;

/// Identifies a queued message: unique across shards (the shard is part of it) and restarts
/// (segment ids are never reused). Displays as `<segment hex>.<shard>.<index>`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    pub(super) shard: u16,
    /// The segment's id (unique within the shard, never reused).
    pub(super) segment: u64,
    /// The message's record sequence within its segment.
    pub(super) index: u32,
}

impl MessageId {
    /// The shard whose queue holds the message.
    pub fn shard(&self) -> u16 {
        self.shard
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{}.{}", self.segment, self.shard, self.index)
    }
}

/// Why a string is not a `MessageId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessageId;

impl fmt::Display for BadMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a message id (expected <hex>.<shard>.<index>)")
    }
}

impl std::error::Error for BadMessageId {}

impl FromStr for MessageId {
    type Err = BadMessageId;

    fn from_str(s: &str) -> Result<MessageId, BadMessageId> {
        let mut parts = s.split('.');
        let (Some(seg), Some(shard), Some(index), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadMessageId);
        };
        let digits = |p: &str, hex: bool| {
            !p.is_empty()
                && p.len() <= 16
                && p.chars().all(|c| {
                    if hex {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_digit()
                    }
                })
        };
        if !digits(seg, true) || !digits(shard, false) || !digits(index, false) {
            return Err(BadMessageId);
        }
        Ok(MessageId {
            segment: u64::from_str_radix(seg, 16).map_err(|_| BadMessageId)?,
            shard: shard.parse().map_err(|_| BadMessageId)?,
            index: index.parse().map_err(|_| BadMessageId)?,
        })
    }
}

/// What a delivery attempt did for one recipient.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Final: the recipient has the message.
    Delivered,
    /// Final: permanently failed (a bounce was already queued, or none needed).
    Failed,
    /// Not final: try again at `next_attempt` (Unix seconds).
    Deferred {
        /// Attempts made so far.
        attempts: u32,
        /// When to try next, in Unix seconds.
        next_attempt: u64,
    },
}

/// One recipient's delivery state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RecipientState {
    /// Still to deliver: `attempts` made so far, next try not before `next_attempt` (Unix
    /// seconds; 0 means now).
    Pending {
        /// Attempts made so far.
        attempts: u32,
        /// When to try next, in Unix seconds.
        next_attempt: u64,
    },
    /// Final: delivered.
    Delivered,
    /// Final: failed permanently.
    Failed,
}

impl RecipientState {
    /// Delivered and Failed are final; Pending is not.
    pub fn is_final(&self) -> bool {
        !matches!(self, RecipientState::Pending { .. })
    }
}

impl From<Outcome> for RecipientState {
    fn from(o: Outcome) -> RecipientState {
        match o {
            Outcome::Delivered => RecipientState::Delivered,
            Outcome::Failed => RecipientState::Failed,
            Outcome::Deferred {
                attempts,
                next_attempt,
            } => RecipientState::Pending {
                attempts,
                next_attempt,
            },
        }
    }
}

/// A message still in the queue, as `open` and `scan` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id.
    pub id: MessageId,
    /// Its envelope.
    pub envelope: Envelope,
    /// Message bytes length.
    pub size: u64,
    /// One per envelope recipient.
    pub states: Vec<RecipientState>,
}

/// Tuning of one shard's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Preallocated size of a segment's log, e.g. 64 MiB. Larger is fewer rollovers; smaller
    /// retires (and frees) sooner.
    pub segment_size: u64,
    /// Seconds after it was sealed from which a segment counts as old for compaction
    /// (`ShardQueue::should_move`): by then the first attempts of its messages are long over
    /// and what is left waits for retries. Default one hour.
    pub compact_after_secs: u64,
}

impl Default for QueueOptions {
    fn default() -> QueueOptions {
        QueueOptions {
            segment_size: 64 << 20,
            compact_after_secs: 3600,
        }
    }
}

/// Counters of one shard's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Durable messages with at least one non-final recipient.
    pub messages_pending: u64,
    /// Live segments (active and sealed).
    pub segments: u64,
    /// Retired file pairs kept for recycling.
    pub free_segments: u64,
    /// Bytes of message records in live segments.
    pub bytes: u64,
    /// Messages committed since open.
    pub commits: u64,
    /// Messages moved forward by compaction since open.
    pub moved: u64,
    /// Batches written since open.
    pub batches: u64,
    /// `fdatasync` calls since open (group commit makes this much smaller than commits).
    pub fdatasyncs: u64,
    /// This open's generation.
    pub generation: u64,
}
