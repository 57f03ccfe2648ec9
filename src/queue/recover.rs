//! Scanning a shard directory with plain std reads: each file's valid prefix, and every index
//! rebuilt from the logs. Used by `ShardQueue::open` (before serving) and by `scan`.
//!
//! Compaction's one recovery rule lives here too (`resolve_moves`): a message that a durable
//! moved record replaces is finished, whatever its own state stream says.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::envelope::Envelope;

use super::QueueError;
use super::RecipientState;
use super::record::{self, HEADER_LEN, Kind, MovedFrom};

/// `seg-<id>.log`: message records.
pub const LOG_EXT: &str = "log";
/// `seg-<id>.state`: recipient-state records for the messages of `seg-<id>.log`.
pub const STATE_EXT: &str = "state";

/// The live file name of segment `id`'s log or state file.
pub fn segment_path(dir: &Path, id: u64, ext: &str) -> PathBuf {
    dir.join(format!("seg-{id:016x}.{ext}"))
}

/// The name a retired file waits under until it is recycled.
pub fn free_path(dir: &Path, id: u64, ext: &str) -> PathBuf {
    dir.join(format!("free-{id:016x}.{ext}"))
}

/// Parses `seg-<hex>.<ext>` / `free-<hex>.<ext>` into (free?, id, ext).
fn parse_name(name: &str) -> Option<(bool, u64, &str)> {
    let (free, rest) = if let Some(r) = name.strip_prefix("seg-") {
        (false, r)
    } else {
        (true, name.strip_prefix("free-")?)
    };
    let (hex, ext) = rest.split_once('.')?;
    if hex.len() != 16 || (ext != LOG_EXT && ext != STATE_EXT) {
        return None;
    }
    Some((free, u64::from_str_radix(hex, 16).ok()?, ext))
}

/// One message found in a segment log.
#[derive(Debug, Clone)]
pub struct ScannedMessage {
    /// Byte offset of its record.
    pub offset: u64,
    /// Whole record length (header and payload).
    pub record_len: u64,
    /// Message bytes length.
    pub size: u64,
    /// The envelope.
    pub envelope: Envelope,
    /// One state per recipient, after applying the state stream.
    pub states: Vec<RecipientState>,
    /// For a moved message: the older copy it replaces.
    pub replaces: Option<MovedFrom>,
    /// A durable moved record replaces this copy: (its segment, its index). Finished then.
    pub replaced_by: Option<(u64, u32)>,
}

impl ScannedMessage {
    /// Whether the message is finished: every recipient final, or a newer copy replaces it.
    pub fn is_finished(&self) -> bool {
        self.replaced_by.is_some() || is_finished(&self.states)
    }
}

/// Where a file's valid prefix ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileEnd {
    /// Bytes of valid records.
    pub valid_len: u64,
    /// The sequence number the next record must carry.
    pub next_seq: u64,
}

/// One live segment as found on disk.
#[derive(Debug, Clone)]
pub struct ScannedSegment {
    /// Segment id.
    pub id: u64,
    /// Valid prefix of the log.
    pub log: FileEnd,
    /// Valid prefix of the state file (all zero when it is missing).
    pub state: FileEnd,
    /// Messages, indexed by record sequence.
    pub messages: Vec<ScannedMessage>,
    /// When its log was last written (Unix seconds): for a recovered segment, the closest
    /// thing to when it was sealed that survives a restart.
    pub modified: u64,
}

/// Everything in one shard directory.
#[derive(Debug, Default)]
pub struct ShardListing {
    /// Live segments, by ascending id.
    pub segments: Vec<ScannedSegment>,
    /// Retired files waiting for reuse: (id, has log, has state).
    pub free: Vec<(u64, bool, bool)>,
    /// State files whose log is gone (a retire interrupted between its two renames).
    pub orphan_states: Vec<u64>,
    /// The largest segment id seen in any file name.
    pub max_id: u64,
}

