//! One scrape: the shard slots summed, plus what the shards reported about their destinations,
//! written in the OpenMetrics/Prometheus text format by `prometheus-client`'s encoder (a
//! [`Collector`] over plain numbers, so nothing here takes a lock or touches a shard).

use super::counters::{
    BATCH_BUCKETS, FSYNC_BUCKETS, HistogramTotals, LATENCY_BUCKETS, Listener, Outcome, Refusal,
    Source, Transport,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;

/// One destination as its owner shard reported it at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSample {
    pub destination: String,
    /// Connections open or opening to it.
    pub connections: u64,
    /// Jobs (messages) waiting for a connection.
    pub queued: u64,
    /// Delivery attempts deferred since the server started.
    pub deferrals: u64,
}

/// Everything one scrape writes.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub shards: usize,
    pub connections: Vec<u64>,
    pub sessions_open: Vec<i64>,
    /// `[shard][source]`.
    pub accepted: Vec<Vec<u64>>,
    pub accepted_bytes: Vec<u64>,
    pub refused: Vec<u64>,
    /// `[transport][outcome]`.
    pub deliveries: Vec<Vec<u64>>,
    /// Per shard.
    pub queue_messages: Vec<i64>,
    pub queue_recipients: Vec<i64>,
    pub ready: Vec<bool>,
    /// Acceptance time (Unix seconds) of the oldest unfinished message, if any.
    pub queue_oldest: Option<u64>,
    pub delivery_latency: HistogramTotals,
    pub commit_batch: HistogramTotals,
    pub fsync_latency: HistogramTotals,
    pub destinations: Vec<DestinationSample>,
    /// Unix seconds at the scrape, for the age.
    pub now: u64,
}

impl Scrape {
    /// Sums every slot now. `destinations` come from the shards (see `http::shard_service`).
    pub fn take(destinations: Vec<DestinationSample>, now: u64) -> Scrape {
        let shards = super::shard_count();
        let mut scrape = Scrape {
            shards,
            connections: vec![0; Listener::ALL.len()],
            sessions_open: vec![0; Listener::ALL.len()],
            accepted: vec![vec![0; Source::ALL.len()]; shards + 1],
            accepted_bytes: vec![0; Source::ALL.len()],
            refused: vec![0; Refusal::ALL.len()],
            deliveries: vec![vec![0; Outcome::ALL.len()]; Transport::ALL.len()],
            queue_messages: vec![0; shards],
            queue_recipients: vec![0; shards],
            ready: vec![false; shards],
            queue_oldest: None,
            delivery_latency: HistogramTotals::empty(LATENCY_BUCKETS),
            commit_batch: HistogramTotals::empty(BATCH_BUCKETS),
            fsync_latency: HistogramTotals::empty(FSYNC_BUCKETS),
            destinations,
            now,
        };
        for index in 0..=shards {
            let Some(c) = super::slot(index) else {
                continue;
            };
            for (total, value) in scrape.connections.iter_mut().zip(&c.connections) {
                *total += value.load(Relaxed);
            }
            for (total, value) in scrape.sessions_open.iter_mut().zip(&c.sessions_open) {
                *total += value.load(Relaxed);
            }
            if let Some(row) = scrape.accepted.get_mut(index) {
                for (total, value) in row.iter_mut().zip(&c.accepted) {
                    *total += value.load(Relaxed);
                }
            }
            for (total, value) in scrape.accepted_bytes.iter_mut().zip(&c.accepted_bytes) {
                *total += value.load(Relaxed);
            }
            for (total, value) in scrape.refused.iter_mut().zip(&c.refused) {
                *total += value.load(Relaxed);
            }
            for (row, values) in scrape.deliveries.iter_mut().zip(&c.deliveries) {
                for (total, value) in row.iter_mut().zip(values) {
                    *total += value.load(Relaxed);
                }
            }
            if index < shards {
                scrape.queue_messages[index] = c.queue_messages.load(Relaxed).max(0);
                scrape.queue_recipients[index] = c.queue_recipients.load(Relaxed).max(0);
                scrape.ready[index] = c.ready.load(Relaxed);
            }
            let oldest = c.queue_oldest.load(Relaxed);
            if oldest != 0 {
                scrape.queue_oldest = Some(scrape.queue_oldest.map_or(oldest, |o| o.min(oldest)));
            }
            scrape.delivery_latency.add(&c.delivery_latency);
            scrape.commit_batch.add(&c.commit_batch);
            scrape.fsync_latency.add(&c.fsync_latency);
        }
        scrape
    }
}

