//! The counters themselves: one [`ShardCounters`] per shard (plus one for every other thread),
//! each `CachePadded` so two shards never write the same cache line. Writers touch only their
//! own slot with relaxed atomic adds; the scrape sums every slot (DESIGN.md). No locks.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Where a connection arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Smtp,
    Submission,
    Pop3,
    Pop3s,
    Http,
}

impl Listener {
    pub const ALL: [Listener; 5] = [
        Listener::Smtp,
        Listener::Submission,
        Listener::Pop3,
        Listener::Pop3s,
        Listener::Http,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Listener::Smtp => "smtp",
            Listener::Submission => "submission",
            Listener::Pop3 => "pop3",
            Listener::Pop3s => "pop3s",
            Listener::Http => "http",
        }
    }
}

/// How a message entered the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An SMTP client's DATA (or BDAT) ended in 250.
    Smtp,
    /// `POST /api/inject`.
    Http,
    /// A bounce (DSN) the server wrote itself.
    Bounce,
    /// The sendmail command, over the local injection socket (crate::inject).
    Local,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::Smtp, Source::Http, Source::Bounce, Source::Local];

    pub fn name(self) -> &'static str {
        match self {
            Source::Smtp => "smtp",
            Source::Http => "http",
            Source::Bounce => "bounce",
            Source::Local => "local",
        }
    }
}

/// Why a message, a recipient or a connection was refused. A fixed list (so counting is an
/// array index, not a map); new reasons are added at the end. The names are the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// RCPT to a foreign domain from a client that may not relay (554 5.7.1).
    RelayDenied,
    /// RCPT to an unknown local user (550 5.1.1).
    UnknownUser,
    /// An address form refused for everyone (553 5.1.3): routing in the local part and the like.
    BadAddress,
    /// A destination never delivered to (553 5.1.2).
    BadDestination,
    /// Bad command or address syntax (500/501).
    Syntax,
    /// Too many recipients in one transaction (452).
    TooManyRecipients,
    /// Message larger than `smtp.max_message_size` (552).
    MessageTooBig,
    /// Too many `Received:` hops: a mail loop (554 5.4.6).
    TooManyHops,
    /// The queue could not make the message durable (451).
    QueueError,
    /// The shard's or the IP's session limit (421).
    TooManySessions,
    /// A client that said nothing for too long (421).
    Timeout,
    /// Access rules (tcprules) refused the client.
    AccessDenied,
    /// A DNS blocklist listed the client.
    Dnsbl,
    /// The client talked before the greeting, or pipelined without PIPELINING.
    EarlyTalker,
    /// SMTP AUTH failed.
    AuthFailed,
    /// A rate limit (connections, messages, AUTH attempts) was exceeded.
    RateLimited,
    /// The sender is refused (suppression list, sender-login mismatch, bad sender).
    SenderRefused,
    /// Anything else.
    Other,
    /// Message content refused: bare CR or LF, a line over 998 characters.
    BadContent,
}

impl Refusal {
    pub const ALL: [Refusal; 19] = [
        Refusal::RelayDenied,
        Refusal::UnknownUser,
        Refusal::BadAddress,
        Refusal::BadDestination,
        Refusal::Syntax,
        Refusal::TooManyRecipients,
        Refusal::MessageTooBig,
        Refusal::TooManyHops,
        Refusal::QueueError,
        Refusal::TooManySessions,
        Refusal::Timeout,
        Refusal::AccessDenied,
        Refusal::Dnsbl,
        Refusal::EarlyTalker,
        Refusal::AuthFailed,
        Refusal::RateLimited,
        Refusal::SenderRefused,
        Refusal::Other,
        Refusal::BadContent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::RelayDenied => "relay_denied",
            Refusal::UnknownUser => "unknown_user",
            Refusal::BadAddress => "bad_address",
            Refusal::BadDestination => "bad_destination",
            Refusal::Syntax => "syntax",
            Refusal::TooManyRecipients => "too_many_recipients",
            Refusal::MessageTooBig => "message_too_big",
            Refusal::TooManyHops => "too_many_hops",
            Refusal::QueueError => "queue_error",
            Refusal::TooManySessions => "too_many_sessions",
            Refusal::Timeout => "timeout",
            Refusal::AccessDenied => "access_denied",
            Refusal::Dnsbl => "dnsbl",
            Refusal::EarlyTalker => "early_talker",
            Refusal::AuthFailed => "auth_failed",
            Refusal::RateLimited => "rate_limited",
            Refusal::SenderRefused => "sender_refused",
            Refusal::Other => "other",
            Refusal::BadContent => "bad_content",
        }
    }
}

