//! Traffic shaping: per-destination and per-provider limits on connections, messages per
//! connection and message rate, held across shards (and, with Redis, across nodes).
//!
//! # Where a limit lives
//!
//! Every remote job has a *shaping key*: the provider its domain's MX hosts belong to
//! (`google` for every Google-hosted domain: the MX rollup), else the domain itself (or the
//! static route's host). The key, not the domain, decides the owner shard
//! (`ShapingKey::owner_hash`), so one shard holds all of a provider's limits and counts them
//! without a lock, whichever shard queued the mail.
//!
//! The rollup needs the MX answer before the owner is known, so the *origin* shard classifies:
//! a domain with a rule of its own (`[relay.shaping."example.com"]`) is its own key at once;
//! otherwise the origin asks the resolver for the MX hosts (hickory caches them; the origin
//! also remembers each domain's key for [`KEY_CACHE_TTL`]) and matches their names against the
//! providers' suffixes. The alternative, letting the domain's owner resolve and forward the job
//! to the provider's owner, costs a second mesh hop per job and a forwarding path on the
//! owner; the origin's lookup costs one sidecar round trip per domain per few minutes. Should
//! the DNS fail at the origin, the domain is its own key and its owner reports the failure.
//!
//! # What is counted
//!
//! Providers count per sending IP, so the limits hold per *(source address, key)*: with a pool
//! of two addresses, a `max_connections = 10` provider sees at most 10 connections from each.
//! Without pools there is one source (the kernel's choice), and the limits are simply per key.
//! `relay.max_connections_per_destination` still caps connections to each domain as well.
//!
//! Rates are paced by GCRA (`gcra`): a job over its rate waits at the owner (it is neither
//! deferred nor failed) while other keys flow at full speed. A job that would wait longer than
//! `relay.shaping_max_wait_secs` is deferred without using up a retry, so waiting jobs never
//! hold all of a shard's delivery slots. With `[redis] url`, the rate is counted in Redis
//! (`redis_limit`) so several nodes share it; connection limits stay per node.

pub mod gcra;
pub mod providers;
pub mod redis_limit;
pub mod state;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::config::{RelaySection, ShapingSetting};
use crate::relay::Destination;
use gcra::Pace;
use providers::BUILTIN_PROVIDERS;

/// How long an origin shard trusts its own classification of a domain before asking again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(300);

/// What the limits of a job are counted against, and what decides its owner shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShapingKey {
    /// A provider of the MX rollup, by name.
    Provider(String),
    /// One destination domain (or a static route's host), lowercased.
    Domain(String),
}

impl ShapingKey {
    /// A stable hash (FNV-1a), so every shard picks the same owner for the key.
    pub fn owner_hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            ShapingKey::Provider(name) => {
                eat(b"provider:");
                eat(name.as_bytes());
            }
            ShapingKey::Domain(domain) => {
                eat(b"domain:");
                eat(domain.as_bytes());
            }
        }
        hash
    }

    /// The name limits are configured under.
    pub fn name(&self) -> &str {
        match self {
            ShapingKey::Provider(name) | ShapingKey::Domain(name) => name,
        }
    }
}

impl fmt::Display for ShapingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShapingKey::Provider(name) => write!(f, "provider {name}"),
            ShapingKey::Domain(domain) => f.write_str(domain),
        }
    }
}

/// The limits of one key, per source address. `None`: no limit of that kind here (the
/// global `[relay]` settings still apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: Option<usize>,
    pub max_messages_per_connection: Option<usize>,
    pub pace: Option<Pace>,
}

impl Limits {
    fn from_setting(setting: &ShapingSetting) -> Limits {
        let positive = |n: Option<usize>| n.filter(|&n| n > 0);
        Limits {
            max_connections: positive(setting.max_connections),
            max_messages_per_connection: positive(setting.max_messages_per_connection),
            pace: Pace::from_rates(
                setting.messages_per_second,
                setting.messages_per_minute,
                setting.messages_per_hour,
                setting.burst,
            ),
        }
    }
}

/// Every shaping rule, built once from `[relay]`; each shard holds a copy.
#[derive(Debug, Clone, Default)]
pub struct ShapingRules {
    /// Provider name and its MX host suffixes (lowercase, each starting with a dot).
    providers: Vec<(String, Vec<String>)>,
    /// Limits by key name (a domain or a provider).
    limits: HashMap<String, Limits>,
    /// `*`: limits for every domain without a rule or provider of its own, each on its own.
    every_domain: Option<Limits>,
    /// Domains with a rule of their own: they are never rolled up.
    own_rules: std::collections::HashSet<String>,
    pub max_wait: Duration,
}

