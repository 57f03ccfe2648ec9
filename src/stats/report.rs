//! Adding events up into a [`Report`], and printing it as text or JSON.

use super::parse::{Event, Outcome, parse_message, split_line};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Only lines with `since <= time < until` count (Unix seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub since: Option<f64>,
    pub until: Option<f64>,
}

impl Window {
    fn contains(&self, at: f64) -> bool {
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at < u)
    }
}

/// Upper bounds (seconds) of the delivery-time buckets, as zddist groups them.
pub const TIME_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21_600.0, 86_400.0,
];

/// How many destinations and reasons the report lists.
const TOP: usize = 10;

/// The totals over the lines read.
#[derive(Debug, Default)]
pub struct Report {
    pub messages: u64,
    pub bytes: u64,
    pub recipients: u64,
    pub bounces: u64,
    pub successes: u64,
    pub deferrals: u64,
    pub failures: u64,
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// Seconds from queueing to the final outcome, one per final delivery with a known start.
    times: Vec<f64>,
    /// Per recipient domain: (successes, deferrals, failures).
    domains: HashMap<String, [u64; 3]>,
    /// Failure and deferral texts (with the attempt counter cut off) and how often.
    failure_reasons: HashMap<String, u64>,
    deferral_reasons: HashMap<String, u64>,
    /// `new msg` time of messages seen, until their `end msg`.
    started: HashMap<String, f64>,
}

impl Report {
    /// Adds one log line (lines that are no mail event are skipped).
    pub fn add_line(&mut self, line: &str, window: &Window) {
        let Some((at, message)) = split_line(line) else {
            return;
        };
        if !window.contains(at) {
            return;
        }
        let Some(event) = parse_message(&message) else {
            return;
        };
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        match event {
            Event::NewMessage {
                id,
                bytes,
                recipients,
                ..
            } => {
                self.messages += 1;
                self.bytes += bytes;
                self.recipients += recipients;
                self.started.insert(id, at);
            }
            Event::Bounce { id } => {
                self.bounces += 1;
                self.started.insert(id, at);
            }
            Event::End { id } => {
                self.started.remove(&id);
            }
            Event::Delivery {
                id,
                recipient,
                outcome,
                text,
            } => {
                let domain = recipient
                    .rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_ascii_lowercase();
                let counts = self.domains.entry(domain).or_default();
                match outcome {
                    Outcome::Success => {
                        self.successes += 1;
                        counts[0] += 1;
                    }
                    Outcome::Deferral => {
                        self.deferrals += 1;
                        counts[1] += 1;
                        *self.deferral_reasons.entry(reason(&text)).or_default() += 1;
                    }
                    Outcome::Failure => {
                        self.failures += 1;
                        counts[2] += 1;
                        *self.failure_reasons.entry(reason(&text)).or_default() += 1;
                    }
                }
                if outcome != Outcome::Deferral
                    && let Some(start) = self.started.get(&id)
                {
                    self.times.push((at - start).max(0.0));
                }
            }
        }
    }

