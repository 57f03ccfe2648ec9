//! `--wait-delivered`: counts files in `**/Maildir/new/` until the expected number arrive.

use std::fs;
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How deep below the root a `Maildir/new` may be (`root/domain/user/Maildir/new` is 4).
const MAX_DEPTH: usize = 8;
/// Poll interval: short against a multi-second run, long enough not to steal the server's CPU.
const POLL: Duration = Duration::from_millis(100);

/// Delivered files seen in one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub files: u64,
    /// Newest modification time among them.
    pub newest: Option<SystemTime>,
}

/// Counts regular files in every `Maildir/new` directory under `root`.
pub fn scan(root: &Path) -> io::Result<Scan> {
    let mut acc = Scan::default();
    walk(root, 0, &mut acc)?;
    Ok(acc)
}

fn walk(dir: &Path, depth: usize, acc: &mut Scan) -> io::Result<()> {
    let is_new = dir.file_name().is_some_and(|n| n == "new")
        && dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "Maildir");
    for entry in fs::read_dir(dir)? {
        // Files come and go while the server delivers; skip what vanished under us.
        let Ok(entry) = entry else { continue };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if is_new {
            if kind.is_file() {
                acc.files += 1;
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    acc.newest = Some(acc.newest.map_or(modified, |t| t.max(modified)));
                }
            }
        } else if kind.is_dir() && depth < MAX_DEPTH {
            let name = entry.file_name();
            if name == "cur" || name == "tmp" {
                continue;
            }
            let _ = walk(&entry.path(), depth + 1, acc);
        }
    }
    Ok(())
}

/// How the wait ended.
#[derive(Debug)]
pub struct Waited {
    /// New files seen (beyond the baseline).
    pub delivered: u64,
    /// Newest file's modification time.
    pub newest: Option<SystemTime>,
    /// When the last increase in the count was seen.
    pub last_increase: Instant,
    pub timed_out: bool,
}

/// Polls until `expect` files beyond `baseline` exist under `root`, or `timeout` passes.
pub fn wait(root: &Path, baseline: u64, expect: u64, timeout: Duration) -> Waited {
    let start = Instant::now();
    let mut waited = Waited {
        delivered: 0,
        newest: None,
        last_increase: start,
        timed_out: false,
    };
    loop {
        if let Ok(s) = scan(root) {
            let delivered = s.files.saturating_sub(baseline);
            if delivered > waited.delivered {
                waited.last_increase = Instant::now();
            }
            waited.delivered = delivered;
            waited.newest = s.newest;
        }
        if waited.delivered >= expect {
            return waited;
        }
        if start.elapsed() >= timeout {
            waited.timed_out = true;
            return waited;
        }
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_files_in_maildir_new() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = [
            "example.test/u1/Maildir/new/a",
            "example.test/u1/Maildir/new/b",
            "example.test/u2/Maildir/new/c",
            "other.test/x/Maildir/new/d",
            "example.test/u1/Maildir/cur/e",
            "example.test/u1/Maildir/tmp/f",
            "example.test/u3/notmaildir/new/g",
            "stray",
        ];
        for f in files {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"x").unwrap();
        }
        fs::create_dir_all(root.join("example.test/u1/Maildir/new/subdir")).unwrap();
        let s = scan(root).unwrap();
        assert_eq!(s.files, 4);
        assert!(s.newest.is_some());
        assert!(scan(&root.join("missing")).is_err());

        let w = wait(root, 1, 3, Duration::from_secs(5));
        assert!(!w.timed_out);
        assert_eq!(w.delivered, 3);
        let w = wait(root, 0, 5, Duration::from_millis(150));
        assert!(w.timed_out);
        assert_eq!(w.delivered, 4);
    }
}
