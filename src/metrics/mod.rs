//! Prometheus metrics (`GET /metrics` on the HTTP control plane, src/http/).
//!
//! # How counting stays off the hot path
//!
//! Every shard thread counts into its own [`ShardCounters`] slot (`CachePadded` atomics,
//! relaxed adds, no locks); threads that are no shard (the sidecar, the blocking pool) share
//! one extra slot. A scrape sums the slots ([`totals`]) and the encoder writes them with
//! `prometheus-client`'s text encoder through a custom collector (encode.rs). What only a
//! shard can know (per-destination connections, which live in the owner shard's `Rc` state)
//! is asked for at scrape time over the shard's HTTP channel (src/http/shard_service.rs).
//!
//! The recording functions below are what the rest of the server calls: each is a thread-local
//! read and one or two atomic adds, and does nothing before [`init`] (unit tests, the CLI).
//!
//! The metric names and their meaning are listed in the README (Metrics).

mod counters;
mod encode;

pub use counters::{
    AtomicHistogram, HistogramTotals, Listener, Outcome, Refusal, ShardCounters, Source, Transport,
};
pub use encode::{DestinationSample, Scrape, encode};

use crossbeam_utils::CachePadded;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Every slot: shard `i` is `slots[i]`; the last one is every other thread's.
struct Metrics {
    slots: Box<[CachePadded<ShardCounters>]>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

thread_local! {
    /// This thread's slot, set by [`enter_shard`]; `usize::MAX` until then.
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// This shard's unfinished messages by acceptance time (seconds → count), for the queue's
    /// oldest-message age. Shard-local, so a plain `RefCell`.
    static QUEUE_AGES: RefCell<BTreeMap<u64, u64>> = const { RefCell::new(BTreeMap::new()) };
    /// Deferrals per destination this shard owns, read by the shard itself at scrape time.
    static DESTINATION_DEFERRALS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

/// Destinations whose deferrals are counted one by one per shard; beyond this many the rest
/// are counted under `other`, so a flood of bad domains cannot grow memory without bound.
pub const MAX_DESTINATIONS: usize = 1000;

/// Creates the slots for `shards` shards. Called once, before the shards start; later calls
/// keep the first set.
pub fn init(shards: usize) {
    let _ = METRICS.get_or_init(|| Metrics {
        slots: (0..=shards)
            .map(|_| CachePadded::new(ShardCounters::default()))
            .collect(),
    });
}

/// Marks the calling thread as shard `shard`: what it counts from now on lands in its slot.
pub fn enter_shard(shard: usize) {
    SLOT.with(|slot| slot.set(shard));
}

/// Runs `f` on this thread's slot, if metrics are on.
fn with(f: impl FnOnce(&ShardCounters)) {
    let Some(metrics) = METRICS.get() else {
        return;
    };
    let index = SLOT.with(Cell::get);
    let slot = metrics
        .slots
        .get(index)
        .or_else(|| metrics.slots.last())
        .map(|slot| &**slot);
    if let Some(counters) = slot {
        f(counters);
    }
}

/// The number of shard slots (without the extra one); 0 before [`init`].
pub fn shard_count() -> usize {
    METRICS.get().map_or(0, |m| m.slots.len().saturating_sub(1))
}

/// Shard `shard`'s counters (or the extra slot's for `shard == shard_count()`).
pub fn slot(shard: usize) -> Option<&'static ShardCounters> {
    METRICS.get()?.slots.get(shard).map(|slot| &**slot)
}

// ---- recording: what the rest of the server calls --------------------------------------

/// A connection was accepted on `listener` (counted even when it is then refused).
pub fn connection_opened(listener: Listener) {
    with(|c| {
        c.connections[listener as usize].fetch_add(1, Relaxed);
    });
}

/// A session started on `listener` (it now holds a session slot).
pub fn session_started(listener: Listener) {
    with(|c| {
        c.sessions_open[listener as usize].fetch_add(1, Relaxed);
    });
}

/// A session on `listener` ended.
pub fn session_ended(listener: Listener) {
    with(|c| {
        c.sessions_open[listener as usize].fetch_sub(1, Relaxed);
    });
}

/// A message of `bytes` bytes was made durable in the queue.
pub fn message_accepted(source: Source, bytes: usize) {
    with(|c| {
        c.accepted[source as usize].fetch_add(1, Relaxed);
        c.accepted_bytes[source as usize].fetch_add(bytes as u64, Relaxed);
    });
}

/// Something was refused for `reason` (a recipient, a message, a connection, a login). The
/// SMTP code calls this beside every refusal it logs.
pub fn refused(reason: Refusal) {
    with(|c| {
        c.refused[reason as usize].fetch_add(1, Relaxed);
    });
}

/// The name other parts of the server were promised: [`refused`] for SMTP refusals.
pub fn smtp_refused(reason: Refusal) {
    refused(reason);
}

/// One recipient's delivery attempt ended with `outcome`; for a final outcome (success or
/// failure), `latency` is the time since the message was accepted.
pub fn delivery(transport: Transport, outcome: Outcome, latency: Option<Duration>) {
    with(|c| {
        c.deliveries[transport as usize][outcome as usize].fetch_add(1, Relaxed);
        if let Some(latency) = latency {
            c.delivery_latency.observe(latency.as_secs_f64());
        }
    });
}

/// A message in this shard's delivery, for the queue gauges: made when the scheduler takes a
/// message on (accepted or recovered), told how many recipients are still pending as they
/// finish, and dropped when the message leaves (every recipient final, or the shard stopped).
/// It lives on the shard thread, as the scheduler's task does.
pub struct QueueGauge {
    received_at: u64,
    pending: Cell<usize>,
}

impl QueueGauge {
    pub fn new(received_at: u64, pending: usize) -> QueueGauge {
        QUEUE_AGES.with(|ages| *ages.borrow_mut().entry(received_at).or_insert(0) += 1);
        with(|c| {
            c.queue_messages.fetch_add(1, Relaxed);
            c.queue_recipients.fetch_add(pending as i64, Relaxed);
        });
        publish_oldest();
        QueueGauge {
            received_at,
            pending: Cell::new(pending),
        }
    }

