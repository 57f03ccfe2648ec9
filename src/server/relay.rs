//! The relay side of a shard's wiring: the resolver settings and the owner of the destinations
//! this shard owns, from the configuration (the route step is `Router::from_config`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Config, TlsPolicySetting};
use crate::dns::DnsSettings;
use crate::relay::backoff::BackoffRules;
use crate::relay::client::{ClientSettings, TlsMode};
use crate::relay::destination::OwnerSettings;
use crate::relay::pools::Pools;
use crate::relay::shaping::ShapingRules;
use crate::relay::shaping::redis_limit::RedisLimiter;
use crate::relay::shaping::state::Shaping;

/// The resolver settings (`[dns]`); the loader checked the addresses.
pub fn dns_settings(config: &Config) -> DnsSettings {
    DnsSettings {
        nameservers: config
            .dns
            .nameservers
            .iter()
            .filter_map(|s| s.parse::<SocketAddr>().ok())
            .collect(),
        timeout: Duration::from_secs(config.dns.timeout_secs),
        attempts: config.dns.attempts,
    }
}

/// The destination owner's settings for one of `shard_count` shards.
pub fn owner_settings(config: &Config, shard_count: usize) -> Result<OwnerSettings, String> {
    let relay = &config.relay;
    let helo = if relay.helo_name.is_empty() {
        config.server.hostname.clone()
    } else {
        relay.helo_name.clone()
    };
    let client = ClientSettings::new(
        helo,
        Duration::from_secs(relay.connect_timeout_secs),
        Duration::from_secs(relay.greeting_timeout_secs),
        Duration::from_secs(relay.command_timeout_secs),
        Duration::from_secs(relay.data_timeout_secs),
        relay.tls_ca_file.as_deref(),
    )?;
    Ok(OwnerSettings {
        client,
        mx_port: relay.port,
        per_destination: relay.max_connections_per_destination,
        // Each shard owns an equal share of the global limit, so it holds without a lock.
        per_shard: relay.max_connections.div_ceil(shard_count.max(1)),
        max_messages_per_connection: relay.max_messages_per_connection,
        max_recipients_per_transaction: relay.max_recipients_per_transaction,
        idle: Duration::from_secs(relay.connection_idle_secs),
        host_backoff: Duration::from_secs(relay.host_backoff_secs),
        tls_default: tls_mode(relay.tls),
        tls_policy: relay
            .tls_policy
            .iter()
            .map(|(domain, policy)| (domain.to_ascii_lowercase(), tls_mode(*policy)))
            .collect::<HashMap<_, _>>(),
    })
}

/// One owner shard's traffic shaping: the rules, backoff rules and pools of `[relay]`, the
/// shared limits in Redis when configured, and the board it publishes suspensions on.
pub fn shaping(setup: &super::Setup, shard: usize) -> Result<Shaping, String> {
    let relay = &setup.config.relay;
    let backoff =
        BackoffRules::from_config(relay).map_err(|(key, message)| format!("{key}: {message}"))?;
    let redis = setup
        .redis
        .clone()
        .map(|client| RedisLimiter::new(client, setup.config.redis.key_prefix.clone()));
    Ok(Shaping::new(
        ShapingRules::from_config(relay),
        backoff,
        Pools::from_config(relay),
        redis,
        std::sync::Arc::clone(&setup.suspensions),
        shard,
    ))
}

fn tls_mode(setting: TlsPolicySetting) -> TlsMode {
    match setting {
        TlsPolicySetting::None => TlsMode::None,
        TlsPolicySetting::Opportunistic => TlsMode::Opportunistic,
        TlsPolicySetting::Verify => TlsMode::Verify,
    }
}
