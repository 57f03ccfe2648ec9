//! Where a virtual mailbox's delivery instructions come from: `.qmail` files in the domain's
//! directory under the mail root, `<mail_root>/<domain>/.qmail-<local part>`, found with
//! qmail's extension search (see `extension`): for `bob-lists@example.test`,
//! `.qmail-bob-lists`, then `.qmail-bob-default`, then `.qmail-default`. No file, or a file
//! with no instructions, means the default: the Maildir `<mail_root>/<domain>/<local>/Maildir`.
//!
//! Each shard keeps the list of `.qmail` names in every domain directory it delivered to, read
//! on a local-delivery thread and checked again once it is [`REFRESH`] old (one `stat`; the
//! directory is listed again only when its modification time changed), so an ordinary Maildir
//! delivery costs no file-system lookup on the way, and a new or removed `.qmail` file takes
//! effect within that time.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::blocking::BlockingPool;

/// How long a domain directory's list of `.qmail` files is trusted before it is read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The `.qmail` file names in one directory, as read at `read_at`, when the directory had
/// modification time `mtime`.
struct Listing {
    read_at: Instant,
    mtime: Option<SystemTime>,
    files: Rc<HashSet<String>>,
}

/// One shard's cache of `.qmail` file names per directory.
#[derive(Default)]
pub struct InstructionIndex {
    dirs: RefCell<HashMap<std::path::PathBuf, Listing>>,
}

impl InstructionIndex {
    /// The `.qmail` names in `dir` (none when it does not exist or cannot be read), from the
    /// cache while it is fresh.
    pub async fn files(&self, pool: &BlockingPool, dir: &Path) -> Rc<HashSet<String>> {
        let known_mtime = match self.dirs.borrow().get(dir) {
            Some(listing) if listing.read_at.elapsed() < REFRESH => {
                return Rc::clone(&listing.files);
            }
            Some(listing) => listing.mtime,
            None => None,
        };
        // A stale listing is checked with one stat: a directory whose modification time has
        // not changed has the same names (a big domain is not listed again every time).
        let owned = dir.to_path_buf();
        let fresh = pool
            .run(move || {
                let mtime = std::fs::metadata(&owned).and_then(|m| m.modified()).ok();
                if mtime.is_some() && mtime == known_mtime {
                    return (mtime, None);
                }
                (mtime, Some(list_dot_qmail(&owned)))
            })
            .await
            .unwrap_or((None, Some(HashSet::new())));
        let mut dirs = self.dirs.borrow_mut();
        let (mtime, listed) = fresh;
        let files = match (listed, dirs.get(dir)) {
            (None, Some(old)) => Rc::clone(&old.files),
            (Some(names), _) => Rc::new(names),
            (None, None) => Rc::new(HashSet::new()),
        };
        dirs.insert(
            dir.to_path_buf(),
            Listing {
                read_at: Instant::now(),
                mtime,
                files: Rc::clone(&files),
            },
        );
        files
    }
}

/// The names in `dir` that start with `.qmail`. Blocking.
fn list_dot_qmail(dir: &Path) -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashSet::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(".qmail"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_dot_qmail_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [".qmail-bob", ".qmail-default", "bob", ".profile"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let files = list_dot_qmail(dir.path());
        let mut names: Vec<&String> = files.iter().collect();
        names.sort();
        assert_eq!(names, [".qmail-bob", ".qmail-default"]);
        assert!(list_dot_qmail(&dir.path().join("missing")).is_empty());
    }
}
