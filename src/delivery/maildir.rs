//! One Maildir write: the message goes into `tmp/`, is made durable, then is renamed into `new/`.
//!
//! The protocol is the Maildir spec (<https://cr.yp.to/proto/maildir.html>): a reader only ever
//! looks in `new/` and `cur/`, and a rename is atomic, so a reader never sees half a message.
//! We add what the spec leaves to the filesystem: `fdatasync` the file before the rename and sync
//! `new/` after it, so once [`deliver`] returns `Ok` a crash cannot lose the message.
//!
//! The disk steps run on the shard's delivery threads, batched with the other deliveries waiting
//! (`maildir_batch`); nothing here blocks the shard.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::hash::BuildHasher;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::maildir_batch as batch;

/// Why a Maildir write failed. [`MaildirError::is_temporary`] says whether to retry.
#[derive(Debug)]
pub enum MaildirError {
    /// The mailbox path (or a directory on the way to it) exists and is not a directory: an
    /// operator's mistake that retrying will not fix.
    NotADirectory {
        /// The path that should have been a directory.
        path: PathBuf,
    },
    /// A filesystem call failed.
    Io {
        /// What we were doing, e.g. "fdatasync".
        step: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error, with its errno kept.
        source: io::Error,
    },
}

impl MaildirError {
    /// Whether a later attempt may succeed. Like qmail, nearly every failure is temporary (a full
    /// disk, a quota, permissions an operator can fix, I/O errors); only errors that say the path
    /// itself can never work are permanent.
    pub fn is_temporary(&self) -> bool {
        match self {
            MaildirError::NotADirectory { .. } => false,
            MaildirError::Io { source, .. } => !matches!(
                source.raw_os_error(),
                Some(libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
            ),
        }
    }

    /// The errno behind the failure, if there is one (`ENOSPC`, `EDQUOT`, ...).
    pub fn errno(&self) -> Option<i32> {
        match self {
            MaildirError::NotADirectory { .. } => Some(libc::ENOTDIR),
            MaildirError::Io { source, .. } => source.raw_os_error(),
        }
    }

    pub(crate) fn io(step: &'static str, path: &Path, source: io::Error) -> Self {
        MaildirError::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for MaildirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildirError::NotADirectory { path } => {
                write!(f, "{} exists and is not a directory", path.display())
            }
            MaildirError::Io { step, path, source } => {
                write!(f, "{step} {} failed: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for MaildirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MaildirError::NotADirectory { .. } => None,
            MaildirError::Io { source, .. } => Some(source),
        }
    }
}

/// Delivers one message into the Maildir at `maildir` and returns its final path in `new/`.
///
/// Writes `prefix` (header lines the caller adds, LF-terminated) and then `message` with CRLF
/// line ends turned into LF, the Unix Maildir convention. Creates the Maildir (mode 0700) and its
/// parents if missing. On failure nothing is left behind in `tmp/` or `new/`.
pub async fn deliver(
    maildir: &Path,
    hostname: &str,
    prefix: &[u8],
    message: &[u8],
) -> Result<PathBuf, MaildirError> {
    let contents = file_contents(prefix, message);
    let name = unique_name(hostname, contents.len());
    let tmp = maildir.join("tmp").join(&name);
    let new = maildir.join("new").join(&name);

    // The file's steps and the directory sync run on a delivery thread, batched with the other
    // deliveries that arrive meanwhile (see `batch`): on ext4 each step would otherwise be
    // punted to an io_uring worker on its own, and a batch shares its journal commits.
    let job = batch::Job {
        maildir: maildir.to_path_buf(),
        tmp,
        new: new.clone(),
        contents,
    };
    batch::write(job).await?;
    Ok(new)
}

/// The same durable write as [`deliver`], on the calling thread, for a process that has no
/// shard: the local-delivery helper's child writing as a system user (`local::helper`).
/// `contents` is the whole file (see [`file_contents`]).
pub fn deliver_blocking(
    maildir: &Path,
    hostname: &str,
    contents: &[u8],
) -> Result<PathBuf, MaildirError> {
    use std::io::Write;
    let name = unique_name(hostname, contents.len());
    let tmp = maildir.join("tmp").join(&name);
    let new = maildir.join("new").join(&name);
    let mut file = match create_tmp(&tmp) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            create_maildir(maildir)?;
            create_tmp(&tmp)
        }
        other => other,
    }
    .map_err(|e| MaildirError::io("create", &tmp, e))?;
    let written = file
        .write_all(contents)
        .map_err(|e| MaildirError::io("write", &tmp, e))
        .and_then(|()| {
            file.sync_data()
                .map_err(|e| MaildirError::io("fdatasync", &tmp, e))
        })
        .and_then(|()| fs::rename(&tmp, &new).map_err(|e| MaildirError::io("rename", &tmp, e)));
    if let Err(e) = written {
        discard_now(&tmp);
        return Err(e);
    }
    let dir = maildir.join("new");
    if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
        discard_now(&new);
        return Err(MaildirError::io("sync directory", &dir, e));
    }
    Ok(new)
}

