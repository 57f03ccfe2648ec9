//! Group commit: appends gather into the open batch while one batch is being written and
//! `fdatasync`'d; nobody's `commit` or `record` returns before its batch is durable.
//!
//! There is no background task: the first waiter that finds no sync in flight becomes the
//! leader, takes the open batch (opening the next), writes it, syncs each file once, and wakes
//! everyone. Batches are written strictly one after another and each batch's bytes for a
//! file are contiguous and follow the previous batch's, so a file never has a hole before
//! a durable record (recovery's "valid prefix" would otherwise drop acknowledged records).
//!
//! A failed batch poisons every file it touched: its bytes there may be missing (a write that
//! failed, or one never issued after an earlier file's failure), and Linux reports a writeback
//! error to one `fdatasync` only, so a later batch's sync could succeed over the hole. Every
//! later batch that touches a poisoned file fails without writing.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::io::BufferedFile;

use super::QueueError;

/// One file's bytes in a batch.
struct Pending {
    file: Rc<BufferedFile>,
    path: Rc<PathBuf>,
    pos: u64,
    bytes: Vec<u8>,
}

/// How many failed batches' errors are remembered for late waiters (and poisoned files kept).
const FAILURES_KEPT: usize = 64;

/// The batcher of one shard's queue.
pub(crate) struct Batcher {
    /// The number of the batch now gathering (starts at 1).
    open: Cell<u64>,
    /// Every batch `<= done` is finished (durable, or failed and listed in `failures`).
    done: Cell<u64>,
    syncing: Cell<bool>,
    pending: RefCell<Vec<Pending>>,
    failures: RefCell<VecDeque<(u64, QueueError)>>,
    /// Files a failed batch touched, with its error (see the module doc).
    poisoned: RefCell<VecDeque<(Rc<BufferedFile>, QueueError)>>,
    waiters: RefCell<Vec<Waker>>,
    /// Bumped at every wake-up, so a waiter knows whether anything happened.
    wakeups: Cell<u64>,
    fdatasyncs: Cell<u64>,
    batches: Cell<u64>,
    /// Records enqueued into the open batch (for the batch-size metric).
    enqueued: Cell<usize>,
    /// Tests hold batches back to line up races deterministically (see `hold`).
    #[cfg(test)]
    held: Cell<bool>,
}

impl Batcher {
    pub(crate) fn new() -> Batcher {
        Batcher {
            open: Cell::new(1),
            done: Cell::new(0),
            syncing: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            failures: RefCell::new(VecDeque::new()),
            poisoned: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(Vec::new()),
            wakeups: Cell::new(0),
            fdatasyncs: Cell::new(0),
            batches: Cell::new(0),
            enqueued: Cell::new(0),
            #[cfg(test)]
            held: Cell::new(false),
        }
    }

    /// How many `fdatasync` calls the batcher has made.
    pub(crate) fn fdatasyncs(&self) -> u64 {
        self.fdatasyncs.get()
    }

    /// How many batches were written.
    pub(crate) fn batches(&self) -> u64 {
        self.batches.get()
    }

    /// Adds bytes to be written at `pos` of `file` in the open batch; returns the batch number
    /// to `wait` for. The caller reserved `pos` itself, in order, so consecutive appends to a
    /// file are contiguous and merge into one write.
    pub(crate) fn enqueue(
        &self,
        file: &Rc<BufferedFile>,
        path: &Rc<PathBuf>,
        pos: u64,
        bytes: Vec<u8>,
    ) -> u64 {
        self.enqueued.set(self.enqueued.get() + 1);
        let mut pending = self.pending.borrow_mut();
        let merged = pending.iter_mut().rev().find(|p| Rc::ptr_eq(&p.file, file));
        match merged {
            Some(p) if p.pos + p.bytes.len() as u64 == pos => p.bytes.extend_from_slice(&bytes),
            _ => pending.push(Pending {
                file: file.clone(),
                path: path.clone(),
                pos,
                bytes,
            }),
        }
        self.open.get()
    }

    /// The batch that the next `enqueue` would join, if anything is waiting to be written or a
    /// sync is in flight; `wait`ing for it flushes everything queued so far.
    pub(crate) fn last_batch(&self) -> u64 {
        if self.pending.borrow().is_empty() {
            self.open.get() - 1
        } else {
            self.open.get()
        }
    }

