//! The owner shard's shaping state: per key and per (key, source address), the open
//! connections, the rate limiter, and the suspensions and slowdowns that backoff rules set.
//! All of it lives on the one shard that owns the key (see the module docs of `shaping`), in
//! plain `RefCell`s.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::warn;

use super::gcra::{Gcra, Pace};
use super::redis_limit::RedisLimiter;
use super::{Limits, ShapingKey, ShapingRules};
use crate::config::BackoffScope;
use crate::relay::backoff::{Action, BackoffRules};
use crate::relay::pools::{PoolId, Pools, RoundRobin, SourceId};
use crate::relay::suspensions::{Hold, HoldKind, SuspensionBoard};

/// A suspension or slowdown in force.
#[derive(Debug, Clone)]
struct Timed {
    until: Instant,
    public: Hold,
}

#[derive(Debug, Default)]
struct Restrictions {
    suspended: Option<Timed>,
    slowed: Option<(Timed, Pace)>,
}

impl Restrictions {
    fn suspended_for(&self, now: Instant) -> Option<Duration> {
        self.suspended
            .as_ref()
            .filter(|t| t.until > now)
            .map(|t| t.until - now)
    }

    fn slow_pace(&self, now: Instant) -> Option<Pace> {
        self.slowed
            .as_ref()
            .filter(|(t, _)| t.until > now)
            .map(|(_, pace)| *pace)
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.suspended_for(now).is_none() && self.slow_pace(now).is_none()
    }
}

#[derive(Debug, Default)]
struct KeyState {
    restrictions: Restrictions,
    /// Jobs in this key's queues that no worker has taken yet.
    queued: usize,
}

#[derive(Debug, Default)]
struct SourceState {
    connections: usize,
    gcra: Gcra,
    restrictions: Restrictions,
}

/// Why a job may not be sent now and will not wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TooLong {
    Suspended(Duration),
    Rate(Duration),
}

/// One shard's shaping: the rules, and the state of the keys it owns.
pub struct Shaping {
    pub rules: ShapingRules,
    pub backoff: BackoffRules,
    pub pools: Pools,
    redis: Option<RedisLimiter>,
    board: Arc<SuspensionBoard>,
    shard: usize,
    keys: RefCell<HashMap<ShapingKey, KeyState>>,
    sources: RefCell<HashMap<(ShapingKey, SourceId), SourceState>>,
    round_robin: RefCell<HashMap<(PoolId, ShapingKey), RoundRobin>>,
}

impl Shaping {
    pub fn new(
        rules: ShapingRules,
        backoff: BackoffRules,
        pools: Pools,
        redis: Option<RedisLimiter>,
        board: Arc<SuspensionBoard>,
        shard: usize,
    ) -> Shaping {
        Shaping {
            rules,
            backoff,
            pools,
            redis,
            board,
            shard,
            keys: RefCell::new(HashMap::new()),
            sources: RefCell::new(HashMap::new()),
            round_robin: RefCell::new(HashMap::new()),
        }
    }

    pub fn limits(&self, key: &ShapingKey) -> Limits {
        self.rules.limits(key)
    }

    /// A job for `key` arrives from `pool`. `Err` when the jobs already waiting would keep it
    /// past `shaping_max_wait_secs` (the caller defers it without using up a retry).
    pub fn admit(&self, key: &ShapingKey, pool: PoolId) -> Result<(), TooLong> {
        let now = Instant::now();
        let mut keys = self.keys.borrow_mut();
        let state = keys.entry(key.clone()).or_default();
        if let Some(left) = state.restrictions.suspended_for(now)
            && left > self.rules.max_wait
        {
            return Err(TooLong::Suspended(left));
        }
        let pace = self.pace(key, None, &state.restrictions, now);
        if let Some(pace) = pace {
            let sources = self.pools.members(pool).len().max(1) as u32;
            let ahead = u32::try_from(state.queued).unwrap_or(u32::MAX);
            let wait = pace.interval.saturating_mul(ahead) / sources;
            if wait > self.rules.max_wait {
                return Err(TooLong::Rate(wait));
            }
        }
        state.queued += 1;
        Ok(())
    }

    /// A worker took a job that [`Shaping::admit`] let in.
    pub fn taken(&self, key: &ShapingKey) {
        if let Some(state) = self.keys.borrow_mut().get_mut(key) {
            state.queued = state.queued.saturating_sub(1);
        }
    }

