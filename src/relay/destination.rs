//! The owner shard's side of remote delivery: one queue of waiting jobs per destination it owns,
//! served by connection workers, with the per-destination and per-shard connection limits and
//! the downed-host backoff (Postfix qmgr's concurrency window and dead-host detection, in their
//! simplest form).
//!
//! A *worker* is one connection's life: it takes jobs for its destination one after another,
//! keeps its SMTP connection open between them (the connection cache), and ends after
//! `idle` seconds without a job, after `max_messages_per_connection` messages (then a fresh
//! worker takes over), or at shutdown. So at most `per_destination` connections are ever open
//! to a destination: jobs beyond that wait in the destination's queue, in arrival order.
//!
//! Traffic shaping (`shaping`) adds its limits per shaping key and source address: a worker
//! starts only when a source of the job's pool has room under the key's connection limit, takes
//! its turn at the key's rate before every transaction, and hands every remote reply to the
//! backoff rules. Queues are per (destination, shaping key, pool).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::delivery::report::{DeliveryStatus, Detail, RecipientReport, StatusCode};
use crate::dns::Resolver;
use crate::relay::Destination;
use crate::relay::client::{
    self, Bind, ClientError, ClientErrorKind, ClientSettings, Outgoing, SmtpClient, Stage, TlsMode,
};
use crate::relay::owner::RelayJob;
use crate::relay::pools::{PoolId, SourceId};
use crate::relay::shaping::ShapingKey;
use crate::relay::shaping::state::{Shaping, TooLong};
use crate::relay::targets::{TargetError, resolve_targets};
use crate::relay::verp;

/// The owner's rules, from `[relay]`.
pub struct OwnerSettings {
    pub client: ClientSettings,
    /// Port for MX and A deliveries.
    pub mx_port: u16,
    /// Connections at once to one destination (the whole server: only the owner opens them).
    pub per_destination: usize,
    /// Connections at once from this shard, all destinations together (this shard's share of
    /// `relay.max_connections`).
    pub per_shard: usize,
    pub max_messages_per_connection: usize,
    pub max_recipients_per_transaction: usize,
    /// How long an idle connection waits for the next job.
    pub idle: Duration,
    /// How long a host that refused or timed out is skipped.
    pub host_backoff: Duration,
    pub tls_default: TlsMode,
    /// Per-domain (or per static-route host) TLS policy.
    pub tls_policy: HashMap<String, TlsMode>,
}

/// One shard's owned destinations.
pub struct Owner {
    settings: OwnerSettings,
    resolver: Resolver,
    shutdown: shards::ShutdownSignal,
    shaping: Shaping,
    destinations: RefCell<HashMap<QueueKey, Rc<DestinationQueue>>>,
    /// Workers (open or opening connections) on this shard.
    workers: Cell<usize>,
    /// Hosts that refused or timed out, and until when they are skipped.
    downed: RefCell<HashMap<SocketAddr, Instant>>,
}

/// What jobs are queued by: they share connections only when all three agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueueKey {
    destination: Destination,
    shaping: ShapingKey,
    pool: PoolId,
}

/// Jobs waiting for one destination, and its workers.
struct DestinationQueue {
    key: QueueKey,
    jobs_tx: flume::Sender<RelayJob>,
    jobs_rx: flume::Receiver<RelayJob>,
    workers: Cell<usize>,
    /// Workers waiting for a job (with or without an open connection).
    idle: Cell<usize>,
    /// Asks one idle worker to close its connection now, so that another destination of the
    /// same shaping key can use the connection slot it holds.
    evict_tx: flume::Sender<()>,
    evict_rx: flume::Receiver<()>,
}

/// An open connection and what it has done.
struct Connection {
    client: SmtpClient,
    /// `name [ip]`, for logs and the DSN's Remote-MTA.
    mta: String,
    transactions: usize,
}

impl Owner {
    pub fn new(
        settings: OwnerSettings,
        resolver: Resolver,
        shutdown: shards::ShutdownSignal,
        shaping: Shaping,
    ) -> Rc<Owner> {
        Rc::new(Owner {
            settings,
            resolver,
            shutdown,
            shaping,
            destinations: RefCell::new(HashMap::new()),
            workers: Cell::new(0),
            downed: RefCell::new(HashMap::new()),
        })
    }

