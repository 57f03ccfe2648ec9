//! Destination ownership across shards: every remote destination belongs to one shard (the hash
//! of the destination), so its connection cache, concurrency limit and downed-host backoff live
//! in one place and hold across all shards without a lock.
//!
//! The shard whose queue holds a message (the *origin*) sends each group of recipients that share
//! a destination to the owner as a [`RelayJob`] over the shard mesh. The job carries the message
//! by reference (an `Arc`, never a copy) and a one-shot channel for the outcome, which the owner
//! answers once the transaction is over. The outcome comes back over that channel rather than the
//! mesh because the mesh stops at shutdown, and a delivery that finished while the server was
//! stopping must still be recorded, or it would be sent again after the restart.
//!
//! The owner is chosen by the job's *shaping key* (its provider by MX rollup, or its domain:
//! see `shaping`), which the origin works out before the hand-off, so that every limit of a key
//! is counted on one shard. The origin also picks the job's source-IP pool from its sender.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::dns::{MxAnswer, Resolver};
use crate::relay::pools::{PoolId, Pools, find_header};
use crate::relay::shaping::{KEY_CACHE_TTL, ShapingKey, ShapingRules};

use crate::delivery::report::{DeliveryStatus, Detail, RecipientReport, StatusCode};
use crate::envelope::Envelope;
use crate::queue::MessageId;
use crate::relay::Destination;
use crate::relay::destination::Owner;

/// What shards send each other.
pub enum MeshMessage {
    /// Recipients for a destination this shard owns.
    Relay(RelayJob),
}

/// A message as the owner needs it: shared between the origin and the owner, read-only.
pub struct OutboundMessage {
    pub id: MessageId,
    pub envelope: Envelope,
    /// The message bytes as queued (CRLF line ends; a BDAT body may hold bare LFs).
    pub body: Vec<u8>,
}

/// Recipients of one message for one destination, to be sent in as few transactions as the
/// limits allow.
pub struct RelayJob {
    pub destination: Destination,
    /// What the destination's limits are counted against; it chose the owner.
    pub shaping: ShapingKey,
    /// The source-IP pool the connection comes from.
    pub pool: PoolId,
    pub message: Arc<OutboundMessage>,
    /// `(index in the envelope, address)`.
    pub recipients: Vec<(usize, String)>,
    /// Where the owner sends one report per recipient (in any order).
    pub reply: flume::Sender<Vec<(usize, RecipientReport)>>,
}

/// The origin side: hands recipients to their destination's owner and waits for the reports.
pub struct RelayTransport {
    shard: shards::ShardContext<MeshMessage>,
    shard_count: usize,
    /// Outbound jobs waiting for an outcome (for the shutdown log).
    waiting: Cell<usize>,
    rules: ShapingRules,
    pools: Pools,
    /// For the MX rollup; `None`: every domain is its own key.
    resolver: Option<Resolver>,
    /// Each domain's shaping key as this shard last worked it out, and when.
    keys: RefCell<HashMap<String, (ShapingKey, Instant)>>,
}

/// Domains remembered in [`RelayTransport`]'s key cache before it starts over.
const KEY_CACHE_SIZE: usize = 100_000;