/// Opens a new file in `tmp/` for writing (mode 0600; it must not exist yet).
pub(crate) fn create_tmp(tmp: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
}

/// Best-effort removal on a delivery thread, on the way out with an error already in hand.
pub(crate) fn discard_now(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        log::warn!("maildir: cannot remove {}: {e}", path.display());
    }
}

/// The exact bytes of the delivered file: `prefix`, then `message` with each CRLF made LF.
/// A lone CR or LF is kept as it is.
pub fn file_contents(prefix: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + message.len());
    out.extend_from_slice(prefix);
    for line in message.split_inclusive(|&b| b == b'\n') {
        match line.strip_suffix(b"\r\n") {
            Some(text) => {
                out.extend_from_slice(text);
                out.push(b'\n');
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

/// Counts deliveries in this process, across all shard threads, for the `Q` part of a name.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// A file name unique across shard threads (the counter) and across restarts and hosts (time,
/// pid, random and hostname): `<secs>.M<usec>P<pid>Q<n>R<random>.<host>,S=<size>`. The
/// microseconds are zero-padded to six digits so that names sort in delivery order.
fn unique_name(hostname: &str, size: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let count = DELIVERIES.fetch_add(1, Ordering::Relaxed);
    // std seeds RandomState's keys from the OS, so this differs between runs of the process.
    let random = std::collections::hash_map::RandomState::new().hash_one((count, now.as_nanos()));
    format!(
        "{}.M{:06}P{}Q{}R{:08x}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        count,
        random as u32,
        escape_hostname(hostname),
        size
    )
}

/// The Maildir spec: "/" and ":" in the hostname are written as `\057` and `\072`, so the name
/// stays one path component and `:` stays the info separator.
fn escape_hostname(hostname: &str) -> String {
    hostname.replace('/', "\\057").replace(':', "\\072")
}

/// Creates `maildir/{tmp,new,cur}` and any missing parents (mode 0700), then syncs the parent
/// of each directory it made so the new entries survive a crash. Blocking: runs on a delivery
/// thread.
pub(crate) fn create_maildir(maildir: &Path) -> Result<(), MaildirError> {
    let mut made = Vec::new();
    for sub in ["", "tmp", "new", "cur"] {
        mkdir_parents(&maildir.join(sub), &mut made)?;
    }
    let mut parents: Vec<&Path> = made.iter().filter_map(|d| d.parent()).collect();
    parents.dedup();
    for parent in parents {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| MaildirError::io("sync directory", parent, e))?;
    }
    Ok(())
}

/// `mkdir -p` that records what it made and tells "exists as a file" apart from other errors.
fn mkdir_parents(dir: &Path, made: &mut Vec<PathBuf>) -> Result<(), MaildirError> {
    let mkdir = || DirBuilder::new().mode(0o700).create(dir);
    match mkdir() {
        Ok(()) => {}
        // It may be another shard's, made a moment ago and not yet synced into its parent:
        // counted as made, so its parent is synced before anything is delivered into it.
        // (This only runs when a delivery found its Maildir missing.)
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !dir.is_dir() {
                return Err(MaildirError::NotADirectory {
                    path: dir.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
                return Err(MaildirError::io("create directory", dir, e));
            };
            mkdir_parents(parent, made)?;
            match mkdir() {
                Ok(()) => {}
                // Another shard made it between our two tries (synced as above).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(MaildirError::io("create directory", dir, e)),
            }
        }
        Err(e) => return Err(MaildirError::io("create directory", dir, e)),
    }
    made.push(dir.to_path_buf());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;
    use std::collections::HashSet;

    fn run<T: 'static>(fut: impl std::future::Future<Output = T> + 'static) -> T {
        LocalExecutorBuilder::default()
            .make()
            .expect("executor")
            .run(fut)
    }

    fn names(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect()
    }

    #[test]
    fn converts_crlf_to_lf() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"", b"", b""),
            (b"P: 1\n", b"a\r\nb\r\n", b"P: 1\na\nb\n"),
            (b"", b"lone\nlf\r\n", b"lone\nlf\n"),
            (b"", b"lone\rcr\r\r\n", b"lone\rcr\r\n"),
            (b"", b"ends in cr\r", b"ends in cr\r"),
            (b"", b"\r\n\r\n", b"\n\n"),
        ];
        for (prefix, message, want) in cases {
            assert_eq!(file_contents(prefix, message), *want, "{message:?}");
        }
    }

    #[test]
    fn escapes_hostname() {
        assert_eq!(escape_hostname("mx.example"), "mx.example");
        assert_eq!(escape_hostname("a/b:c"), "a\\057b\\072c");
    }

    #[test]
    fn name_has_maildir_shape() {
        let name = unique_name("h:x", 42);
        assert!(name.ends_with(".h\\072x,S=42"), "{name}");
        let (secs, rest) = name.split_once('.').expect("dot");
        assert!(secs.parse::<u64>().is_ok(), "{name}");
        assert!(rest.starts_with('M') && rest.contains('P') && rest.contains('Q'));
        assert_ne!(unique_name("h", 1), unique_name("h", 1));
    }

    #[test]
    fn classifies_errors() {
        let table = [
            (libc::ENOSPC, true),
            (libc::EDQUOT, true),
            (libc::EACCES, true),
            (libc::EPERM, true),
            (libc::EIO, true),
            (libc::EMFILE, true),
            (libc::ENOTDIR, false),
            (libc::ELOOP, false),
            (libc::ENAMETOOLONG, false),
        ];
        for (errno, temporary) in table {
            let e = MaildirError::io(
                "write",
                Path::new("/x"),
                io::Error::from_raw_os_error(errno),
            );
            assert_eq!(e.is_temporary(), temporary, "errno {errno}");
            assert_eq!(e.errno(), Some(errno));
        }
        let e = MaildirError::NotADirectory {
            path: PathBuf::from("/m/Maildir"),
        };
        assert!(!e.is_temporary());
        assert_eq!(e.to_string(), "/m/Maildir exists and is not a directory");
    }

    #[test]
    fn creates_dirs_and_writes_exact_bytes() {
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("example.test/bob/Maildir");
        let md = maildir.clone();
        let path = run(async move {
            deliver(
                &md,
                "mx.test",
                b"Delivered-To: bob\n",
                b"Subject: hi\r\n\r\nbody\r\n",
            )
            .await
            .expect("deliver")
        });
        for sub in ["tmp", "new", "cur"] {
            let meta = fs::metadata(maildir.join(sub)).expect("subdir");
            assert!(meta.is_dir());
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o077, 0, "{sub} is private");
        }
        assert_eq!(path.parent(), Some(maildir.join("new").as_path()));
        let want = b"Delivered-To: bob\nSubject: hi\n\nbody\n";
        assert_eq!(fs::read(&path).expect("read"), want);
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            name.ends_with(&format!(".mx.test,S={}", want.len())),
            "{name}"
        );
        assert!(names(&maildir.join("tmp")).is_empty());
    }

    #[test]
    fn completes_a_half_made_maildir() {
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("Maildir");
        fs::create_dir_all(maildir.join("tmp")).expect("tmp");
        let md = maildir.clone();
        let path = run(async move { deliver(&md, "h", b"", b"x\r\n").await.expect("deliver") });
        assert_eq!(fs::read(path).expect("read"), b"x\n");
        assert!(maildir.join("cur").is_dir());
    }

    #[test]
    fn unique_names_across_two_threads() {
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("Maildir");
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let md = maildir.clone();
                std::thread::spawn(move || {
                    run(async move {
                        let mut paths = Vec::new();
                        for i in 0..500 {
                            let body = format!("message {i}\r\n");
                            let p = deliver(&md, "h", b"", body.as_bytes())
                                .await
                                .expect("deliver");
                            paths.push(p);
                        }
                        paths
                    })
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            for p in t.join().expect("thread") {
                assert!(all.insert(p), "duplicate name");
            }
        }
        assert_eq!(all.len(), 1000);
        assert_eq!(names(&maildir.join("new")).len(), 1000);
        assert!(names(&maildir.join("tmp")).is_empty());
    }

    #[test]
    fn mailbox_that_is_a_file_is_permanent() {
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("Maildir");
        fs::write(&maildir, b"not a dir").expect("write");
        let md = maildir.clone();
        let err = run(async move { deliver(&md, "h", b"", b"x").await.expect_err("must fail") });
        assert!(!err.is_temporary(), "{err}");
        assert!(err.to_string().contains("Maildir"), "{err}");

        // A parent that is a file is just as permanent.
        let md = maildir.join("sub");
        let err = run(async move { deliver(&md, "h", b"", b"x").await.expect_err("must fail") });
        assert!(!err.is_temporary(), "{err}");
    }

    #[test]
    fn failed_rename_leaves_tmp_empty() {
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("Maildir");
        for sub in ["tmp", "cur"] {
            fs::create_dir_all(maildir.join(sub)).expect("mkdir");
        }
        // `new` is a file: the write into tmp/ succeeds and the rename fails.
        fs::write(maildir.join("new"), b"").expect("write");
        let md = maildir.clone();
        let err = run(async move { deliver(&md, "h", b"", b"x").await.expect_err("must fail") });
        assert!(!err.is_temporary(), "{err}");
        assert!(err.to_string().starts_with("rename into new/"), "{err}");
        assert!(names(&maildir.join("tmp")).is_empty());
    }

    /// Sets this thread's filesystem uid and gid (Linux keeps them per thread, and threads
    /// started from it inherit them). Leaving uid 0 this way also drops CAP_DAC_OVERRIDE from
    /// the thread (capabilities(7)), so permission checks apply as to that user.
    fn set_thread_fs_ids(id: u32) {
        // SAFETY: setfsgid/setfsuid take plain integers and change only the calling thread's
        // credentials; no memory is shared.
        unsafe {
            libc::setfsgid(id);
            libc::setfsuid(id);
        }
        // setfsuid reports no errors; an invalid id (-1) changes nothing and returns the
        // current one, which must now be `id`.
        // SAFETY: as above.
        let now = unsafe { libc::setfsuid(u32::MAX) };
        assert_eq!(now as u32, id, "setfsuid did not take effect");
    }

    #[test]
    fn read_only_maildir_is_temporary() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(maildir.join(sub)).expect("mkdir");
        }
        // Root ignores directory permissions, and the tests run as root here: deliver from a
        // thread whose filesystem ids are nobody's (65534), owning the Maildir, so the
        // permission check is real whoever runs the test.
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        const NOBODY: u32 = 65534;
        if as_root {
            fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
            for dir in ["", "tmp", "new", "cur"] {
                std::os::unix::fs::chown(maildir.join(dir), Some(NOBODY), Some(NOBODY))
                    .expect("chown");
            }
        }
        let tmp = maildir.join("tmp");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o500)).expect("chmod");
        let md = maildir.clone();
        let err = std::thread::spawn(move || {
            if as_root {
                set_thread_fs_ids(NOBODY);
                // The premise: this thread really cannot write in tmp/.
                assert!(
                    fs::write(md.join("tmp/probe"), b"").is_err(),
                    "tmp/ is writable"
                );
            }
            run(async move { deliver(&md, "h", b"", b"x").await.expect_err("must fail") })
        })
        .join()
        .expect("delivery thread");
        assert!(err.is_temporary(), "{err}");
        assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
        assert!(names(&tmp).is_empty());
    }
}
