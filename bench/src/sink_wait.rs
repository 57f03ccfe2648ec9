//! `--wait-sink`: watches the running counter that Postfix's `smtp-sink -c` prints, to time a
//! relay end to end (first message sent to the client → last message received by the sink).
//!
//! `smtp-sink -c` writes a record `sess=S quit=Q mesg=M\r` (counts since it started, as
//! Postfix 3.7 spells them; `msg=` is read too) whenever a session ends, a QUIT is executed or a
//! message's final `.` is received; `M` counts mail transactions, not recipients. With its output sent to a file, the newest complete record at the file's end
//! holds the current count. A watcher thread reads that tail every few milliseconds from before
//! the first message is sent, and remembers when each new count was first seen, so the time the
//! target was reached is known to within one poll whether it came during or after the load.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often the counter file is read: small against a run of seconds, and each read is one
/// `pread` of at most [`TAIL`] bytes.
const POLL: Duration = Duration::from_millis(5);
/// Bytes read from the end of the file: several records (each is ~30 bytes).
const TAIL: u64 = 512;

/// The message count in the newest complete record of `smtp-sink -c` output (`None` when the
/// text holds no complete record with `mesg=` or `msg=`).
pub fn parse_count(tail: &[u8]) -> Option<u64> {
    // Only records followed by their `\r` are complete; the last piece may be half written.
    let mut records: Vec<&[u8]> = tail.split(|&b| b == b'\r').collect();
    records.pop();
    records.iter().rev().find_map(|record| {
        let text = std::str::from_utf8(record).ok()?;
        text.split_ascii_whitespace()
            .find_map(|field| {
                field
                    .strip_prefix("mesg=")
                    .or_else(|| field.strip_prefix("msg="))
            })
            .and_then(|n| n.parse().ok())
    })
}

/// The current count in the counter file (0 when the file is missing or has no record yet).
pub fn read_count(path: &Path) -> io::Result<u64> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
    let mut buf = Vec::with_capacity(TAIL as usize);
    file.take(TAIL).read_to_end(&mut buf)?;
    Ok(parse_count(&buf).unwrap_or(0))
}

/// What the main thread tells the watcher once the load is over.
#[derive(Debug, Default)]
struct Finish {
    /// Messages the sink must receive beyond the baseline.
    target: Option<u64>,
    /// Stop waiting at this instant, reached or not.
    deadline: Option<Instant>,
}

/// A running watcher: start it before the load, finish it after.
pub struct Watcher {
    baseline: u64,
    finish: Arc<Mutex<Finish>>,
    handle: JoinHandle<Vec<(Instant, u64)>>,
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waited {
    /// The count when the watch started (messages from earlier runs).
    pub baseline: u64,
    /// Messages received beyond the baseline when the watch ended.
    pub relayed: u64,
    /// When the count first reached the target, or (timed out) last increased.
    pub reached: Option<Instant>,
    pub timed_out: bool,
}

impl Watcher {
    /// Reads the baseline and starts polling `path`, which must exist (smtp-sink's output file
    /// exists from the moment the sink starts; a missing one is a wrong path).
    pub fn start(path: PathBuf) -> io::Result<Watcher> {
        std::fs::metadata(&path)?;
        let baseline = read_count(&path)?;
        let finish = Arc::new(Mutex::new(Finish::default()));
        let shared = Arc::clone(&finish);
        let handle = thread::Builder::new()
            .name("sink-watch".into())
            .spawn(move || watch(&path, baseline, &shared))?;
        Ok(Watcher {
            baseline,
            finish,
            handle,
        })
    }