    /// Queues a job for its destination and starts a worker if the limits allow.
    pub fn enqueue(self: &Rc<Self>, job: RelayJob) {
        if self.shutdown.is_triggered() {
            answer_all(&job, &shutting_down());
            return;
        }
        if let Err(too_long) = self.shaping.admit(&job.shaping, job.pool) {
            let report = waiting_too_long(&job.shaping, &too_long);
            for (_, address) in &job.recipients {
                log_outcome(job.message.id, address, None, &report);
            }
            answer_all(&job, &report);
            return;
        }
        let key = QueueKey {
            destination: job.destination.clone(),
            shaping: job.shaping.clone(),
            pool: job.pool,
        };
        let queue = Rc::clone(
            self.destinations
                .borrow_mut()
                .entry(key.clone())
                .or_insert_with(|| {
                    let (jobs_tx, jobs_rx) = flume::unbounded();
                    let (evict_tx, evict_rx) = flume::bounded(1);
                    Rc::new(DestinationQueue {
                        key,
                        jobs_tx,
                        jobs_rx,
                        workers: Cell::new(0),
                        idle: Cell::new(0),
                        evict_tx,
                        evict_rx,
                    })
                }),
        );
        // The receiver lives in `queue`, so this cannot fail.
        let _ = queue.jobs_tx.send(job);
        self.pump(&queue);
    }

    /// Connections open or opening on this shard.
    pub fn open_connections(&self) -> usize {
        self.workers.get()
    }

    /// Each destination this shard owns now: (name, connections open or opening, jobs
    /// waiting), for /metrics. A destination served from several pools (one queue each) is
    /// summed into one entry.
    pub fn destination_load(&self) -> Vec<(String, usize, usize)> {
        let mut load: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        for q in self.destinations.borrow().values() {
            let entry = load.entry(q.key.destination.to_string()).or_default();
            entry.0 += q.workers.get();
            entry.1 += q.jobs_rx.len();
        }
        load.into_iter()
            .map(|(name, (workers, jobs))| (name, workers, jobs))
            .collect()
    }

    /// Starts workers while jobs outnumber idle workers and the limits allow.
    fn pump(self: &Rc<Self>, queue: &Rc<DestinationQueue>) {
        while queue.jobs_rx.len() > queue.idle.get()
            && queue.workers.get() < self.settings.per_destination
            && self.workers.get() < self.settings.per_shard
        {
            let Some(source) = self
                .shaping
                .open_connection(&queue.key.shaping, queue.key.pool)
            else {
                self.evict_idle_sibling(queue);
                break;
            };
            queue.workers.set(queue.workers.get() + 1);
            self.workers.set(self.workers.get() + 1);
            let this = Rc::clone(self);
            let queue = Rc::clone(queue);
            glommio::spawn_local(async move { this.work(queue, source).await }).detach();
        }
    }

    /// `queue` is held back by its shaping key's connection limit: if another destination of
    /// the key keeps an idle connection, it is asked to close it (its worker ends, and
    /// `after_worker_ended` starts one here).
    fn evict_idle_sibling(&self, queue: &Rc<DestinationQueue>) {
        let destinations = self.destinations.borrow();
        if let Some(sibling) = destinations.values().find(|other| {
            other.key.shaping == queue.key.shaping
                && other.key != queue.key
                && other.idle.get() > 0
                && other.jobs_rx.is_empty()
        }) {
            let _ = sibling.evict_tx.try_send(());
        }
    }