    /// `pending` recipients are still to be delivered.
    pub fn set_pending(&self, pending: usize) {
        let before = self.pending.replace(pending);
        if before != pending {
            with(|c| {
                c.queue_recipients
                    .fetch_add(pending as i64 - before as i64, Relaxed);
            });
        }
    }
}

impl Drop for QueueGauge {
    fn drop(&mut self) {
        let received_at = self.received_at;
        QUEUE_AGES.with(|ages| {
            let mut ages = ages.borrow_mut();
            if let Some(count) = ages.get_mut(&received_at) {
                *count -= 1;
                if *count == 0 {
                    ages.remove(&received_at);
                }
            }
        });
        let pending = self.pending.get();
        with(|c| {
            c.queue_messages.fetch_sub(1, Relaxed);
            c.queue_recipients.fetch_sub(pending as i64, Relaxed);
        });
        publish_oldest();
    }
}

fn publish_oldest() {
    let oldest = QUEUE_AGES.with(|ages| ages.borrow().keys().next().copied().unwrap_or(0));
    with(|c| c.queue_oldest.store(oldest, Relaxed));
}

/// A group commit wrote `records` queue records with one round of `fdatasync` that took
/// `sync` (None when the batch failed before syncing).
pub fn group_commit(records: usize, sync: Option<Duration>) {
    with(|c| {
        c.commit_batch.observe(records as f64);
        if let Some(sync) = sync {
            c.fsync_latency.observe(sync.as_secs_f64());
        }
    });
}

/// A delivery attempt to `destination` (owned by this shard) was deferred.
pub fn destination_deferred(destination: &dyn std::fmt::Display) {
    DESTINATION_DEFERRALS.with(|map| {
        let mut map = map.borrow_mut();
        let name = destination.to_string();
        if let Some(count) = map.get_mut(&name) {
            *count += 1;
        } else if map.len() < MAX_DESTINATIONS {
            map.insert(name, 1);
        } else {
            *map.entry("other".to_string()).or_insert(0) += 1;
        }
    });
}

/// This shard's deferral counts per destination (called on the shard, at scrape time).
pub fn destination_deferrals() -> Vec<(String, u64)> {
    DESTINATION_DEFERRALS.with(|map| {
        map.borrow()
            .iter()
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    })
}

/// Marks shard `shard` as serving (its queue recovered, its listeners adopted) or not.
pub fn set_ready(shard: usize, ready: bool) {
    if let Some(counters) = slot(shard) {
        counters.ready.store(ready, Relaxed);
    }
}

/// Whether every shard reported ready.
pub fn all_ready() -> bool {
    let count = shard_count();
    count > 0 && (0..count).all(|i| slot(i).is_some_and(|c| c.ready.load(Relaxed)))
}

/// A recipient policy that counts what it refuses (`ringmail_refused_total`) and otherwise
/// answers exactly as the policy it wraps. Each shard wraps its own.
pub struct CountedPolicy<P>(pub P);

impl<P: crate::smtp::RecipientPolicy> crate::smtp::RecipientPolicy for CountedPolicy<P> {
    fn check_recipient(
        &self,
        peer: &crate::smtp::PeerInfo,
        address: &str,
    ) -> crate::smtp::RcptVerdict {
        use crate::smtp::RcptVerdict;
        let verdict = self.0.check_recipient(peer, address);
        let reason = match &verdict {
            RcptVerdict::Accept => None,
            RcptVerdict::UnknownUser => Some(Refusal::UnknownUser),
            RcptVerdict::RelayDenied => Some(Refusal::RelayDenied),
            RcptVerdict::BadAddress => Some(Refusal::BadAddress),
            RcptVerdict::BadDestination => Some(Refusal::BadDestination),
            RcptVerdict::TempFail(_) => Some(Refusal::Other),
        };
        if let Some(reason) = reason {
            refused(reason);
        }
        verdict
    }
}

/// Counts the refusals in SMTP reply bytes the server is about to send, for the refusals the
/// sans-IO session makes by itself (size, recipient count, hops, syntax, content). The session
/// stays free of side effects; the driver, which sends these bytes anyway, calls this. RCPT
/// verdicts are not counted here ([`CountedPolicy`] counts them where they are decided).
pub fn count_smtp_replies(out: &[u8]) {
    for line in out.split(|&b| b == b'\n') {
        if let Some(reason) = refusal_in_reply(line) {
            refused(reason);
        }
    }
}

/// The refusal a final reply line (`NNN X.Y.Z text`) stands for, if it is one of those the
/// session makes itself (src/smtp/reply.rs).
fn refusal_in_reply(line: &[u8]) -> Option<Refusal> {
    // A continuation line (`NNN-`) or anything shorter than `NNN X.Y.Z` is not a final reply.
    let head = line.get(..10)?;
    if head.get(3) != Some(&b' ') {
        return None;
    }
    let code = head.get(..3)?;
    let enhanced = line.get(4..)?.split(|&b| b == b' ').next()?;
    Some(match (code, enhanced) {
        (b"552", b"5.3.4") => Refusal::MessageTooBig,
        (b"452", b"4.5.3") => Refusal::TooManyRecipients,
        (b"554", b"5.4.6") => Refusal::TooManyHops,
        (b"554", b"5.6.11") | (b"550", b"5.6.0") => Refusal::BadContent,
        (b"500", _) | (b"501", _) | (b"555", _) | (b"553", b"5.6.7") => Refusal::Syntax,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_in_replies() {
        let cases: &[(&[u8], Option<Refusal>)] = &[
            (
                b"552 5.3.4 Error: message size exceeds fixed limit\r",
                Some(Refusal::MessageTooBig),
            ),
            (
                b"452 4.5.3 Error: too many recipients\r",
                Some(Refusal::TooManyRecipients),
            ),
            (
                b"554 5.4.6 Error: too many hops\r",
                Some(Refusal::TooManyHops),
            ),
            (
                b"554 5.6.11 Error: bare CR or LF\r",
                Some(Refusal::BadContent),
            ),
            (
                b"500 5.5.2 Error: command not recognized\r",
                Some(Refusal::Syntax),
            ),
            (
                b"501 5.1.7 Error: bad sender address syntax\r",
                Some(Refusal::Syntax),
            ),
            // Counted where decided (CountedPolicy), or not refusals at all.
            (b"554 5.7.1 <a@b>: Relay access denied\r", None),
            (b"550 5.1.1 <a@b>: no such user\r", None),
            (b"250 2.0.0 Ok: queued as 1.0.0\r", None),
            (b"250-SIZE 1000\r", None),
            (b"500", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                refusal_in_reply(line),
                *want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
