//! A one-waiter wake-up for a message's delivery task: the control commands (flush, delete,
//! bounce, resume) poke it so that a task sleeping until its next retry looks again at once.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Counts pokes; a waiter waits for the count to move past what it saw.
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    waiter: RefCell<Option<Waker>>,
}

impl Signal {
    /// The current count, to wait on later.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes the waiter (if any) and every later `changed_since` of an older generation.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        if let Some(waker) = self.waiter.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves once `notify` was called after `seen` was read.
    pub async fn changed_since(&self, seen: u64) {
        poll_fn(|cx| {
            if self.generation.get() != seen {
                Poll::Ready(())
            } else {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
