//! Batched Maildir writes: the deliveries that arrive on a shard while its delivery thread is
//! busy are written together, so they share the filesystem's journal commits.
//!
//! A batch runs on one delivery thread, in four passes: create + write each file in `tmp/` and
//! start its writeback; `fdatasync` each file; rename each into `new/`; `fsync` each distinct
//! `new/` once. Every file's data is on disk before its rename, and every rename is durable
//! before its delivery is reported, exactly as for one message at a time (the Maildir
//! protocol); batching only changes how many of those steps the journal can commit at once. On
//! ext4, starting every file's writeback first means the first `fdatasync` commits the block
//! allocations of the whole batch and the others find their metadata already committed.
//!
//! The shard side keeps a pending list per shard thread (`thread_local!`, no sharing): a
//! delivery joins it, and a runner task hands the whole list to the shard's delivery threads,
//! up to [`MAX_BATCHES_IN_FLIGHT`] at a time.
//!
//! Threads are a fixed set, started once: [`MAX_BATCHES_IN_FLIGHT`] delivery threads per shard
//! (on its first delivery) and three `fdatasync` helpers shared by every shard (on the first
//! big batch). No batch starts a thread of its own.

use std::cell::{Cell, RefCell};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use super::maildir::{MaildirError, create_maildir, create_tmp, discard_now};
use crate::blocking::BlockingPool;

/// One message to write: its Maildir, its name in `tmp/` and in `new/`, and its bytes.
pub(crate) struct Job {
    pub maildir: PathBuf,
    pub tmp: PathBuf,
    pub new: PathBuf,
    pub contents: Vec<u8>,
}

/// Batches being written at once per shard (and delivery threads per shard). Two let the next
/// batch create its files while the previous one waits for the disk.
const MAX_BATCHES_IN_FLIGHT: usize = 2;

type Reply = flume::Sender<Result<(), MaildirError>>;

struct Writer {
    pending: RefCell<Vec<(Job, Reply)>>,
    in_flight: Cell<usize>,
    pool: BlockingPool,
    /// The turn the next batch gets to create its files (see [`CreateTurns`]).
    next_turn: Cell<u64>,
    turns: Arc<CreateTurns>,
}

/// Batches create their files strictly in the order they were handed out, though they run on
/// different threads: a mailbox lists its messages by file time (POP3, most Maildir readers),
/// so two messages to one mailbox must be written in the order they were accepted. Only the
/// create+write pass takes turns; the slow `fdatasync`s of two batches still overlap. This lock
/// is held only by the shard's delivery threads, never by the shard itself.
#[derive(Default)]
struct CreateTurns {
    /// The turn whose batch may create its files now.
    now: Mutex<u64>,
    changed: Condvar,
}

impl CreateTurns {
    /// Waits for `turn`; the returned guard passes the turn on when dropped (also on panic).
    fn wait(&self, turn: u64) -> TurnGuard<'_> {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        while *now != turn {
            now = self
                .changed
                .wait(now)
                .unwrap_or_else(PoisonError::into_inner);
        }
        TurnGuard { turns: self }
    }
}

struct TurnGuard<'a> {
    turns: &'a CreateTurns,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut now = self
            .turns
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *now += 1;
        self.turns.changed.notify_all();
    }
}

thread_local! {
    /// Each shard thread's own writer (its threads start on the first delivery and exit with
    /// the shard thread).
    static WRITER: Writer = Writer {
        pending: RefCell::new(Vec::new()),
        in_flight: Cell::new(0),
        pool: BlockingPool::new("ringmail-maildir", MAX_BATCHES_IN_FLIGHT, MAX_BATCHES_IN_FLIGHT),
        next_turn: Cell::new(0),
        turns: Arc::new(CreateTurns::default()),
    };
}

/// Writes `job` durably into `new/` (file data and directory entry), with whatever other
/// deliveries this shard has waiting. Returns once it is durable, or the reason it is not (and
/// then nothing of it is left in `tmp/` or `new/`).
pub(crate) async fn write(job: Job) -> Result<(), MaildirError> {
    let maildir = job.maildir.clone();
    let (reply, result) = flume::bounded(1);
    let start_runner = WRITER.with(|w| {
        w.pending.borrow_mut().push((job, reply));
        let start = w.in_flight.get() < MAX_BATCHES_IN_FLIGHT;
        if start {
            w.in_flight.set(w.in_flight.get() + 1);
        }
        start
    });
    if start_runner {
        glommio::spawn_local(run_batches()).detach();
    }
    result.recv_async().await.unwrap_or_else(|_| {
        Err(MaildirError::io(
            "delivery thread",
            &maildir,
            io::Error::other("delivery thread stopped"),
        ))
    })
}

