//! Keeping abusers out of the SMTP service cheaply, and saying what was refused.
//!
//! What happens to a new SMTP connection, in order (`smtp::connection` drives it):
//!
//! ```text
//! accept ─▶ access rules (first match)  ── deny ──▶ 554 5.7.1 <reply>, close
//!        ─▶ sessions from this IP, whole server ── over ──▶ 421 4.7.0, close
//!        ─▶ DNSBL lookups start (not for loopback, relay or `dnsbl = false` clients)
//!        ─▶ greeting delay: any byte from the client ──▶ 554 5.5.1 (early talker), close
//!        ─▶ DNSBL answer: listed ──▶ 554 5.7.1 ... blocked using ZONE, close
//!        ─▶ 220 greeting; then per command line: complete within the command timeout from its
//!           first byte; per MAIL: messages per minute from this IP ── over ──▶ 421 4.7.0;
//!           DATA content: at least the minimum rate after a grace period ── else ──▶ 421 4.4.2
//! ```
//!
//! - `access`: the rules (qmail's tcprules) and what they give one client.
//! - `ip_limits`: per-IP session and message counters shared by every shard, lock-free.
//! - `dnsbl`: blocklist query names (RFC 5782) and the lookup through the resolver thread.
//! - `pace`: command-line deadlines and the minimum DATA rate (slowloris), sans-IO.
//! - `client_policy`: the RCPT/MAIL policy of one session (relay right, message rate).
//! - `refusals`: the one-line `refused smtp [IP]: COMMAND: REPLY` log record.

pub mod access;
pub mod client_policy;
pub mod dnsbl;
pub mod ip_limits;
pub mod pace;
pub mod refusals;

pub use access::{AccessRules, ClientTerms};
pub use client_policy::ClientPolicy;
pub use ip_limits::{IpSessionGuard, IpTable};
pub use pace::{Pace, PaceVerdict};
