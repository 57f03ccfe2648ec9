//! The transport seam: every way out of the queue (a local Maildir, a remote server through its
//! destination's owner) takes recipients of one message and returns one [`RecipientReport`]
//! per recipient, with the status code and, for remote deliveries, the remote's own reply, so
//! the scheduler records outcomes and writes DSNs the same way whatever the transport.

use std::path::PathBuf;
use std::sync::Arc;

use crate::delivery::local::{LocalOutcome, deliver_local};
use crate::delivery::report::{DeliveryStatus, Detail, RecipientReport, StatusCode};
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

/// Delivery into Maildirs under the mail root.
pub struct LocalTransport {
    pub mail_root: PathBuf,
    pub hostname: String,
}

impl Transport for LocalTransport {
    async fn deliver(
        &self,
        message: &Arc<OutboundMessage>,
        recipients: Vec<(usize, String)>,
    ) -> Vec<(usize, RecipientReport)> {
        let mut reports = Vec::with_capacity(recipients.len());
        for (index, address) in recipients {
            let outcome = deliver_local(
                &self.mail_root,
                &self.hostname,
                &message.envelope,
                &address,
                &message.body,
            )
            .await;
            reports.push((index, local_report(outcome)));
        }
        reports
    }
}

/// A local delivery's outcome as a report; the code is the `(#x.y.z)` at the end of qmail-style
/// reasons.
fn local_report(outcome: LocalOutcome) -> RecipientReport {
    let (status, text, fallback) = match outcome {
        LocalOutcome::Delivered(path) => (
            DeliveryStatus::Delivered,
            path.display().to_string(),
            StatusCode(2, 0, 0),
        ),
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