    /// Chooses the source for a new connection to `key` from `pool`, and counts it: the next
    /// source by weight that is under its connection limit, preferring those not suspended.
    /// `None` when every source is at the limit.
    pub fn open_connection(&self, key: &ShapingKey, pool: PoolId) -> Option<SourceId> {
        let limit = self.limits(key).max_connections;
        let now = Instant::now();
        let members = self.pools.members(pool);
        let mut sources = self.sources.borrow_mut();
        let has_room = |sources: &HashMap<(ShapingKey, SourceId), SourceState>, s: SourceId| {
            let open = sources
                .get(&(key.clone(), s))
                .map_or(0, |st| st.connections);
            limit.is_none_or(|max| open < max)
        };
        let mut round_robin = self.round_robin.borrow_mut();
        let rr = round_robin.entry((pool, key.clone())).or_default();
        let picked = rr
            .pick(members, |s| {
                has_room(&sources, s)
                    && sources
                        .get(&(key.clone(), s))
                        .is_none_or(|st| st.restrictions.suspended_for(now).is_none())
            })
            .or_else(|| rr.pick(members, |s| has_room(&sources, s)))?;
        sources
            .entry((key.clone(), picked))
            .or_default()
            .connections += 1;
        Some(picked)
    }

    /// A connection (or a worker that was to open one) has ended.
    pub fn close_connection(&self, key: &ShapingKey, source: SourceId) {
        let now = Instant::now();
        let mut sources = self.sources.borrow_mut();
        let entry = (key.clone(), source);
        if let Some(state) = sources.get_mut(&entry) {
            state.connections = state.connections.saturating_sub(1);
            if state.connections == 0 && state.gcra.is_idle(now) && state.restrictions.is_idle(now)
            {
                sources.remove(&entry);
            }
        }
        drop(sources);
        let mut keys = self.keys.borrow_mut();
        if keys
            .get(key)
            .is_some_and(|k| k.queued == 0 && k.restrictions.is_idle(now))
        {
            keys.remove(key);
        }
    }

    /// Waits through any suspension of `key` (or of `source` at it), without taking a turn at
    /// the rate: before connecting, so a suspended destination gets no connection either.
    pub async fn wait_unsuspended(
        &self,
        key: &ShapingKey,
        source: SourceId,
    ) -> Result<(), TooLong> {
        loop {
            let now = Instant::now();
            let suspended = {
                let keys = self.keys.borrow();
                let sources = self.sources.borrow();
                [
                    keys.get(key).map(|k| &k.restrictions),
                    sources.get(&(key.clone(), source)).map(|s| &s.restrictions),
                ]
                .into_iter()
                .flatten()
                .filter_map(|r| r.suspended_for(now))
                .max()
            };
            match suspended {
                None => return Ok(()),
                Some(left) if left > self.rules.max_wait => return Err(TooLong::Suspended(left)),
                Some(left) => glommio::timer::sleep(left).await,
            }
        }
    }

