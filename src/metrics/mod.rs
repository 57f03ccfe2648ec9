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
/// answers exactly as the policy it wraps. The injection API wraps its policy in it; SMTP's
/// RCPT refusals are counted where they are logged instead (`crate::abuse::refusals::log`).
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

/// A borrowed policy is a policy, so [`CountedPolicy`] can wrap a shared one (`&RcptPolicy`).
impl<P: crate::smtp::RecipientPolicy + ?Sized> crate::smtp::RecipientPolicy for &P {
    fn check_recipient(
        &self,
        peer: &crate::smtp::PeerInfo,
        address: &str,
    ) -> crate::smtp::RcptVerdict {
        (**self).check_recipient(peer, address)
    }
}

/// The reason of a logged SMTP refusal (`crate::abuse::refusals::log`, which every refusal of
/// a connection, command or message goes through): `command` is what it answered (`connect`
/// for the connection itself), the rest the reply sent.
pub fn smtp_refusal_reason(
    command: &str,
    code: u16,
    enhanced: Option<&str>,
    text: &str,
) -> Refusal {
    match (code, enhanced.unwrap_or("")) {
        (421, "4.7.0") if text.contains("too many messages") => Refusal::RateLimited,
        (421, "4.7.0") if command == "connect" => Refusal::TooManySessions,
        (421, "4.4.2") => Refusal::Timeout,
        (554, "5.7.1") if text.contains("blocked using") => Refusal::Dnsbl,
        (554, "5.7.1") if command == "connect" => Refusal::AccessDenied,
        (554, "5.7.1") => Refusal::RelayDenied,
        (550, "5.1.1") => Refusal::UnknownUser,
        (553, "5.1.3") => Refusal::BadAddress,
        (553, "5.1.2") => Refusal::BadDestination,
        (552, "5.3.4") => Refusal::MessageTooBig,
        (452, "4.5.3") => Refusal::TooManyRecipients,
        (554, "5.4.6") => Refusal::TooManyHops,
        (554, "5.6.11") | (550, "5.6.0") => Refusal::BadContent,
        (554, "5.5.0") | (554, "5.5.1") => Refusal::EarlyTalker,
        (535, _) | (534, _) | (538, _) => Refusal::AuthFailed,
        (500, _) | (501, _) | (555, _) | (553, "5.6.7") => Refusal::Syntax,
        _ => Refusal::Other,
    }
}

/// Counts the syntax errors in SMTP reply bytes the server is about to send. The session does
/// not log those as refusals (a typo is no abuse), so `refusals::log` never sees them; the
/// driver, which sends these bytes anyway, counts them here.
pub fn count_smtp_syntax_errors(out: &[u8]) {
    for line in out.split(|&b| b == b'\n') {
        if is_syntax_error(line) {
            refused(Refusal::Syntax);
        }
    }
}

/// A final reply line `500 `, `501 ` or `555 ` (continuation lines have `-` after the code).
fn is_syntax_error(line: &[u8]) -> bool {
    matches!(line.get(..4), Some(b"500 " | b"501 " | b"555 "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons() {
        let cases: &[(&str, u16, &str, &str, Refusal)] = &[
            (
                "connect",
                421,
                "4.7.0",
                "mx Error: too many connections",
                Refusal::TooManySessions,
            ),
            (
                "connect",
                421,
                "4.7.0",
                "mx Error: too many connections from your IP",
                Refusal::TooManySessions,
            ),
            (
                "MAIL FROM:<a@b>",
                421,
                "4.7.0",
                "mx Error: too many messages from your IP address",
                Refusal::RateLimited,
            ),
            (
                "connect",
                554,
                "5.7.1",
                "Service unavailable; client [192.0.2.1] blocked using zen.test",
                Refusal::Dnsbl,
            ),
            ("connect", 554, "5.7.1", "go away", Refusal::AccessDenied),
            (
                "RCPT TO:<x@far>",
                554,
                "5.7.1",
                "<x@far>: Relay access denied",
                Refusal::RelayDenied,
            ),
            (
                "RCPT TO:<x@here>",
                550,
                "5.1.1",
                "<x@here>: no such user",
                Refusal::UnknownUser,
            ),
            (
                "MAIL FROM:<a@b> SIZE=9999999",
                552,
                "5.3.4",
                "too big",
                Refusal::MessageTooBig,
            ),
            (
                "RCPT TO:<y@here>",
                452,
                "4.5.3",
                "too many",
                Refusal::TooManyRecipients,
            ),
            ("DATA", 554, "5.4.6", "too many hops", Refusal::TooManyHops),
            ("DATA", 554, "5.6.11", "bare LF", Refusal::BadContent),
            (
                "EHLO x",
                554,
                "5.5.1",
                "command sent before the greeting",
                Refusal::EarlyTalker,
            ),
            (
                "(message content)",
                421,
                "4.4.2",
                "too slowly",
                Refusal::Timeout,
            ),
            (
                "AUTH PLAIN",
                535,
                "5.7.8",
                "bad credentials",
                Refusal::AuthFailed,
            ),
            (
                "QUIT",
                421,
                "4.7.0",
                "mx Error: too many errors",
                Refusal::Other,
            ),
        ];
        for (command, code, enhanced, text, want) in cases {
            assert_eq!(
                smtp_refusal_reason(command, *code, Some(enhanced), text),
                *want,
                "{command}: {code} {enhanced} {text}"
            );
        }
    }

    #[test]
    fn syntax_errors_in_replies() {
        assert!(is_syntax_error(
            b"500 5.5.2 Error: command not recognized\r"
        ));
        assert!(is_syntax_error(
            b"501 5.1.7 Error: bad sender address syntax\r"
        ));
        assert!(!is_syntax_error(b"250-SIZE 1000\r"));
        assert!(!is_syntax_error(b"554 5.7.1 denied\r"));
        assert!(!is_syntax_error(b"500"));
    }
}
