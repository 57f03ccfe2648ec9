//! The suppression list: `<data_dir>/suppression`, a log of `add`/`del` lines (see `entry`)
//! appended with `O_APPEND` and fsynced, by the server (hard bounces, unsubscribes, complaints)
//! and by `ringmail suppress` alike, so the file is the one order of every change.
//!
//! The server keeps the replayed list in memory as an immutable snapshot. Shards read it
//! without a lock (a [`ShardView`] compares one atomic generation and keeps its own `Arc` of
//! the snapshot); a writer or the watcher thread replays new lines from the file and publishes
//! a new snapshot. A change made by `ringmail suppress` while the server runs is seen within
//! [`WATCH_INTERVAL`].
//!
//! Every method of [`SuppressionList`] does file I/O: call it from the blocking pool, the
//! sidecar or a CLI, never on a shard.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::entry::{Change, Entry, Key, Target};

/// How often the watcher looks for lines appended by another process.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The replayed list: every suppressed key with its entry.
pub type Snapshot = BTreeMap<Key, Entry>;

/// The list on disk and its replayed snapshot.
pub struct SuppressionList {
    path: PathBuf,
    /// Replay state: the map and how far into the file it has read. Taken by writers and the
    /// watcher only.
    replay: Mutex<Replay>,
    /// The published snapshot; its lock is taken only to swap or clone the `Arc`.
    published: Mutex<Arc<Snapshot>>,
    /// Bumped on every publish, so readers know when to take the new snapshot.
    generation: AtomicU64,
}

#[derive(Default)]
struct Replay {
    map: Snapshot,
    offset: u64,
}

impl SuppressionList {
    /// Opens (creating if missing) the list at `path` and replays it.
    pub fn open(path: &Path) -> Result<Arc<SuppressionList>, String> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let list = Arc::new(SuppressionList {
            path: path.to_path_buf(),
            replay: Mutex::new(Replay::default()),
            published: Mutex::new(Arc::new(Snapshot::new())),
            generation: AtomicU64::new(0),
        });
        list.refresh()?;
        Ok(list)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a thread that replays lines other processes append, until the list is dropped.
    pub fn watch(self: &Arc<Self>) {
        let weak: Weak<SuppressionList> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("ringmail-suppression".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WATCH_INTERVAL);
                    let Some(list) = weak.upgrade() else { return };
                    if let Err(e) = list.refresh() {
                        log::warn!("suppression list: {e}");
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("suppression list: cannot start its watcher thread: {e}");
        }
    }

    /// Suppresses `target` (for `list` only, or for all mail), durably, and logs it.
    pub fn add(
        &self,
        target: Target,
        list: Option<String>,
        reason: &str,
        now: u64,
    ) -> Result<(), String> {
        let change = Change::Add(
            (target, list),
            Entry {
                since: now,
                reason: reason.to_string(),
            },
        );
        self.append(&change)?;
        log::info!("suppression: {}", change.to_line().trim_end());
        Ok(())
    }

    /// Lifts the suppression of `target` (for `list`). Returns whether it was suppressed.
    pub fn del(&self, target: Target, list: Option<String>, now: u64) -> Result<bool, String> {
        let key = (target, list);
        if !self.snapshot().contains_key(&key) {
            return Ok(false);
        }
        let change = Change::Del(key, now);
        self.append(&change)?;
        log::info!("suppression: {}", change.to_line().trim_end());
        Ok(true)
    }