    /// Returns once batch `batch` is durable, leading the write+sync if nobody else is.
    pub(crate) async fn wait(&self, batch: u64) -> Result<(), QueueError> {
        loop {
            if self.done.get() >= batch {
                let failures = self.failures.borrow();
                return match failures.iter().find(|(b, _)| *b == batch) {
                    Some((_, e)) => Err(e.clone()),
                    None => Ok(()),
                };
            }
            if !self.syncing.get() && !self.is_held() {
                self.lead().await;
                continue;
            }
            let seen = self.wakeups.get();
            poll_fn(|cx| {
                if self.wakeups.get() != seen {
                    Poll::Ready(())
                } else {
                    self.waiters.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// While held, no batch is written: everything enqueued stays pending (not durable), so a
    /// test can run another step (a rollover, a retire) while a record is known not to be
    /// durable. Releasing wakes the waiters, one of whom leads.
    #[cfg(test)]
    pub(crate) fn hold(&self, held: bool) {
        self.held.set(held);
        if !held {
            self.wakeups.set(self.wakeups.get() + 1);
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.held.get()
    }

    #[cfg(not(test))]
    fn is_held(&self) -> bool {
        false
    }

    /// Writes and syncs the open batch, then wakes every waiter.
    async fn lead(&self) {
        self.syncing.set(true);
        let batch = self.open.get();
        self.open.set(batch + 1);
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let mut files: Vec<Rc<BufferedFile>> = Vec::new();
        for p in &pending {
            if !files.iter().any(|f| Rc::ptr_eq(f, &p.file)) {
                files.push(p.file.clone());
            }
        }
        let poisoned = self
            .poisoned
            .borrow()
            .iter()
            .find(|(f, _)| files.iter().any(|g| Rc::ptr_eq(f, g)))
            .map(|(_, e)| e.clone());
        let records = self.enqueued.replace(0);
        let started = std::time::Instant::now();
        let result = match poisoned {
            Some(e) => Err(e),
            None => self.flush(pending).await,
        };
        // The write is a copy into the page cache; the time is the sync's.
        crate::metrics::group_commit(records, result.is_ok().then(|| started.elapsed()));
        if let Err(e) = result {
            let mut poisoned = self.poisoned.borrow_mut();
            for f in files {
                if !poisoned.iter().any(|(p, _)| Rc::ptr_eq(p, &f)) {
                    if poisoned.len() == FAILURES_KEPT {
                        poisoned.pop_front();
                    }
                    poisoned.push_back((f, e.clone()));
                }
            }
            let mut failures = self.failures.borrow_mut();
            if failures.len() == FAILURES_KEPT {
                failures.pop_front();
            }
            failures.push_back((batch, e));
        }
        self.batches.set(self.batches.get() + 1);
        self.done.set(batch);
        self.syncing.set(false);
        self.wakeups.set(self.wakeups.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn flush(&self, pending: Vec<Pending>) -> Result<(), QueueError> {
        let mut files: Vec<(Rc<BufferedFile>, Rc<PathBuf>)> = Vec::new();
        for p in pending {
            if !files.iter().any(|(f, _)| Rc::ptr_eq(f, &p.file)) {
                files.push((p.file.clone(), p.path.clone()));
            }
            write_all(&p.file, &p.path, p.pos, p.bytes).await?;
        }
        // The files (a segment's log and state, under load) are synced side by side: the batch
        // then waits for one disk flush instead of one per file in turn. Every sync is awaited
        // before the batch is reported, whichever fails.
        self.fdatasyncs
            .set(self.fdatasyncs.get() + files.len() as u64);
        let syncs: Vec<_> = files
            .into_iter()
            .map(|(file, path)| {
                glommio::spawn_local(async move {
                    file.fdatasync().await.map_err(|e| QueueError::SyncFailed {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
                })
            })
            .collect();
        let mut result = Ok(());
        for sync in syncs {
            let synced = sync.await;
            if result.is_ok() {
                result = synced;
            }
        }
        result
    }
}

/// Writes the whole buffer at `pos`. A short write to a regular file only happens when the disk
/// or a quota is full, where retrying the rest would fail too: it fails the batch (the buffer
/// was handed to the kernel by value, so the rest is not kept for a retry).
async fn write_all(
    file: &BufferedFile,
    path: &Rc<PathBuf>,
    pos: u64,
    bytes: Vec<u8>,
) -> Result<(), QueueError> {
    let len = bytes.len();
    let n = file
        .write_at(bytes, pos)
        .await
        .map_err(|e| QueueError::SyncFailed {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if n < len {
        return Err(QueueError::SyncFailed {
            path: path.to_path_buf(),
            message: format!("short write: {n} of {len} bytes"),
        });
    }
    Ok(())
}
