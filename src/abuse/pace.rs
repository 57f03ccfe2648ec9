//! Slow clients (slowloris): a timeout that restarts on every byte lets a client that trickles
//! one byte every few seconds hold a session forever. Two clocks stop that, both sans-IO (the
//! driver passes the time and what it read):
//!
//! - a command line must be complete within the command timeout measured from its first byte
//!   (RFC 5321 §4.5.3.2.7 allows the server to time out "any command"), and
//! - DATA/BDAT content must arrive at a minimum average rate once a grace period has passed
//!   (the data timeout alone only bounds the gap between two reads).

use std::time::{Duration, Instant};

/// The limits, from `[smtp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceLimits {
    /// Idle time allowed between commands, and the time one command line may take in all.
    pub command_timeout: Duration,
    /// Idle time allowed between two reads of message content.
    pub data_timeout: Duration,
    /// Octets per second, averaged since the content began; 0: no minimum.
    pub min_data_rate: u64,
    /// How long content may be slower than the minimum before it counts.
    pub grace: Duration,
}

/// What the driver does after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceVerdict {
    Continue,
    /// The content is arriving slower than the minimum rate: 421 4.4.2 and close.
    TooSlow,
}

/// The two clocks of one connection.
#[derive(Debug)]
pub struct Pace {
    limits: PaceLimits,
    /// When the first byte of the command line now buffered arrived.
    line_started: Option<Instant>,
    /// When message content began, and octets read since.
    content: Option<(Instant, u64)>,
}

impl Pace {
    pub fn new(limits: PaceLimits) -> Pace {
        Pace {
            limits,
            line_started: None,
            content: None,
        }
    }

    /// How long the next read may wait. `None`: the command line's time is up already.
    pub fn read_timeout(&self, now: Instant, in_data: bool) -> Option<Duration> {
        if in_data {
            return Some(self.limits.data_timeout);
        }
        match self.line_started {
            None => Some(self.limits.command_timeout),
            Some(started) => self
                .limits
                .command_timeout
                .checked_sub(now.saturating_duration_since(started))
                .filter(|left| !left.is_zero()),
        }
    }

    /// After `read` octets arrived at `now` and the session took them: `partial_command` says
    /// a command line is still incomplete, `in_data` that message content is being read.
    pub fn after_read(
        &mut self,
        now: Instant,
        read: usize,
        partial_command: bool,
        in_data: bool,
    ) -> PaceVerdict {
        if partial_command {
            self.line_started.get_or_insert(now);
        } else {
            self.line_started = None;
        }
        if !in_data {
            self.content = None;
            return PaceVerdict::Continue;
        }
        let (started, octets) = self.content.get_or_insert((now, 0));
        *octets += read as u64;
        let elapsed = now.saturating_duration_since(*started);
        if self.limits.min_data_rate == 0 || elapsed < self.limits.grace {
            return PaceVerdict::Continue;
        }
        let needed = u128::from(self.limits.min_data_rate) * elapsed.as_millis() / 1000;
        if u128::from(*octets) < needed {
            PaceVerdict::TooSlow
        } else {
            PaceVerdict::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PaceLimits = PaceLimits {
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(60),
        min_data_rate: 100,
        grace: Duration::from_secs(5),
    };

    #[test]
    fn a_command_line_has_its_timeout_from_its_first_byte() {
        let t0 = Instant::now();
        let mut pace = Pace::new(LIMITS);
        assert_eq!(pace.read_timeout(t0, false), Some(Duration::from_secs(10)));
        // One byte a second: the deadline does not move.
        for s in 0..10 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(pace.after_read(now, 1, true, false), PaceVerdict::Continue);
            assert_eq!(
                pace.read_timeout(now, false),
                (s < 10).then(|| Duration::from_secs(10 - s))
            );
        }
        assert_eq!(pace.read_timeout(t0 + Duration::from_secs(10), false), None);
        // A complete line starts the clock again.
        let later = t0 + Duration::from_secs(9);
        pace.after_read(later, 2, false, false);
        assert_eq!(
            pace.read_timeout(later + Duration::from_secs(9), false),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn content_must_keep_the_minimum_rate_after_the_grace_period() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut slow = Pace::new(LIMITS);
        for s in 0..5 {
            assert_eq!(
                slow.after_read(at(s), 1, false, true),
                PaceVerdict::Continue
            );
        }
        assert_eq!(slow.after_read(at(6), 1, false, true), PaceVerdict::TooSlow);
        assert_eq!(
            slow.read_timeout(at(6), true),
            Some(Duration::from_secs(60))
        );

        let mut fast = Pace::new(LIMITS);
        for s in 0..30 {
            assert_eq!(
                fast.after_read(at(s), 150, false, true),
                PaceVerdict::Continue
            );
        }
        // The clock restarts with each message's content.
        fast.after_read(at(30), 0, false, false);
        assert_eq!(
            fast.after_read(at(40), 10, false, true),
            PaceVerdict::Continue
        );

        let mut unlimited = Pace::new(PaceLimits {
            min_data_rate: 0,
            ..LIMITS
        });
        assert_eq!(
            unlimited.after_read(at(100), 1, false, true),
            PaceVerdict::Continue
        );
        assert_eq!(
            unlimited.after_read(at(1000), 1, false, true),
            PaceVerdict::Continue
        );
    }
}
