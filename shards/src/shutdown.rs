//! Graceful shutdown: one flag shared by every shard, woken from any thread, and the SIGTERM/SIGINT thread.
//!
//! The flag is an `AtomicBool`; waiters park a `Waker` in a small list that only `wait()` and
//! `trigger()` touch (never a hot path). Waking a glommio task from a foreign thread is supported
//! by glommio: the waker is queued on the owning executor and its eventfd is kicked, so a shard
//! asleep in io_uring wakes within microseconds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct State {
    triggered: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    next_key: u64,
    wakers: Vec<(u64, Waker)>,
}

impl State {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // A panic while holding this lock cannot leave the list inconsistent: keep going.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn trigger(&self) -> bool {
        if self.triggered.swap(true, Ordering::SeqCst) {
            return false;
        }
        let wakers = std::mem::take(&mut self.waiters().wakers);
        for (_, waker) in wakers {
            waker.wake();
        }
        true
    }
}

/// Triggers shutdown from anywhere: `Send + Sync + Clone`, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    state: Arc<State>,
}

impl ShutdownHandle {
    /// A fresh, untriggered shutdown flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts shutdown and wakes every `wait()`. Returns `true` for the call that flipped the flag.
    pub fn trigger(&self) -> bool {
        self.state.trigger()
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.state.triggered.load(Ordering::SeqCst)
    }

    /// A signal that shards (or anything else) can await.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            state: self.state.clone(),
        }
    }
}

/// What a shard watches to know it should stop: cloneable, `.is_triggered()`, `.wait().await`.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    state: Arc<State>,
}

impl ShutdownSignal {
    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.state.triggered.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown has started (at once if it already has). Cancel-safe: drop it
    /// freely inside a select.
    pub fn wait(&self) -> WaitShutdown {
        WaitShutdown {
            state: self.state.clone(),
            key: None,
        }
    }

    /// A handle to start shutdown from this side, e.g. after a fatal disk error on one shard.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            state: self.state.clone(),
        }
    }
}

/// Future returned by [`ShutdownSignal::wait`].
#[derive(Debug)]
pub struct WaitShutdown {
    state: Arc<State>,
    key: Option<u64>,
}

impl Future for WaitShutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.triggered.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let state = self.state.clone();
        let mut waiters = state.waiters();
        // Checked again under the lock: `trigger` sets the flag before draining the list, so
        // either we see the flag or our waker is in the list it drains.
        if state.triggered.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        match self.key {
            Some(key) => {
                if let Some((_, w)) = waiters.wakers.iter_mut().find(|(k, _)| *k == key) {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                } else {
                    waiters.wakers.push((key, cx.waker().clone()));
                }
            }
            None => {
                let key = waiters.next_key;
                waiters.next_key += 1;
                waiters.wakers.push((key, cx.waker().clone()));
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for WaitShutdown {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.state.waiters().wakers.retain(|(k, _)| *k != key);
        }
    }
}

/// What the signal thread does when one more signal arrives (beside SIGTERM/SIGINT): the
/// caller decides what, e.g. reopen a log file on SIGHUP. `action` runs on the signal thread,
/// one signal at a time, so it should only hand work off (set a flag, send a message): a
/// SIGTERM that arrives meanwhile waits behind it.
pub struct SignalAction {
    /// The signal number (`signal_hook::consts::SIGHUP`, `libc::SIGALRM`, ...).
    pub signal: i32,
    /// Called on the signal thread each time `signal` arrives.
    pub action: Box<dyn FnMut() + Send>,
}

impl SignalAction {
    /// Runs `action` whenever `signal` arrives.
    pub fn new(signal: i32, action: impl FnMut() + Send + 'static) -> Self {
        SignalAction {
            signal,
            action: Box::new(action),
        }
    }
}

impl std::fmt::Debug for SignalAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalAction")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

/// Starts a thread that turns the first SIGTERM or SIGINT into `handle.trigger()`.
///
/// A second SIGTERM/SIGINT while shutdown is in progress exits the process at once with status
/// 128 + signal number, as operators expect from a second Ctrl-C. SIGPIPE is ignored (see
/// [`handle_signals_with`]).
pub fn handle_signals(handle: ShutdownHandle, thread_name: &str) -> io::Result<()> {
    handle_signals_with(handle, thread_name, Vec::new())
}

