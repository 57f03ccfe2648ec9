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
    self, ClientError, ClientErrorKind, ClientSettings, Outgoing, SmtpClient, Stage, TlsMode,
};
use crate::relay::owner::RelayJob;
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
    destinations: RefCell<HashMap<Destination, Rc<DestinationQueue>>>,
    /// Workers (open or opening connections) on this shard.
    workers: Cell<usize>,
    /// Hosts that refused or timed out, and until when they are skipped.
    downed: RefCell<HashMap<SocketAddr, Instant>>,
}

/// Jobs waiting for one destination, and its workers.
struct DestinationQueue {
    destination: Destination,
    jobs_tx: flume::Sender<RelayJob>,
    jobs_rx: flume::Receiver<RelayJob>,
    workers: Cell<usize>,
    /// Workers waiting for a job (with or without an open connection).
    idle: Cell<usize>,
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
    ) -> Rc<Owner> {
        Rc::new(Owner {
            settings,
            resolver,
            shutdown,
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
        let queue = Rc::clone(
            self.destinations
                .borrow_mut()
                .entry(job.destination.clone())
                .or_insert_with(|| {
                    let (jobs_tx, jobs_rx) = flume::unbounded();
                    Rc::new(DestinationQueue {
                        destination: job.destination.clone(),
                        jobs_tx,
                        jobs_rx,
                        workers: Cell::new(0),
                        idle: Cell::new(0),
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
    /// waiting), for /metrics.
    pub fn destination_load(&self) -> Vec<(String, usize, usize)> {
        self.destinations
            .borrow()
            .values()
            .map(|q| (q.destination.to_string(), q.workers.get(), q.jobs_rx.len()))
            .collect()
    }

    /// Starts workers while jobs outnumber idle workers and the limits allow.
    fn pump(self: &Rc<Self>, queue: &Rc<DestinationQueue>) {
        while queue.jobs_rx.len() > queue.idle.get()
            && queue.workers.get() < self.settings.per_destination
            && self.workers.get() < self.settings.per_shard
        {
            queue.workers.set(queue.workers.get() + 1);
            self.workers.set(self.workers.get() + 1);
            let this = Rc::clone(self);
            let queue = Rc::clone(queue);
            glommio::spawn_local(async move { this.work(queue).await }).detach();
        }
    }

    /// One connection's life (see the module docs).
    async fn work(self: Rc<Self>, queue: Rc<DestinationQueue>) {
        let mut connection: Option<Connection> = None;
        loop {
            let job = match queue.jobs_rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    queue.idle.set(queue.idle.get() + 1);
                    let next = futures_lite::future::or(
                        async { queue.jobs_rx.recv_async().await.ok() },
                        async {
                            futures_lite::future::or(
                                glommio::timer::sleep(self.settings.idle),
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
            if self.shutdown.is_triggered() {
                answer_all(&job, &shutting_down());
                continue;
            }
            let reports = self
                .run_job(&queue.destination, &job, &mut connection)
                .await;
            for (_, report) in &reports {
                if matches!(report.status, DeliveryStatus::Deferred { .. }) {
                    crate::metrics::destination_deferred(&queue.destination);
                }
            }
            let _ = job.reply.send(reports);
            if connection
                .as_ref()
                .is_some_and(|c| c.transactions >= self.settings.max_messages_per_connection)
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
            self.destinations.borrow_mut().remove(&ended.destination);
        }
    }

    /// Sends one job's recipients, in as many transactions as its sender and the recipient
    /// limit need; returns a report per recipient.
    async fn run_job(
        &self,
        destination: &Destination,
        job: &RelayJob,
        connection: &mut Option<Connection>,
    ) -> Vec<(usize, RecipientReport)> {
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
            if connection.is_none() {
                // Nothing is sent while connecting (DNS, TCP, greeting, TLS), so a shutdown may
                // cut it short: the recipients simply wait for the next start.
                let connected = futures_lite::future::or(self.connect(destination), async {
                    self.shutdown.wait().await;
                    Err(shutting_down())
                })
                .await;
                match connected {
                    Ok(open) => *connection = Some(open),
                    Err(report) => {
                        // Nothing can be sent to this destination now: the rest of the job
                        // shares the verdict.
                        for (_, rest) in &transactions[number..] {
                            for (index, address) in rest.iter() {
                                log_outcome(message.id, address, None, &report);
                                reports.push((*index, report.clone()));
                            }
                        }
                        return reports;
                    }
                }
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
            match open.client.send(&outgoing).await {
                Ok(results) => {
                    for ((index, address), result) in recipients.iter().zip(results) {
                        let (status, detail) = result.detail(&open.mta);
                        let report = RecipientReport { status, detail };
                        log_outcome(message.id, address, tls.as_deref(), &report);
                        reports.push((*index, report));
                    }
                }
                Err(error) => {
                    let (status, detail) = error.detail(&open.mta);
                    let report = RecipientReport { status, detail };
                    for (index, address) in recipients.iter() {
                        log_outcome(message.id, address, tls.as_deref(), &report);
                        reports.push((*index, report.clone()));
                    }
                    *connection = None;
                }
            }
        }
        reports
    }

    /// Opens a connection to the first destination host that takes it, skipping hosts in
    /// backoff. The error is the report every recipient gets when none does.
    async fn connect(&self, destination: &Destination) -> Result<Connection, RecipientReport> {
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
        let mut last: Option<RecipientReport> = None;
        for target in &targets {
            if self.is_downed(target.addr) {
                continue;
            }
            let mta = format!("{} [{}]", target.host, target.addr.ip());
            let mut attempt =
                client::connect(target.addr, &target.host, tls, &self.settings.client).await;
            if let Err(e) = &attempt
                && matches!(e.kind, ClientErrorKind::TlsHandshake(_))
                && tls == TlsMode::Opportunistic
            {
                // RFC 7435: opportunistic TLS that fails falls back to plaintext.
                warn!("relay to {mta}: TLS handshake failed ({e}); retrying without TLS");
                attempt = client::connect(
                    target.addr,
                    &target.host,
                    TlsMode::None,
                    &self.settings.client,
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
    matches!(error.stage, Stage::Connect | Stage::Greeting)
        && matches!(
            error.kind,
            ClientErrorKind::Connect(_) | ClientErrorKind::Timeout | ClientErrorKind::Io(_)
        )
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
