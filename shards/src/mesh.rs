//! The typed cross-shard mesh: every shard can send a `T` to every shard (itself included) and
//! receives everything addressed to it from one inbox.
//!
//! Built from glommio `shared_channel`s, one bounded channel per ordered pair of shards, made
//! on the starting thread before any shard runs, so shard `i` is always index `i` (glommio's own
//! `MeshBuilder` orders peers by executor id instead). Each incoming channel is drained by a
//! small forwarding task into one bounded local inbox; backpressure therefore reaches the remote
//! sender: a full inbox stalls the forwarder, which fills the pair channel, which makes the
//! remote `send_to` wait.

use std::fmt;
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::{GlommioError, ResourceType};

use crate::shutdown::ShutdownSignal;

/// Why a message could not be sent. Every variant hands the message back.
pub enum MeshError<T> {
    /// The caller asked for a shard that does not exist (caller's fault).
    NoSuchShard { shard: usize, msg: T },
    /// `try_send_to` only: the destination's channel is full right now (retry or `send_to`).
    Full { shard: usize, msg: T },
    /// The destination shard has stopped and dropped its end of the mesh.
    Closed { shard: usize, msg: T },
}

impl<T> MeshError<T> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> T {
        match self {
            Self::NoSuchShard { msg, .. } | Self::Full { msg, .. } | Self::Closed { msg, .. } => {
                msg
            }
        }
    }
}

impl<T> fmt::Debug for MeshError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<T> fmt::Display for MeshError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchShard { shard, .. } => write!(f, "no shard {shard} in the mesh"),
            Self::Full { shard, .. } => write!(f, "mesh channel to shard {shard} is full"),
            Self::Closed { shard, .. } => write!(f, "shard {shard} has left the mesh"),
        }
    }
}

impl<T> std::error::Error for MeshError<T> {}

/// The not-yet-connected ends one shard takes onto its thread.
pub(crate) struct MeshEnds<T: Send + 'static> {
    /// Index = destination shard; `None` at our own index.
    outgoing: Vec<Option<SharedSender<T>>>,
    /// Index = source shard; `None` at our own index.
    incoming: Vec<Option<SharedReceiver<T>>>,
}

/// Makes one channel per ordered pair of distinct shards and deals them out per shard.
pub(crate) fn make_ends<T: Send + 'static>(count: usize, capacity: usize) -> Vec<MeshEnds<T>> {
    let mut ends: Vec<MeshEnds<T>> = (0..count)
        .map(|_| MeshEnds {
            outgoing: (0..count).map(|_| None).collect(),
            incoming: (0..count).map(|_| None).collect(),
        })
        .collect();
    for from in 0..count {
        for to in 0..count {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(capacity);
                ends[from].outgoing[to] = Some(tx);
                ends[to].incoming[from] = Some(rx);
            }
        }
    }
    ends
}

/// One shard's view of the mesh. Lives on that shard's thread (`!Send`).
pub struct Mesh<T: Send + 'static> {
    id: usize,
    peers: Vec<Option<ConnectedSender<T>>>,
    inbox_tx: Rc<LocalSender<(usize, T)>>,
    inbox_rx: LocalReceiver<(usize, T)>,
    shutdown: ShutdownSignal,
}

