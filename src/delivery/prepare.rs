//! What the scheduler does for deliverability around each attempt, besides routing: the
//! suppression check before a recipient is tried, the one-click unsubscribe header fields and
//! the DKIM signature on mail that leaves by relay, and what comes back: hard bounces and ARF
//! reports feed the suppression list.
//!
//! Only relayed mail is signed and gets unsubscribe fields: local delivery stays as received
//! (nobody verifies DKIM on a Maildir this host writes itself).
//!
//! Signing happens on the blocking pool, once per message and run: the signature is kept in the
//! message's [`MessagePlan`] (which lives as long as the message's task), so retries send the
//! same signature without signing again. A restart signs again (the signature is not written to
//! the queue). List mail (see `unsubscribe::headers`) is the exception by necessity: each
//! recipient has its own List-Unsubscribe token, which the signature covers, so each recipient
//! gets its own signature (kept per recipient for retries) and its own SMTP transaction.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::blocking::BlockingPool;
use crate::delivery::report::{DeliveryStatus, Detail, RecipientReport, StatusCode};
use crate::dkim::{DkimKeys, from_domain};
use crate::relay::owner::OutboundMessage;
use crate::suppression::{ShardView, SuppressionList, Target};
use crate::unsubscribe::{LIST_HEADER, Unsubscriber};

/// The deliverability settings, loaded once at startup and shared by every shard.
pub struct Deliverability {
    pub dkim: Option<Arc<DkimKeys>>,
    pub unsubscribe: Option<Arc<Unsubscriber>>,
    pub suppression: Arc<SuppressionList>,
    /// A remote 5xx adds the recipient to the suppression list.
    pub auto_on_hard_bounce: bool,
    /// `[feedback] address`, lowercase; `None`: off.
    pub feedback_address: Option<String>,
}

/// One shard's handle: the shared settings, a lock-free view of the suppression list, and the
/// blocking pool for signing and file writes.
pub struct ShardDeliverability {
    shared: Arc<Deliverability>,
    view: ShardView,
    blocking: BlockingPool,
}

/// What is learned about one message on its first attempt in this run, and the signatures made
/// for it. Lives in the message's task.
#[derive(Default)]
pub struct MessagePlan {
    known: bool,
    /// The list the message belongs to (its `X-Ringmail-List:`, or its From: domain when that
    /// is in `[unsubscribe] domains`).
    list: Option<String>,
    /// The message has an `X-Ringmail-List:` field, removed before it is relayed.
    strip_list_header: bool,
    /// The domain whose keys sign it; `None`: unsigned.
    signing_domain: Option<String>,
    /// Whether recipients get per-recipient unsubscribe fields.
    per_recipient: bool,
    /// The header fields prepended for everyone (DKIM-Signature), once signed.
    shared_prefix: Option<Rc<Vec<u8>>>,
    /// The header fields prepended per recipient (DKIM-Signature and List-Unsubscribe*).
    recipient_prefix: HashMap<usize, Rc<Vec<u8>>>,
    /// The message went to the feedback address and was processed as a report.
    feedback_done: bool,
}

/// One SMTP transaction's worth of recipients and the header fields prepended for them.
pub struct OutboundJob {
    pub prefix: Option<Rc<Vec<u8>>>,
    pub strip_list_header: bool,
    pub recipients: Vec<(usize, String)>,
}

impl OutboundJob {
    /// The message as sent: the prefix, then the queued bytes (less `X-Ringmail-List:`). The
    /// original is returned as is when there is nothing to change.
    pub fn message(&self, original: &Arc<OutboundMessage>) -> Arc<OutboundMessage> {
        if self.prefix.is_none() && !self.strip_list_header {
            return Arc::clone(original);
        }
        let mut body =
            Vec::with_capacity(original.body.len() + self.prefix.as_ref().map_or(0, |p| p.len()));
        if let Some(prefix) = &self.prefix {
            body.extend_from_slice(prefix);
        }
        if self.strip_list_header {
            body.extend_from_slice(&strip_field(&original.body, LIST_HEADER));
        } else {
            body.extend_from_slice(&original.body);
        }
        Arc::new(OutboundMessage {
            id: original.id,
            envelope: original.envelope.clone(),
            body,
        })
    }
}

