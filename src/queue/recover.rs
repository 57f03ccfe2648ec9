//! Scanning a shard directory with plain std reads: each file's valid prefix, and every index
//! rebuilt from the logs. Used by `ShardQueue::open` (before serving) and by `scan`.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::envelope::Envelope;

use super::QueueError;
use super::RecipientState;
use super::record::{self, HEADER_LEN, Kind};

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

/// Walks a file's records from the start and calls `each(seq, offset, record_len, payload)`
/// for every one that fits; stops at the first that does not (wrong magic, length, CRC,
/// segment, kind, sequence, or a generation lower than the one before). A file that vanished
/// (recycled under a concurrent `scan`) reads as empty.
pub fn scan_file(
    path: &Path,
    segment: u64,
    kind: Kind,
    mut each: impl FnMut(u64, u64, u64, &[u8]),
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
        if header.kind != kind
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
        each(header.seq, pos, total, payload);
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
    let log = scan_file(&log_path, id, Kind::Message, |_, offset, len, payload| {
        match record::decode_message(payload) {
            Ok((envelope, body)) => messages.push(ScannedMessage {
                offset,
                record_len: len,
                size: body.len() as u64,
                states: vec![
                    RecipientState::Pending {
                        attempts: 0,
                        next_attempt: 0
                    };
                    envelope.recipients.len()
                ],
                envelope,
            }),
            // A CRC-valid record that does not parse was written by a buggy writer; keep the
            // indexes aligned with the sequence numbers and treat it as finished.
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
                })
            }
        }
    })?;
    let state_path = segment_path(dir, id, STATE_EXT);
    let state = scan_file(&state_path, id, Kind::State, |_, offset, _, payload| {
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
    Ok(listing)
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
