//! What a shard does for the HTTP control plane, on its own executor: commit injected messages
//! through the same group commit as SMTP and start their delivery, and report the
//! destinations it owns at scrape time. Requests arrive over a flume channel per shard, each
//! with a one-shot reply channel, as control requests do (crate::control).

use crate::delivery::scheduler::Scheduler;
use crate::envelope::Envelope;
use crate::metrics::DestinationSample;
use crate::queue::ShardQueue;
use crate::relay::destination::Owner;
use log::{error, info};
use std::net::SocketAddr;
use std::rc::Rc;

/// Requests queued per shard before the sidecar waits.
const CHANNEL_CAPACITY: usize = 64;

/// A request from the HTTP plane to one shard.
pub enum ShardRequest {
    /// Make these messages durable (one group commit where they fit), then deliver them.
    /// The reply holds, in order, each message's queue id or why it could not be queued.
    Commit {
        messages: Vec<(Envelope, Vec<u8>)>,
        client: SocketAddr,
        reply: flume::Sender<Vec<Result<String, String>>>,
    },
    /// The destinations this shard owns, for /metrics.
    Destinations {
        reply: flume::Sender<Vec<DestinationSample>>,
    },
}

/// The per-shard channels: senders for the sidecar, receiver `i` for shard `i`.
pub fn channels(
    shards: usize,
) -> (
    Vec<flume::Sender<ShardRequest>>,
    Vec<flume::Receiver<ShardRequest>>,
) {
    (0..shards)
        .map(|_| flume::bounded(CHANNEL_CAPACITY))
        .unzip()
}

/// Serves HTTP-plane requests on one shard until every sender is gone.
pub async fn serve_shard(
    requests: flume::Receiver<ShardRequest>,
    queue: Rc<ShardQueue>,
    scheduler: Rc<Scheduler>,
    owner: Rc<Owner>,
) {
    while let Ok(request) = requests.recv_async().await {
        match request {
            ShardRequest::Commit {
                messages,
                client,
                reply,
            } => {
                // Each commit is its own task, so they all join the open batch and share one
                // fdatasync, as concurrent SMTP sessions do.
                let queue = Rc::clone(&queue);
                let scheduler = Rc::clone(&scheduler);
                glommio::spawn_local(async move {
                    let results = commit_all(&queue, &scheduler, messages, client).await;
                    let _ = reply.send(results);
                })
                .detach();
            }
            ShardRequest::Destinations { reply } => {
                let _ = reply.send(destinations(&owner));
            }
        }
    }
}

async fn commit_all(
    queue: &Rc<ShardQueue>,
    scheduler: &Rc<Scheduler>,
    messages: Vec<(Envelope, Vec<u8>)>,
    client: SocketAddr,
) -> Vec<Result<String, String>> {
    let tasks: Vec<_> = messages
        .into_iter()
        .map(|(envelope, message)| {
            let queue = Rc::clone(queue);
            glommio::spawn_local(async move {
                let committed = queue.commit(&envelope, &message).await;
                (committed, envelope, message)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (committed, envelope, message) = task.await;
        results.push(match committed {
            Ok(id) => {
                info!(
                    "new msg {id}: from <{}> via http {client}, {} bytes, {} recipients",
                    envelope.sender,
                    message.len(),
                    envelope.recipients.len()
                );
                crate::metrics::message_accepted(crate::metrics::Source::Http, message.len());
                scheduler.submit(id, envelope, message);
                Ok(id.to_string())
            }
            Err(e) => {
                error!("http {client}: cannot queue a message: {e}");
                crate::metrics::refused(crate::metrics::Refusal::QueueError);
                Err("451 4.3.0 queue write failed, try again later".to_string())
            }
        });
    }
    results
}

/// Connections and waiting jobs per owned destination, with the deferrals counted here.
fn destinations(owner: &Owner) -> Vec<DestinationSample> {
    let mut samples: std::collections::BTreeMap<String, DestinationSample> = Default::default();
    for (destination, connections, queued) in owner.destination_load() {
        samples.insert(
            destination.clone(),
            DestinationSample {
                destination,
                connections: connections as u64,
                queued: queued as u64,
                deferrals: 0,
            },
        );
    }
    for (destination, deferrals) in crate::metrics::destination_deferrals() {
        samples
            .entry(destination.clone())
            .or_insert_with(|| DestinationSample {
                destination,
                connections: 0,
                queued: 0,
                deferrals: 0,
            })
            .deferrals = deferrals;
    }
    samples.into_values().collect()
}