    /// Tells the watcher to wait for `target` messages beyond the baseline, at most `timeout`
    /// from now, and returns how that went.
    pub fn finish(self, target: u64, timeout: Duration) -> Waited {
        {
            let mut f = self.finish.lock().unwrap_or_else(|p| p.into_inner());
            f.target = Some(target);
            f.deadline = Some(Instant::now() + timeout);
        }
        let history = self.handle.join().unwrap_or_default();
        summarise(self.baseline, target, &history)
    }
}

/// Polls until the target set by `finish` is reached or its deadline passes; returns every
/// (first seen, count beyond baseline) change.
fn watch(path: &Path, baseline: u64, finish: &Mutex<Finish>) -> Vec<(Instant, u64)> {
    let mut history: Vec<(Instant, u64)> = Vec::new();
    let mut last = 0;
    loop {
        let now = Instant::now();
        // A read error (say, the file replaced under us) counts as "no news".
        if let Ok(count) = read_count(path) {
            let seen = count.saturating_sub(baseline);
            if seen != last {
                history.push((now, seen));
                last = seen;
            }
        }
        let (target, deadline) = {
            let f = finish.lock().unwrap_or_else(|p| p.into_inner());
            (f.target, f.deadline)
        };
        if target.is_some_and(|t| last >= t) || deadline.is_some_and(|d| now >= d) {
            return history;
        }
        thread::sleep(POLL);
    }
}

fn summarise(baseline: u64, target: u64, history: &[(Instant, u64)]) -> Waited {
    let relayed = history.last().map_or(0, |&(_, n)| n);
    if target == 0 {
        // Nothing was accepted: nothing to wait for, and no end-to-end time.
        return Waited {
            baseline,
            relayed,
            reached: None,
            timed_out: false,
        };
    }
    match history.iter().find(|&&(_, n)| n >= target) {
        Some(&(at, _)) => Waited {
            baseline,
            relayed,
            reached: Some(at),
            timed_out: false,
        },
        None => Waited {
            baseline,
            relayed,
            reached: history.last().map(|&(at, _)| at),
            timed_out: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    #[test]
    fn parses_the_newest_complete_record() {
        assert_eq!(parse_count(b""), None);
        assert_eq!(parse_count(b"sess=0 quit=0 msg=1"), None);
        assert_eq!(parse_count(b"sess=0 quit=0 msg=1\r"), Some(1));
        assert_eq!(
            parse_count(b"sess=0 quit=0 msg=9\rsess=1 quit=1 msg=10\rsess=1 qu"),
            Some(10)
        );
        // A tail that starts mid-record still finds the last whole one.
        assert_eq!(parse_count(b"=7\rsess=2 quit=2 msg=12\r"), Some(12));
        assert_eq!(parse_count(b"garbage\r"), None);
        // Postfix 3.7's spelling.
        assert_eq!(
            parse_count(b"sess=59 quit=59 mesg=5000\rsess=60 quit=60 mesg=5000\r"),
            Some(5000)
        );
    }

    #[test]
    fn reads_missing_and_long_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("count");
        assert_eq!(read_count(&path).unwrap(), 0);
        let mut text = String::new();
        for n in 1..=1000 {
            text.push_str(&format!("sess={n} quit={n} mesg={n}\r"));
        }
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_count(&path).unwrap(), 1000);
    }

    #[test]
    fn waits_for_the_target_beyond_the_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("count");
        assert!(
            Watcher::start(path.clone()).is_err(),
            "a missing file is an error"
        );
        std::fs::write(&path, "sess=1 quit=1 msg=5\r").unwrap();
        let watcher = Watcher::start(path.clone()).unwrap();
        let writer = {
            let path = path.clone();
            thread::spawn(move || {
                let mut f = OpenOptions::new().append(true).open(path).unwrap();
                for n in 6..=25 {
                    write!(f, "sess=1 quit=1 mesg={n}\r").unwrap();
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let waited = watcher.finish(20, Duration::from_secs(10));
        writer.join().unwrap();
        assert_eq!(waited.baseline, 5);
        assert!(!waited.timed_out);
        assert!(waited.relayed >= 20);
        assert!(waited.reached.is_some());

        let watcher = Watcher::start(path.clone()).unwrap();
        let waited = watcher.finish(0, Duration::from_secs(10));
        assert!(!waited.timed_out);
        assert_eq!(waited.reached, None);

        let watcher = Watcher::start(path).unwrap();
        let started = Instant::now();
        let waited = watcher.finish(1, Duration::from_millis(100));
        assert!(waited.timed_out);
        assert_eq!(waited.relayed, 0);
        assert_eq!(waited.reached, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