    /// `(upper bound or None for the rest, count)` of the delivery times.
    pub fn time_distribution(&self) -> Vec<(Option<f64>, u64)> {
        let mut counts = vec![0u64; TIME_BUCKETS.len() + 1];
        for t in &self.times {
            let slot = TIME_BUCKETS
                .iter()
                .position(|b| t <= b)
                .unwrap_or(TIME_BUCKETS.len());
            counts[slot] += 1;
        }
        counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| (TIME_BUCKETS.get(i).copied(), c))
            .collect()
    }

    fn average_time(&self) -> Option<f64> {
        (!self.times.is_empty()).then(|| self.times.iter().sum::<f64>() / self.times.len() as f64)
    }

    /// The busiest destinations: (domain, successes, deferrals, failures), most attempts first.
    pub fn top_destinations(&self) -> Vec<(String, [u64; 3])> {
        let mut list: Vec<(String, [u64; 3])> =
            self.domains.iter().map(|(d, c)| (d.clone(), *c)).collect();
        list.sort_by(|a, b| {
            let total = |c: &[u64; 3]| c.iter().sum::<u64>();
            total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0))
        });
        list.truncate(TOP);
        list
    }

    /// The commonest failure (or deferral) texts, most frequent first.
    pub fn top_reasons(&self, failures: bool) -> Vec<(String, u64)> {
        let map = if failures {
            &self.failure_reasons
        } else {
            &self.deferral_reasons
        };
        let mut list: Vec<(String, u64)> = map.iter().map(|(r, c)| (r.clone(), *c)).collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        list.truncate(TOP);
        list
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "first": self.first.map(|t| crate::clock::iso_datetime(t as u64)),
            "last": self.last.map(|t| crate::clock::iso_datetime(t as u64)),
            "messages": self.messages,
            "bytes": self.bytes,
            "recipients": self.recipients,
            "bounces": self.bounces,
            "successes": self.successes,
            "deferrals": self.deferrals,
            "failures": self.failures,
            "delivery_time": {
                "count": self.times.len(),
                "average_seconds": self.average_time(),
                "buckets": self.time_distribution().iter().map(|(bound, count)| json!({
                    "le": bound.map_or(Value::String("+Inf".into()), |b| json!(b)),
                    "count": count,
                })).collect::<Vec<_>>(),
            },
            "top_destinations": self.top_destinations().iter().map(|(domain, c)| json!({
                "domain": domain, "successes": c[0], "deferrals": c[1], "failures": c[2],
            })).collect::<Vec<_>>(),
            "top_failure_reasons": self.top_reasons(true).iter()
                .map(|(reason, count)| json!({"reason": reason, "count": count}))
                .collect::<Vec<_>>(),
            "top_deferral_reasons": self.top_reasons(false).iter()
                .map(|(reason, count)| json!({"reason": reason, "count": count}))
                .collect::<Vec<_>>(),
        })
    }

    /// The report as text, zoverall-style.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let date =
            |t: Option<f64>| t.map_or("-".to_string(), |t| crate::clock::iso_datetime(t as u64));
        let _ = writeln!(
            out,
            "Basic statistics ({} to {})",
            date(self.first),
            date(self.last)
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "messages queued:        {}", self.messages);
        let _ = writeln!(out, "bytes in messages:      {}", self.bytes);
        let _ = writeln!(out, "recipients:             {}", self.recipients);
        let _ = writeln!(out, "bounces queued:         {}", self.bounces);
        let _ = writeln!(out, "delivery successes:     {}", self.successes);
        let _ = writeln!(out, "delivery deferrals:     {}", self.deferrals);
        let _ = writeln!(out, "delivery failures:      {}", self.failures);
        let _ = writeln!(out);
        let _ = writeln!(out, "Delivery time (queued to success or failure)");
        match self.average_time() {
            Some(avg) => {
                let _ = writeln!(
                    out,
                    "deliveries timed: {}, average {avg:.2} s",
                    self.times.len()
                );
            }
            None => {
                let _ = writeln!(out, "no delivery could be timed");
            }
        }
        let mut running = 0;
        let total = self.times.len().max(1) as f64;
        for (bound, count) in self.time_distribution() {
            running += count;
            let label = bound.map_or("more".to_string(), |b| format!("<= {b} s"));
            let _ = writeln!(
                out,
                "  {label:>12}  {count:>8}  {:>6.2}% cumulative",
                running as f64 * 100.0 / total
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "Top destinations (success / deferral / failure)");
        for (domain, c) in self.top_destinations() {
            let _ = writeln!(out, "  {:>8} {:>8} {:>8}  {domain}", c[0], c[1], c[2]);
        }
        for (title, failures) in [
            ("Top failure reasons", true),
            ("Top deferral reasons", false),
        ] {
            let _ = writeln!(out);
            let _ = writeln!(out, "{title}");
            for (reason, count) in self.top_reasons(failures) {
                let _ = writeln!(out, "  {count:>8}  {reason}");
            }
        }
        out
    }
}