/// Walks a file's records from the start and calls `each(kind, offset, record_len, payload)`
/// for every one that fits; stops at the first that does not (wrong magic, length, CRC,
/// segment, kind not in `kinds`, sequence, or a generation lower than the one before). A file
/// that vanished (recycled under a concurrent `scan`) reads as empty.
pub fn scan_file(
    path: &Path,
    segment: u64,
    kinds: &[Kind],
    mut each: impl FnMut(Kind, u64, u64, &[u8]),
) -> Result<FileEnd, QueueError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(FileEnd::default()),
        Err(e) => return Err(QueueError::io(path, "opening", e)),
    };
    let file_len = file
        .metadata()
        .map_err(|e| QueueError::io(path, "reading metadata of", e))?
        .len();
    let mut end = FileEnd::default();
    let mut generation = 0;
    let mut buf = vec![0u8; HEADER_LEN];
    loop {
        let pos = end.valid_len;
        if file_len - pos < HEADER_LEN as u64 {
            break;
        }
        buf.resize(HEADER_LEN, 0);
        read_full(&mut file, &mut buf, path)?;
        let Ok((header, _)) = record::decode_header(&buf) else {
            break;
        };
        let total = HEADER_LEN as u64 + u64::from(header.len);
        if !kinds.contains(&header.kind)
            || header.segment != segment
            || header.seq != end.next_seq
            || header.generation < generation
            || total > file_len - pos
        {
            break;
        }
        buf.resize(total as usize, 0);
        read_full(&mut file, &mut buf[HEADER_LEN..], path)?;
        let Ok((_, payload)) = record::decode(&buf) else {
            break;
        };
        each(header.kind, pos, total, payload);
        generation = header.generation;
        end.next_seq += 1;
        end.valid_len += total;
    }
    Ok(end)
}

/// Reads exactly `buf.len()` bytes; a file shrinking under us is not expected (files are
/// never truncated) and reports as an error.
fn read_full(file: &mut File, buf: &mut [u8], path: &Path) -> Result<(), QueueError> {
    file.read_exact(buf)
        .map_err(|e| QueueError::io(path, "reading", e))
}

/// Scans one segment's log, then applies its state stream.
pub fn scan_segment(dir: &Path, id: u64) -> Result<ScannedSegment, QueueError> {
    let mut messages = Vec::new();
    let log_path = segment_path(dir, id, LOG_EXT);
    let log_kinds = [Kind::Message, Kind::Moved];
    let log = scan_file(&log_path, id, &log_kinds, |kind, offset, len, payload| {
        match record::decode_any_message(kind, payload) {
            Ok(m) => {
                let (replaces, states) = match m.moved {
                    // A moved copy starts from the states it carried, not from Pending.
                    Some((from, states)) => (Some(from), states),
                    None => (
                        None,
                        vec![
                            RecipientState::Pending {
                                attempts: 0,
                                next_attempt: 0
                            };
                            m.envelope.recipients.len()
                        ],
                    ),
                };
                messages.push(ScannedMessage {
                    offset,
                    record_len: len,
                    size: m.body.len() as u64,
                    states,
                    envelope: m.envelope,
                    replaces,
                    replaced_by: None,
                })
            }
            // A CRC-valid record that does not parse was written by a buggy writer; keep the
            // indexes aligned with the sequence numbers and treat it as finished. (A moved
            // record that does not parse replaces nothing: its older copy stays live.)
            Err(_) => {
                log::error!(
                    "{}: unparsable message record at {offset}",
                    log_path.display()
                );
                messages.push(ScannedMessage {
                    offset,
                    record_len: len,
                    size: 0,
                    envelope: Envelope {
                        sender: String::new(),
                        recipients: Vec::new(),
                        received_at: 0,
                        smtputf8: false,
                        body_8bit: false,
                    },
                    states: Vec::new(),
                    replaces: None,
                    replaced_by: None,
                })
            }
        }
    })?;
    let modified = std::fs::metadata(&log_path)
        .and_then(|m| m.modified())
        .map(crate::clock::unix_seconds)
        // Unknown: count it as written now, so the age rule moves nothing early.
        .unwrap_or_else(|_| crate::clock::now_unix());
    let state_path = segment_path(dir, id, STATE_EXT);
    let state = scan_file(&state_path, id, &[Kind::State], |_, offset, _, payload| {
        let applied = record::decode_state(payload).ok().and_then(|c| {
            let slot = messages
                .get_mut(c.index as usize)?
                .states
                .get_mut(c.recipient as usize)?;
            *slot = c.state;
            Some(())
        });
        if applied.is_none() {
            log::warn!(
                "{}: state record at {offset} names no message of this segment",
                state_path.display()
            );
        }
    })?;
    Ok(ScannedSegment {
        id,
        log,
        state,
        messages,
        modified,
    })
}