    /// One connection's life (see the module docs), from `source`.
    async fn work(self: Rc<Self>, queue: Rc<DestinationQueue>, source: SourceId) {
        let mut connection: Option<Connection> = None;
        let key = &queue.key.shaping;
        let max_messages = self
            .shaping
            .limits(key)
            .max_messages_per_connection
            .map_or(self.settings.max_messages_per_connection, |n| {
                n.min(self.settings.max_messages_per_connection)
            });
        loop {
            let job = match queue.jobs_rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    queue.idle.set(queue.idle.get() + 1);
                    let next = futures_lite::future::or(
                        async { queue.jobs_rx.recv_async().await.ok() },
                        async {
                            futures_lite::future::or(
                                futures_lite::future::or(
                                    glommio::timer::sleep(self.settings.idle),
                                    async {
                                        let _ = queue.evict_rx.recv_async().await;
                                    },
                                ),
                                self.shutdown.wait(),
                            )
                            .await;
                            None
                        },
                    )
                    .await;
                    queue.idle.set(queue.idle.get() - 1);
                    match next {
                        Some(job) => job,
                        // A job that arrived as the timer fired must not be stranded.
                        None if !queue.jobs_rx.is_empty() && !self.shutdown.is_triggered() => {
                            continue;
                        }
                        None => break,
                    }
                }
            };
            self.shaping.taken(key);
            if self.shutdown.is_triggered() {
                answer_all(&job, &shutting_down());
                continue;
            }
            let reports = self
                .run_job(&queue.key, source, &job, &mut connection)
                .await;
            for (_, report) in &reports {
                if matches!(report.status, DeliveryStatus::Deferred { .. }) {
                    crate::metrics::destination_deferred(&queue.key.destination);
                }
            }
            let _ = job.reply.send(reports);
            if connection
                .as_ref()
                .is_some_and(|c| c.transactions >= max_messages)
            {
                if let Some(done) = connection.take() {
                    done.client.quit().await;
                }
                break; // a fresh worker takes the next job, on a fresh connection
            }
        }
        if let Some(open) = connection.take() {
            open.client.quit().await;
        }
        queue.workers.set(queue.workers.get() - 1);
        self.workers.set(self.workers.get() - 1);
        self.shaping.close_connection(key, source);
        self.after_worker_ended(&queue);
    }

    /// Lets waiting jobs (here, or at destinations held back by the per-shard limit) start, and
    /// forgets destinations with nothing left.
    fn after_worker_ended(self: &Rc<Self>, ended: &Rc<DestinationQueue>) {
        if self.shutdown.is_triggered() {
            return;
        }
        let waiting: Vec<Rc<DestinationQueue>> = self
            .destinations
            .borrow()
            .values()
            .filter(|q| !q.jobs_rx.is_empty())
            .cloned()
            .collect();
        for queue in &waiting {
            self.pump(queue);
        }
        if ended.workers.get() == 0 && ended.jobs_rx.is_empty() {
            self.destinations.borrow_mut().remove(&ended.key);
        }
    }

    /// Sends one job's recipients, in as many transactions as its sender and the recipient
    /// limit need; returns a report per recipient.
    async fn run_job(
        &self,
        queue: &QueueKey,
        source: SourceId,
        job: &RelayJob,
        connection: &mut Option<Connection>,
    ) -> Vec<(usize, RecipientReport)> {
        let destination = &queue.destination;
        let key = &queue.shaping;
        let message = &job.message;
        let sender = &message.envelope.sender;
        // VERP (qmail): each recipient gets a sender of its own, so one transaction each.
        let transactions: Vec<(String, &[(usize, String)])> = if verp::is_verp(sender) {
            job.recipients
                .chunks(1)
                .map(|one| {
                    let rewritten =
                        verp::verp_sender(sender, &one[0].1).unwrap_or_else(|| sender.clone());
                    (rewritten, one)
                })
                .collect()
        } else {
            job.recipients
                .chunks(self.settings.max_recipients_per_transaction.max(1))
                .map(|chunk| (sender.clone(), chunk))
                .collect()
        };
        let mut reports = Vec::with_capacity(job.recipients.len());
        for (number, (sender, recipients)) in transactions.iter().enumerate() {
            if connection.as_ref().is_some_and(|c| !c.client.is_reusable()) {
                *connection = None;
            }
            // A suspended destination gets no connection: wait it out first (or give up).
            if connection.is_none()
                && let Err(report) = self
                    .shaped_wait(key, self.shaping.wait_unsuspended(key, source))
                    .await
            {
                defer_rest(message.id, &transactions[number..], &report, &mut reports);
                return reports;
            }
            if connection.is_none() {
                // Nothing is sent while connecting (DNS, TCP, greeting, TLS), so a shutdown may
                // cut it short: the recipients simply wait for the next start.
                let connected =
                    futures_lite::future::or(self.connect(destination, key, source), async {
                        self.shutdown.wait().await;
                        Err(shutting_down())
                    })
                    .await;
                match connected {
                    Ok(open) => *connection = Some(open),
                    Err(report) => {
                        // Nothing can be sent to this destination now: the rest of the job
                        // shares the verdict.
                        defer_rest(message.id, &transactions[number..], &report, &mut reports);
                        return reports;
                    }
                }
            }
            // Each transaction is one message for the shaping rate. Its turn is taken on the
            // open connection, just before sending, so the pace is the pace at which messages
            // reach the provider, whatever connecting took.
            if let Err(report) = self
                .shaped_wait(key, self.shaping.wait_turn(key, source))
                .await
            {
                if let Some(open) = connection.take() {
                    open.client.quit().await;
                }
                defer_rest(message.id, &transactions[number..], &report, &mut reports);
                return reports;
            }
            let Some(open) = connection.as_mut() else {
                break;
            };
            let addresses: Vec<&str> = recipients.iter().map(|(_, a)| a.as_str()).collect();
            let outgoing = Outgoing {
                sender,
                recipients: &addresses,
                body: &message.body,
                body_8bit: message.envelope.body_8bit,
                smtputf8: message.envelope.smtputf8,
            };
            open.transactions += 1;
            let tls = open.client.tls();
            let mut suspended = false;
            match open.client.send(&outgoing).await {
                Ok(results) => {
                    let mut seen = Vec::new();
                    for ((index, address), result) in recipients.iter().zip(results) {
                        let (status, detail) = result.detail(&open.mta);
                        if let Some(reply) = &detail.diagnostic
                            && !seen.contains(reply)
                        {
                            suspended |= self.shaping.observe_reply(key, source, reply);
                            seen.push(reply.clone());
                        }
                        let report = RecipientReport { status, detail };
                        log_outcome(message.id, address, tls.as_deref(), &report);
                        reports.push((*index, report));
                    }
                }
                Err(error) => {
                    let (status, detail) = error.detail(&open.mta);
                    if let Some(reply) = &detail.diagnostic {
                        suspended |= self.shaping.observe_reply(key, source, reply);
                    }
                    let report = RecipientReport { status, detail };
                    for (index, address) in recipients.iter() {
                        log_outcome(message.id, address, tls.as_deref(), &report);
                        reports.push((*index, report.clone()));
                    }
                    *connection = None;
                }
            }
            // A suspended destination gets no more traffic on this connection either.
            if suspended && let Some(open) = connection.take() {
                open.client.quit().await;
            }
        }
        reports
    }

    /// Runs a shaping wait, cut short by shutdown; the report for the recipients when the wait
    /// is given up.
    async fn shaped_wait(
        &self,
        key: &ShapingKey,
        wait: impl std::future::Future<Output = Result<(), TooLong>>,
    ) -> Result<(), RecipientReport> {
        futures_lite::future::or(
            async {
                wait.await
                    .map_err(|too_long| waiting_too_long(key, &too_long))
            },
            async {
                self.shutdown.wait().await;
                Err(shutting_down())
            },
        )
        .await
    }

    /// Opens a connection to the first destination host that takes it, skipping hosts in
    /// backoff. The error is the report every recipient gets when none does.
    async fn connect(
        &self,
        destination: &Destination,
        key: &ShapingKey,
        source: SourceId,
    ) -> Result<Connection, RecipientReport> {
        let targets =
            match resolve_targets(&self.resolver, destination, self.settings.mx_port).await {
                Ok(targets) => targets,
                Err(TargetError::Permanent(detail)) => {
                    return Err(RecipientReport {
                        status: DeliveryStatus::Failed,
                        detail,
                    });
                }
                Err(TargetError::Temporary(detail)) => {
                    return Err(RecipientReport {
                        status: DeliveryStatus::Deferred { counts: true },
                        detail,
                    });
                }
            };
        let tls = self.tls_mode(destination);
        let from = self.shaping.pools.source(source);
        let bind = Bind {
            address: from.address,
            helo: from.helo.clone(),
        };
        let mut last: Option<RecipientReport> = None;
        for target in &targets {
            if self.is_downed(target.addr) {
                continue;
            }
            let mta = format!("{} [{}]", target.host, target.addr.ip());
            let mut attempt =
                client::connect_from(target.addr, &target.host, tls, &self.settings.client, &bind)
                    .await;
            if let Err(e) = &attempt
                && matches!(e.kind, ClientErrorKind::TlsHandshake(_))
                && tls == TlsMode::Opportunistic
            {
                // RFC 7435: opportunistic TLS that fails falls back to plaintext.
                warn!("relay to {mta}: TLS handshake failed ({e}); retrying without TLS");
                attempt = client::connect_from(
                    target.addr,
                    &target.host,
                    TlsMode::None,
                    &self.settings.client,
                    &bind,
                )
                .await;
            }
            match attempt {
                Ok(client) => {
                    return Ok(Connection {
                        client,
                        mta,
                        transactions: 0,
                    });
                }
                Err(e) => {
                    let (status, detail) = e.detail(&mta);
                    warn!("relay to {destination}: cannot use {mta}: {e}");
                    if let Some(reply) = &detail.diagnostic
                        && self.shaping.observe_reply(key, source, reply)
                    {
                        // Suspended: the other hosts would hear the same from this source.
                        return Err(RecipientReport { status, detail });
                    }
                    if host_is_down(&e) {
                        self.mark_downed(target.addr);
                    }
                    last = Some(RecipientReport { status, detail });
                }
            }
        }
        Err(last.unwrap_or_else(|| RecipientReport {
            // Nothing was tried: every host is in its backoff. The mail waits for the hosts
            // without using up its retries.
            status: DeliveryStatus::Deferred { counts: false },
            detail: Detail::local(
                StatusCode(4, 4, 1),
                format!(
                    "Every host for {destination} failed recently; waiting before trying again. (#4.4.1)"
                ),
            ),
        }))
    }

    fn tls_mode(&self, destination: &Destination) -> TlsMode {
        let key = match destination {
            Destination::Mx { domain } => domain,
            Destination::Static { host, .. } => host,
        };
        self.settings
            .tls_policy
            .get(key)
            .copied()
            .unwrap_or(self.settings.tls_default)
    }

    fn is_downed(&self, addr: SocketAddr) -> bool {
        let mut downed = self.downed.borrow_mut();
        match downed.get(&addr) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                downed.remove(&addr);
                false
            }
            None => false,
        }
    }

    fn mark_downed(&self, addr: SocketAddr) {
        self.downed
            .borrow_mut()
            .insert(addr, Instant::now() + self.settings.host_backoff);
    }
}

