//! The transport seam: every way out of the queue (a local Maildir, a remote server through its
//! destination's owner) takes recipients of one message and returns one [`RecipientReport`]
//! per recipient, with the status code and, for remote deliveries, the remote's own reply, so
//! the scheduler records outcomes and writes DSNs the same way whatever the transport.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Config;
use crate::delivery::local::LocalOutcome;
use crate::delivery::report::{DeliveryStatus, Detail, RecipientReport, StatusCode};
use crate::envelope::Envelope;
use crate::local::deliver::{Injector, LocalAgent, LocalSettings};
use crate::queue::{MessageId, ShardQueue};
use crate::relay::Destination;
use crate::relay::owner::{OutboundMessage, RelayTransport};

/// A way out for recipients of one message.
#[allow(async_fn_in_trait)] // used on one shard, never boxed or sent
pub trait Transport {
    /// Delivers `recipients` (`(index in the envelope, address)`) of `message`; returns one
    /// report per recipient, in any order.
    async fn deliver(
        &self,
        message: &Arc<OutboundMessage>,
        recipients: Vec<(usize, String)>,
    ) -> Vec<(usize, RecipientReport)>;
}

/// Local delivery: `.qmail` instructions, Maildirs, mboxes, programs and forwards (see
/// `crate::local`).
pub struct LocalTransport {
    agent: LocalAgent<QueueInjector>,
}

/// A message a local delivery put into the queue (a forward), for the scheduler to start.
pub type Injected = (MessageId, Envelope, Vec<u8>);

/// Forwards go into this shard's queue; the scheduler picks them up with
/// [`LocalTransport::take_injected`] and starts their delivery.
pub struct QueueInjector {
    queue: Rc<ShardQueue>,
    injected: RefCell<Vec<Injected>>,
}

impl Injector for QueueInjector {
    async fn inject(&self, envelope: Envelope, message: Vec<u8>) -> Result<String, String> {
        let id = self
            .queue
            .commit(&envelope, &message)
            .await
            .map_err(|e| e.to_string())?;
        log::info!(
            "new msg {id} (forward) from <{}> to <{}>",
            envelope.sender,
            envelope.recipients.join(", ")
        );
        self.injected.borrow_mut().push((id, envelope, message));
        Ok(id.to_string())
    }
}

impl LocalTransport {
    /// The local transport of a configuration, queueing forwards into `queue`.
    pub fn from_config(config: &Config, queue: Rc<ShardQueue>) -> LocalTransport {
        let local = &config.local;
        let settings = LocalSettings {
            mail_root: config.mail_root(),
            hostname: config.server.hostname.clone(),
            separator: local.extension_separator.chars().next().unwrap_or('-'),
            program_timeout: std::time::Duration::from_secs(local.program_timeout_secs),
            lock_timeout: std::time::Duration::from_secs(local.mbox_lock_timeout_secs),
            progress_dir: config
                .server
                .data_dir
                .join(crate::local::checkpoint::PROGRESS_DIR),
            service_user: service_user_name(),
            system_users: system_users(config),
        };
        let injector = QueueInjector {
            queue,
            injected: RefCell::new(Vec::new()),
        };
        let pool = crate::local::local_pool(local.delivery_threads);
        let mut agent = LocalAgent::new(settings, injector, pool.clone());
        let tables = local.aliases.is_some()
            || local.virtualdomains.is_some()
            || local.assign.is_some()
            || local.system_users;
        if tables {
            let mut sources = crate::local::recipients::Sources::from_config(config);
            sources.scan_mailboxes = false;
            let table = crate::local::recipients::RecipientTable::new(
                sources,
                std::time::Duration::from_secs(local.refresh_secs),
                pool,
            );
            agent = agent.with_tables(table);
        }
        LocalTransport { agent }
    }

    /// The messages deliveries have queued since the last call (forwards).
    pub fn take_injected(&self) -> Vec<Injected> {
        std::mem::take(&mut *self.agent.injector.injected.borrow_mut())
    }
}

/// The system users, read once from /etc/passwd when `[local] system_users` is on.
fn system_users(config: &Config) -> Option<Arc<crate::local::users::SystemUsers>> {
    if !config.local.system_users {
        return None;
    }
    let path = std::path::Path::new("/etc/passwd");
    match crate::local::users::SystemUsers::load(path, config.local.min_uid) {
        Ok(users) => Some(Arc::new(users)),
        Err(e) => {
            log::error!("local.system_users: cannot read {}: {e}", path.display());
            Some(Arc::default())
        }
    }
}

/// The name of the user we run as (after the privilege drop), for `USER`.
fn service_user_name() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

impl Transport for LocalTransport {
    async fn deliver(
        &self,
        message: &Arc<OutboundMessage>,
        recipients: Vec<(usize, String)>,
    ) -> Vec<(usize, RecipientReport)> {
        let mut reports = Vec::with_capacity(recipients.len());
        for (index, address) in recipients {
            let outcome = self.agent.deliver(message, index, &address).await;
            reports.push((index, local_report(outcome)));
        }
        reports
    }
}

/// A local delivery's outcome as a report; the code is the `(#x.y.z)` at the end of qmail-style
/// reasons.
fn local_report(outcome: LocalOutcome) -> RecipientReport {
    let (status, text, fallback) = match outcome {
        LocalOutcome::Delivered(what) => (DeliveryStatus::Delivered, what, StatusCode(2, 0, 0)),
        LocalOutcome::Temporary(reason) => (
            DeliveryStatus::Deferred { counts: true },
            reason,
            StatusCode(4, 0, 0),
        ),
        LocalOutcome::Permanent(reason) => (DeliveryStatus::Failed, reason, StatusCode(5, 0, 0)),
    };
    let code = StatusCode::from_qmail_text(&text).unwrap_or(fallback);
    RecipientReport {
        status,
        detail: Detail::local(code, text),
    }
}

/// Remote delivery to one destination, through the shard that owns it.
pub struct RemoteTransport<'a> {
    pub relay: &'a RelayTransport,
    pub destination: Destination,
}

impl Transport for RemoteTransport<'_> {
    async fn deliver(
        &self,
        message: &Arc<OutboundMessage>,
        recipients: Vec<(usize, String)>,
    ) -> Vec<(usize, RecipientReport)> {
        self.relay
            .deliver(self.destination.clone(), Arc::clone(message), recipients)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_outcomes_carry_their_qmail_codes() {
        let r = local_report(LocalOutcome::Permanent(
            "This message is looping: it already has my Delivered-To line. (#5.4.6)".into(),
        ));
        assert_eq!(r.status, DeliveryStatus::Failed);
        assert_eq!(r.detail.code, StatusCode(5, 4, 6));
        let r = local_report(LocalOutcome::Temporary("disk trouble".into()));
        assert_eq!(r.status, DeliveryStatus::Deferred { counts: true });
        assert_eq!(r.detail.code, StatusCode(4, 0, 0));
        let r = local_report(LocalOutcome::Delivered("/m/new/x".into()));
        assert_eq!(r.status, DeliveryStatus::Delivered);
    }
}