impl ShardDeliverability {
    pub fn new(shared: Arc<Deliverability>, blocking: BlockingPool) -> ShardDeliverability {
        let view = ShardView::new(Arc::clone(&shared.suppression));
        ShardDeliverability {
            shared,
            view,
            blocking,
        }
    }

    /// Reads what the plan needs from the message's header block (once per message and run).
    pub fn learn(&self, plan: &mut MessagePlan, message: &OutboundMessage) {
        if plan.known {
            return;
        }
        plan.known = true;
        let header_end =
            memchr::memmem::find(&message.body, b"\r\n\r\n").map_or(message.body.len(), |i| i + 4);
        let header = &message.body[..header_end];
        let list_header = field_value(header, LIST_HEADER);
        plan.strip_list_header = list_header.is_some();
        let from = from_domain(header);
        plan.list = match &self.shared.unsubscribe {
            Some(u) => u.list_of(list_header.as_deref(), from.as_deref()),
            None => list_header
                .map(|l| l.trim().to_string())
                .filter(|l| crate::suppression::check_list_name(l).is_ok()),
        };
        plan.per_recipient = self.shared.unsubscribe.is_some() && plan.list.is_some();
        plan.signing_domain = match (&self.shared.dkim, &from) {
            (Some(keys), Some(from)) => keys.signing_domain(from).map(str::to_string),
            _ => None,
        };
    }

    /// A failure report if `recipient` is suppressed (for all mail, or for the message's list).
    pub fn suppressed(
        &self,
        plan: &MessagePlan,
        id: impl std::fmt::Display,
        recipient: &str,
    ) -> Option<RecipientReport> {
        let ((target, list), entry) = self.view.check(recipient, plan.list.as_deref())?;
        let scope = match &list {
            Some(list) => format!(" for list {list}"),
            None => String::new(),
        };
        log::info!(
            "msg {id}: {recipient} is suppressed ({target}{scope}: {}); not sent",
            entry.reason
        );
        let text = format!(
            "Sorry, <{recipient}> is on this server's suppression list ({target}{scope}, since \
             {}: {}); I did not try to deliver. (#5.7.1)",
            crate::clock::rfc5322_date(entry.since),
            entry.reason
        );
        Some(RecipientReport {
            status: DeliveryStatus::Failed,
            detail: Detail::local(StatusCode(5, 7, 1), text),
        })
    }

    /// If `recipient` is the feedback address and this message was not yet processed as a
    /// report, processes it (on the blocking pool): the complaining recipient is suppressed.
    pub async fn feedback(
        &self,
        plan: &mut MessagePlan,
        message: &Arc<OutboundMessage>,
        recipient: &str,
    ) {
        let Some(address) = &self.shared.feedback_address else {
            return;
        };
        if plan.feedback_done || !recipient.eq_ignore_ascii_case(address) {
            return;
        }
        plan.feedback_done = true;
        let message = Arc::clone(message);
        let list = Arc::clone(&self.shared.suppression);
        let now = crate::clock::now_unix();
        let done = self
            .blocking
            .run(move || crate::feedback::process(&message.body, &list, now).is_some())
            .await;
        if let Err(e) = done {
            log::error!("feedback: the report could not be processed: {e:?}");
        }
    }

