//! Failed-login rate limiting, per client IP and per user name, for POP3 and SMTP AUTH alike.
//!
//! One [`SharedLimiter`] serves every shard, so N shards do not give a client N times the
//! budget. Its lock is taken only when a login fails, and when a login is checked while some
//! failure is on record; a server without failed logins never touches it, and no command other
//! than a login ever does (DESIGN.md: no lock on a shard's hot path). A blocked login gets the
//! same reply and delay as a wrong password, so a blocked client learns nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures counted over this window.
    pub window: Duration,
    /// Failures from one IP within the window before its logins are refused.
    pub max_per_ip: u32,
    /// Failures for one user name within the window before its logins are refused.
    pub max_per_user: u32,
    /// Entries kept per table (memory cap); the oldest are dropped first.
    pub max_entries: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            window: Duration::from_secs(600),
            max_per_ip: 20,
            max_per_user: 10,
            max_entries: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Per-shard failure counters.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    config: LimiterConfig,
    by_ip: HashMap<IpAddr, Window>,
    by_user: HashMap<String, Window>,
}

fn failures<K: Hash + Eq>(
    map: &HashMap<K, Window>,
    key: &K,
    now: Instant,
    window: Duration,
) -> u32 {
    match map.get(key) {
        Some(w) if now.duration_since(w.start) < window => w.failures,
        _ => 0,
    }
}

fn bump<K: Hash + Eq>(map: &mut HashMap<K, Window>, key: K, now: Instant, cfg: &LimiterConfig) {
    if map.len() >= cfg.max_entries && !map.contains_key(&key) {
        map.retain(|_, w| now.duration_since(w.start) < cfg.window);
        if map.len() >= cfg.max_entries {
            // Still full of live entries: forget the oldest one.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(_, w)| w.start)
            {
                map.retain(|_, w| w.start != oldest);
            }
        }
    }
    let w = map.entry(key).or_insert(Window {
        start: now,
        failures: 0,
    });
    if now.duration_since(w.start) >= cfg.window {
        *w = Window {
            start: now,
            failures: 0,
        };
    }
    w.failures += 1;
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(config: LimiterConfig) -> Self {
        LoginLimiter {
            config,
            ..Default::default()
        }
    }

    /// True when a login from `ip` as `user` must be refused without checking.
    pub fn is_blocked(&self, ip: IpAddr, user: &str, now: Instant) -> bool {
        let w = self.config.window;
        failures(&self.by_ip, &ip, now, w) >= self.config.max_per_ip
            || failures(&self.by_user, &user.to_ascii_lowercase(), now, w)
                >= self.config.max_per_user
    }

    /// Counts one failed login.
    pub fn record_failure(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let cfg = self.config;
        bump(&mut self.by_ip, ip, now, &cfg);
        bump(&mut self.by_user, user.to_ascii_lowercase(), now, &cfg);
    }
}

/// The failed-login counters of the whole server, shared by every shard and both protocols.
/// Cloning shares the same counters.
#[derive(Debug, Clone)]
pub struct SharedLimiter {
    inner: Arc<SharedInner>,
}

#[derive(Debug)]
struct SharedInner {
    /// Set on the first recorded failure: until then no check needs the lock.
    any_failures: AtomicBool,
    limiter: Mutex<LoginLimiter>,
}

impl SharedLimiter {
    pub fn new(config: LimiterConfig) -> SharedLimiter {
        SharedLimiter {
            inner: Arc::new(SharedInner {
                any_failures: AtomicBool::new(false),
                limiter: Mutex::new(LoginLimiter::new(config)),
            }),
        }
    }

    /// True when a login from `ip` as `user` must be refused without checking.
    pub fn is_blocked(&self, ip: IpAddr, user: &str, now: Instant) -> bool {
        if !self.inner.any_failures.load(Ordering::Acquire) {
            return false;
        }
        self.lock().is_blocked(ip, user, now)
    }

    /// Counts one failed login.
    pub fn record_failure(&self, ip: IpAddr, user: &str, now: Instant) {
        self.lock().record_failure(ip, user, now);
        self.inner.any_failures.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        // The counters stay consistent even if a holder panicked: each update is one insert.
        self.inner
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for SharedLimiter {
    fn default() -> Self {
        SharedLimiter::new(LimiterConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_per_ip_and_per_user_then_expires() {
        let cfg = LimiterConfig {
            window: Duration::from_secs(60),
            max_per_ip: 3,
            max_per_user: 2,
            max_entries: 100,
        };
        let mut l = LoginLimiter::new(cfg);
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        l.record_failure(a, "bob", t0);
        assert!(!l.is_blocked(a, "bob", t0));
        l.record_failure(a, "BOB", t0);
        assert!(l.is_blocked(b, "bob", t0), "per user");
        assert!(!l.is_blocked(a, "carol", t0));
        l.record_failure(a, "carol", t0);
        assert!(l.is_blocked(a, "dave", t0), "per ip");
        assert!(!l.is_blocked(b, "dave", t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!l.is_blocked(a, "bob", later));
    }

    #[test]
    fn shared_limiter_counts_across_threads() {
        let cfg = LimiterConfig {
            max_per_ip: 4,
            ..LimiterConfig::default()
        };
        let shared = SharedLimiter::new(cfg);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert!(!shared.is_blocked(ip, "u", now));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let shared = shared.clone();
                std::thread::spawn(move || shared.record_failure(ip, &format!("u{i}"), now))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            shared.is_blocked(ip, "anyone", now),
            "four failures on four threads"
        );
    }

    #[test]
    fn caps_memory() {
        let cfg = LimiterConfig {
            max_entries: 4,
            ..LimiterConfig::default()
        };
        let mut l = LoginLimiter::new(cfg);
        let now = Instant::now();
        for i in 0..20u8 {
            l.record_failure(IpAddr::from([10, 0, 0, i]), &format!("u{i}"), now);
        }
        assert!(l.by_ip.len() <= 4 && l.by_user.len() <= 4);
    }
}
