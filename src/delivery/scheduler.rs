//! The delivery scheduler of one shard: takes each message in this shard's queue to its
//! recipients, records every outcome in the queue, retries temporary failures on qmail's
//! schedule and bounces permanent ones as DSNs.
//!
//! Every recipient of every attempt, bounces included, goes through the route step
//! ([`Router`]): local recipients to the [`LocalTransport`], remote ones grouped by destination
//! to the [`RemoteTransport`] (the destination's owner shard sends them), refused ones straight
//! to the bounce. Each message has one task here; it sleeps until its next recipient is due, or
//! until a control command (flush, delete, bounce, resume) pokes it.
//!
//! A message just accepted is delivered from the bytes still in memory when the shard's memory
//! budget allows; otherwise, after a deferral, and after recovery, the bytes are read back from
//! the queue when the next attempt is due. Deliveries in flight on a shard are capped by a
//! semaphore (`queue.delivery_concurrency`). Stopping only stops new attempts: every outcome
//! already reached is durable in the queue, so a restart resumes exactly the recipients that
//! are still pending.

use crate::clock::{now_unix, rfc5322_date};
use crate::delivery::bounce::{BounceKind, build_dsn};
use crate::delivery::prepare::{MessagePlan, ShardDeliverability};
use crate::delivery::report::{DeliveryStatus, Detail, RecipientReport, StatusCode};
use crate::delivery::retry::{Channel, expired, next_attempt};
use crate::delivery::signal::Signal;
use crate::delivery::transport::{LocalTransport, RemoteTransport, Transport};
use crate::envelope::Envelope;
use crate::queue::{MessageId, Outcome, QueuedMessage, RecipientState, ShardQueue};
use crate::relay::owner::{OutboundMessage, RelayTransport};
use crate::relay::{Destination, Route, Router};
use glommio::sync::Semaphore;
use log::{error, info, warn};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// What a scheduler needs to know, taken from the configuration.
pub struct SchedulerSettings {
    pub hostname: String,
    /// Seconds before a temporarily failing recipient is given up (qmail's `queuelifetime`).
    pub queue_lifetime: u64,
    /// Deliveries in flight at once on this shard.
    pub concurrency: usize,
    /// Message bytes kept in memory for deliveries waiting to start.
    pub memory_budget: usize,
    /// Seconds of deferral after which the sender gets a delay notice; 0 = never.
    pub delay_notice: u64,
    /// Seconds to wait when every host of a destination is in its backoff.
    pub host_backoff: u64,
}

/// One shard's scheduler. Lives on the shard's executor (`Rc`, never shared across threads).
pub struct Scheduler {
    queue: Rc<ShardQueue>,
    settings: SchedulerSettings,
    router: Router,
    local: LocalTransport,
    relay: RelayTransport,
    /// Deliveries (one local recipient, or one remote destination's recipients) in flight.
    slots: Semaphore,
    /// Messages in an attempt at once. A message waits for one before its bytes are read back
    /// from the queue, so the bytes in memory stay within the budget plus this many messages.
    message_slots: Semaphore,
    stopping: Cell<bool>,
    paused: Cell<bool>,
    /// Bytes of message bodies held in memory by tasks waiting to deliver.
    held_bytes: Rc<Cell<usize>>,
    /// The live messages of this shard's queue, for the control commands.
    messages: RefCell<HashMap<MessageId, Rc<MessageControl>>>,
    /// Delivery attempts under way (from the first write to the last outcome recorded). A
    /// graceful stop waits for them, so a delivery that landed is also recorded and is not
    /// repeated after the restart.
    attempts_in_flight: Cell<usize>,
    /// Suppression, unsubscribe fields and DKIM (`delivery::prepare`); `None`: none of it.
    deliverability: Option<ShardDeliverability>,
}