    /// The transactions for a remote destination's recipients: one for all of them, with the
    /// message's signature, or one per recipient for list mail with unsubscribe fields. Signs
    /// what is not signed yet, on the blocking pool.
    pub async fn outbound_jobs(
        &self,
        plan: &mut MessagePlan,
        message: &Arc<OutboundMessage>,
        recipients: Vec<(usize, String)>,
    ) -> Vec<OutboundJob> {
        let strip = plan.strip_list_header;
        if !plan.per_recipient {
            if plan.shared_prefix.is_none()
                && let Some(domain) = plan.signing_domain.clone()
            {
                plan.shared_prefix = self
                    .sign(message, domain, strip, vec![Vec::new()])
                    .await
                    .pop();
            }
            return vec![OutboundJob {
                prefix: plan.shared_prefix.clone(),
                strip_list_header: strip,
                recipients,
            }];
        }
        let (Some(unsubscribe), Some(list)) = (&self.shared.unsubscribe, plan.list.clone()) else {
            return Vec::new();
        };
        let now = crate::clock::now_unix();
        let missing: Vec<usize> = recipients
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !plan.recipient_prefix.contains_key(i))
            .collect();
        if !missing.is_empty() {
            let fields: Vec<Vec<u8>> = recipients
                .iter()
                .filter(|(i, _)| missing.contains(i))
                .map(|(_, address)| unsubscribe.header_fields(&list, address, now))
                .collect();
            let prefixes = match plan.signing_domain.clone() {
                Some(domain) => self.sign(message, domain, strip, fields).await,
                None => fields.into_iter().map(Rc::new).collect(),
            };
            for (index, prefix) in missing.into_iter().zip(prefixes) {
                plan.recipient_prefix.insert(index, prefix);
            }
        }
        recipients
            .into_iter()
            .map(|(index, address)| OutboundJob {
                prefix: plan.recipient_prefix.get(&index).cloned(),
                strip_list_header: strip,
                recipients: vec![(index, address)],
            })
            .collect()
    }

    /// For each of `added` (header fields to prepend, possibly empty), the DKIM-Signature
    /// fields followed by those fields, signed over `added` + the message (stripped of
    /// `X-Ringmail-List:` when `strip`). On the blocking pool; a failure is logged and the
    /// message goes out unsigned (with its added fields).
    async fn sign(
        &self,
        message: &Arc<OutboundMessage>,
        domain: String,
        strip: bool,
        added: Vec<Vec<u8>>,
    ) -> Vec<Rc<Vec<u8>>> {
        let Some(keys) = self.shared.dkim.clone() else {
            return added.into_iter().map(Rc::new).collect();
        };
        let message = Arc::clone(message);
        let fallback = added.clone();
        let signed = self
            .blocking
            .run(move || {
                let stripped;
                let body: &[u8] = if strip {
                    stripped = strip_field(&message.body, LIST_HEADER);
                    &stripped
                } else {
                    &message.body
                };
                added
                    .into_iter()
                    .map(|fields| {
                        let mut prefix = keys.sign(&domain, &fields, body)?;
                        prefix.extend_from_slice(&fields);
                        Ok(prefix)
                    })
                    .collect::<Result<Vec<Vec<u8>>, String>>()
            })
            .await;
        match signed {
            Ok(Ok(prefixes)) => prefixes.into_iter().map(Rc::new).collect(),
            Ok(Err(e)) => {
                log::error!("{e}; sending the message unsigned");
                fallback.into_iter().map(Rc::new).collect()
            }
            Err(e) => {
                log::error!("DKIM signing could not run ({e:?}); sending unsigned");
                fallback.into_iter().map(Rc::new).collect()
            }
        }
    }

    /// After an attempt: a recipient that a remote server refused permanently as a bad mailbox
    /// (a hard bounce: 5.1.x, 5.2.1) is added to the suppression list, when
    /// `auto_on_hard_bounce` is on. The write happens on the
    /// blocking pool, in the background.
    pub fn learn_from_reports(&self, reports: &[(String, &RecipientReport)]) {
        if !self.shared.auto_on_hard_bounce {
            return;
        }
        for (recipient, report) in reports {
            let detail = &report.detail;
            let hard = is_hard_bounce(report);
            if !hard {
                continue;
            }
            let Ok(target @ Target::Address(_)) = Target::parse(recipient) else {
                continue;
            };
            let reason = format!("hard bounce: {detail}");
            let list = Arc::clone(&self.shared.suppression);
            let write = self
                .blocking
                .run(move || list.add(target, None, &reason, crate::clock::now_unix()));
            let recipient = recipient.clone();
            glommio::spawn_local(async move {
                match write.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        log::error!("cannot suppress {recipient} after its hard bounce: {e}")
                    }
                    Err(e) => {
                        log::error!("cannot suppress {recipient} after its hard bounce: {e:?}")
                    }
                }
            })
            .detach();
        }
    }
}