/// How long a domain whose MX lookup failed is its own key before the origin asks again.
const FAILED_LOOKUP_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl RelayTransport {
    pub fn new(shard: shards::ShardContext<MeshMessage>) -> RelayTransport {
        let shard_count = shard.count();
        RelayTransport {
            shard,
            shard_count,
            waiting: Cell::new(0),
            rules: ShapingRules::default(),
            pools: Pools::default(),
            resolver: None,
            keys: RefCell::new(HashMap::new()),
        }
    }

    /// With the shaping rules (for the MX rollup, asking `resolver`) and the pools.
    pub fn with_shaping(mut self, rules: ShapingRules, pools: Pools, resolver: Resolver) -> Self {
        self.rules = rules;
        self.pools = pools;
        self.resolver = Some(resolver);
        self
    }

    /// The job's pool (named by the message's pool header, else by its sender's domain, else
    /// the default), and the message as it is to be sent: without the pool header, which is
    /// ours, not the recipient's.
    fn choose_pool(&self, message: Arc<OutboundMessage>) -> (PoolId, Arc<OutboundMessage>) {
        let by_sender = self.pools.pool_for_sender(&message.envelope.sender);
        let Some((name, field)) = self
            .pools
            .header()
            .and_then(|header| find_header(&message.body, header))
        else {
            return (by_sender, message);
        };
        let pool = self.pools.pool_named(&name).unwrap_or_else(|| {
            log::warn!(
                "msg {}: no pool `{name}` (its pool header); using the sender's pool",
                message.id
            );
            by_sender
        });
        let mut body = message.body.clone();
        body.drain(field);
        let stripped = OutboundMessage {
            id: message.id,
            envelope: message.envelope.clone(),
            body,
        };
        (pool, Arc::new(stripped))
    }

    /// The shard that owns `key`.
    pub fn owner_of(&self, key: &ShapingKey) -> usize {
        (key.owner_hash() % self.shard_count.max(1) as u64) as usize
    }

    /// The shaping key of `destination`: without DNS when the rules allow, else from its MX
    /// hosts (remembered for `KEY_CACHE_TTL`). A failed lookup makes the domain its own key;
    /// its owner then meets the failure itself and reports it.
    pub async fn shaping_key(&self, destination: &Destination) -> ShapingKey {
        if let Some(key) = self.rules.key_without_mx(destination) {
            return key;
        }
        let (Destination::Mx { domain }, Some(resolver)) = (destination, &self.resolver) else {
            return ShapingKey::Domain(destination.to_string());
        };
        if let Some((key, at)) = self.keys.borrow().get(domain)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return key.clone();
        }
        let (key, ttl) = match resolver.mx(domain).await {
            Ok(MxAnswer::Hosts(records)) => (
                self.rules
                    .key_from_mx(domain, records.iter().map(|mx| mx.exchange.as_str())),
                KEY_CACHE_TTL,
            ),
            Ok(_) => (ShapingKey::Domain(domain.clone()), KEY_CACHE_TTL),
            // Remembered briefly, so that a DNS outage costs each message one wait (at the
            // owner), not two.
            Err(_) => (ShapingKey::Domain(domain.clone()), FAILED_LOOKUP_TTL),
        };
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= KEY_CACHE_SIZE {
            keys.clear();
        }
        // Stored with a start time that makes it expire after `ttl` under `KEY_CACHE_TTL`.
        let at = Instant::now()
            .checked_sub(KEY_CACHE_TTL.saturating_sub(ttl))
            .unwrap_or_else(Instant::now);
        keys.insert(domain.clone(), (key.clone(), at));
        key
    }

    /// Sends `recipients` of `message` to `destination` through its owner and returns one report
    /// per recipient. If the owner cannot be reached or drops the job (shutdown), every
    /// recipient is deferred without counting as an attempt.
    pub async fn deliver(
        &self,
        destination: Destination,
        message: Arc<OutboundMessage>,
        recipients: Vec<(usize, String)>,
    ) -> Vec<(usize, RecipientReport)> {
        let indexes: Vec<usize> = recipients.iter().map(|(i, _)| *i).collect();
        let shaping = self.shaping_key(&destination).await;
        let owner = self.owner_of(&shaping);
        let (pool, message) = self.choose_pool(message);
        let (reply, outcome) = flume::bounded(1);
        let job = RelayJob {
            destination,
            shaping,
            pool,
            message,
            recipients,
            reply,
        };
        self.waiting.set(self.waiting.get() + 1);
        // Once shutdown has begun the mesh is no longer read: a job sent now would only wait
        // for the shard to end.
        let reports = if self.shard.shutdown().is_triggered() {
            None
        } else {
            match self
                .shard
                .mesh()
                .send_to(owner, MeshMessage::Relay(job))
                .await
            {
                Ok(()) => outcome.recv_async().await.ok(),
                Err(_) => None,
            }
        };
        self.waiting.set(self.waiting.get() - 1);
        reports.unwrap_or_else(|| {
            let detail = Detail::local(
                StatusCode(4, 3, 0),
                "The mail system is shutting down; I'll try again later. (#4.3.0)",
            );
            indexes
                .into_iter()
                .map(|i| {
                    (
                        i,
                        RecipientReport {
                            status: DeliveryStatus::Deferred { counts: false },
                            detail: detail.clone(),
                        },
                    )
                })
                .collect()
        })
    }

    /// Jobs handed to owners and not answered yet.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }
}

/// Receives this shard's mesh inbox until shutdown and gives each job to the local [`Owner`].
/// It never sends on the mesh itself, so it can always drain the inbox (no cross-shard
/// deadlock: an owner replying to a full inbox waits only for this loop).
pub async fn serve_inbox(shard: shards::ShardContext<MeshMessage>, owner: Rc<Owner>) {
    while let Some((_from, message)) = shard.mesh().recv().await {
        match message {
            MeshMessage::Relay(job) => owner.enqueue(job),
        }
    }
}
