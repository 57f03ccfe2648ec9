//! What happens to a queued message: local Maildir delivery, the retry schedule, and bounces.
//!
//! - `maildir`: one durable Maildir write (tmp/, fdatasync, rename into new/, directory sync).
//! - `local`: one recipient's local delivery: mailbox path, loop detection, the added headers.
//! - `maildir_batch`: the deliveries waiting on a shard written together on a delivery thread.
//! - `report`: what a transport says about each recipient (status, code, remote reply).
//! - `retry`: qmail's quadratic retry schedule and the queue lifetime.
//! - `bounce`: the notice (RFC 3464 DSN) sent back when a recipient failed for good, or is late.
//! - `dsn`: the `message/delivery-status` part of that notice.
//! - `transport`: the seam every way out implements (local Maildir, remote via its owner).
//! - `control`: the scheduler's answers to the control socket (flush, pause, delete, ...).
//! - `prepare`: deliverability around an attempt: suppression, unsubscribe fields, DKIM.
//! - `scheduler`: decides what to deliver when, using the parts above.

pub mod bounce;
mod control;
pub mod dsn;
pub mod local;
pub mod maildir;
mod maildir_batch;
pub mod prepare;
pub mod report;
pub mod retry;
pub mod scheduler;
mod signal;
pub mod transport;