impl<T: Send + 'static> Mesh<T> {
    /// Connects every channel end on the current executor. All shards must do this concurrently:
    /// a connect completes when the other end connects (or was dropped, leaving it closed).
    pub(crate) async fn connect(
        id: usize,
        ends: MeshEnds<T>,
        capacity: usize,
        shutdown: ShutdownSignal,
    ) -> Self {
        let (inbox_tx, inbox_rx) = local_channel::new_bounded(capacity);
        let inbox_tx = Rc::new(inbox_tx);
        let out_tasks: Vec<_> = ends
            .outgoing
            .into_iter()
            .map(|tx| tx.map(|tx| glommio::spawn_local(tx.connect())))
            .collect();
        let in_tasks: Vec<_> = ends
            .incoming
            .into_iter()
            .enumerate()
            .filter_map(|(from, rx)| rx.map(|rx| (from, glommio::spawn_local(rx.connect()))))
            .collect();
        let mut peers = Vec::with_capacity(out_tasks.len());
        for task in out_tasks {
            peers.push(match task {
                Some(task) => Some(task.await),
                None => None,
            });
        }
        for (from, task) in in_tasks {
            let rx = task.await;
            let inbox = inbox_tx.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    if inbox.send((from, msg)).await.is_err() {
                        break; // our Mesh is gone; dropping rx tells the sender
                    }
                }
            })
            .detach();
        }
        Self {
            id,
            peers,
            inbox_tx,
            inbox_rx,
            shutdown,
        }
    }

    /// This shard's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of shards in the mesh.
    pub fn count(&self) -> usize {
        self.peers.len()
    }

    /// Sends `msg` to `shard`, waiting while its channel is full.
    ///
    /// Sending to yourself works (it goes straight into your own inbox) but waits if your inbox
    /// is full; the task that drains the inbox must therefore use [`Mesh::try_send_to`] for
    /// self-sends, or it can deadlock on itself.
    pub async fn send_to(&self, shard: usize, msg: T) -> Result<(), MeshError<T>> {
        if shard == self.id {
            return self
                .inbox_tx
                .send((self.id, msg))
                .await
                .map_err(|e| classify(shard, e, |(_, m)| m));
        }
        match self.peers.get(shard) {
            Some(Some(tx)) => tx.send(msg).await.map_err(|e| classify(shard, e, |m| m)),
            _ => Err(MeshError::NoSuchShard { shard, msg }),
        }
    }

    /// Sends `msg` to `shard` without waiting; `MeshError::Full` if its channel is full.
    pub fn try_send_to(&self, shard: usize, msg: T) -> Result<(), MeshError<T>> {
        if shard == self.id {
            return self
                .inbox_tx
                .try_send((self.id, msg))
                .map_err(|e| classify(shard, e, |(_, m)| m));
        }
        match self.peers.get(shard) {
            Some(Some(tx)) => tx.try_send(msg).map_err(|e| classify(shard, e, |m| m)),
            _ => Err(MeshError::NoSuchShard { shard, msg }),
        }
    }

    /// The next message addressed to this shard, as `(from_shard, msg)`, in arrival order.
    ///
    /// Returns `None` once shutdown has been triggered, so `while let Some(..) = mesh.recv()`
    /// loops end with the shard; messages still in flight at that point are dropped (senders
    /// must not rely on the mesh for durability). It never returns `None` before that: this
    /// shard can always send to itself. Several tasks may call `recv` at once; each message
    /// goes to one of them.
    pub async fn recv(&self) -> Option<(usize, T)> {
        if self.shutdown.is_triggered() {
            return None;
        }
        futures_lite::future::or(self.inbox_rx.recv(), async {
            self.shutdown.wait().await;
            None
        })
        .await
    }
}

/// Maps a glommio channel error back to ours, recovering the message.
fn classify<M, T>(shard: usize, err: GlommioError<M>, take: impl Fn(M) -> T) -> MeshError<T> {
    match err {
        GlommioError::WouldBlock(ResourceType::Channel(m)) => MeshError::Full {
            shard,
            msg: take(m),
        },
        GlommioError::Closed(ResourceType::Channel(m)) => MeshError::Closed {
            shard,
            msg: take(m),
        },
        // glommio's channels only fail with the two variants above, carrying the item.
        _ => unreachable!("glommio channels fail only with WouldBlock or Closed"),
    }
}

impl<T: Send + 'static> fmt::Debug for Mesh<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("id", &self.id)
            .field("count", &self.peers.len())
            .finish_non_exhaustive()
    }
}