/// Hands pending deliveries to a delivery thread, batch after batch, until none are left.
async fn run_batches() {
    loop {
        let batch = WRITER.with(|w| std::mem::take(&mut *w.pending.borrow_mut()));
        if batch.is_empty() {
            WRITER.with(|w| w.in_flight.set(w.in_flight.get() - 1));
            return;
        }
        let done = WRITER.with(|w| {
            let turn = w.next_turn.get();
            w.next_turn.set(turn + 1);
            let turns = Arc::clone(&w.turns);
            w.pool.run(move || {
                let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
                let created = turns.wait(turn);
                for (result, reply) in write_batch(&jobs, created).into_iter().zip(replies) {
                    // A caller that went away finds out nothing; its message is delivered.
                    let _ = reply.send(result);
                }
            })
        });
        // A failed job drops its replies, which the callers see as an error.
        let _ = done.await;
    }
}

/// The blocking part: writes every job into `new/` durably. One result per job, in order.
/// `created` is this batch's turn to create files; it is passed on once they are written.
fn write_batch(jobs: &[Job], created: TurnGuard<'_>) -> Vec<Result<(), MaildirError>> {
    let mut results: Vec<Result<(), MaildirError>> = Vec::with_capacity(jobs.len());
    let mut files = Vec::with_capacity(jobs.len());
    for job in jobs {
        match create_and_write(job) {
            Ok(file) => {
                files.push(Some(file));
                results.push(Ok(()));
            }
            Err(e) => {
                files.push(None);
                results.push(Err(e));
            }
        }
    }

    drop(created);

    sync_all_data(jobs, files, &mut results);

    for (job, result) in jobs.iter().zip(results.iter_mut()) {
        if result.is_ok() {
            *result = rename_into_new(job);
        }
    }

    // The renames are only durable once each `new/` is synced. If that fails we cannot say the
    // messages are safe, so take them back out and report a temporary failure: a retry
    // delivers each once, where keeping them would risk duplicates.
    let mut dirs: Vec<&Path> = jobs
        .iter()
        .zip(results.iter())
        .filter(|(_, r)| r.is_ok())
        .filter_map(|(job, _)| job.new.parent())
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    for dir in dirs {
        let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) else {
            continue;
        };
        for (job, result) in jobs.iter().zip(results.iter_mut()) {
            if result.is_ok() && job.new.parent() == Some(dir) {
                discard_now(&job.new);
                *result = Err(MaildirError::io("sync directory", dir, copy_error(&e)));
            }
        }
    }
    results
}

/// Files one syncing thread takes at least; below twice this a batch syncs on its own thread.
const FILES_PER_SYNC_THREAD: usize = 8;
/// The most threads that `fdatasync` one batch's files side by side: the batch's own delivery
/// thread and up to three of the [`sync_pool`]'s.
const SYNC_THREADS: usize = 4;

/// The fixed helper threads that big batches share (every shard's): started once, on the first
/// big batch, never per batch. Its queue holds a few batches' worth of chunks; a delivery
/// thread that finds it full waits (it is not a shard thread).
fn sync_pool() -> &'static BlockingPool {
    static POOL: std::sync::OnceLock<BlockingPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| BlockingPool::new("ringmail-fsync", SYNC_THREADS - 1, 64))
}

/// A written file waiting for its `fdatasync` (`None` for a job that already failed).
type Unsynced = Option<fs::File>;

/// `fdatasync`s every written file, several at once for a big batch: the disk then gets their
/// writes and cache flushes together (the block layer merges concurrent flushes), where one
/// thread would wait for each flush in turn.
fn sync_all_data(
    jobs: &[Job],
    files: Vec<Option<fs::File>>,
    results: &mut [Result<(), MaildirError>],
) {
    let threads = (jobs.len() / FILES_PER_SYNC_THREAD).clamp(1, SYNC_THREADS);
    let chunk = jobs.len().div_ceil(threads).max(1);
    let mut unsynced: Vec<Unsynced> = files;
    // The first chunk stays on this thread; the others go to the shared sync threads.
    let rest = unsynced.split_off(chunk.min(unsynced.len()));
    let mut handed_off = Vec::new();
    let mut rest = rest.into_iter().peekable();
    while rest.peek().is_some() {
        let part: Vec<Unsynced> = rest.by_ref().take(chunk).collect();
        let len = part.len();
        handed_off.push((len, sync_pool().run(move || sync_chunk(part))));
    }
    let mut errors = sync_chunk(unsynced);
    for (len, synced) in handed_off {
        match futures_lite::future::block_on(synced) {
            Ok(chunk_errors) => errors.extend(chunk_errors),
            // The sync thread is gone or panicked: its files may not be on disk. They were
            // dropped with the job; report them failed (temporary), so they are retried.
            Err(e) => errors.extend((0..len).map(|_| Some(io::Error::other(e.to_string())))),
        }
    }
    for ((job, error), result) in jobs.iter().zip(errors).zip(results.iter_mut()) {
        if let Some(e) = error {
            discard_now(&job.tmp);
            *result = Err(MaildirError::io("fdatasync", &job.tmp, e));
        }
    }
}

