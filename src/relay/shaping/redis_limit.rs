//! Rate limits shared by several nodes: the same GCRA as `gcra`, run in Redis by a Lua script
//! (atomic, with Redis's own clock, so the nodes' clocks need not agree).
//!
//! When Redis is down or slow, shaping *fails open to the local limit*: the node paces by its
//! own GCRA, so each node alone still keeps the limit, and together they may exceed it by the
//! number of nodes until Redis answers again. Failing closed would turn a Redis outage into a
//! mail outage for every shaped destination. Both transitions are logged once.

use std::cell::Cell;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use log::{info, warn};

use super::gcra::Pace;
use crate::redis_client::RedisClient;

/// KEYS[1]: the limiter; ARGV[1]: interval in microseconds; ARGV[2]: burst. Returns 0 when the
/// message may go now (and counts it), else the microseconds to wait.
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - (burst - 1) * interval
if now < allowed_at then return allowed_at - now end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
"#;

static SCRIPT: LazyLock<Arc<redis::Script>> =
    LazyLock::new(|| Arc::new(redis::Script::new(GCRA_SCRIPT)));

/// One shard's access to the shared limits.
pub struct RedisLimiter {
    client: RedisClient,
    prefix: String,
    /// Whether the last request failed (so each change is logged once).
    failing: Cell<bool>,
}

impl RedisLimiter {
    pub fn new(client: RedisClient, prefix: String) -> RedisLimiter {
        RedisLimiter {
            client,
            prefix,
            failing: Cell::new(false),
        }
    }

    /// Takes one message's turn on the shared limiter `name`: `Some(Ok(()))` to go now,
    /// `Some(Err(wait))` to ask again after `wait`, `None` when Redis could not answer (the
    /// caller uses its local limiter).
    pub async fn try_take(&self, name: &str, pace: Pace) -> Option<Result<(), Duration>> {
        let key = format!("{}shape:{name}", self.prefix);
        let interval = pace.interval.as_micros().max(1).to_string();
        let answer = self
            .client
            .eval(
                Arc::clone(&SCRIPT),
                vec![key],
                vec![interval, pace.burst.to_string()],
            )
            .await;
        let wait = match answer {
            Ok(redis::Value::Int(wait)) => Ok(wait),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e),
        };
        match wait {
            Ok(wait) => {
                if self.failing.replace(false) {
                    info!("redis: answering again; shared shaping limits are back");
                }
                Some(if wait <= 0 {
                    Ok(())
                } else {
                    Err(Duration::from_micros(wait as u64))
                })
            }
            Err(e) => {
                if !self.failing.replace(true) {
                    warn!(
                        "redis: {e}; shaping falls back to this node's own limits until Redis answers"
                    );
                }
                None
            }
        }
    }
}
