//! When to try a failed delivery again: qmail's quadratic retry schedule, and the queue lifetime.
//!
//! qmail-send spaces attempts so that the n-th retry comes `(n * c)^2` seconds after the message
//! arrived, with `c` = 10 s for local and 20 s for remote deliveries (its `chanskip`): early
//! retries are quick, and a week-long outage costs about 77 local or 38 remote attempts.

/// Which kind of delivery is being retried; each has its own spacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Local (Maildir) delivery: failures are usually a full disk or quota, fixed soon.
    Local,
    /// Remote (SMTP) delivery: a remote server's outage tends to last longer.
    Remote,
}

impl Channel {
    /// qmail's `chanskip`: the schedule's unit in seconds.
    pub fn skip(self) -> u64 {
        match self {
            Channel::Local => 10,
            Channel::Remote => 20,
        }
    }
}

/// How long a message may stay in the queue before its remaining recipients bounce: 7 days,
/// qmail's `queuelifetime` default.
pub const DEFAULT_QUEUE_LIFETIME: u64 = 604_800;

/// When to make the next attempt, in Unix seconds, after `attempts` attempts have been made:
/// `received_at + (attempts * c)^2`. Zero attempts means "now" (at `received_at`).
pub fn next_attempt(received_at: u64, attempts: u32, channel: Channel) -> u64 {
    let step = u64::from(attempts).saturating_mul(channel.skip());
    received_at.saturating_add(step.saturating_mul(step))
}

/// Whether a message received at `received_at` has outlived the queue at `now`.
pub fn expired(received_at: u64, now: u64, queue_lifetime: u64) -> bool {
    now.saturating_sub(received_at) >= queue_lifetime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_quadratic() {
        let t = 1_000_000;
        let table = [
            (0, Channel::Local, t),
            (1, Channel::Local, t + 100),
            (2, Channel::Local, t + 400),
            (3, Channel::Local, t + 900),
            (10, Channel::Local, t + 10_000),
            (0, Channel::Remote, t),
            (1, Channel::Remote, t + 400),
            (2, Channel::Remote, t + 1_600),
            (3, Channel::Remote, t + 3_600),
            (38, Channel::Remote, t + 577_600),
        ];
        for (attempts, channel, want) in table {
            assert_eq!(
                next_attempt(t, attempts, channel),
                want,
                "{attempts} {channel:?}"
            );
        }
    }

    #[test]
    fn schedule_saturates() {
        assert_eq!(next_attempt(u64::MAX - 5, 3, Channel::Local), u64::MAX);
        assert_eq!(next_attempt(0, u32::MAX, Channel::Remote), u64::MAX);
    }

    #[test]
    fn expiry() {
        let t = 1_000_000;
        let table = [
            (t, false),
            (t + DEFAULT_QUEUE_LIFETIME - 1, false),
            (t + DEFAULT_QUEUE_LIFETIME, true),
            (t + 10 * DEFAULT_QUEUE_LIFETIME, true),
            (t - 50, false), // a clock that stepped back does not expire anything
        ];
        for (now, want) in table {
            assert_eq!(expired(t, now, DEFAULT_QUEUE_LIFETIME), want, "now {now}");
        }
        assert!(expired(t, t, 0));
    }
}
