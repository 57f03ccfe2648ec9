//! The rate limiter: GCRA (the generic cell rate algorithm of ATM networks, RFC-free but
//! textbook), sans-IO. A limit is a spacing between messages (`interval`) and a `burst`: after
//! a quiet spell, `burst` messages may go back to back, then one per `interval`. Any window of
//! length `w` therefore holds at most `burst - 1 + ceil(w / interval)` messages; with the
//! default burst of 1, a limit of N per minute never puts more than N messages in any 60
//! seconds. The Redis script (`redis_limit`) runs the same arithmetic, so both places agree.

use std::time::{Duration, Instant};

/// A pace: one message per `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub interval: Duration,
    pub burst: u32,
}

impl Pace {
    /// The strictest of per-second, per-minute and per-hour counts (0 or `None`: no limit);
    /// `None` when none limits.
    pub fn from_rates(
        per_second: Option<u32>,
        per_minute: Option<u32>,
        per_hour: Option<u32>,
        burst: Option<u32>,
    ) -> Option<Pace> {
        let spacing = |count: Option<u32>, period: u64| {
            count
                .filter(|&n| n > 0)
                .map(|n| Duration::from_nanos(period * 1_000_000_000 / u64::from(n)))
        };
        let interval = [
            spacing(per_second, 1),
            spacing(per_minute, 60),
            spacing(per_hour, 3600),
        ]
        .into_iter()
        .flatten()
        .max()?;
        Some(Pace {
            interval,
            burst: burst.unwrap_or(1).max(1),
        })
    }

    /// The stricter (longer interval) of two paces.
    pub fn stricter(self, other: Pace) -> Pace {
        if other.interval > self.interval {
            other
        } else {
            self
        }
    }
}

/// One limiter's state: the theoretical arrival time of the next message.
#[derive(Debug, Clone, Default)]
pub struct Gcra {
    tat: Option<Instant>,
}

impl Gcra {
    /// Takes one message's turn at `now`, or says how long until there is one.
    pub fn try_take(&mut self, now: Instant, pace: Pace) -> Result<(), Duration> {
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let tolerance = pace.interval * (pace.burst - 1);
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if now < allowed_at {
            return Err(allowed_at - now);
        }
        self.tat = Some(tat + pace.interval);
        Ok(())
    }

    /// Whether the limiter has forgotten every past message by `now` (its state can go).
    pub fn is_idle(&self, now: Instant) -> bool {
        self.tat.is_none_or(|tat| tat <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(ms: u64, burst: u32) -> Pace {
        Pace {
            interval: Duration::from_millis(ms),
            burst,
        }
    }

    #[test]
    fn rates_become_the_strictest_spacing() {
        let p = Pace::from_rates(None, Some(100), None, None).unwrap();
        assert_eq!(p.interval, Duration::from_millis(600));
        assert_eq!(p.burst, 1);
        let p = Pace::from_rates(Some(10), Some(60), Some(7200), Some(5)).unwrap();
        assert_eq!(p.interval, Duration::from_secs(1));
        assert_eq!(p.burst, 5);
        assert_eq!(Pace::from_rates(None, Some(0), None, Some(3)), None);
        assert_eq!(Pace::from_rates(None, None, None, None), None);
    }

    #[test]
    fn evenly_spaced_without_burst() {
        let start = Instant::now();
        let mut g = Gcra::default();
        let p = pace(600, 1);
        assert_eq!(g.try_take(start, p), Ok(()));
        assert_eq!(
            g.try_take(start + Duration::from_millis(100), p),
            Err(Duration::from_millis(500))
        );
        assert_eq!(g.try_take(start + Duration::from_millis(600), p), Ok(()));
        // A quiet spell earns nothing beyond the burst.
        let later = start + Duration::from_secs(60);
        assert_eq!(g.try_take(later, p), Ok(()));
        assert!(g.try_take(later, p).is_err());
        assert!(!g.is_idle(later));
        assert!(g.is_idle(later + Duration::from_millis(600)));
    }

    #[test]
    fn a_burst_then_the_pace() {
        let start = Instant::now();
        let mut g = Gcra::default();
        let p = pace(1000, 3);
        for _ in 0..3 {
            assert_eq!(g.try_take(start, p), Ok(()));
        }
        assert_eq!(g.try_take(start, p), Err(Duration::from_secs(1)));
        assert_eq!(g.try_take(start + Duration::from_secs(1), p), Ok(()));
    }

    #[test]
    fn no_window_holds_more_than_the_limit() {
        // Take as fast as allowed for 10 simulated minutes at 100/minute; count every
        // 60-second window.
        let start = Instant::now();
        let p = Pace::from_rates(None, Some(100), None, None).unwrap();
        let mut g = Gcra::default();
        let mut sent = Vec::new();
        let mut now = start;
        while now < start + Duration::from_secs(600) {
            match g.try_take(now, p) {
                Ok(()) => sent.push(now),
                Err(wait) => now += wait,
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|s| **s < *t + Duration::from_secs(60))
                .count();
            assert!(
                in_window <= 100,
                "{in_window} in the minute from message {i}"
            );
        }
    }
}
