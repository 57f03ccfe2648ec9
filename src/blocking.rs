//! A small pool of blocking worker threads for work that must not run on a shard: password
//! hashing, checkpassword programs, Maildir listing. Jobs arrive over a bounded crossbeam
//! channel; each result goes back over a flume one-shot whose `recv_async` a glommio task can
//! await (flume wakes the task's waker from the worker thread, which glommio supports).
//!
//! # When the queue is full
//!
//! The queue holds `queue` jobs (`[server] blocking_queue`); each call site chooses:
//!
//! - [`BlockingPool::run`] waits *asynchronously* for room: the calling task parks and its
//!   shard goes on serving everyone else; a worker that takes a job wakes the waiting tasks.
//!   For work that must happen (a POP3 mailbox opened or its deletions committed at QUIT).
//! - [`BlockingPool::try_run`] fails at once with [`PoolError::Full`]. For work a client can be
//!   asked to retry (a POP3 login gets a temporary failure): a flood of password checks then
//!   costs the flooder, not the queue.
//!
//! Neither ever blocks the calling thread. Submitting is lock-free (crossbeam's array channel);
//! only a task that found the queue full parks its waker in a mutex-guarded list, which the
//! workers look at (one atomic load) after taking a job.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// [`BlockingPool::try_run`] found `queued` jobs already waiting (the configured bound).
    Full { queued: usize },
    /// The pool has shut down, or the job panicked.
    Closed,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Full { queued } => write!(
                f,
                "blocking pool busy: {queued} jobs already waiting (server.blocking_queue)"
            ),
            PoolError::Closed => f.write_str("blocking pool closed or job panicked"),
        }
    }
}

impl std::error::Error for PoolError {}

/// Tasks waiting for room in the queue.
#[derive(Debug, Default)]
struct Room {
    /// How many wakers are parked; workers skip the lock while it is 0.
    waiting: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl Room {
    /// A worker took a job: wake every task that found the queue full.
    fn freed(&self) {
        // Pairs with the fence in `Submit::poll`: either that task sees the slot this worker
        // just freed, or this worker sees its waker.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wakers = {
            let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            self.waiting.store(0, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    fn park(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers.push(waker.clone());
        self.waiting.fetch_add(1, Ordering::SeqCst);
    }
}

/// A handle to the pool; clones share the same workers. The workers exit once every handle is
/// dropped and the queued jobs are done.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    jobs: crossbeam_channel::Sender<Job>,
    room: Arc<Room>,
    threads: usize,
}

impl BlockingPool {
    /// Starts `threads` workers (at least one) named `<name>-<i>`, behind a queue of `queue`
    /// jobs (at least one).
    pub fn new(name: &str, threads: usize, queue: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let room = Arc::new(Room::default());
        for i in 0..threads {
            let rx = rx.clone();
            let room = Arc::clone(&room);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for job in rx {
                        room.freed();
                        job();
                    }
                });
            if let Err(e) = spawned {
                log::error!("blocking pool {name}: cannot start worker {i}: {e}");
            }
        }
        BlockingPool {
            jobs: tx,
            room,
            threads,
        }
    }

    /// Worker threads started.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.jobs.capacity().unwrap_or(usize::MAX)
    }

    /// Runs `f` on a worker; the returned future waits (asynchronously) for room in the queue,
    /// then resolves with `f`'s result.
    pub fn run<R, F>(&self, f: F) -> impl Future<Output = Result<R, PoolError>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (job, result) = wrap(f);
        let submit = Submit {
            jobs: self.jobs.clone(),
            room: Arc::clone(&self.room),
            job: Some(job),
        };
        async move {
            submit.await?;
            result.recv_async().await.map_err(|_| PoolError::Closed)
        }
    }

    /// Queues `f` if there is room now, or fails with [`PoolError::Full`]; the returned future
    /// resolves with `f`'s result.
    pub fn try_run<R, F>(
        &self,
        f: F,
    ) -> Result<impl Future<Output = Result<R, PoolError>> + use<R, F>, PoolError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (job, result) = wrap(f);
        match self.jobs.try_send(job) {
            Ok(()) => Ok(async move { result.recv_async().await.map_err(|_| PoolError::Closed) }),
            Err(crossbeam_channel::TrySendError::Full(_)) => Err(PoolError::Full {
                queued: self.capacity(),
            }),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(PoolError::Closed),
        }
    }
}

