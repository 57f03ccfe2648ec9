//! shards: the thread-per-core runtime under ringmail. It starts, pins, connects and stops shards,
//! and knows nothing about mail.
//!
//! # The model
//!
//! A *shard* is one OS thread running one glommio `LocalExecutor` (io_uring), pinned to one CPU.
//! Shards share nothing; they talk only through typed messages over the [`Mesh`]. Starting a set
//! is three steps, for every shard at once:
//!
//! 1. **build the shard**: make the executor on its own thread, pinned to CPU `i`
//!    (named `<name>-shard-<i>`, with a one-thread unbound blocking pool for
//!    `glommio::executor().spawn_blocking`, see [`BLOCKING_THREADS`]). If any shard fails to
//!    build, none runs.
//! 2. **join the mesh**: connect one bounded channel to and from every other shard.
//! 3. **run**: call the caller's `shard_main(ShardContext)` and drive its future to completion.
//!
//! ```no_run
//! use shards::{ShardContext, ShardSetConfig};
//! let config = ShardSetConfig { shard_count: 0, name: "ringmail".into(), ..Default::default() };
//! let set = shards::start::<u64, _, _>(config, |ctx: ShardContext<u64>| async move {
//!     let next = (ctx.id() + 1) % ctx.count();
//!     let _ = ctx.mesh().send_to(next, 42).await;
//!     while let Some((_from, _n)) = ctx.mesh().recv().await {} // None once shutdown starts
//! })?;
//! shards::install_signal_handlers(&set)?;
//! let outputs = set.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Shutdown** is one flag for the whole set: [`ShutdownHandle::trigger`] from any thread (the
//! signal thread, a test, a shard) wakes every [`ShutdownSignal::wait`] at once; each shard then
//! finishes its work and returns, and [`ShardSet::join`] returns their outputs. A panicking shard
//! triggers shutdown too, and `join` reports the panic. A shard that simply returns early does
//! not stop the others.
//!
//! **Listeners**: each shard calls [`bind_listener`] on the same address (`SO_REUSEPORT`); the
//! kernel spreads connections. For port 0, call [`reserve_port`] first and bind its address.
//! A server that must bind before it drops root binds every shard's socket up front with
//! [`bind_std_listener`] and each shard adopts its own with [`adopt_listener`].
//! Because of `SO_REUSEPORT` a second server would share the port silently, so a server takes
//! the [`DirLock`] on its data directory before starting shards.

mod counters;
mod dirlock;
mod listener;
mod mesh;
mod runtime;
mod shutdown;

pub use counters::Counters;
pub use dirlock::{DirLock, LOCK_FILE, LockError};
pub use listener::{
    MIN_BACKLOG, ReservedPort, accept_nodelay, adopt_listener, bind_listener, bind_std_listener,
    reserve_port,
};
pub use mesh::{Mesh, MeshError};
pub use runtime::{BLOCKING_THREADS, ShardContext, ShardError, ShardSet, ShardSetConfig, start};
pub use shutdown::{
    ShutdownHandle, ShutdownSignal, SignalAction, WaitShutdown, handle_signals, handle_signals_with,
};

/// Makes SIGTERM and SIGINT trigger `set`'s graceful shutdown, from a dedicated thread
/// (`<name>-signals`). A second SIGTERM/SIGINT during shutdown exits the process at once
/// (status 128 + signal). Call once per process.
pub fn install_signal_handlers<R: Send + 'static>(set: &ShardSet<R>) -> std::io::Result<()> {
    install_signal_handlers_with(set, Vec::new())
}

/// [`install_signal_handlers`], plus the caller's own actions for other signals (SIGHUP,
/// SIGALRM, ...), run on the same thread; see [`handle_signals_with`]. SIGPIPE is ignored.
pub fn install_signal_handlers_with<R: Send + 'static>(
    set: &ShardSet<R>,
    extra: Vec<SignalAction>,
) -> std::io::Result<()> {
    handle_signals_with(
        set.shutdown_handle(),
        &format!("{}-signals", set.name()),
        extra,
    )
}
