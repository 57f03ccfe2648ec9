//! What happens to a queued message: local Maildir delivery, the retry schedule, and bounces.
//!
//! - `maildir`: one durable Maildir write (tmp/, fdatasync, rename into new/, directory sync).
//! - `local`: one recipient's local delivery: mailbox path, loop detection, the added headers.
//! - `maildir_batch`: the deliveries waiting on a shard written together on a delivery thread.
//! - `report`: what a transport says about each recipient (status, code, remote reply).
//! - `retry`: qmail's quadratic retry schedule and the queue lifetime.
//! - `bounce`: the failure notice sent back to the sender when a recipient has failed for good.
//! - `scheduler`: decides what to deliver when, using the parts above.

pub mod bounce;
pub mod local;
pub mod maildir;
mod maildir_batch;
pub mod report;
pub mod retry;
pub mod scheduler;