/// What the control commands can ask of one message's task.
#[derive(Default)]
struct MessageControl {
    wake: Signal,
    /// Deferred recipients are due now (`queue flush`).
    flush: Cell<bool>,
    /// Give up the pending recipients: `Some(true)` bounces them, `Some(false)` drops them.
    cancel: Cell<Option<bool>>,
    /// Recipients still pending, for the control replies.
    pending: Cell<usize>,
}

/// Counts one attempt as in flight for as long as it lives.
struct InFlight<'a>(&'a Cell<usize>);

impl<'a> InFlight<'a> {
    fn enter(count: &'a Cell<usize>) -> InFlight<'a> {
        count.set(count.get() + 1);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// A message body held in memory, counted against the shard's budget until dropped.
struct HeldBody {
    message: Arc<OutboundMessage>,
    held: Rc<Cell<usize>>,
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.held
            .set(self.held.get().saturating_sub(self.message.body.len()));
    }
}

/// How long to wait before retrying after the queue itself failed to read or record.
const QUEUE_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// A sleeping message wakes at least this often, to look again (a flush that raced its sleep,
/// a clock step).
const LONGEST_SLEEP: Duration = Duration::from_secs(900);

/// The reason given to recipients whose lifetime in the queue ran out.
const TOO_LONG: &str =
    "I'm not going to try again; this message has been in the queue too long. (#4.4.7)";

impl Scheduler {
    pub fn new(
        queue: Rc<ShardQueue>,
        settings: SchedulerSettings,
        router: Router,
        local: LocalTransport,
        relay: RelayTransport,
        deliverability: Option<ShardDeliverability>,
    ) -> Rc<Scheduler> {
        let slots = Semaphore::new(settings.concurrency.max(1) as u64);
        let message_slots = Semaphore::new(settings.concurrency.max(1) as u64);
        Rc::new(Scheduler {
            queue,
            settings,
            router,
            local,
            relay,
            slots,
            message_slots,
            stopping: Cell::new(false),
            paused: Cell::new(false),
            held_bytes: Rc::new(Cell::new(0)),
            messages: RefCell::new(HashMap::new()),
            attempts_in_flight: Cell::new(0),
            deliverability,
        })
    }

    /// Starts delivering a message that was just committed.
    pub fn submit(self: &Rc<Self>, id: MessageId, envelope: Envelope, message: Vec<u8>) {
        let states = vec![
            RecipientState::Pending {
                attempts: 0,
                next_attempt: 0
            };
            envelope.recipients.len()
        ];
        // Within the budget the bytes wait in memory; beyond it they are read back from the
        // queue when the delivery starts, so a burst of acceptance cannot exhaust memory.
        let held = self.held_bytes.get();
        let body = if held.saturating_add(message.len()) <= self.settings.memory_budget {
            self.held_bytes.set(held + message.len());
            Some(HeldBody {
                message: Arc::new(OutboundMessage {
                    id,
                    envelope: envelope.clone(),
                    body: message,
                }),
                held: Rc::clone(&self.held_bytes),
            })
        } else {
            info!(
                "msg {id}: {} bytes beyond the memory budget; read back from the queue when due",
                message.len()
            );
            None
        };
        let this = Rc::clone(self);
        glommio::spawn_local(this.run_message(id, envelope, body, states)).detach();
    }

    /// Resumes the messages that recovery found unfinished.
    pub fn resume(self: &Rc<Self>, recovered: Vec<QueuedMessage>) {
        for message in recovered {
            let this = Rc::clone(self);
            glommio::spawn_local(this.run_message(
                message.id,
                message.envelope,
                None,
                message.states,
            ))
            .detach();
        }
    }

    /// No new delivery attempts start after this; those under way finish (see
    /// [`Scheduler::attempts_in_flight`]).
    pub fn stop(&self) {
        self.stopping.set(true);
        for control in self.messages.borrow().values() {
            control.wake.notify();
        }
    }

    /// Delivery attempts still under way; after [`Scheduler::stop`] this only goes down.
    pub fn attempts_in_flight(&self) -> usize {
        self.attempts_in_flight.get()
    }

    /// Recipients this shard delivered by relay since start, per sender (From:) domain.
    pub fn sender_domain_deliveries(&self) -> Vec<(String, u64)> {
        self.deliverability
            .as_ref()
            .map(|d| d.relayed_by_sender_domain())
            .unwrap_or_default()
    }

    /// `queue pause`: no new attempts start until `resume`; acceptance goes on.
    pub fn pause(&self) {
        self.paused.set(true);
    }

    /// `queue resume`.
    pub fn resume_delivery(&self) {
        self.paused.set(false);
        for control in self.messages.borrow().values() {
            control.wake.notify();
        }
    }

    /// Whether delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// `queue flush` (and qmail's SIGALRM): every deferred recipient is due now. Returns how
    /// many recipients are pending on this shard.
    pub fn flush(&self) -> u64 {
        let mut pending = 0;
        for control in self.messages.borrow().values() {
            pending += control.pending.get() as u64;
            control.flush.set(true);
            control.wake.notify();
        }
        pending
    }

    /// `queue delete` (`bounce = false`) or `queue bounce` (`bounce = true`): gives up the
    /// message's pending recipients. Returns how many were pending, or `None` if this shard has
    /// no such live message.
    pub fn cancel(&self, id: MessageId, bounce: bool) -> Option<u64> {
        let messages = self.messages.borrow();
        let control = messages.get(&id)?;
        control.cancel.set(Some(bounce));
        control.wake.notify();
        Some(control.pending.get() as u64)
    }

    /// Recipients pending on this shard.
    pub fn pending_recipients(&self) -> u64 {
        self.messages
            .borrow()
            .values()
            .map(|c| c.pending.get() as u64)
            .sum()
    }

    async fn run_message(
        self: Rc<Self>,
        mut id: MessageId,
        envelope: Envelope,
        mut body: Option<HeldBody>,
        mut states: Vec<RecipientState>,
    ) {
        let control = Rc::new(MessageControl::default());
        self.messages.borrow_mut().insert(id, Rc::clone(&control));
        let mut delay_notified = false;
        let gauge = crate::metrics::QueueGauge::new(
            envelope.received_at,
            states.iter().filter(|s| !s.is_final()).count(),
        );
        // What deliverability learns of the message and the signatures made for it: kept
        // across attempts, so a retry does not sign again.
        let mut plan = MessagePlan::default();
        loop {
            let seen = control.wake.generation();
            control
                .pending
                .set(states.iter().filter(|s| !s.is_final()).count());
            gauge.set_pending(control.pending.get());
            if self.stopping.get() {
                break;
            }
            if let Some(bounce) = control.cancel.get() {
                // Taken only once the bytes are here: a read error must not lose the command.
                let Some(message) = self.load(id, &envelope, &mut body).await else {
                    continue;
                };
                control.cancel.set(None);
                self.give_up(&message, bounce, &mut states).await;
                continue;
            }
            let now = now_unix();
            // A flush during a pause waits for the resume.
            let flush = !self.paused.get() && control.flush.replace(false);
            let mut due = Vec::new();
            let mut earliest = u64::MAX;
            for (index, state) in states.iter().enumerate() {
                if let RecipientState::Pending { next_attempt, .. } = state {
                    if *next_attempt <= now || flush {
                        due.push(index);
                    } else {
                        earliest = earliest.min(*next_attempt);
                    }
                }
            }
            if due.is_empty() && earliest == u64::MAX {
                info!("end msg {id}");
                break;
            }
            if due.is_empty() || self.paused.get() {
                body = None; // a waiting message's bytes wait on disk, not in memory
                let nap = if self.paused.get() {
                    LONGEST_SLEEP
                } else {
                    Duration::from_secs(earliest.saturating_sub(now)).min(LONGEST_SLEEP)
                };
                futures_lite::future::or(
                    glommio::timer::sleep(nap),
                    control.wake.changed_since(seen),
                )
                .await;
                continue;
            }
            let Ok(_turn) = self.message_slots.acquire_permit(1).await else {
                break;
            };
            let Some(message) = self.load(id, &envelope, &mut body).await else {
                continue;
            };
            let _in_flight = InFlight::enter(&self.attempts_in_flight);
            let delayed = self.attempt(&message, &due, &mut states, &mut plan).await;
            if !delayed.is_empty() && !delay_notified {
                delay_notified = self.delay_notice(&message, &delayed).await;
            }
            // A later attempt reads the bytes back (or keeps them if nothing was deferred).
            if states.iter().any(|s| !s.is_final()) {
                body = None;
                if let Some(moved) = self.compact(id).await {
                    self.messages.borrow_mut().remove(&id);
                    id = moved;
                    self.messages.borrow_mut().insert(id, Rc::clone(&control));
                }
            }
        }
        self.messages.borrow_mut().remove(&id);
    }

    /// The message with its bytes: from memory if still held, else read back from the queue.
    /// `None` (after a pause) when the queue cannot read it now.
    async fn load(
        &self,
        id: MessageId,
        envelope: &Envelope,
        body: &mut Option<HeldBody>,
    ) -> Option<Arc<OutboundMessage>> {
        if let Some(held) = body {
            return Some(Arc::clone(&held.message));
        }
        match self.queue.read_message(id).await {
            Ok(bytes) => Some(Arc::new(OutboundMessage {
                id,
                envelope: envelope.clone(),
                body: bytes,
            })),
            Err(e) => {
                error!("msg {id}: cannot read it back from the queue: {e}; retrying later");
                glommio::timer::sleep(QUEUE_ERROR_BACKOFF).await;
                None
            }
        }
    }

    /// Moves a waiting message out of an old queue segment (see `ShardQueue::move_forward`),
    /// so one deferred recipient does not keep a whole segment alive. Returns the new id.
    async fn compact(&self, id: MessageId) -> Option<MessageId> {
        if !self.queue.should_move(id) {
            return None;
        }
        match self.queue.move_forward(id).await {
            Ok(moved) => {
                info!("msg {id}: moved forward in the queue as {moved}");
                Some(moved)
            }
            Err(e) => {
                warn!("msg {id}: cannot move it forward in the queue: {e}");
                None
            }
        }
    }

    /// One attempt for the due recipients: each goes through the route step, then its transport;
    /// every outcome is recorded. Returns the recipients deferred by this attempt (for delay
    /// notices).
    async fn attempt(
        self: &Rc<Self>,
        message: &Arc<OutboundMessage>,
        due: &[usize],
        states: &mut [RecipientState],
        plan: &mut MessagePlan,
    ) -> Vec<(String, Detail)> {
        let envelope = &message.envelope;
        let mut local = Vec::new();
        let mut remote: BTreeMap<Destination, Vec<(usize, String)>> = BTreeMap::new();
        let mut reports = Vec::new();
        if let Some(d) = &self.deliverability {
            d.learn(plan, message);
        }
        for &index in due {
            let address = envelope.recipients[index].clone();
            if let Some(d) = &self.deliverability {
                // A suppressed recipient is failed without an attempt; a report to the
                // feedback address is read before it is delivered like any other mail.
                if let Some(report) = d.suppressed(plan, message.id, &address) {
                    reports.push((index, report, Channel::Remote));
                    continue;
                }
                d.feedback(plan, message, &address).await;
            }
            match self.router.route(&address) {
                Route::Local => local.push((index, address)),
                Route::Remote(destination) => remote
                    .entry(destination)
                    .or_default()
                    .push((index, address)),
                Route::Refuse(reason) => {
                    let code = StatusCode::from_qmail_text(&reason).unwrap_or(StatusCode(5, 1, 2));
                    let status = DeliveryStatus::Failed;
                    let detail = Detail::local(code, reason);
                    reports.push((index, RecipientReport { status, detail }, Channel::Remote));
                }
            }
        }
        // Each local recipient and each remote destination is one task holding one slot.
        let mut tasks = Vec::new();
        for (index, address) in local {
            let this = Rc::clone(self);
            let message = Arc::clone(message);
            tasks.push(glommio::spawn_local(async move {
                let _slot = this.slots.acquire_permit(1).await;
                let reports = this.local.deliver(&message, vec![(index, address)]).await;
                // Forwards the delivery queued: durable already, delivered like any message.
                for (id, envelope, bytes) in this.local.take_injected() {
                    this.submit(id, envelope, bytes);
                }
                (reports, Channel::Local)
            }));
        }
        for (destination, recipients) in remote {
            let this = Rc::clone(self);
            let message = Arc::clone(message);
            // Signed (and with unsubscribe fields) before the first transaction; list mail
            // goes one recipient per transaction (`delivery::prepare`).
            let jobs = match &self.deliverability {
                Some(d) => d.outbound_jobs(plan, &message, recipients).await,
                None => vec![crate::delivery::prepare::OutboundJob {
                    prefix: None,
                    strip_list_header: false,
                    recipients,
                }],
            };
            tasks.push(glommio::spawn_local(async move {
                let _slot = this.slots.acquire_permit(1).await;
                let transport = RemoteTransport {
                    relay: &this.relay,
                    destination,
                };
                let mut reports = Vec::new();
                for job in jobs {
                    let outgoing = job.message(&message);
                    reports.extend(transport.deliver(&outgoing, job.recipients).await);
                }
                (reports, Channel::Remote)
            }));
        }
        for task in tasks {
            let (task_reports, channel) = task.await;
            reports.extend(task_reports.into_iter().map(|(i, r)| (i, r, channel)));
        }
        if let Some(d) = &self.deliverability {
            let seen: Vec<(String, &RecipientReport)> = reports
                .iter()
                .filter_map(|(i, r, _)| Some((envelope.recipients.get(*i)?.clone(), r)))
                .collect();
            d.learn_from_reports(&seen);
            let relayed = reports
                .iter()
                .filter(|(_, r, channel)| {
                    matches!(channel, Channel::Remote)
                        && matches!(r.status, DeliveryStatus::Delivered)
                })
                .count();
            d.count_relayed(plan, relayed as u64);
        }

        let now = now_unix();
        let mut failures = Vec::new();
        let mut delayed = Vec::new();
        let mut outcomes = Vec::new();
        for (index, report, channel) in reports {
            let Some(recipient) = envelope.recipients.get(index) else {
                continue;
            };
            let attempts = match states.get(index) {
                Some(RecipientState::Pending { attempts, .. }) => *attempts,
                _ => 0,
            };
            let id = message.id;
            count_delivery(channel, &report.status, envelope.received_at, now);
            match report.status {
                DeliveryStatus::Delivered => {
                    info!("delivery {id} to {recipient}: success: {}", report.detail);
                    outcomes.push((index, Outcome::Delivered));
                }
                DeliveryStatus::Failed => {
                    warn!("delivery {id} to {recipient}: failure: {}", report.detail);
                    failures.push((index, report.detail));
                }
                DeliveryStatus::Deferred { .. }
                    if expired(envelope.received_at, now, self.settings.queue_lifetime) =>
                {
                    warn!(
                        "delivery {id} to {recipient}: failure: {}; giving up after {} attempts",
                        report.detail,
                        attempts + 1
                    );
                    let mut detail = report.detail;
                    detail.code = StatusCode(4, 4, 7);
                    detail.note = Some(TOO_LONG.to_string());
                    failures.push((index, detail));
                }
                DeliveryStatus::Deferred { counts: false } if self.stopping.get() => {
                    // Cut short by our own shutdown: nothing was tried, nothing to record; the
                    // recipient is due again as soon as the server starts.
                    info!(
                        "delivery {id} to {recipient}: not attempted: {}",
                        report.detail
                    );
                }
                DeliveryStatus::Deferred { counts } => {
                    // A destination whose hosts are all in backoff was not really tried: the
                    // recipient waits for the hosts without using up a retry.
                    let (attempts, next) = if counts {
                        let attempts = attempts + 1;
                        let next = next_attempt(envelope.received_at, attempts, channel);
                        (attempts, next.max(now + 1))
                    } else {
                        (attempts, now + self.settings.host_backoff.max(1))
                    };
                    warn!(
                        "delivery {id} to {recipient}: deferral: {} (attempt {attempts}, next {})",
                        report.detail,
                        rfc5322_date(next)
                    );
                    delayed.push((recipient.clone(), report.detail));
                    let outcome = Outcome::Deferred {
                        attempts,
                        next_attempt: next,
                    };
                    outcomes.push((index, outcome));
                }
            }
        }
        self.record_all(message.id, outcomes, states).await;
        if !failures.is_empty() {
            self.bounce(message, failures, states).await;
        }
        delayed
    }

    /// Gives up every pending recipient (`queue delete` / `queue bounce`).
    async fn give_up(
        self: &Rc<Self>,
        message: &Arc<OutboundMessage>,
        bounce: bool,
        states: &mut [RecipientState],
    ) {
        let pending: Vec<usize> = (0..states.len())
            .filter(|&i| !states[i].is_final())
            .collect();
        let id = message.id;
        if bounce {
            info!(
                "msg {id}: bounced by the postmaster ({} recipients)",
                pending.len()
            );
            let detail = Detail::local(
                StatusCode(5, 0, 0),
                "Sorry, the postmaster removed this message from the queue. (#5.0.0)",
            );
            let failures = pending.into_iter().map(|i| (i, detail.clone())).collect();
            self.bounce(message, failures, states).await;
        } else {
            info!(
                "msg {id}: deleted by the postmaster ({} recipients)",
                pending.len()
            );
            for index in pending {
                self.record(id, index, Outcome::Failed, states).await;
            }
        }
    }

    /// Queues one DSN for the permanent failures of an attempt, then marks them failed. If the
    /// DSN cannot be queued, the recipients stay pending and are tried again later.
    async fn bounce(
        self: &Rc<Self>,
        message: &Arc<OutboundMessage>,
        failures: Vec<(usize, Detail)>,
        states: &mut [RecipientState],
    ) {
        let id = message.id;
        let listed: Vec<(String, Detail)> = failures
            .iter()
            .map(|(index, detail)| (message.envelope.recipients[*index].clone(), detail.clone()))
            .collect();
        let now = now_unix();
        match build_dsn(
            &self.settings.hostname,
            &message.envelope,
            &message.body,
            &listed,
            BounceKind::Failure,
            now,
        ) {
            None => warn!(
                "msg {id}: a double bounce failed (sender <{}>): discarding it",
                message.envelope.sender
            ),
            Some((bounce_envelope, bounce_message)) => {
                match self.queue.commit(&bounce_envelope, &bounce_message).await {
                    Ok(bounce_id) => {
                        let to = bounce_envelope.recipients.join(", ");
                        info!("bounce msg {bounce_id} for msg {id} to <{to}>");
                        let source = crate::metrics::Source::Bounce;
                        crate::metrics::message_accepted(source, bounce_message.len());
                        self.submit(bounce_id, bounce_envelope, bounce_message);
                    }
                    Err(e) => {
                        error!("msg {id}: cannot queue a bounce: {e}; will try again");
                        for (index, _) in failures {
                            let attempts = match states[index] {
                                RecipientState::Pending { attempts, .. } => attempts,
                                _ => 0,
                            };
                            let outcome = Outcome::Deferred {
                                attempts,
                                next_attempt: now + QUEUE_ERROR_BACKOFF.as_secs(),
                            };
                            self.record(id, index, outcome, states).await;
                        }
                        return;
                    }
                }
            }
        }
        for (index, _) in failures {
            self.record(id, index, Outcome::Failed, states).await;
        }
    }

    /// Sends the sender an RFC 3464 delay notice once a message has waited
    /// `queue.delay_notice_secs`. Returns whether the notice is done with (sent, or none due
    /// to anyone), so it goes out at most once per message and run.
    async fn delay_notice(
        self: &Rc<Self>,
        message: &Arc<OutboundMessage>,
        delayed: &[(String, Detail)],
    ) -> bool {
        let after = self.settings.delay_notice;
        if after == 0 || now_unix().saturating_sub(message.envelope.received_at) < after {
            return false;
        }
        let Some((envelope, bytes)) = build_dsn(
            &self.settings.hostname,
            &message.envelope,
            &message.body,
            delayed,
            BounceKind::Delay,
            now_unix(),
        ) else {
            return true;
        };
        match self.queue.commit(&envelope, &bytes).await {
            Ok(notice_id) => {
                info!("delay notice msg {notice_id} for msg {}", message.id);
                crate::metrics::message_accepted(crate::metrics::Source::Bounce, bytes.len());
                self.submit(notice_id, envelope, bytes);
                true
            }
            Err(e) => {
                error!("msg {}: cannot queue a delay notice: {e}", message.id);
                false
            }
        }
    }

    /// Makes several outcomes of one message durable at once: appended together, they share
    /// one group commit instead of waiting for a sync each (a 10-recipient message would
    /// otherwise hold its delivery turn through 10 syncs in a row).
    async fn record_all(
        &self,
        id: MessageId,
        outcomes: Vec<(usize, Outcome)>,
        states: &mut [RecipientState],
    ) {
        let mut pending = Vec::with_capacity(outcomes.len());
        for (index, outcome) in outcomes {
            states[index] = RecipientState::from(outcome);
            let queue = Rc::clone(&self.queue);
            let task = glommio::spawn_local(async move { queue.record(id, index, outcome).await });
            pending.push((index, task));
        }
        for (index, task) in pending {
            if let Err(e) = task.await {
                error!("msg {id}: cannot record the outcome for recipient {index}: {e}");
            }
        }
    }

    /// Makes an outcome durable and mirrors it in `states`. A queue write error is logged; the
    /// in-memory state still moves on, and after a restart the recipient is simply pending again
    /// (at worst a duplicate delivery, never a lost one).
    async fn record(
        &self,
        id: MessageId,
        index: usize,
        outcome: Outcome,
        states: &mut [RecipientState],
    ) {
        states[index] = RecipientState::from(outcome);
        if let Err(e) = self.queue.record(id, index, outcome).await {
            error!("msg {id}: cannot record the outcome for recipient {index}: {e}");
        }
    }
}

/// Counts one recipient's attempt for /metrics (a deferral that runs out the queue lifetime is
/// counted as the failure it becomes).
fn count_delivery(channel: Channel, status: &DeliveryStatus, received_at: u64, now: u64) {
    use crate::metrics::{Outcome, Transport};
    let transport = match channel {
        Channel::Local => Transport::Local,
        Channel::Remote => Transport::Remote,
    };
    let latency = Some(Duration::from_secs(now.saturating_sub(received_at)));
    match status {
        DeliveryStatus::Delivered => crate::metrics::delivery(transport, Outcome::Success, latency),
        DeliveryStatus::Failed => crate::metrics::delivery(transport, Outcome::Failure, latency),
        DeliveryStatus::Deferred { .. } => {
            crate::metrics::delivery(transport, Outcome::Deferral, None)
        }
    }
}