/// Whether a failed connection means the host is down (refused, unreachable, silent), so it is
/// skipped for a while: a host that answers with a refusal is up, and so is one whose TLS
/// disagrees with our policy.
fn host_is_down(error: &ClientError) -> bool {
    // A pool address that cannot be bound here, or that cannot reach the host's address family,
    // is our side: the host may be fine from another source.
    if let ClientErrorKind::Connect(e) = &error.kind
        && e.kind() == std::io::ErrorKind::AddrNotAvailable
    {
        return false;
    }
    matches!(error.stage, Stage::Connect | Stage::Greeting)
        && matches!(
            error.kind,
            ClientErrorKind::Connect(_) | ClientErrorKind::Timeout | ClientErrorKind::Io(_)
        )
}

/// Gives every recipient of `rest` (the transactions not sent) the same `report`.
fn defer_rest(
    id: crate::queue::MessageId,
    rest: &[(String, &[(usize, String)])],
    report: &RecipientReport,
    reports: &mut Vec<(usize, RecipientReport)>,
) {
    for (_, recipients) in rest {
        for (index, address) in recipients.iter() {
            log_outcome(id, address, None, report);
            reports.push((*index, report.clone()));
        }
    }
}

/// The report for a job that would wait too long for its shaping turn: deferred without using
/// up a retry.
fn waiting_too_long(key: &ShapingKey, why: &TooLong) -> RecipientReport {
    let text = match why {
        TooLong::Suspended(left) => format!(
            "Delivery to {key} is suspended for {} s more by a backoff rule; waiting. (#4.7.0)",
            left.as_secs().max(1)
        ),
        TooLong::Rate(wait) => format!(
            "Delivery to {key} is at its rate limit (next turn in {} s); waiting. (#4.7.0)",
            wait.as_secs().max(1)
        ),
    };
    RecipientReport {
        status: DeliveryStatus::Deferred { counts: false },
        detail: Detail::local(StatusCode(4, 7, 0), text),
    }
}