/// The scrape in the text exposition format.
pub fn encode(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapeCollector(scrape)));
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct ScrapeCollector(Scrape);

type Labels<'a> = Vec<(&'static str, String)>;

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'static>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'static>, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            // No `{}` for a metric without labels.
            ConstGauge::new(value).encode(metric)?;
            return Ok(());
        }
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    totals: &HistogramTotals,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(totals.sum, totals.count(), &totals.cumulative(), None)
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let e = &mut encoder;
        counter(
            e,
            "ringmail_connections",
            "Connections accepted, by listener (refused ones included).",
            Listener::ALL.iter().map(|l| {
                (
                    vec![("listener", l.name().to_string())],
                    s.connections[*l as usize],
                )
            }),
        )?;
        gauge(
            e,
            "ringmail_sessions_open",
            "Sessions open now, by listener.",
            Listener::ALL.iter().map(|l| {
                (
                    vec![("listener", l.name().to_string())],
                    s.sessions_open[*l as usize],
                )
            }),
        )?;
        let mut accepted = Vec::new();
        for (shard, row) in s.accepted.iter().enumerate() {
            let shard_name = if shard < s.shards {
                shard.to_string()
            } else {
                "none".to_string()
            };
            for source in Source::ALL {
                let value = row[source as usize];
                // The extra slot (sidecar threads) rarely counts anything; leave it out then.
                if shard >= s.shards && value == 0 {
                    continue;
                }
                accepted.push((
                    vec![
                        ("source", source.name().to_string()),
                        ("shard", shard_name.clone()),
                    ],
                    value,
                ));
            }
        }
        counter(
            e,
            "ringmail_messages_accepted",
            "Messages made durable in the queue, by how they came in and the shard whose queue holds them.",
            accepted,
        )?;
        counter(
            e,
            "ringmail_message_bytes_accepted",
            "Bytes of the messages accepted, by how they came in.",
            Source::ALL.iter().map(|src| {
                (
                    vec![("source", src.name().to_string())],
                    s.accepted_bytes[*src as usize],
                )
            }),
        )?;
        counter(
            e,
            "ringmail_refused",
            "Refusals (recipients, messages, connections, logins), by reason.",
            Refusal::ALL.iter().map(|r| {
                (
                    vec![("reason", r.name().to_string())],
                    s.refused[*r as usize],
                )
            }),
        )?;
        let mut deliveries = Vec::new();
        for transport in Transport::ALL {
            for outcome in Outcome::ALL {
                deliveries.push((
                    vec![
                        ("transport", transport.name().to_string()),
                        ("outcome", outcome.name().to_string()),
                    ],
                    s.deliveries[transport as usize][outcome as usize],
                ));
            }
        }
        counter(
            e,
            "ringmail_deliveries",
            "Recipient delivery attempts, by transport and outcome.",
            deliveries,
        )?;
        gauge(
            e,
            "ringmail_queue_messages",
            "Messages in the queue with recipients still to deliver, per shard.",
            s.queue_messages
                .iter()
                .enumerate()
                .map(|(i, v)| (vec![("shard", i.to_string())], *v)),
        )?;
        gauge(
            e,
            "ringmail_queue_recipients",
            "Recipients still to deliver, per shard.",
            s.queue_recipients
                .iter()
                .enumerate()
                .map(|(i, v)| (vec![("shard", i.to_string())], *v)),
        )?;
        let age = s
            .queue_oldest
            .map_or(0, |oldest| s.now.saturating_sub(oldest));
        gauge(
            e,
            "ringmail_queue_oldest_age_seconds",
            "Age of the oldest message with recipients still to deliver (0 when none).",
            [(Vec::new(), i64::try_from(age).unwrap_or(i64::MAX))],
        )?;
        gauge(
            e,
            "ringmail_shard_ready",
            "1 when the shard has recovered its queue and serves.",
            s.ready
                .iter()
                .enumerate()
                .map(|(i, r)| (vec![("shard", i.to_string())], i64::from(*r))),
        )?;
        histogram(
            e,
            "ringmail_delivery_latency_seconds",
            "Time from acceptance to a recipient's final outcome (success or failure).",
            &s.delivery_latency,
        )?;
        histogram(
            e,
            "ringmail_commit_batch_records",
            "Queue records written per group commit (one fdatasync round).",
            &s.commit_batch,
        )?;
        histogram(
            e,
            "ringmail_fsync_duration_seconds",
            "Time one group commit's fdatasync round took.",
            &s.fsync_latency,
        )?;
        gauge(
            e,
            "ringmail_destination_connections",
            "SMTP connections open or opening to a destination (its owner shard's count).",
            s.destinations
                .iter()
                .filter(|d| d.connections > 0)
                .map(|d| {
                    (
                        vec![("destination", d.destination.clone())],
                        d.connections as i64,
                    )
                }),
        )?;
        gauge(
            e,
            "ringmail_destination_queued",
            "Messages waiting for a connection to a destination.",
            s.destinations.iter().filter(|d| d.queued > 0).map(|d| {
                (
                    vec![("destination", d.destination.clone())],
                    d.queued as i64,
                )
            }),
        )?;
        counter(
            e,
            "ringmail_destination_deferrals",
            "Recipient delivery attempts deferred, per destination.",
            s.destinations
                .iter()
                .filter(|d| d.deferrals > 0)
                .map(|d| (vec![("destination", d.destination.clone())], d.deferrals)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_text_format() {
        let mut latency = HistogramTotals::empty(LATENCY_BUCKETS);
        latency.counts[0] = 3;
        latency.sum = 1.5;
        let scrape = Scrape {
            shards: 1,
            connections: vec![5, 0, 1, 0, 0],
            sessions_open: vec![2, 0, 0, 0, 0],
            accepted: vec![vec![4, 0, 1, 0], vec![0, 0, 0, 0]],
            accepted_bytes: vec![4000, 0, 900, 0],
            refused: vec![0; Refusal::ALL.len()],
            deliveries: vec![vec![3, 0, 1], vec![0, 2, 0]],
            queue_messages: vec![1],
            queue_recipients: vec![2],
            ready: vec![true],
            queue_oldest: Some(100),
            delivery_latency: latency,
            commit_batch: HistogramTotals::empty(BATCH_BUCKETS),
            fsync_latency: HistogramTotals::empty(FSYNC_BUCKETS),
            destinations: vec![DestinationSample {
                destination: "example.org".into(),
                connections: 1,
                queued: 0,
                deferrals: 7,
            }],
            now: 160,
        };
        let text = encode(scrape);
        for line in [
            "# TYPE ringmail_connections counter",
            "ringmail_connections_total{listener=\"smtp\"} 5",
            "ringmail_sessions_open{listener=\"smtp\"} 2",
            "ringmail_messages_accepted_total{source=\"smtp\",shard=\"0\"} 4",
            "ringmail_messages_accepted_total{source=\"bounce\",shard=\"0\"} 1",
            "ringmail_deliveries_total{transport=\"local\",outcome=\"failure\"} 1",
            "ringmail_deliveries_total{transport=\"remote\",outcome=\"deferral\"} 2",
            "ringmail_queue_oldest_age_seconds 60",
            "ringmail_delivery_latency_seconds_bucket{le=\"1.0\"} 3",
            "ringmail_delivery_latency_seconds_count 3",
            "ringmail_destination_connections{destination=\"example.org\"} 1",
            "ringmail_destination_deferrals_total{destination=\"example.org\"} 7",
            "ringmail_shard_ready{shard=\"0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // The extra slot's zero rows are left out.
        assert!(!text.contains("shard=\"none\""));
        assert!(text.ends_with("# EOF\n"));
    }
}