/// Syncs each file; the error of each that failed (`None` for the rest, and for jobs that had
/// already failed and have no file).
fn sync_chunk(files: Vec<Unsynced>) -> Vec<Option<io::Error>> {
    files
        .into_iter()
        .map(|unsynced| {
            let file = unsynced?;
            // A close error after a successful fdatasync cannot lose data; std's drop ignores it.
            file.sync_data().err()
        })
        .collect()
}

/// Creates the file in `tmp/` (making the Maildir if it is missing), writes it whole and starts
/// its writeback.
fn create_and_write(job: &Job) -> Result<fs::File, MaildirError> {
    use std::os::unix::fs::FileExt;
    let file = match create_tmp(&job.tmp) {
        // Only a missing directory (ENOENT) sends us to create the Maildir.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            create_maildir(&job.maildir)?;
            create_tmp(&job.tmp)
        }
        other => other,
    }
    .map_err(|e| MaildirError::io("create", &job.tmp, e))?;
    if let Err(e) = file.write_all_at(&job.contents, 0) {
        drop(file);
        discard_now(&job.tmp);
        return Err(MaildirError::io("write", &job.tmp, e));
    }
    start_writeback(&file);
    Ok(file)
}

/// Asks the kernel to start writing the file's dirty pages now (no waiting, no durability
/// promise): the batch's later `fdatasync`s then find the data on its way and the blocks
/// allocated in one journal transaction. Only a hint, so its error is ignored; `fdatasync`
/// reports any real one.
fn start_writeback(file: &fs::File) {
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is valid for
    // the duration of the call because `file` is borrowed.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// Renames the synced file into `new/`; a missing `new/` (a half-made Maildir) is made first.
fn rename_into_new(job: &Job) -> Result<(), MaildirError> {
    let renamed = match fs::rename(&job.tmp, &job.new) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => match create_maildir(&job.maildir) {
            Ok(()) => fs::rename(&job.tmp, &job.new),
            Err(made) => {
                discard_now(&job.tmp);
                return Err(made);
            }
        },
        other => other,
    };
    renamed.map_err(|e| {
        discard_now(&job.tmp);
        MaildirError::io("rename into new/", &job.tmp, e)
    })
}

/// `io::Error` is not `Clone`; one directory's sync error is reported to each of its messages.
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(maildir: &Path, name: &str, contents: &[u8]) -> Job {
        Job {
            maildir: maildir.to_path_buf(),
            tmp: maildir.join("tmp").join(name),
            new: maildir.join("new").join(name),
            contents: contents.to_vec(),
        }
    }

    #[test]
    fn one_bad_mailbox_fails_only_its_own_jobs() {
        let root = tempfile::tempdir().expect("tempdir");
        let good = root.path().join("good/Maildir");
        let bad = root.path().join("bad/Maildir");
        fs::create_dir_all(bad.join("tmp")).expect("mkdir");
        // `new` is a file: the write into tmp/ succeeds and the rename fails.
        fs::write(bad.join("new"), b"").expect("write");
        let jobs = [
            job(&good, "1", b"one\n"),
            job(&bad, "2", b"two\n"),
            job(&good, "3", b"three\n"),
        ];
        let turns = CreateTurns::default();
        let results = write_batch(&jobs, turns.wait(0));
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = results[1].as_ref().expect_err("bad mailbox");
        assert!(!err.is_temporary(), "{err}");
        assert_eq!(fs::read(good.join("new/1")).expect("read"), b"one\n");
        assert_eq!(fs::read(good.join("new/3")).expect("read"), b"three\n");
        assert!(fs::read_dir(bad.join("tmp")).expect("tmp").next().is_none());
        assert!(
            fs::read_dir(good.join("tmp"))
                .expect("tmp")
                .next()
                .is_none()
        );
    }

    /// Big batches share the fixed fsync helpers: however many batches run, the same three
    /// threads sync their chunks, and every message lands.
    #[test]
    fn big_batches_use_the_fixed_sync_threads() {
        let root = tempfile::tempdir().expect("tempdir");
        let maildir = root.path().join("big/Maildir");
        for batch in 0..3 {
            let jobs: Vec<Job> = (0..40)
                .map(|i| job(&maildir, &format!("{batch}-{i}"), b"x\n"))
                .collect();
            let turns = CreateTurns::default();
            let results = write_batch(&jobs, turns.wait(0));
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
        let delivered = fs::read_dir(maildir.join("new")).expect("new").count();
        assert_eq!(delivered, 120);
        let fsync_threads = fs::read_dir("/proc/self/task")
            .expect("tasks")
            .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.starts_with("ringmail-fsync"))
            .count();
        assert_eq!(fsync_threads, SYNC_THREADS - 1);
    }
}