impl ShapingRules {
    /// The rules of `[relay]`: the built-in providers, overridden key by key by
    /// `relay.providers` and `relay.shaping`. The loader has validated the names.
    pub fn from_config(relay: &RelaySection) -> ShapingRules {
        let mut providers: Vec<(String, Vec<String>)> = BUILTIN_PROVIDERS
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    p.mx_suffixes.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        for (name, suffixes) in &relay.providers {
            // Names are case-insensitive, as the shaping keys that refer to them.
            let name = name.to_ascii_lowercase();
            let suffixes: Vec<String> = suffixes.iter().map(|s| normalize_suffix(s)).collect();
            match providers.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => *existing = suffixes,
                None => providers.push((name, suffixes)),
            }
        }
        providers.retain(|(_, suffixes)| !suffixes.is_empty());
        // Longest suffixes first, so a more specific provider wins over a broader one.
        providers.sort_by_key(|(_, suffixes)| {
            std::cmp::Reverse(suffixes.iter().map(String::len).max().unwrap_or(0))
        });

        let mut limits = HashMap::new();
        for builtin in BUILTIN_PROVIDERS {
            limits.insert(
                builtin.name.to_string(),
                Limits::from_setting(&ShapingSetting {
                    max_connections: Some(builtin.max_connections),
                    max_messages_per_connection: Some(builtin.max_messages_per_connection),
                    messages_per_minute: Some(builtin.messages_per_minute),
                    ..ShapingSetting::default()
                }),
            );
        }
        let mut every_domain = None;
        let mut own_rules = std::collections::HashSet::new();
        for (key, setting) in &relay.shaping {
            let key = key.to_ascii_lowercase();
            let merged = merge(builtin_setting(&key), setting);
            if key == "*" {
                every_domain = Some(Limits::from_setting(&merged));
                continue;
            }
            if key.contains('.') {
                own_rules.insert(key.clone());
            }
            limits.insert(key, Limits::from_setting(&merged));
        }
        ShapingRules {
            providers,
            limits,
            every_domain,
            own_rules,
            max_wait: Duration::from_secs(relay.shaping_max_wait_secs),
        }
    }

    /// The key of `destination` when it can be told without the MX hosts: a static route's
    /// host, a domain with a rule of its own, or any domain when no provider is defined.
    /// `None`: classify by the MX hosts ([`ShapingRules::key_from_mx`]).
    pub fn key_without_mx(&self, destination: &Destination) -> Option<ShapingKey> {
        match destination {
            Destination::Static { host, .. } => Some(ShapingKey::Domain(host.clone())),
            Destination::Mx { domain }
                if self.providers.is_empty() || self.own_rules.contains(domain) =>
            {
                Some(ShapingKey::Domain(domain.clone()))
            }
            Destination::Mx { .. } => None,
        }
    }

    /// The key of `domain` given its MX host names: the provider of the first host that has
    /// one, else the domain.
    pub fn key_from_mx<'a>(
        &self,
        domain: &str,
        mx_hosts: impl IntoIterator<Item = &'a str>,
    ) -> ShapingKey {
        mx_hosts
            .into_iter()
            .find_map(|host| self.provider_of(host))
            .map(|name| ShapingKey::Provider(name.to_string()))
            .unwrap_or_else(|| ShapingKey::Domain(domain.to_string()))
    }

    /// The provider whose suffixes `host` ends in.
    pub fn provider_of(&self, host: &str) -> Option<&str> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.providers
            .iter()
            .find(|(_, suffixes)| {
                suffixes
                    .iter()
                    .any(|s| host.ends_with(s.as_str()) || host == s[1..])
            })
            .map(|(name, _)| name.as_str())
    }

    /// The limits for `key`: its own rule, or for a domain without one, the `*` rule.
    pub fn limits(&self, key: &ShapingKey) -> Limits {
        match self.limits.get(key.name()) {
            Some(limits) => *limits,
            None if matches!(key, ShapingKey::Domain(_)) => self.every_domain.unwrap_or_default(),
            None => Limits::default(),
        }
    }
}

/// `.example.com` (lowercase, leading dot) from `example.com` or `.Example.COM.`.
fn normalize_suffix(suffix: &str) -> String {
    let s = suffix.trim().trim_end_matches('.').to_ascii_lowercase();
    if s.starts_with('.') {
        s
    } else {
        format!(".{s}")
    }
}

/// The built-in settings of a provider name (none for anything else).
fn builtin_setting(name: &str) -> ShapingSetting {
    BUILTIN_PROVIDERS
        .iter()
        .find(|p| p.name == name)
        .map(|p| ShapingSetting {
            max_connections: Some(p.max_connections),
            max_messages_per_connection: Some(p.max_messages_per_connection),
            messages_per_minute: Some(p.messages_per_minute),
            ..ShapingSetting::default()
        })
        .unwrap_or_default()
}

