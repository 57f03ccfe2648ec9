//! ringmail: a thread-per-core mail transfer agent (SMTP relay, local delivery, POP3) on io_uring.
//!
//! Where things live:
//! - `smtp`: the SMTP protocol as a sans-IO session, and the connection driver that feeds it.
//! - `queue`: the durable queue (segments, group commit, recovery, per-recipient state).
//! - `delivery`: what happens to a queued message: Maildir delivery, retry schedule, bounces.
//! - `pop3`: the POP3 protocol as a sans-IO session, the maildir store it reads, its driver.
//! - `auth`: password checking (built-in database, checkpassword programs, APOP).
//! - `config`: the TOML configuration, read and validated once.
//! - `relay`: remote delivery: the route step, destination owners, the SMTP client.
//! - `sidecar`: the tokio thread for DNS and the control socket.
//! - `inject`: local injection (`ringmail sendmail`) over a Unix socket, committed like SMTP.
//! - `control`: queue control on the running server (flush, delete, bounce, pause, resume).
//! - `server`: one shard's wiring: listeners, queue, scheduler, shutdown.
//! - `cli`: the `ringmail` command line.
//! - `redis_client`: Redis for the shards, on the sidecar (shared shaping limits).
//! - `address`: canonical addresses: when two spellings are one mailbox, and which never are.
//! - `dkim`, `suppression`, `unsubscribe`, `feedback`: deliverability for bulk senders: DKIM
//!   signing, the suppression list, RFC 8058 one-click unsubscribe, ARF complaint reports.

pub mod abuse;
pub mod address;
pub mod auth;
pub mod blocking;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod delivery;
pub mod dkim;
pub mod dns;
pub mod durable_dir;
pub mod envelope;
pub mod feedback;
pub mod http;
pub mod inject;
pub mod local;
pub mod logging;
pub mod mailbox;
pub mod metrics;
pub mod pop3;
pub mod queue;
pub mod redis_client;
pub mod relay;
pub mod server;
pub mod sidecar;
pub mod smtp;
pub mod stats;
pub mod suppression;
pub mod tls;
pub mod unsubscribe;