/// Which transport made a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Local,
    Remote,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Local, Transport::Remote];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Local => "local",
            Transport::Remote => "remote",
        }
    }
}

/// How one recipient's delivery attempt ended (the log's success/deferral/failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Deferral,
    Failure,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Deferral, Outcome::Failure];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Deferral => "deferral",
            Outcome::Failure => "failure",
        }
    }
}

/// Upper bounds of the delivery latency buckets, in seconds from acceptance to the final
/// outcome (the queue keeps whole seconds, so the first bucket is "within a second").
pub const LATENCY_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0, 432_000.0,
];

/// Upper bounds of the group-commit batch size buckets, in queue records per batch.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Upper bounds of the fsync latency buckets, in seconds.
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A histogram whose buckets are atomics: observing is two relaxed adds and a short scan.
/// The sum is kept in millionths, so it stays an integer add.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// Non-cumulative counts, one per bound and one for +Inf.
    counts: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(slot) {
            count.fetch_add(1, Relaxed);
        }
        // `as` saturates: a negative or NaN value adds 0.
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }
}

/// A histogram summed over shards: non-cumulative counts per bucket (the last is +Inf).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramTotals {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl HistogramTotals {
    pub fn empty(bounds: &'static [f64]) -> HistogramTotals {
        HistogramTotals {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn add(&mut self, histogram: &AtomicHistogram) {
        for (total, count) in self.counts.iter_mut().zip(histogram.counts.iter()) {
            *total += count.load(Relaxed);
        }
        self.sum += histogram.sum_micros.load(Relaxed) as f64 / 1e6;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound, cumulative count)` pairs ending with +Inf, as the encoder wants them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                running += count;
                (
                    self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                    running,
                )
            })
            .collect()
    }
}

/// Everything one shard counts. Fields are indexed by the enums above (`as usize`).
#[derive(Debug)]
pub struct ShardCounters {
    pub connections: [AtomicU64; Listener::ALL.len()],
    pub sessions_open: [AtomicI64; Listener::ALL.len()],
    pub accepted: [AtomicU64; Source::ALL.len()],
    pub accepted_bytes: [AtomicU64; Source::ALL.len()],
    pub refused: [AtomicU64; Refusal::ALL.len()],
    pub deliveries: [[AtomicU64; Outcome::ALL.len()]; Transport::ALL.len()],
    /// Messages in this shard's queue with recipients still pending.
    pub queue_messages: AtomicI64,
    /// Recipients of those messages still pending.
    pub queue_recipients: AtomicI64,
    /// When the oldest of them was accepted (Unix seconds), 0 when there is none.
    pub queue_oldest: AtomicU64,
    pub delivery_latency: AtomicHistogram,
    pub commit_batch: AtomicHistogram,
    pub fsync_latency: AtomicHistogram,
    /// The shard's queue is recovered and its listeners serve (for /healthz).
    pub ready: std::sync::atomic::AtomicBool,
}

impl Default for ShardCounters {
    fn default() -> Self {
        ShardCounters {
            connections: Default::default(),
            sessions_open: Default::default(),
            accepted: Default::default(),
            accepted_bytes: Default::default(),
            refused: Default::default(),
            deliveries: Default::default(),
            queue_messages: AtomicI64::new(0),
            queue_recipients: AtomicI64::new(0),
            queue_oldest: AtomicU64::new(0),
            delivery_latency: AtomicHistogram::new(LATENCY_BUCKETS),
            commit_batch: AtomicHistogram::new(BATCH_BUCKETS),
            fsync_latency: AtomicHistogram::new(FSYNC_BUCKETS),
            ready: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_sum() {
        let h = AtomicHistogram::new(&[1.0, 10.0]);
        for value in [0.5, 1.0, 3.0, 10.0, 11.0, 100.0] {
            h.observe(value);
        }
        let mut totals = HistogramTotals::empty(h.bounds());
        totals.add(&h);
        totals.add(&h);
        assert_eq!(totals.counts, vec![4, 4, 4]);
        assert_eq!(totals.count(), 12);
        assert!((totals.sum - 2.0 * 125.5).abs() < 1e-6);
        assert_eq!(
            totals.cumulative(),
            vec![(1.0, 4), (10.0, 8), (f64::INFINITY, 12)]
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = Refusal::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Refusal::ALL.len());
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in declaration order");
        }
        for (i, l) in Listener::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i);
        }
    }
}
