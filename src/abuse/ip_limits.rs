//! Per-client-IP counters shared by every shard: concurrent SMTP sessions and messages per
//! minute. Counting per shard would give N shards N times the budget; a lock would put every
//! shard's accept behind one mutex. So the counters are a fixed table of atomics, indexed by a
//! hash of the client's address, that every shard updates with compare-and-swap.
//!
//! Two clients whose addresses hash to the same slot share its budget: a collision can only
//! make a limit stricter, never looser, and with [`SLOTS`] slots it needs far more distinct
//! clients than one server sees at once. An IPv6 client is counted by its /64, the smallest
//! network one subscriber is given (RFC 6177), so rotating addresses inside it gains nothing;
//! an IPv4-mapped IPv6 client counts as its IPv4 address.
//!
//! Messages are counted in fixed one-minute windows (the minute of the Unix clock): a client
//! can send at most twice its budget across a window boundary, which is the usual price of a
//! counter that fits in one atomic word.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots in the table (a power of two). 16384 × 12 bytes: under 200 KiB for the server.
pub const SLOTS: usize = 1 << 14;

#[derive(Default)]
struct Slot {
    sessions: AtomicU32,
    /// `(minute << 32) | messages in that minute`.
    messages: AtomicU64,
}

/// The server's per-IP counters; one per server, shared by `Arc`.
pub struct IpTable {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for IpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IpTable({} slots)", self.slots.len())
    }
}

impl Default for IpTable {
    fn default() -> Self {
        IpTable::new()
    }
}

/// One session counted against its IP; the count drops when this does.
#[derive(Debug)]
pub struct IpSessionGuard {
    table: Arc<IpTable>,
    slot: usize,
}

impl Drop for IpSessionGuard {
    fn drop(&mut self) {
        self.table.slots[self.slot]
            .sessions
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl IpTable {
    pub fn new() -> IpTable {
        IpTable {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Counts a new session from `ip` unless `limit` sessions are open already.
    pub fn open_session(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<IpSessionGuard> {
        let slot = slot_of(ip);
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let counter = &self.slots[slot].sessions;
        let mut current = counter.load(Ordering::Acquire);
        loop {
            if current >= limit {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(IpSessionGuard {
                        table: Arc::clone(self),
                        slot,
                    });
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Sessions open from `ip` (and any address sharing its slot).
    pub fn sessions(&self, ip: IpAddr) -> u32 {
        self.slots[slot_of(ip)].sessions.load(Ordering::Acquire)
    }

    /// Counts one message from `ip` in the minute of `unix_secs`; false (and nothing counted)
    /// when `limit` messages were already counted in that minute. A `limit` of 0 is no limit.
    pub fn count_message(&self, ip: IpAddr, unix_secs: u64, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let minute = (unix_secs / 60) & u64::from(u32::MAX);
        let counter = &self.slots[slot_of(ip)].messages;
        let mut current = counter.load(Ordering::Acquire);
        loop {
            let (seen_minute, count) = (current >> 32, current & u64::from(u32::MAX));
            let next = if seen_minute != minute {
                (minute << 32) | 1
            } else if count >= u64::from(limit) {
                return false;
            } else {
                current + 1
            };
            match counter.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// The slot of a client: IPv4 (mapped or not) by its address, IPv6 by its /64.
fn slot_of(ip: IpAddr) -> usize {
    let key: u128 = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64) | (1 << 127),
        },
    };
    // A multiply-xorshift mix (SplitMix64's finaliser) of both halves: neighbouring addresses
    // land far apart.
    let mut x = (key as u64) ^ ((key >> 64) as u64).rotate_left(32);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x as usize) & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn sessions_are_capped_and_released() {
        let table = Arc::new(IpTable::new());
        let a = table.open_session(ip("192.0.2.1"), 2).unwrap();
        let _b = table.open_session(ip("::ffff:192.0.2.1"), 2).unwrap();
        assert!(table.open_session(ip("192.0.2.1"), 2).is_none());
        // Another client has its own budget.
        assert!(table.open_session(ip("192.0.2.2"), 2).is_some());
        drop(a);
        assert!(table.open_session(ip("192.0.2.1"), 2).is_some());
        // The same /64 is one client; another /64 is not.
        let _c = table.open_session(ip("2001:db8:1:2::1"), 1).unwrap();
        assert!(table.open_session(ip("2001:db8:1:2::ffff"), 1).is_none());
        assert!(table.open_session(ip("2001:db8:1:3::1"), 1).is_some());
    }

    #[test]
    fn messages_per_minute_start_again_each_minute() {
        let table = IpTable::new();
        let client = ip("198.51.100.7");
        for _ in 0..3 {
            assert!(table.count_message(client, 120, 3));
        }
        assert!(!table.count_message(client, 179, 3));
        assert!(table.count_message(client, 180, 3));
        assert!(table.count_message(client, 180, 0), "0 is no limit");
    }

    /// Two threads standing in for two shards share one budget: 2 shards do not give 2×.
    #[test]
    fn two_shards_share_one_budget() {
        let table = Arc::new(IpTable::new());
        let client = ip("203.0.113.9");
        let (sessions, messages): (Vec<_>, Vec<_>) = std::thread::scope(|s| {
            let shards: Vec<_> = (0..2)
                .map(|_| {
                    let table = Arc::clone(&table);
                    s.spawn(move || {
                        let guards: Vec<_> = (0..100)
                            .filter_map(|_| table.open_session(client, 10))
                            .collect();
                        let sent = (0..100)
                            .filter(|_| table.count_message(client, 600, 25))
                            .count();
                        (guards, sent)
                    })
                })
                .collect();
            shards.into_iter().map(|h| h.join().unwrap()).unzip()
        });
        let open: usize = sessions.iter().map(Vec::len).sum();
        assert_eq!(open, 10);
        assert_eq!(messages.iter().sum::<usize>(), 25);
        drop(sessions);
        assert_eq!(table.sessions(client), 0);
    }
}