    /// Waits until one more message may go to `key` from `source`: through any suspension and
    /// the rate. `Err` when that would take longer than `shaping_max_wait_secs`. Called just
    /// before the transaction, on an open connection, so that the pace is the pace at which
    /// messages reach the provider (not connection set-ups, whose time varies).
    pub async fn wait_turn(&self, key: &ShapingKey, source: SourceId) -> Result<(), TooLong> {
        loop {
            let now = Instant::now();
            let (suspended, pace) = {
                let keys = self.keys.borrow();
                let sources = self.sources.borrow();
                let key_r = keys.get(key).map(|k| &k.restrictions);
                let src_r = sources.get(&(key.clone(), source)).map(|s| &s.restrictions);
                let suspended = [key_r, src_r]
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.suspended_for(now))
                    .max();
                let pace = self.pace(key, src_r, key_r.unwrap_or(&Restrictions::default()), now);
                (suspended, pace)
            };
            if let Some(left) = suspended {
                if left > self.rules.max_wait {
                    return Err(TooLong::Suspended(left));
                }
                glommio::timer::sleep(left).await;
                continue;
            }
            let Some(pace) = pace else {
                return Ok(());
            };
            let wait = match self.take_shared(key, source, pace).await {
                Some(turn) => turn,
                None => self.take_local(key, source, pace, now),
            };
            match wait {
                Ok(()) => return Ok(()),
                Err(wait) if wait > self.rules.max_wait => return Err(TooLong::Rate(wait)),
                Err(wait) => glommio::timer::sleep(wait).await,
            }
        }
    }

    fn take_local(
        &self,
        key: &ShapingKey,
        source: SourceId,
        pace: Pace,
        now: Instant,
    ) -> Result<(), Duration> {
        self.sources
            .borrow_mut()
            .entry((key.clone(), source))
            .or_default()
            .gcra
            .try_take(now, pace)
    }

    async fn take_shared(
        &self,
        key: &ShapingKey,
        source: SourceId,
        pace: Pace,
    ) -> Option<Result<(), Duration>> {
        let redis = self.redis.as_ref()?;
        // The unbound source is "this operator's mail", shared by every node; a bound address
        // is counted on its own, as the provider sees it.
        let name = match self.pools.source(source).address {
            Some(ip) => format!("{}|{ip}", key_name(key)),
            None => key_name(key),
        };
        redis.try_take(&name, pace).await
    }

    /// The strictest pace for `key` (and `source`): its limits, and any slowdown in force.
    fn pace(
        &self,
        key: &ShapingKey,
        source: Option<&Restrictions>,
        key_restrictions: &Restrictions,
        now: Instant,
    ) -> Option<Pace> {
        [
            self.limits(key).pace,
            key_restrictions.slow_pace(now),
            source.and_then(|r| r.slow_pace(now)),
        ]
        .into_iter()
        .flatten()
        .reduce(Pace::stricter)
    }

    /// Applies every backoff rule `reply` matches, for `key` and the `source` that heard it.
    /// Returns whether it suspended anything (the caller then closes the connection).
    pub fn observe_reply(&self, key: &ShapingKey, source: SourceId, reply: &str) -> bool {
        if self.backoff.is_empty() {
            return false;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut suspended = false;
        let mut changed = false;
        for rule in self.backoff.matching(reply) {
            let source_text = self.pools.source(source).address.map(|ip| ip.to_string());
            let public = |kind: HoldKind| Hold {
                destination: key.to_string(),
                source: match rule.scope {
                    BackoffScope::Source => source_text.clone(),
                    BackoffScope::Destination => None,
                },
                kind,
                until: wall + rule.duration,
                rule: rule.name.clone(),
                reply: reply.chars().take(200).collect(),
            };
            let mut keys = self.keys.borrow_mut();
            let mut sources = self.sources.borrow_mut();
            let restrictions = match rule.scope {
                BackoffScope::Destination => &mut keys.entry(key.clone()).or_default().restrictions,
                BackoffScope::Source => {
                    &mut sources
                        .entry((key.clone(), source))
                        .or_default()
                        .restrictions
                }
            };
            let until = now + rule.duration;
            match rule.action {
                Action::Suspend => {
                    if restrictions
                        .suspended
                        .as_ref()
                        .is_none_or(|t| t.until < until)
                    {
                        restrictions.suspended = Some(Timed {
                            until,
                            public: public(HoldKind::Suspended),
                        });
                    }
                    suspended = true;
                }
                Action::Slow(pace) => {
                    restrictions.slowed = Some((
                        Timed {
                            until,
                            public: public(HoldKind::Slowed(pace.interval)),
                        },
                        pace,
                    ));
                }
            }
            changed = true;
            warn!(
                "relay to {key}: backoff rule {} matched `{reply}`: {} for {} s",
                rule.name,
                match rule.action {
                    Action::Suspend => "suspended",
                    Action::Slow(_) => "slowed",
                },
                rule.duration.as_secs()
            );
        }
        if changed {
            self.publish(now);
        }
        suspended
    }

    /// Copies this shard's holds to the board.
    fn publish(&self, now: Instant) {
        let keys = self.keys.borrow();
        let sources = self.sources.borrow();
        let mut holds = Vec::new();
        for restrictions in keys
            .values()
            .map(|k| &k.restrictions)
            .chain(sources.values().map(|s| &s.restrictions))
        {
            if let Some(t) = restrictions.suspended.as_ref().filter(|t| t.until > now) {
                holds.push(t.public.clone());
            }
            if let Some((t, _)) = restrictions.slowed.as_ref().filter(|(t, _)| t.until > now) {
                holds.push(t.public.clone());
            }
        }
        self.board.publish(self.shard, holds);
    }
}

