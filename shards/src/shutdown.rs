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

/// Starts a thread that turns the first SIGTERM or SIGINT into `handle.trigger()`.
///
/// A second SIGTERM/SIGINT while shutdown is in progress exits the process at once with status
/// 128 + signal number, as operators expect from a second Ctrl-C.
pub fn handle_signals(handle: ShutdownHandle, thread_name: &str) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            for signal in signals.forever() {
                if handle.trigger() {
                    log::info!("signal {signal}: shutting down (send it again to exit at once)");
                } else {
                    log::warn!("signal {signal} during shutdown: exiting now");
                    std::process::exit(128 + signal);
                }
            }
        })?;
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
}
