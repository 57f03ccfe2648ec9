//! Starting, running and joining the set of shards: one pinned glommio executor thread each.
//!
//! Startup is two-phase so a failure never leaves half a set running: every thread first builds
//! its executor (pinning, io_uring, locked memory) and reports back; only when all N succeeded
//! does `start` tell them to go (join the mesh, run the shard's future). Otherwise it tells them
//! to stop and returns the first error.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use glommio::{CpuSet, LocalExecutorBuilder, Placement, PoolPlacement};

use crate::mesh::{self, Mesh, MeshEnds};
use crate::shutdown::{ShutdownHandle, ShutdownSignal};

/// Threads in each shard's glommio blocking pool: what `glommio::executor().spawn_blocking` and
/// glommio's own blocking file operations (rename, remove, metadata) run on. Unbound, so that
/// work is scheduled by the kernel instead of competing with its shard on the pinned CPU.
/// Heavy blocking work (password hashing, fork/exec) belongs in ringmail's own worker pool.
pub const BLOCKING_THREADS: usize = 1;

/// How to start the set of shards. Plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSetConfig {
    /// Number of shards; 0 means one per online CPU.
    pub shard_count: usize,
    /// Pin shard `i` to the `i`-th online CPU. Ignored (all shards unbound) when there are more
    /// shards than online CPUs: the kernel balances oversubscribed threads better than fixed
    /// pairs sharing a core.
    pub pin_to_cpus: bool,
    /// Thread-name prefix: shard threads are `<name>-shard-<i>`.
    pub name: String,
    /// Capacity of each shard-to-shard channel and of each shard's inbox, in messages.
    pub mesh_capacity: usize,
}

impl Default for ShardSetConfig {
    fn default() -> Self {
        Self {
            shard_count: 0,
            pin_to_cpus: true,
            name: "ringmail".into(),
            mesh_capacity: 1024,
        }
    }
}

/// Errors of this layer: starting the set (the host's fault) or a shard failing at run time.
#[derive(Debug)]
pub enum ShardError {
    /// The CPU topology could not be read (needed for `shard_count: 0` or pinning).
    Topology(String),
    /// The OS refused a thread for shard `shard`.
    Spawn { shard: usize, source: io::Error },
    /// glommio could not build shard `shard`'s executor (pinning, io_uring, locked memory).
    Executor { shard: usize, message: String },
    /// Shard `shard`'s thread panicked; the set was told to shut down.
    Panicked { shard: usize, message: String },
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Topology(m) => write!(f, "cannot read the CPU topology: {m}"),
            Self::Spawn { shard, source } => write!(f, "cannot start shard {shard}: {source}"),
            Self::Executor { shard, message } => write!(
                f,
                "cannot build shard {shard}'s executor: {message} \
                 (io_uring blocked by seccomp, or RLIMIT_MEMLOCK below 512 KiB?)"
            ),
            Self::Panicked { shard, message } => write!(f, "shard {shard} panicked: {message}"),
        }
    }
}

impl std::error::Error for ShardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a shard's future gets: who it is, the mesh, the shutdown signal. Cheap to clone.
pub struct ShardContext<T: Send + 'static> {
    id: usize,
    count: usize,
    mesh: Rc<Mesh<T>>,
    shutdown: ShutdownSignal,
}

impl<T: Send + 'static> Clone for ShardContext<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            count: self.count,
            mesh: self.mesh.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for ShardContext<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardContext")
            .field("id", &self.id)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> ShardContext<T> {
    /// This shard's index, `0..count()`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of shards in the set.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The typed mesh to every shard (including this one).
    pub fn mesh(&self) -> &Mesh<T> {
        &self.mesh
    }

    /// The set-wide shutdown signal.
    pub fn shutdown(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }
}

/// The running set of shards. `R` is what each shard's future returns.
#[derive(Debug)]
pub struct ShardSet<R: Send + 'static = ()> {
    threads: Vec<JoinHandle<R>>,
    shutdown: ShutdownHandle,
    name: String,
}

impl<R: Send + 'static> ShardSet<R> {
    /// Number of shards.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// The configured name (thread-name prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `Send + Sync + Clone` handle that triggers shutdown from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits for every shard's future to finish. Returns their outputs in shard order, or the
    /// first shard's panic (a panicking shard triggers shutdown, so the others end too if they
    /// honour the signal).
    pub fn join(self) -> Result<Vec<R>, ShardError> {
        let mut outputs = Vec::with_capacity(self.threads.len());
        let mut first_error = None;
        for (shard, thread) in self.threads.into_iter().enumerate() {
            match thread.join() {
                Ok(r) => outputs.push(r),
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    first_error.get_or_insert(ShardError::Panicked { shard, message });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(outputs),
        }
    }
}