/// The job to queue and where its result arrives.
fn wrap<R, F>(f: F) -> (Job, flume::Receiver<R>)
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let (tx, rx) = flume::bounded::<R>(1);
    let job: Job = Box::new(move || {
        // A panicking job must not kill the worker; the caller sees PoolError::Closed.
        if let Ok(r) = catch_unwind(AssertUnwindSafe(f)) {
            let _ = tx.send(r);
        }
    });
    (job, rx)
}

/// Queues one job, parking the task while the queue is full.
struct Submit {
    jobs: crossbeam_channel::Sender<Job>,
    room: Arc<Room>,
    job: Option<Job>,
}

impl Future for Submit {
    type Output = Result<(), PoolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(job) = self.job.take() else {
            return Poll::Ready(Ok(()));
        };
        let job = match self.jobs.try_send(job) {
            Ok(()) => return Poll::Ready(Ok(())),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Poll::Ready(Err(PoolError::Closed));
            }
            Err(crossbeam_channel::TrySendError::Full(job)) => job,
        };
        // Park first, then look again: a worker that freed a slot in between either is seen
        // by this second try or sees our waker (see `Room::freed`).
        self.room.park(cx.waker());
        fence(Ordering::SeqCst);
        match self.jobs.try_send(job) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                Poll::Ready(Err(PoolError::Closed))
            }
            Err(crossbeam_channel::TrySendError::Full(job)) => {
                self.job = Some(job);
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn on_glommio<T: Send + 'static>(
        f: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::default()
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn wakes_a_glommio_task_from_a_worker() {
        let pool = BlockingPool::new("test-pool", 2, 8);
        let got = on_glommio(move || {
            Box::pin(async move {
                let a = pool.run(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    6 * 7
                });
                let b = pool.run(|| -> u32 { panic!("job fails") });
                (a.await, b.await)
            })
        });
        assert_eq!(got, (Ok(42), Err(PoolError::Closed)));
    }

    #[test]
    fn size_and_bound_come_from_the_arguments() {
        let pool = BlockingPool::new("test-size", 3, 5);
        assert_eq!((pool.threads(), pool.capacity()), (3, 5));
        let pool = BlockingPool::new("test-size", 0, 0);
        assert_eq!((pool.threads(), pool.capacity()), (1, 1));
    }

    /// `threads` jobs run at once, and a full queue turns `try_run` away at once while `run`
    /// waits for room without blocking the shard: a timer on the same executor keeps firing.
    #[test]
    fn a_full_queue_refuses_try_run_and_parks_run() {
        let pool = BlockingPool::new("test-bound", 2, 3);
        let (release, gate) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started) = crossbeam_channel::unbounded::<()>();
        let outcome = on_glommio(move || {
            Box::pin(async move {
                let mut held = Vec::new();
                // Two jobs occupy both workers, then three more fill the queue.
                for i in 0..5u32 {
                    if i == 2 {
                        for _ in 0..2 {
                            started
                                .recv_timeout(Duration::from_secs(5))
                                .expect("both workers busy");
                        }
                    }
                    let gate = gate.clone();
                    let started_tx = started_tx.clone();
                    let job = pool
                        .try_run(move || {
                            let _ = started_tx.send(());
                            let _ = gate.recv();
                            i
                        })
                        .expect("room for job");
                    held.push(glommio::spawn_local(job).detach());
                }
                assert!(
                    started.recv_timeout(Duration::from_millis(50)).is_err(),
                    "only `threads` jobs run at once"
                );
                let full = pool.try_run(|| 99u32).err();
                // `run` parks; meanwhile the executor keeps running other tasks.
                let waiting = glommio::spawn_local(pool.run(|| 7u32)).detach();
                let mut ticks = 0;
                for _ in 0..5 {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    ticks += 1;
                }
                for _ in 0..6 {
                    let _ = release.send(());
                }
                let waited = waiting.await;
                let mut results = Vec::new();
                for job in held {
                    results.push(job.await);
                }
                (full, ticks, waited, results)
            })
        });
        let (full, ticks, waited, results) = outcome;
        assert_eq!(full, Some(PoolError::Full { queued: 3 }));
        assert_eq!(ticks, 5);
        assert_eq!(waited, Some(Ok(7)));
        let results: Vec<_> = results.into_iter().map(|r| r.expect("job")).collect();
        assert_eq!(results, vec![Ok(0), Ok(1), Ok(2), Ok(3), Ok(4)]);
    }
}