/// `over`'s keys where set, `base`'s elsewhere.
fn merge(base: ShapingSetting, over: &ShapingSetting) -> ShapingSetting {
    ShapingSetting {
        max_connections: over.max_connections.or(base.max_connections),
        max_messages_per_connection: over
            .max_messages_per_connection
            .or(base.max_messages_per_connection),
        messages_per_second: over.messages_per_second.or(base.messages_per_second),
        messages_per_minute: over.messages_per_minute.or(base.messages_per_minute),
        messages_per_hour: over.messages_per_hour.or(base.messages_per_hour),
        burst: over.burst.or(base.burst),
    }
}

/// The provider names a shaping key may use: built-ins and `relay.providers`.
pub fn provider_names(relay: &RelaySection) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_PROVIDERS
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    names.extend(relay.providers.keys().map(|name| name.to_ascii_lowercase()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(text: &str) -> RelaySection {
        let config = crate::config::load_str(text, "test").expect("config");
        config.relay
    }

    fn mx(domain: &str) -> Destination {
        Destination::Mx {
            domain: domain.into(),
        }
    }

    #[test]
    fn mx_hosts_roll_up_into_providers() {
        let rules = ShapingRules::from_config(&relay(
            "[relay.providers]\nRollup = [\"Rollup.Test\"]\nicloud = []\n\
             [relay.shaping.rollup]\nmax_connections = 1\n",
        ));
        let cases: &[(&[&str], ShapingKey)] = &[
            (
                &["alt1.gmail-smtp-in.l.google.com", "x.other"],
                ShapingKey::Provider("google".into()),
            ),
            (
                &["example-com.mail.protection.outlook.com."],
                ShapingKey::Provider("outlook".into()),
            ),
            (&["mx1.rollup.test"], ShapingKey::Provider("rollup".into())),
            (&["rollup.test"], ShapingKey::Provider("rollup".into())),
            (&["notrollup.test"], ShapingKey::Domain("d.test".into())),
            // Turned off by an empty list.
            (
                &["mx01.mail.icloud.com"],
                ShapingKey::Domain("d.test".into()),
            ),
            (&[], ShapingKey::Domain("d.test".into())),
        ];
        for (hosts, want) in cases {
            assert_eq!(
                &rules.key_from_mx("d.test", hosts.iter().copied()),
                want,
                "{hosts:?}"
            );
        }
        let rollup = rules.limits(&ShapingKey::Provider("rollup".into()));
        assert_eq!(rollup.max_connections, Some(1));
    }

    #[test]
    fn own_rules_and_static_routes_need_no_mx() {
        let rules = ShapingRules::from_config(&relay(
            "[relay.shaping.\"slow.test\"]\nmax_connections = 2\nmessages_per_minute = 100\n",
        ));
        assert_eq!(
            rules.key_without_mx(&mx("slow.test")),
            Some(ShapingKey::Domain("slow.test".into()))
        );
        assert_eq!(rules.key_without_mx(&mx("other.test")), None);
        let fixed = Destination::Static {
            host: "smarthost.test".into(),
            port: 25,
        };
        assert_eq!(
            rules.key_without_mx(&fixed),
            Some(ShapingKey::Domain("smarthost.test".into()))
        );
        let limits = rules.limits(&ShapingKey::Domain("slow.test".into()));
        assert_eq!(limits.max_connections, Some(2));
        assert_eq!(limits.pace.unwrap().interval, Duration::from_millis(600));
        assert_eq!(
            rules.limits(&ShapingKey::Domain("other.test".into())),
            Limits::default()
        );
    }

    #[test]
    fn config_overrides_builtin_defaults_key_by_key() {
        let rules = ShapingRules::from_config(&relay(
            "[relay.shaping.google]\nmax_connections = 3\n[relay.shaping.\"*\"]\nmessages_per_second = 10\n",
        ));
        let google = rules.limits(&ShapingKey::Provider("google".into()));
        assert_eq!(google.max_connections, Some(3));
        assert_eq!(google.max_messages_per_connection, Some(100));
        let yahoo = rules.limits(&ShapingKey::Provider("yahoo".into()));
        assert_eq!(yahoo.pace.unwrap().interval, Duration::from_millis(100));
        let any = rules.limits(&ShapingKey::Domain("any.test".into()));
        assert_eq!(any.pace.unwrap().interval, Duration::from_millis(100));
        assert_eq!(any.max_connections, None);
    }

    #[test]
    fn keys_hash_stably_and_apart() {
        let g = ShapingKey::Provider("google".into());
        assert_eq!(g.owner_hash(), g.clone().owner_hash());
        assert_ne!(
            g.owner_hash(),
            ShapingKey::Domain("google".into()).owner_hash()
        );
    }
}
