//! Read-only listing of a whole queue directory for `ringmail queue stat` / `queue list`:
//! std only, no glommio, safe beside a running server.

use std::path::Path;

use super::recover;
use super::{MessageId, QueueError, QueuedMessage};

/// Lists every message that still has a non-final recipient, with its states, in every
/// `shard-<n>` directory under `dir`, ordered by id. Works on a stopped queue and on a running
/// server's (it only reads; a half-written tail record is simply not listed, and a segment
/// recycled while we read it reads as empty). Finished messages are not listed, as `open`
/// does not return them: they only wait for their segment to retire. A message moved forward by
/// compaction is listed once, as its newest copy; one moved while the listing runs may be
/// missed by it, like a message committed meanwhile.
pub fn scan(dir: &Path) -> Result<Vec<QueuedMessage>, QueueError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| QueueError::io(dir, "listing", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| QueueError::io(dir, "listing", e))?;
        let name = entry.file_name();
        let Some(shard) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<u16>().ok())
        else {
            continue;
        };
        let listing = recover::scan_shard(&entry.path())?;
        for seg in listing.segments {
            for (index, m) in seg.messages.into_iter().enumerate() {
                // Finished, or replaced by a moved copy: only the live copy is listed.
                if m.is_finished() {
                    continue;
                }
                out.push(QueuedMessage {
                    id: MessageId {
                        shard,
                        segment: seg.id,
                        index: index as u32,
                    },
                    envelope: m.envelope,
                    size: m.size,
                    states: m.states,
                });
            }
        }
    }
    out.sort_by_key(|m| m.id);
    Ok(out)
}
