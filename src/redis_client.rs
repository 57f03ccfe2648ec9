//! A Redis client for the shards, on the sidecar's tokio thread (the `redis` crate needs tokio;
//! glommio's tasks are `!Send`). Like the resolver, a [`RedisClient`] is only a channel sender:
//! each request travels to the sidecar with a one-shot for its answer, so a shard never blocks,
//! and every request ends within `[redis] timeout_ms` (an unreachable Redis is an error
//! quickly, and the caller decides what that means: shaping falls back to its local limits).
//!
//! The sidecar keeps one multiplexed connection (`ConnectionManager`, which reconnects by
//! itself), opened on first use and at most once a second after a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::sidecar::Sidecar;

/// What a request may carry: a Lua script run with `EVALSHA` (loaded on first use), or any
/// command as its words.
enum Request {
    Eval {
        script: Arc<redis::Script>,
        keys: Vec<String>,
        args: Vec<String>,
        reply: flume::Sender<Result<redis::Value, String>>,
    },
    Command {
        words: Vec<Vec<u8>>,
        reply: flume::Sender<Result<redis::Value, String>>,
    },
}

/// A handle to Redis on the sidecar; cheap to clone, may be sent to every shard.
#[derive(Clone)]
pub struct RedisClient {
    requests: flume::Sender<Request>,
}

impl RedisClient {
    /// Starts the sidecar task for `url` (`redis://host:port/db`). Nothing is connected yet; a
    /// bad URL is an error now.
    pub fn start(sidecar: &Sidecar, url: &str, timeout: Duration) -> Result<RedisClient, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url}: {e}"))?;
        let (requests, incoming) = flume::unbounded::<Request>();
        sidecar.handle().spawn(serve(
            client,
            incoming,
            timeout.max(Duration::from_millis(1)),
        ));
        Ok(RedisClient { requests })
    }

    /// Runs `script` with `keys` and `args`.
    pub async fn eval(
        &self,
        script: Arc<redis::Script>,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<redis::Value, String> {
        let (reply, answer) = flume::bounded(1);
        self.requests
            .send(Request::Eval {
                script,
                keys,
                args,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.recv_async().await.map_err(|_| stopped())?
    }

    /// Runs one command, e.g. `["SISMEMBER", "key", "member"]`.
    pub async fn command(&self, words: Vec<Vec<u8>>) -> Result<redis::Value, String> {
        let (reply, answer) = flume::bounded(1);
        self.requests
            .send(Request::Command { words, reply })
            .map_err(|_| stopped())?;
        answer.recv_async().await.map_err(|_| stopped())?
    }
}

fn stopped() -> String {
    "the Redis client has stopped".to_string()
}

/// The sidecar task: one connection, each request its own task under the timeout.
async fn serve(client: redis::Client, incoming: flume::Receiver<Request>, timeout: Duration) {
    let mut manager: Option<redis::aio::ConnectionManager> = None;
    let mut last_failure: Option<Instant> = None;
    while let Ok(request) = incoming.recv_async().await {
        if manager.is_none() && last_failure.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout)
                .set_number_of_retries(1);
            match tokio::time::timeout(
                timeout * 2,
                client.get_connection_manager_with_config(config),
            )
            .await
            {
                Ok(Ok(m)) => {
                    info!("redis: connected to {}", client.get_connection_info().addr);
                    manager = Some(m);
                    last_failure = None;
                }
                Ok(Err(e)) => {
                    warn!("redis: cannot connect: {e}");
                    last_failure = Some(Instant::now());
                }
                Err(_) => {
                    warn!(
                        "redis: cannot connect within {} ms",
                        timeout.as_millis() * 2
                    );
                    last_failure = Some(Instant::now());
                }
            }
        }
        let Some(mut connection) = manager.clone() else {
            let error = Err("Redis is unreachable".to_string());
            match request {
                Request::Eval { reply, .. } | Request::Command { reply, .. } => {
                    let _ = reply.send(error);
                }
            }
            continue;
        };
        tokio::spawn(async move {
            match request {
                Request::Eval {
                    script,
                    keys,
                    args,
                    reply,
                } => {
                    let mut invocation = script.prepare_invoke();
                    for key in &keys {
                        invocation.key(key);
                    }
                    for arg in &args {
                        invocation.arg(arg);
                    }
                    let result =
                        tokio::time::timeout(timeout, invocation.invoke_async(&mut connection))
                            .await;
                    let _ = reply.send(flatten(result, timeout));
                }
                Request::Command { words, reply } => {
                    let mut command = redis::Cmd::new();
                    for word in &words {
                        command.arg(word.as_slice());
                    }
                    let result =
                        tokio::time::timeout(timeout, command.query_async(&mut connection)).await;
                    let _ = reply.send(flatten(result, timeout));
                }
            }
        });
    }
}

fn flatten(
    result: Result<redis::RedisResult<redis::Value>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Result<redis::Value, String> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
