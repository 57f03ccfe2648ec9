//! Latency percentiles, rates and the printed report lines.

use std::time::Duration;

/// Latency summary in microseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    /// Summarises samples (any order; sorted in place).
    pub fn from_samples(samples: &mut [u64]) -> Latency {
        samples.sort_unstable();
        Latency {
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            max: samples.last().copied().unwrap_or(0),
        }
    }

    /// `p50=1.234 p90=... p99=... max=...` in milliseconds, for humans.
    pub fn human(&self) -> String {
        format!(
            "p50={} p90={} p99={} max={}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }

    /// `p50_ms=.. p90_ms=.. p99_ms=.. max_ms=..`, for the RESULT line.
    pub fn machine(&self) -> String {
        format!(
            "p50_ms={} p90_ms={} p99_ms={} max_ms={}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Nearest-rank percentile of sorted samples; 0 when there are none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

/// Events per second; 0 for an empty interval.
pub fn per_second(count: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count / secs } else { 0.0 }
}

/// Decimal megabytes (10^6 bytes) per second.
pub fn mb_per_second(bytes: u64, elapsed: Duration) -> f64 {
    per_second(bytes as f64 / 1e6, elapsed)
}

/// Saturating microseconds of a duration.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Prints the first few errors to stderr and stays quiet after that, so a dead server cannot
/// flood the terminal.
pub struct ErrorSampler {
    printed: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl ErrorSampler {
    pub const fn new(limit: usize) -> Self {
        Self {
            printed: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }

    pub fn report(&self, what: &str) {
        let n = self
            .printed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < self.limit {
            eprintln!("error: {what}");
        } else if n == self.limit {
            eprintln!("error: (further errors not printed)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let hundred: Vec<u64> = (1..=100).collect();
        let cases: &[(&[u64], f64, u64)] = &[
            (&[], 50.0, 0),
            (&[7], 50.0, 7),
            (&[7], 99.0, 7),
            (&hundred, 50.0, 50),
            (&hundred, 90.0, 90),
            (&hundred, 99.0, 99),
            (&hundred, 100.0, 100),
            (&[1, 2, 3, 4], 50.0, 2),
            (&[1, 2, 3, 4], 0.0, 1),
        ];
        for (samples, p, want) in cases {
            assert_eq!(percentile(samples, *p), *want, "{samples:?} p{p}");
        }
    }

    #[test]
    fn summarises_unsorted_samples() {
        let mut samples = vec![5_000, 1_000, 3_000, 2_000, 4_000];
        let lat = Latency::from_samples(&mut samples);
        assert_eq!(lat.p50, 3_000);
        assert_eq!(lat.max, 5_000);
        assert_eq!(
            lat.machine(),
            "p50_ms=3.000 p90_ms=5.000 p99_ms=5.000 max_ms=5.000"
        );
    }

    #[test]
    fn rates() {
        assert_eq!(per_second(10.0, Duration::from_secs(2)), 5.0);
        assert_eq!(per_second(10.0, Duration::ZERO), 0.0);
        assert_eq!(mb_per_second(3_000_000, Duration::from_secs(3)), 1.0);
    }
}