    /// The current list.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.published.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Appends one line and syncs it, then replays (which publishes it).
    fn append(&self, change: &Change) -> Result<(), String> {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        // One write of one line: O_APPEND makes it land whole after every other writer's.
        file.write_all(change.to_line().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot append to {}: {e}", self.path.display()))?;
        self.refresh()
    }

    /// Replays the lines appended since the last replay (all of them if the file shrank), and
    /// publishes a new snapshot if anything changed.
    pub fn refresh(&self) -> Result<(), String> {
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = File::open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", self.path.display()))?
            .len();
        if len == replay.offset {
            return Ok(());
        }
        if len < replay.offset {
            *replay = Replay::default();
        }
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(replay.offset))
            .and_then(|_| file.read_to_end(&mut text))
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        // A line still being written (no newline yet) waits for the next replay.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for (number, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let line = String::from_utf8_lossy(line);
            match Change::parse(&line) {
                Ok(Change::Add(key, entry)) => {
                    replay.map.insert(key, entry);
                }
                Ok(Change::Del(key, _)) => {
                    replay.map.remove(&key);
                }
                Err(e) => log::warn!(
                    "{}: skipping a bad line (+{number} after offset {}): {e}",
                    self.path.display(),
                    replay.offset
                ),
            }
        }
        replay.offset += complete as u64;
        let snapshot = Arc::new(replay.map.clone());
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// Looks `recipient` up in `snapshot` for a message of `list`: the address, then its domain
/// and each parent domain, each for all mail and for the list.
pub fn lookup<'a>(
    snapshot: &'a Snapshot,
    recipient: &str,
    list: Option<&str>,
) -> Option<(&'a Key, &'a Entry)> {
    if snapshot.is_empty() {
        return None;
    }
    let lower = recipient.to_ascii_lowercase();
    let lists: [Option<String>; 2] = [None, list.map(str::to_string)];
    let mut targets = vec![Target::Address(lower.clone())];
    if let Some((_, mut domain)) = lower.rsplit_once('@') {
        loop {
            targets.push(Target::Domain(domain.to_string()));
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent,
                _ => break,
            }
        }
    }
    for target in targets {
        for l in lists.iter().take(if list.is_some() { 2 } else { 1 }) {
            if let Some(found) = snapshot.get_key_value(&(target.clone(), l.clone())) {
                return Some(found);
            }
        }
    }
    None
}

/// A shard's read side: no lock on a lookup, only an atomic load; the snapshot is taken again
/// (one short lock) only after it changed.
pub struct ShardView {
    list: Arc<SuppressionList>,
    cached: RefCell<(u64, Arc<Snapshot>)>,
}

impl ShardView {
    pub fn new(list: Arc<SuppressionList>) -> ShardView {
        let generation = list.generation.load(Ordering::Acquire);
        let snapshot = list.snapshot();
        ShardView {
            list,
            cached: RefCell::new((generation, snapshot)),
        }
    }

    /// Whether `recipient` is suppressed for mail of `list`: the matching key and entry.
    pub fn check(&self, recipient: &str, list: Option<&str>) -> Option<(Key, Entry)> {
        let generation = self.list.generation.load(Ordering::Acquire);
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            *cached = (generation, self.list.snapshot());
        }
        lookup(&cached.1, recipient, list).map(|(k, e)| (k.clone(), e.clone()))
    }

    /// The list itself, for writes (on the blocking pool).
    pub fn list(&self) -> &Arc<SuppressionList> {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_dels_and_lists_replay_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suppression");
        let list = SuppressionList::open(&path).unwrap();
        let view = ShardView::new(Arc::clone(&list));
        assert!(view.check("bob@example.com", None).is_none());
        list.add(Target::parse("bob@example.com").unwrap(), None, "bounce", 1)
            .unwrap();
        list.add(Target::parse("example.net").unwrap(), None, "op", 2)
            .unwrap();
        list.add(
            Target::parse("carol@example.org").unwrap(),
            Some("news".into()),
            "unsubscribe",
            3,
        )
        .unwrap();
        assert_eq!(
            view.check("BOB@example.com", None).unwrap().1.reason,
            "bounce"
        );
        assert!(view.check("anyone@mx.example.net", None).is_some());
        assert!(view.check("carol@example.org", None).is_none());
        assert!(view.check("carol@example.org", Some("other")).is_none());
        assert!(view.check("carol@example.org", Some("news")).is_some());
        assert!(
            list.del(Target::parse("bob@example.com").unwrap(), None, 4)
                .unwrap()
        );
        assert!(
            !list
                .del(Target::parse("bob@example.com").unwrap(), None, 4)
                .unwrap()
        );
        assert!(view.check("bob@example.com", None).is_none());

        // Another process (the CLI) appends; a second handle replays the same state.
        let again = SuppressionList::open(&path).unwrap();
        assert_eq!(*again.snapshot(), *list.snapshot());
        again
            .add(Target::parse("dave@example.com").unwrap(), None, "cli", 5)
            .unwrap();
        assert!(view.check("dave@example.com", None).is_none());
        list.refresh().unwrap();
        assert!(view.check("dave@example.com", None).is_some());

        // A half-written line waits; a bad line is skipped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"garbage line\nadd\terin@example.com\t-\t6\tpartial")
            .unwrap();
        list.refresh().unwrap();
        assert!(view.check("erin@example.com", None).is_none());
        f.write_all(b"\n").unwrap();
        list.refresh().unwrap();
        assert!(view.check("erin@example.com", None).is_some());
    }
}