/// A delivery text without the per-attempt parts (`(attempt 3, next ...)`, `; giving up
/// after N attempts`), so equal causes group together.
fn reason(text: &str) -> String {
    let text = text.split("; giving up after").next().unwrap_or(text);
    let text = match text.rfind(" (attempt ") {
        Some(at) => &text[..at],
        None => text,
    };
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with known content, text and JSON lines mixed.
    const LOG: &str = "\
2026-11-25 10:00:00.000 ringmail-shard-0 info: ringmail started: 2 shards, hostname mx.test
2026-11-25 10:00:01.000 ringmail-shard-0 info: new msg 1.0.0: from <a@x.test> via 127.0.0.1:5000, 1000 bytes, 2 recipients
2026-11-25 10:00:01.500 ringmail-shard-0 info: delivery 1.0.0 to u@example.test: success: /m/new/1
2026-11-25 10:00:03.000 ringmail-shard-0 warn: delivery 1.0.0 to v@far.test: deferral: 421 4.4.2 timeout (attempt 1, next Wed, 25 Nov 2026 10:01:03 +0000)
{\"ts\":\"2026-11-25T10:00:04.000Z\",\"level\":\"info\",\"thread\":\"ringmail-shard-1\",\"msg\":\"new msg 1.1.0: from <> via http 127.0.0.1:6000, 500 bytes, 1 recipients\"}
{\"ts\":\"2026-11-25T10:00:10.000Z\",\"level\":\"warn\",\"thread\":\"ringmail-shard-1\",\"msg\":\"delivery 1.1.0 to w@far.test: failure: 550 5.1.1 no such user\"}
2026-11-25 10:01:03.000 ringmail-shard-0 warn: delivery 1.0.0 to v@far.test: deferral: 421 4.4.2 timeout (attempt 2, next Wed, 25 Nov 2026 10:03:03 +0000)
2026-11-25 10:03:03.000 ringmail-shard-0 info: delivery 1.0.0 to v@far.test: success: 250 ok
2026-11-25 10:03:03.001 ringmail-shard-0 info: end msg 1.0.0
2026-11-25 10:03:04.000 ringmail-shard-1 info: bounce msg 2.1.0 for msg 1.1.0 to <a@x.test>
not a log line at all
2026-11-25 10:03:05.000 ringmail-shard-1 info: delivery 2.1.0 to a@x.test: failure: 550 5.1.1 no such user; giving up after 3 attempts
";

    fn report(window: Window) -> Report {
        let mut report = Report::default();
        for line in LOG.lines() {
            report.add_line(line, &window);
        }
        report
    }

    #[test]
    fn known_log_gives_known_totals() {
        let r = report(Window::default());
        assert_eq!(
            (r.messages, r.bytes, r.recipients, r.bounces),
            (2, 1500, 3, 1)
        );
        assert_eq!((r.successes, r.deferrals, r.failures), (2, 2, 2));
        // u: 0.5 s; w: 6 s; v: 182 s; the bounce's failure: 1 s.
        let dist = r.time_distribution();
        assert_eq!(dist[0], (Some(1.0), 2));
        assert_eq!(dist[3], (Some(10.0), 1));
        assert_eq!(dist[6], (Some(300.0), 1));
        assert_eq!(dist.iter().map(|(_, c)| c).sum::<u64>(), 4);
        assert_eq!(r.top_destinations()[0], ("far.test".to_string(), [1, 2, 1]));
        assert_eq!(
            r.top_reasons(true),
            vec![("550 5.1.1 no such user".to_string(), 2)]
        );
        assert_eq!(
            r.top_reasons(false),
            vec![("421 4.4.2 timeout".to_string(), 2)]
        );
        let json = r.to_json();
        assert_eq!(json["messages"], 2);
        assert_eq!(json["delivery_time"]["count"], 4);
        let text = r.to_text();
        assert!(text.contains("messages queued:        2\n"), "{text}");
        assert!(text.contains("delivery failures:      2\n"), "{text}");
    }

    #[test]
    fn the_window_cuts_lines() {
        let since = crate::stats::parse_time("2026-11-25", "10:00:02").unwrap();
        let until = crate::stats::parse_time("2026-11-25", "10:01:00").unwrap();
        let r = report(Window {
            since: Some(since),
            until: Some(until),
        });
        assert_eq!((r.messages, r.bytes), (1, 500));
        assert_eq!((r.successes, r.deferrals, r.failures), (0, 1, 1));
    }
}