/// Lists and scans a shard directory.
pub fn scan_shard(dir: &Path) -> Result<ShardListing, QueueError> {
    let mut listing = ShardListing::default();
    let mut logs = Vec::new();
    let mut states = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| QueueError::io(dir, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| QueueError::io(dir, "listing", e))?;
        let name = entry.file_name();
        let Some((free, id, ext)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        listing.max_id = listing.max_id.max(id);
        if free {
            match listing.free.iter_mut().find(|f| f.0 == id) {
                Some(f) if ext == LOG_EXT => f.1 = true,
                Some(f) => f.2 = true,
                None => listing.free.push((id, ext == LOG_EXT, ext == STATE_EXT)),
            }
        } else if ext == LOG_EXT {
            logs.push(id);
        } else {
            states.push(id);
        }
    }
    logs.sort_unstable();
    listing.free.sort_unstable();
    listing.orphan_states = states.into_iter().filter(|s| !logs.contains(s)).collect();
    for id in logs {
        listing.segments.push(scan_segment(dir, id)?);
    }
    resolve_moves(&mut listing.segments);
    Ok(listing)
}

/// Compaction's recovery rule: every message that a moved record in some segment's valid
/// prefix replaces is finished (`replaced_by`), even though its own segment holds no final
/// state for it. A torn moved record is not in the valid prefix, so its older copy stays live:
/// exactly one copy either way. The rule needs no order (a replaced copy's own moved record,
/// A -> B -> C, still marks A), and the queue keeps a segment holding moved records until
/// every segment they point into is gone, so no link a copy depends on is ever missing.
/// Links only point backwards (a message moves to the active, newest segment); one that does
/// not, or that names no message, was not written by this queue and is ignored.
fn resolve_moves(segments: &mut [ScannedSegment]) {
    let mut links = Vec::new();
    for seg in segments.iter() {
        for (index, m) in seg.messages.iter().enumerate() {
            if let Some(from) = m.replaces {
                links.push((from, (seg.id, index as u32)));
            }
        }
    }
    for (from, by) in links {
        let target = segments
            .binary_search_by_key(&from.segment, |s| s.id)
            .ok()
            .filter(|_| from.segment < by.0)
            .and_then(|at| segments.get_mut(at))
            .and_then(|s| s.messages.get_mut(from.index as usize));
        match target {
            Some(m) => m.replaced_by = Some(by),
            // Its segment retired after the move: the usual case, nothing to do.
            None if from.segment < by.0 => {}
            None => log::warn!(
                "segment {:x}: message {} claims to replace {:x}.{}, a newer segment",
                by.0,
                by.1,
                from.segment,
                from.index
            ),
        }
    }
}

/// Whether every recipient of a scanned message is final.
pub fn is_finished(states: &[RecipientState]) -> bool {
    states.iter().all(|s| s.is_final())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        type Parsed = Option<(bool, u64, &'static str)>;
        let cases: &[(&str, Parsed)] = &[
            ("seg-00000000000000ff.log", Some((false, 255, "log"))),
            ("free-0000000000000001.state", Some((true, 1, "state"))),
            ("seg-ff.log", None),
            ("seg-00000000000000ff.tmp", None),
            ("generation", None),
            ("seg-zz000000000000ff.log", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_name(name), *want, "{name}");
        }
        let p = segment_path(Path::new("/q"), 255, LOG_EXT);
        assert_eq!(p, Path::new("/q/seg-00000000000000ff.log"));
    }
}
