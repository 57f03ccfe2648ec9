//! `ringmail stats`: delivery statistics computed from the log, in the spirit of qmailanalog's
//! zoverall (totals), zddist (how long deliveries took) and zrecipients/zdeferrals (where mail
//! went, why it failed). Pure: lines in, a [`Report`] out; the CLI (src/cli/stats.rs) reads
//! the files and prints it.
//!
//! Counted from these log lines (src/delivery/scheduler.rs, src/smtp/connection.rs):
//! `new msg` (a message queued: bytes, recipients), `bounce msg` (a bounce queued),
//! `delivery ID to RCPT: success|deferral|failure: TEXT`, `end msg`. A delivery's time is from
//! its message's `new msg` line to its final (success or failure) line; deliveries of messages
//! queued before the log (or the window) starts have no time.

mod parse;
mod report;

pub use parse::{Event, Outcome, parse_message, parse_time, split_line};
pub use report::{Report, Window};
