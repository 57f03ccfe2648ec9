//! Remote delivery: where each recipient goes, and how mail leaves the box.
//!
//! - `access`: who may relay: the RCPT decision (local domains, rcpthosts, relay_networks,
//!   authenticated clients; hidden routes refused for everyone).
//! - `route`: the route step. Every recipient, bounces included, passes through it once per
//!   attempt: local, a static route (qmail's smtproutes), MX, or refuse.
//! - `owner`: which shard owns a destination; the typed messages that carry recipients there
//!   over the shard mesh and bring their outcomes back.
//! - `destination`: the owner's per-destination state: waiting jobs, connection cache,
//!   concurrency limit, downed-host backoff.
//! - `targets`: a destination turned into an ordered list of servers (MX, A/AAAA, null MX).
//! - `client`: the SMTP client that talks to one remote server.
//! - `verp`: qmail's variable envelope return paths.
//! - `shaping`: per-destination and per-provider limits (MX rollup), across shards and nodes.
//! - `pools`: source-IP pools: the local addresses and EHLO names connections come from.
//! - `backoff`: reply patterns that suspend or slow a destination.
//! - `suspensions`: the board where suspensions are published for `queue status` and metrics.

pub mod access;
pub mod backoff;
pub mod client;
pub mod destination;
pub mod owner;
pub mod pools;
pub mod route;
pub mod shaping;
pub mod suspensions;
pub mod targets;
pub mod verp;

pub use route::{Destination, Route, RouteTarget, Router};
