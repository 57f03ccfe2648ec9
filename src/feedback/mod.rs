//! Complaint feedback (ARF, RFC 5965): the reports that mailbox providers' feedback loops send
//! when a recipient clicks "this is spam". Each report delivered to `[feedback] address` is
//! parsed (`report`), its complaining recipient is suppressed, and the complaint counts against
//! the sending domain ([`complaint_counts`], for the metrics).

mod report;

pub use report::{Complaint, parse_report};

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::suppression::{SuppressionList, Target};

/// Complaints per sender domain since the server started. Written only by the feedback path
/// (off the shards, a few times a day), read by the metrics.
static COMPLAINTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Complaints per sender domain since start, for the metrics
/// (`ringmail_complaints_total{domain="..."}`).
pub fn complaint_counts() -> Vec<(String, u64)> {
    let counts = COMPLAINTS.lock().unwrap_or_else(|e| e.into_inner());
    counts.iter().map(|(d, n)| (d.clone(), *n)).collect()
}

fn count_complaint(domain: &str) {
    let mut counts = COMPLAINTS.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry(domain.to_string()).or_default() += 1;
}

/// Handles one message delivered to the feedback address: if it is an ARF report, suppresses
/// the complaining recipient (for all mail: a complaint is the strongest "stop") and counts the
/// complaint. Does file I/O: run it on the blocking pool. Returns the complaint, if it was one.
pub fn process(message: &[u8], suppression: &SuppressionList, now: u64) -> Option<Complaint> {
    let complaint = match parse_report(message) {
        Ok(complaint) => complaint,
        Err(why) => {
            log::warn!("feedback: a message to the feedback address is not an ARF report: {why}");
            return None;
        }
    };
    let domain = complaint.sender_domain.as_deref().unwrap_or("unknown");
    count_complaint(domain);
    log::info!(
        "feedback: {} complaint from {} about mail from {domain}{}",
        complaint.feedback_type,
        complaint.recipient,
        complaint
            .source_ip
            .as_deref()
            .map(|ip| format!(" (source {ip})"))
            .unwrap_or_default()
    );
    match Target::parse(&complaint.recipient) {
        Ok(Target::Address(address)) => {
            let reason = format!("{} complaint (ARF) about {domain}", complaint.feedback_type);
            if let Err(e) = suppression.add(Target::Address(address), None, &reason, now) {
                log::error!("feedback: cannot suppress {}: {e}", complaint.recipient);
            }
        }
        _ => log::warn!(
            "feedback: the complaining recipient {:?} is not an address; nothing suppressed",
            complaint.recipient
        ),
    }
    Some(complaint)
}
