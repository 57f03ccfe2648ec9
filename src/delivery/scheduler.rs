//! The delivery scheduler of one shard: takes each queued message to its recipients, records
//! every outcome in the queue, retries temporary failures on qmail's schedule and bounces
//! permanent ones.
//!
//! A message just accepted is delivered from the bytes still in memory; after a deferral (or
//! after recovery at startup) the bytes are read back from the queue when the next attempt is
//! due. Deliveries in flight on a shard are capped by a semaphore (`queue.delivery_concurrency`).
//! Stopping only stops new attempts: every outcome already reached is durable in the queue, so
//! a restart resumes exactly the recipients that are still pending.

use crate::clock::{now_unix, rfc5322_date};
use crate::delivery::bounce::{BounceKind, build_dsn};
use crate::delivery::local::{LocalOutcome, deliver_local};
use crate::delivery::report::{Detail, StatusCode};
use crate::delivery::retry::{Channel, expired, next_attempt};
use crate::envelope::Envelope;
use crate::queue::{MessageId, Outcome, QueuedMessage, RecipientState, ShardQueue};
use glommio::sync::Semaphore;
use log::{error, info, warn};
use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// What a scheduler needs to know, taken from the configuration.
pub struct SchedulerSettings {
    pub mail_root: PathBuf,
    pub hostname: String,
    /// Seconds before a temporarily failing recipient is given up (qmail's `queuelifetime`).
    pub queue_lifetime: u64,
    /// Deliveries in flight at once on this shard.
    pub concurrency: usize,
}