/// Whether a report is a hard bounce: a remote refusal that says the mailbox is bad (5.1.x but
/// the sender-address codes 5.1.7 and 5.1.8; 5.2.1 disabled). A policy or content refusal
/// (5.7.x), a refused MAIL FROM or a reply without an enhanced code says nothing against the
/// recipient and must not suppress it.
fn is_hard_bounce(report: &RecipientReport) -> bool {
    let detail = &report.detail;
    let StatusCode(class, subject, code) = detail.code;
    let bad_mailbox =
        class == 5 && ((subject == 1 && !matches!(code, 7 | 8)) || (subject == 2 && code == 1));
    report.status == DeliveryStatus::Failed
        && bad_mailbox
        && detail.remote_mta.is_some()
        && detail.diagnostic.is_some()
}

/// The unfolded value of the first `name:` field in a header block.
fn field_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if !field.trim_end().eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.trim().to_string();
        while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(next.trim());
        }
        return Some(value);
    }
    None
}

/// `message` without any `name:` field (and its continuation lines) in its header block.
pub fn strip_field(message: &[u8], name: &str) -> Vec<u8> {
    let header_end = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2);
    let mut out = Vec::with_capacity(message.len());
    let mut skipping = false;
    let mut start = 0;
    while start < header_end {
        let end = memchr::memmem::find(&message[start..header_end], b"\r\n")
            .map_or(header_end, |i| start + i + 2);
        let line = &message[start..end];
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()..].trim_ascii_start().starts_with(b":");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        start = end;
    }
    out.extend_from_slice(&message[header_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bad_mailbox_refusals_are_hard_bounces() {
        let remote = |code: StatusCode, status: DeliveryStatus| RecipientReport {
            status,
            detail: Detail {
                code,
                text: String::new(),
                remote_mta: Some("mx.example [192.0.2.1]".into()),
                diagnostic: Some("550 no".into()),
                note: None,
            },
        };
        let failed = DeliveryStatus::Failed;
        for (code, hard) in [
            (StatusCode(5, 1, 1), true),
            (StatusCode(5, 1, 10), true),
            (StatusCode(5, 2, 1), true),
            (StatusCode(5, 1, 8), false),
            (StatusCode(5, 7, 1), false),
            (StatusCode(5, 0, 0), false),
            (StatusCode(5, 2, 2), false),
        ] {
            assert_eq!(is_hard_bounce(&remote(code, failed)), hard, "{code}");
        }
        let deferred = DeliveryStatus::Deferred { counts: true };
        assert!(!is_hard_bounce(&remote(StatusCode(4, 1, 1), deferred)));
        let local = RecipientReport {
            status: failed,
            detail: Detail::local(StatusCode(5, 1, 1), "no mailbox"),
        };
        assert!(!is_hard_bounce(&local));
    }

    #[test]
    fn the_list_field_is_read_and_stripped() {
        let m = b"From: a@b.c\r\nX-Ringmail-List: weekly\r\n  digest\r\nSubject: s\r\n\r\nX-Ringmail-List: body\r\n";
        assert_eq!(
            field_value(m, "x-ringmail-list").as_deref(),
            Some("weekly digest")
        );
        assert_eq!(
            strip_field(m, LIST_HEADER),
            b"From: a@b.c\r\nSubject: s\r\n\r\nX-Ringmail-List: body\r\n"
        );
        let plain = b"From: a@b.c\r\n\r\nbody\r\n";
        assert_eq!(strip_field(plain, LIST_HEADER), plain);
        assert_eq!(field_value(plain, LIST_HEADER), None);
    }
}
