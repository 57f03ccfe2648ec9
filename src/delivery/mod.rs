//! What happens to a queued message: local Maildir delivery, the retry schedule, and bounces.
//!
//! - `maildir`: one durable Maildir write (tmp/, fdatasync, rename into new/, directory sync).
//! - `local`: one recipient's local delivery: mailbox path, loop detection, the added headers.
//! - `retry`: qmail's quadratic retry schedule and the queue lifetime.
//! - `bounce`: the failure notice sent back to the sender when a recipient has failed for good.
//! - `scheduler`: decides what to deliver when, using the parts above.

pub mod bounce;
pub mod local;
pub mod maildir;
pub mod retry;
pub mod scheduler;