/// One shard's scheduler. Lives on the shard's executor (`Rc`, never shared across threads).
pub struct Scheduler {
    queue: Rc<ShardQueue>,
    settings: SchedulerSettings,
    slots: Semaphore,
    stopping: Cell<bool>,
    /// Delivery attempts under way (from the first write to the last outcome recorded). A
    /// graceful stop waits for them, so a delivery that reached a Maildir is also recorded and
    /// is not repeated after the restart.
    attempts_in_flight: Cell<usize>,
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

/// How long to wait before retrying after the queue itself failed to read or record.
const QUEUE_ERROR_BACKOFF: Duration = Duration::from_secs(30);

impl Scheduler {
    pub fn new(queue: Rc<ShardQueue>, settings: SchedulerSettings) -> Rc<Scheduler> {
        let slots = Semaphore::new(settings.concurrency.max(1) as u64);
        Rc::new(Scheduler {
            queue,
            settings,
            slots,
            stopping: Cell::new(false),
            attempts_in_flight: Cell::new(0),
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
        let this = Rc::clone(self);
        glommio::spawn_local(this.run_message(id, envelope, Some(Rc::new(message)), states))
            .detach();
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
    }

    /// Delivery attempts still under way; after [`Scheduler::stop`] this only goes down.
    pub fn attempts_in_flight(&self) -> usize {
        self.attempts_in_flight.get()
    }

    async fn run_message(
        self: Rc<Self>,
        id: MessageId,
        envelope: Envelope,
        mut body: Option<Rc<Vec<u8>>>,
        mut states: Vec<RecipientState>,
    ) {
        let envelope = Rc::new(envelope);
        loop {
            if self.stopping.get() {
                return;
            }
            let now = now_unix();
            let mut due = Vec::new();
            let mut earliest = u64::MAX;
            for (index, state) in states.iter().enumerate() {
                if let RecipientState::Pending { next_attempt, .. } = state {
                    if *next_attempt <= now {
                        due.push(index);
                    } else {
                        earliest = earliest.min(*next_attempt);
                    }
                }
            }
            if due.is_empty() {
                if earliest == u64::MAX {
                    info!("end msg {id}");
                    return;
                }
                body = None; // a deferred message's bytes wait on disk, not in memory
                glommio::timer::sleep(Duration::from_secs(earliest - now)).await;
                continue;
            }
            let message = match &body {
                Some(bytes) => Rc::clone(bytes),
                None => match self.queue.read_message(id).await {
                    Ok(bytes) => Rc::new(bytes),
                    Err(e) => {
                        error!("msg {id}: cannot read it back from the queue: {e}; retrying later");
                        glommio::timer::sleep(QUEUE_ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            body = Some(Rc::clone(&message));
            let _in_flight = InFlight::enter(&self.attempts_in_flight);
            self.attempt(id, &envelope, &message, &due, &mut states)
                .await;
        }
    }

    /// One delivery attempt for each due recipient, concurrently; records every outcome.
    async fn attempt(
        self: &Rc<Self>,
        id: MessageId,
        envelope: &Rc<Envelope>,
        message: &Rc<Vec<u8>>,
        due: &[usize],
        states: &mut [RecipientState],
    ) {
        let tasks: Vec<_> = due
            .iter()
            .map(|&index| {
                let this = Rc::clone(self);
                let envelope = Rc::clone(envelope);
                let message = Rc::clone(message);
                glommio::spawn_local(async move {
                    let _slot = this.slots.acquire_permit(1).await;
                    let recipient = &envelope.recipients[index];
                    let outcome = deliver_local(
                        &this.settings.mail_root,
                        &this.settings.hostname,
                        &envelope,
                        recipient,
                        &message,
                    )
                    .await;
                    (index, outcome)
                })
            })
            .collect();

        let now = now_unix();
        let mut failures = Vec::new();
        for task in tasks {
            let (index, outcome) = task.await;
            let recipient = &envelope.recipients[index];
            let attempts = match states[index] {
                RecipientState::Pending { attempts, .. } => attempts + 1,
                _ => 1,
            };
            match outcome {
                LocalOutcome::Delivered(path) => {
                    info!("delivery {id} to {recipient}: success: {}", path.display());
                    self.record(id, index, Outcome::Delivered, states).await;
                }
                LocalOutcome::Permanent(reason) => {
                    warn!("delivery {id} to {recipient}: failure: {reason}");
                    failures.push((index, reason));
                }
                LocalOutcome::Temporary(reason)
                    if expired(envelope.received_at, now, self.settings.queue_lifetime) =>
                {
                    warn!(
                        "delivery {id} to {recipient}: failure: {reason}; giving up after {attempts} attempts"
                    );
                    failures.push((
                        index,
                        format!(
                            "{reason}\nI'm not going to try again; this message has been in the queue too long. (#4.4.7)"
                        ),
                    ));
                }
                LocalOutcome::Temporary(reason) => {
                    let next =
                        next_attempt(envelope.received_at, attempts, Channel::Local).max(now + 1);
                    warn!(
                        "delivery {id} to {recipient}: deferral: {reason} (attempt {attempts}, next {})",
                        rfc5322_date(next)
                    );
                    let outcome = Outcome::Deferred {
                        attempts,
                        next_attempt: next,
                    };
                    self.record(id, index, outcome, states).await;
                }
            }
        }
        if !failures.is_empty() {
            self.bounce(id, envelope, message, failures, states).await;
        }
    }

    /// Queues one bounce for the permanent failures of an attempt, then marks them failed. If
    /// the bounce cannot be queued, the recipients stay pending and are tried again later.
    async fn bounce(
        self: &Rc<Self>,
        id: MessageId,
        envelope: &Envelope,
        message: &[u8],
        failures: Vec<(usize, String)>,
        states: &mut [RecipientState],
    ) {
        // Local reasons end in a qmail-style `(#5.x.x)` code: that is the DSN's Status.
        let listed: Vec<(String, Detail)> = failures
            .iter()
            .map(|(index, reason)| {
                let code = StatusCode::from_qmail_text(reason).unwrap_or(StatusCode(5, 0, 0));
                let detail = Detail::local(code, reason.clone());
                (envelope.recipients[*index].clone(), detail)
            })
            .collect();
        let now = now_unix();
        let hostname = &self.settings.hostname;
        match build_dsn(
            hostname,
            envelope,
            message,
            &listed,
            BounceKind::Failure,
            now,
        ) {
            None => warn!(
                "msg {id}: failed recipients of a double bounce (sender <{}>): discarding",
                envelope.sender
            ),
            Some((bounce_envelope, bounce_message)) => {
                match self.queue.commit(&bounce_envelope, &bounce_message).await {
                    Ok(bounce_id) => {
                        let to = bounce_envelope.recipients.join(", ");
                        info!("bounce msg {bounce_id} for msg {id} to <{to}>");
                        self.submit(bounce_id, bounce_envelope, bounce_message);
                    }
                    Err(e) => {
                        error!("msg {id}: cannot queue a bounce: {e}; will try again");
                        for (index, _) in failures {
                            let outcome = Outcome::Deferred {
                                attempts: 1,
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
