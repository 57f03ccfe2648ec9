//! The board of current backoff suspensions and slowdowns, for `ringmail queue status` and the
//! metrics: each owner shard publishes its own list when it changes (a rare event: a backoff
//! rule matched), and readers off the shards take a snapshot. The shards' hot path never
//! touches it: an owner decides from its own state, and only copies it here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What a backoff rule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldKind {
    Suspended,
    /// Paced at one message per this interval.
    Slowed(Duration),
}

impl HoldKind {
    /// The metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            HoldKind::Suspended => "suspended",
            HoldKind::Slowed(_) => "slowed",
        }
    }
}

/// One suspension or slowdown in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The destination (`provider google`, `example.com`), and the source address when the
    /// rule's scope is `source`.
    pub destination: String,
    pub source: Option<String>,
    pub kind: HoldKind,
    pub until: SystemTime,
    /// The rule's name and the reply that matched it.
    pub rule: String,
    pub reply: String,
}

impl Hold {
    /// One line for `ringmail queue status`, e.g. `suspended: provider google from 127.0.0.2
    /// for 593 s more (rule gmail: 421 4.7.28 ...)`.
    pub fn describe(&self, now: SystemTime) -> String {
        let left = self
            .until
            .duration_since(now)
            .unwrap_or_default()
            .as_secs()
            .max(1);
        let what = match &self.kind {
            HoldKind::Suspended => "suspended".to_string(),
            HoldKind::Slowed(interval) => {
                format!("slowed to {:.0}/min", 60.0 / interval.as_secs_f64())
            }
        };
        let from = self
            .source
            .as_deref()
            .map(|s| format!(" from {s}"))
            .unwrap_or_default();
        format!(
            "{what}: {}{from} for {left} s more (rule {}: {})",
            self.destination, self.rule, self.reply
        )
    }
}

/// One slot per shard; shard `i` writes only slot `i`.
#[derive(Debug)]
pub struct SuspensionBoard {
    slots: Vec<Mutex<Vec<Hold>>>,
}

impl SuspensionBoard {
    pub fn new(shards: usize) -> Arc<SuspensionBoard> {
        Arc::new(SuspensionBoard {
            slots: (0..shards.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
        })
    }

    /// Replaces shard `shard`'s list.
    pub fn publish(&self, shard: usize, holds: Vec<Hold>) {
        if let Some(slot) = self.slots.get(shard) {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = holds;
        }
    }

    /// Every hold still in force at `now`, soonest end first. This is the function the metrics
    /// read.
    pub fn snapshot(&self, now: SystemTime) -> Vec<Hold> {
        let mut all: Vec<Hold> = self
            .slots
            .iter()
            .flat_map(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .filter(|hold| hold.until > now)
            .collect();
        all.sort_by_key(|hold| hold.until);
        all
    }

    /// The status lines of every hold in force now.
    pub fn status_lines(&self) -> Vec<String> {
        let now = SystemTime::now();
        self.snapshot(now)
            .iter()
            .map(|hold| hold.describe(now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_and_forgets_expired_holds() {
        let board = SuspensionBoard::new(2);
        let now = SystemTime::now();
        let hold = |destination: &str, secs: u64| Hold {
            destination: destination.into(),
            source: None,
            kind: HoldKind::Suspended,
            until: now + Duration::from_secs(secs),
            rule: "r".into(),
            reply: "421 4.7.28 slow down".into(),
        };
        board.publish(0, vec![hold("a.test", 30)]);
        board.publish(1, vec![hold("b.test", 10)]);
        let live = board.snapshot(now);
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].destination, "b.test");
        assert_eq!(board.snapshot(now + Duration::from_secs(20)).len(), 1);
        assert_eq!(
            live[1].describe(now),
            "suspended: a.test for 30 s more (rule r: 421 4.7.28 slow down)"
        );
        board.publish(0, Vec::new());
        assert_eq!(board.snapshot(now).len(), 1);
    }
}
