//! A small pool of blocking worker threads for work that must not run on a shard: password
//! hashing, checkpassword programs, Maildir listing. Jobs arrive over a crossbeam channel; each
//! result goes back over a flume one-shot whose `recv_async` a glommio task can await (flume
//! wakes the task's waker from the worker thread, which glommio supports).

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool has shut down, or the job panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolClosed;

impl fmt::Display for PoolClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blocking pool closed or job panicked")
    }
}

impl std::error::Error for PoolClosed {}

/// A handle to the pool; clones share the same workers. The workers exit once every handle is
/// dropped and the queued jobs are done.
#[derive(Debug, Clone)]
pub struct BlockingPool {
    jobs: crossbeam_channel::Sender<Job>,
}

impl BlockingPool {
    /// Starts `threads` workers (at least one).
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ringmail-blocking-{i}"))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                });
            if let Err(e) = spawned {
                log::error!("blocking pool: cannot start worker {i}: {e}");
            }
        }
        BlockingPool { jobs: tx }
    }

    /// Runs `f` on a worker; the returned future resolves with its result.
    pub fn run<R, F>(&self, f: F) -> impl Future<Output = Result<R, PoolClosed>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = flume::bounded::<R>(1);
        let job: Job = Box::new(move || {
            // A panicking job must not kill the worker; the caller sees PoolClosed.
            if let Ok(r) = catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(r);
            }
        });
        let queued = self.jobs.send(job).is_ok();
        async move {
            if !queued {
                return Err(PoolClosed);
            }
            rx.recv_async().await.map_err(|_| PoolClosed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_a_glommio_task_from_a_worker() {
        let pool = BlockingPool::new(2);
        let got = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let a = pool.run(|| {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    6 * 7
                });
                let b = pool.run(|| -> u32 { panic!("job fails") });
                (a.await, b.await)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, (Ok(42), Err(PoolClosed)));
    }
}