/// [`handle_signals`], plus `extra` signals whose actions the same thread runs. A signal listed
/// in `extra` no longer has its default effect (for SIGHUP, SIGALRM and SIGUSR1: killing the
/// process). SIGTERM and SIGINT cannot be listed (they mean shutdown), nor can SIGPIPE or a
/// signal listed twice.
///
/// SIGPIPE is set to "ignore" explicitly: a peer that resets a connection while a shard writes
/// to it must cost that one write an `EPIPE`, never the process. (Rust's runtime already
/// ignores it before `main`, but a library must not depend on how the binary was built.)
/// Children started with `std::process::Command` get the default disposition back.
pub fn handle_signals_with(
    handle: ShutdownHandle,
    thread_name: &str,
    extra: Vec<SignalAction>,
) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGPIPE, SIGTERM};
    let mut wanted = vec![SIGTERM, SIGINT];
    for action in &extra {
        if [SIGTERM, SIGINT, SIGPIPE].contains(&action.signal) || wanted.contains(&action.signal) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {} cannot take an extra action", action.signal),
            ));
        }
        wanted.push(action.signal);
    }
    ignore_sigpipe()?;
    let mut signals = signal_hook::iterator::Signals::new(&wanted)?;
    let mut actions = extra;
    std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGTERM || signal == SIGINT {
                    if handle.trigger() {
                        log::info!(
                            "signal {signal}: shutting down (send it again to exit at once)"
                        );
                    } else {
                        log::warn!("signal {signal} during shutdown: exiting now");
                        // Whatever the logger still holds is written before the process goes.
                        log::logger().flush();
                        std::process::exit(128 + signal);
                    }
                } else if let Some(extra) = actions.iter_mut().find(|a| a.signal == signal) {
                    (extra.action)();
                }
            }
        })?;
    Ok(())
}

/// Sets SIGPIPE's disposition to "ignore" for the whole process.
fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: `signal` with SIG_IGN installs no handler code; it only changes the disposition,
    // which is process-wide and safe to change from any thread.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_is_reported_once_and_seen_by_signals() {
        let handle = ShutdownHandle::new();
        let signal = handle.signal();
        assert!(!signal.is_triggered());
        assert!(handle.trigger());
        assert!(!handle.trigger());
        assert!(signal.is_triggered());
        assert!(signal.handle().is_triggered());
    }

    #[test]
    fn wait_wakes_from_another_thread_and_cleans_up() {
        let handle = ShutdownHandle::new();
        let signal = handle.signal();
        let dropped = signal.wait();
        // Poll once so it registers, then drop: its waker must leave the list.
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut dropped = Box::pin(dropped);
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        assert_eq!(handle.state.waiters().wakers.len(), 1);
        drop(dropped);
        assert_eq!(handle.state.waiters().wakers.len(), 0);

        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            handle.trigger();
        });
        futures_lite::future::block_on(signal.wait());
        assert!(signal.is_triggered());
        t.join().expect("trigger thread");
    }

    #[test]
    fn extra_signals_run_their_action_and_sigpipe_is_ignored() {
        use std::sync::atomic::AtomicUsize;
        use std::time::{Duration, Instant};
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let handle = ShutdownHandle::new();
        handle_signals_with(
            handle.clone(),
            "test-signals",
            vec![SignalAction::new(libc::SIGUSR2, move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })],
        )
        .expect("signal thread");
        signal_hook::low_level::raise(libc::SIGUSR2).expect("raise SIGUSR2");
        // SIGPIPE's default would end this test process.
        signal_hook::low_level::raise(libc::SIGPIPE).expect("raise SIGPIPE");
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert!(!handle.is_triggered(), "an extra signal is not a shutdown");
    }

    #[test]
    fn shutdown_signals_cannot_be_taken_over() {
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGPIPE] {
            let err = handle_signals_with(
                ShutdownHandle::new(),
                "test-signals",
                vec![SignalAction::new(signal, || {})],
            )
            .expect_err("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        let twice = vec![
            SignalAction::new(libc::SIGHUP, || {}),
            SignalAction::new(libc::SIGHUP, || {}),
        ];
        let err =
            handle_signals_with(ShutdownHandle::new(), "test-signals", twice).expect_err("dup");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
