//! qmail-style local delivery: `.qmail` delivery instructions (Maildir, mbox, forward and
//! program lines), extension addresses, and where the instructions come from.
//!
//! - `aliases`: /etc/aliases-style aliases and their compiled index (`ringmail newaliases`).
//! - `assign`: qmail's `virtualdomains` and `users/assign`.
//! - `dotqmail`: the `.qmail` file format, parsed without I/O.
//! - `extension`: which `.qmail-ext` files answer an extension address, and `EXT`...
//! - `instructions`: finding a virtual mailbox's instruction file under the mail root.
//! - `deliver`: one recipient's delivery, line after line, with per-line progress.
//! - `checkpoint`: that progress, durable, so a retry does not repeat finished lines.
//! - `mbox`: appending to an mbox file under `fcntl` and `flock` locks.
//! - `program`: running a `|command` line with qmail's environment and exit codes.
//! - `loops`: the Delivered-To loop check, read with mail-parser.
//! - `recipients`: every known recipient, in memory, for the RCPT check.
//! - `users`: system users (passwd accounts) whose home `.qmail` files are read.
//! - `helper`: the small privileged process that delivers as those users.

pub mod aliases;
pub mod assign;
pub mod checkpoint;
pub mod deliver;
pub mod dotqmail;
pub mod extension;
pub mod helper;
pub mod instructions;
pub mod loops;
pub mod mbox;
pub mod program;
pub mod recipients;
pub mod users;

use crate::blocking::BlockingPool;

/// The threads every shard's local deliveries share for blocking work: reading instruction
/// files, mbox appends, programs, progress records. Started once, on the first call; `threads`
/// is `[local] delivery_threads`.
pub fn local_pool(threads: usize) -> BlockingPool {
    static POOL: std::sync::OnceLock<BlockingPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| BlockingPool::new("ringmail-local", threads, 4096))
        .clone()
}