/// Starts the shards and returns once all of them run. See the crate docs for the model.
///
/// `shard_main` is cloned once per shard and called on that shard's thread; its future runs on
/// the shard's glommio executor and may spawn local tasks freely.
pub fn start<T, F, Fut>(
    config: ShardSetConfig,
    shard_main: F,
) -> Result<ShardSet<Fut::Output>, ShardError>
where
    T: Send + 'static,
    F: Fn(ShardContext<T>) -> Fut + Send + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let placements = placements(&config)?;
    let count = placements.len();
    let capacity = config.mesh_capacity.max(1);
    let shutdown = ShutdownHandle::new();
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let mut threads = Vec::with_capacity(count);
    let mut go_senders = Vec::with_capacity(count);
    let mut failure = None;

    for (shard, (placement, ends)) in placements
        .into_iter()
        .zip(mesh::make_ends::<T>(count, capacity))
        .enumerate()
    {
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let thread = ShardThread {
            shard,
            count,
            placement,
            name: format!("{}-shard-{shard}", config.name),
            capacity,
            ends,
            shutdown: shutdown.clone(),
            ready: ready_tx.clone(),
            go: go_rx,
        };
        let main = shard_main.clone();
        let spawned = std::thread::Builder::new()
            .name(thread.name.clone())
            .spawn(move || thread.run(main));
        match spawned {
            Ok(handle) => {
                threads.push(handle);
                go_senders.push(go_tx);
            }
            Err(source) => {
                failure = Some(ShardError::Spawn { shard, source });
                break;
            }
        }
    }
    drop(ready_tx);

    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(message))) => {
                failure.get_or_insert(ShardError::Executor { shard, message });
            }
            // Every thread reports before it can end, so this means one panicked early.
            Err(_) => {
                failure.get_or_insert(ShardError::Executor {
                    shard: 0,
                    message: "a shard thread ended during startup".into(),
                });
                break;
            }
        }
    }

    let go = failure.is_none();
    for tx in &go_senders {
        let _ = tx.send(go); // a thread that already died has nothing to be told
    }
    if let Some(e) = failure {
        shutdown.trigger();
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    Ok(ShardSet {
        threads,
        shutdown,
        name: config.name,
    })
}

/// One placement per shard, following `shard_count` and `pin_to_cpus`.
fn placements(config: &ShardSetConfig) -> Result<Vec<Placement>, ShardError> {
    let needs_topology = config.shard_count == 0 || config.pin_to_cpus;
    let mut cpus: Vec<usize> = if needs_topology {
        CpuSet::online()
            .map_err(|e| ShardError::Topology(e.to_string()))?
            .iter()
            .map(|loc| loc.cpu)
            .collect()
    } else {
        Vec::new()
    };
    cpus.sort_unstable();
    cpus.dedup();
    let count = match config.shard_count {
        0 => cpus.len().max(1),
        n => n,
    };
    let pin = config.pin_to_cpus && count <= cpus.len();
    Ok((0..count)
        .map(|i| match cpus.get(i) {
            Some(&cpu) if pin => Placement::Fixed(cpu),
            _ => Placement::Unbound,
        })
        .collect())
}

/// Everything one shard's thread owns before it starts.
struct ShardThread<T: Send + 'static> {
    shard: usize,
    count: usize,
    placement: Placement,
    name: String,
    capacity: usize,
    ends: MeshEnds<T>,
    shutdown: ShutdownHandle,
    ready: mpsc::Sender<(usize, Result<(), String>)>,
    go: mpsc::Receiver<bool>,
}

impl<T: Send + 'static> ShardThread<T> {
    fn run<F, Fut>(self, shard_main: F) -> Fut::Output
    where
        F: Fn(ShardContext<T>) -> Fut,
        Fut: Future,
    {
        // A panic anywhere on this shard stops the whole set instead of leaving it half alive.
        let _guard = TriggerOnPanic(self.shutdown.clone());
        let built = LocalExecutorBuilder::new(self.placement)
            .name(&self.name)
            .blocking_thread_pool_placement(PoolPlacement::Unbound(BLOCKING_THREADS))
            .make();
        let executor = match built {
            Ok(ex) => {
                let _ = self.ready.send((self.shard, Ok(())));
                ex
            }
            Err(e) => {
                let _ = self.ready.send((self.shard, Err(e.to_string())));
                // `start` returns the error; this thread's result is never looked at.
                std::panic::resume_unwind(Box::new(e.to_string()));
            }
        };
        drop(self.ready);
        if !self.go.recv().unwrap_or(false) {
            std::panic::resume_unwind(Box::new("startup aborted"));
        }
        let (shard, count, capacity, ends) = (self.shard, self.count, self.capacity, self.ends);
        let signal = self.shutdown.signal();
        executor.run(async move {
            let mesh = Mesh::connect(shard, ends, capacity, signal.clone()).await;
            shard_main(ShardContext {
                id: shard,
                count,
                mesh: Rc::new(mesh),
                shutdown: signal,
            })
            .await
        })
    }
}

struct TriggerOnPanic(ShutdownHandle);

impl Drop for TriggerOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.trigger();
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_table() {
        let online = CpuSet::online().map(|s| s.len()).unwrap_or(1);
        // (shard_count, pin, expected count, expect all pinned)
        let cases = [
            (0, true, online, true),
            (1, true, 1, true),
            (online, false, online, false),
            (online + 1, true, online + 1, false),
        ];
        for (shard_count, pin, want_count, want_pinned) in cases {
            let config = ShardSetConfig {
                shard_count,
                pin_to_cpus: pin,
                ..ShardSetConfig::default()
            };
            let p = placements(&config).expect("topology");
            assert_eq!(p.len(), want_count, "count for {shard_count}/{pin}");
            let pinned = p.iter().all(|p| matches!(p, Placement::Fixed(_)));
            assert_eq!(pinned, want_pinned, "pinning for {shard_count}/{pin}");
        }
    }
}