/// The report for jobs that arrive or wait while the server stops.
fn shutting_down() -> RecipientReport {
    RecipientReport {
        status: DeliveryStatus::Deferred { counts: false },
        detail: Detail::local(
            StatusCode(4, 3, 0),
            "The mail system is shutting down; I'll try again later. (#4.3.0)",
        ),
    }
}

fn answer_all(job: &RelayJob, report: &RecipientReport) {
    let _ = job.reply.send(
        job.recipients
            .iter()
            .map(|(index, _)| (*index, report.clone()))
            .collect(),
    );
}

/// One log line per recipient per attempt: message, recipient, remote host and IP, TLS, the
/// remote's reply, the outcome.
fn log_outcome(
    id: crate::queue::MessageId,
    recipient: &str,
    tls: Option<&str>,
    report: &RecipientReport,
) {
    let outcome = match report.status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Deferred { .. } => "deferred",
        DeliveryStatus::Failed => "failed",
    };
    let tls = tls.unwrap_or("no TLS");
    match (&report.detail.remote_mta, &report.detail.diagnostic) {
        (Some(mta), Some(reply)) => {
            info!("relay {id} to {recipient} via {mta} ({tls}): {outcome}: {reply}")
        }
        (Some(mta), None) => {
            info!(
                "relay {id} to {recipient} via {mta}: {outcome}: {}",
                report.detail.text
            )
        }
        _ => info!(
            "relay {id} to {recipient}: {outcome}: {}",
            report.detail.text
        ),
    }
}