/// The key's name in Redis: `provider:google`, `domain:example.com`.
fn key_name(key: &ShapingKey) -> String {
    match key {
        ShapingKey::Provider(name) => format!("provider:{name}"),
        ShapingKey::Domain(name) => format!("domain:{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping(text: &str) -> (Shaping, Arc<SuspensionBoard>) {
        let config = crate::config::load_str(text, "test").expect("config");
        let board = SuspensionBoard::new(1);
        let shaping = Shaping::new(
            ShapingRules::from_config(&config.relay),
            BackoffRules::from_config(&config.relay).expect("rules"),
            Pools::from_config(&config.relay),
            None,
            Arc::clone(&board),
            0,
        );
        (shaping, board)
    }

    const POOL: &str = "[relay]\ndefault_pool = \"p\"\nshaping_max_wait_secs = 2\n\
        [relay.pools.p]\nsources = [{ address = \"127.0.0.2\" }, { address = \"127.0.0.3\" }]\n";

    fn key() -> ShapingKey {
        ShapingKey::Domain("d.test".into())
    }

    #[test]
    fn connection_limits_hold_per_source() {
        let (s, _) = shaping(&format!(
            "{POOL}[relay.shaping.\"d.test\"]\nmax_connections = 1\n"
        ));
        let pool = s.pools.pool_for_sender("a@b.test");
        let first = s.open_connection(&key(), pool).unwrap();
        let second = s.open_connection(&key(), pool).unwrap();
        assert_ne!(first, second, "one connection from each source");
        assert_eq!(s.open_connection(&key(), pool), None);
        s.close_connection(&key(), first);
        assert_eq!(s.open_connection(&key(), pool), Some(first));
        // Another key has limits of its own.
        let other = ShapingKey::Domain("e.test".into());
        assert!(s.open_connection(&other, pool).is_some());
    }

    #[test]
    fn backoff_suspends_a_destination_or_one_source() {
        let (s, board) = shaping(&format!(
            "{POOL}[relay.backoff.all]\nprefix = \"421 4.7.28\"\naction = \"suspend\"\nseconds = 60\n\
             [relay.backoff.one]\nprefix = \"421 RP-001\"\naction = \"suspend\"\nseconds = 60\n\
             scope = \"source\"\n"
        ));
        let pool = s.pools.pool_for_sender("a@b.test");
        let first = s.open_connection(&key(), pool).unwrap();
        assert!(s.observe_reply(&key(), first, "421 RP-001 (BAY004) Unfortunately"));
        s.close_connection(&key(), first);
        // The suspended source is passed over while the other may connect.
        let next = s.open_connection(&key(), pool).unwrap();
        assert_ne!(next, first);
        assert!(s.admit(&key(), pool).is_ok());
        let holds = board.snapshot(SystemTime::now());
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].source.as_deref(), Some("127.0.0.2"));
        // A destination-wide suspension longer than the longest wait turns jobs away at once.
        assert!(!s.observe_reply(&key(), next, "250 2.0.0 ok"));
        assert!(s.observe_reply(&key(), next, "421 4.7.28 slow down"));
        assert!(matches!(s.admit(&key(), pool), Err(TooLong::Suspended(_))));
        assert_eq!(board.snapshot(SystemTime::now()).len(), 2);
        let other = ShapingKey::Domain("e.test".into());
        assert!(s.admit(&other, pool).is_ok());
    }

    #[test]
    fn a_slow_rule_lowers_the_rate_for_its_time() {
        let (s, board) = shaping(
            "[relay]\nshaping_max_wait_secs = 2\n[relay.backoff.rp]\nprefix = \"421 RP-001\"\n\
             action = \"slow\"\nmessages_per_second = 1\nseconds = 60\n",
        );
        // No limit of its own: any number of jobs may queue.
        for _ in 0..5 {
            assert_eq!(s.admit(&key(), 0), Ok(()));
        }
        assert!(!s.observe_reply(&key(), 0, "421 RP-001 slow down"));
        // Slowed to 1/s: five jobs ahead are five seconds, more than the longest wait.
        assert_eq!(
            s.admit(&key(), 0),
            Err(TooLong::Rate(Duration::from_secs(5)))
        );
        let holds = board.snapshot(SystemTime::now());
        assert_eq!(holds.len(), 1);
        assert!(
            holds[0]
                .describe(SystemTime::now())
                .starts_with("slowed to 60/min: d.test for "),
            "{:?}",
            holds[0]
        );
    }

    #[test]
    fn jobs_that_would_wait_too_long_are_turned_away() {
        let (s, _) = shaping(
            "[relay]\nshaping_max_wait_secs = 2\n[relay.shaping.\"d.test\"]\nmessages_per_second = 1\n",
        );
        // One source: 0, 1 and 2 seconds of jobs ahead are within the wait; 3 are not.
        for _ in 0..3 {
            assert_eq!(s.admit(&key(), 0), Ok(()));
        }
        assert_eq!(
            s.admit(&key(), 0),
            Err(TooLong::Rate(Duration::from_secs(3)))
        );
        s.taken(&key());
        assert_eq!(s.admit(&key(), 0), Ok(()));
    }
}
