//! `ringmail queue stat|list`: read the queue directory of a running or stopped server, like
//! qmail-qstat and qmail-qread. Reading takes no lock and changes nothing.

use super::{ConfigArg, fail};
use crate::clock::rfc5322_date;
use crate::queue::{QueuedMessage, RecipientState};
use std::process::ExitCode;

fn load(arg: &ConfigArg) -> Result<Vec<QueuedMessage>, ExitCode> {
    load_config(&arg.load()?)
}

fn load_config(config: &crate::config::Config) -> Result<Vec<QueuedMessage>, ExitCode> {
    let dir = config.queue_dir();
    if !dir.exists() {
        return Ok(Vec::new());
    }
    crate::queue::scan(&dir)
        .map_err(|e| fail(format!("cannot read the queue in {}: {e}", dir.display())))
}

pub fn stat(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    let messages = load(arg)?;
    let mut pending = 0usize;
    let mut deferred = 0usize;
    for message in &messages {
        for state in &message.states {
            if let RecipientState::Pending { attempts, .. } = state {
                pending += 1;
                if *attempts > 0 {
                    deferred += 1;
                }
            }
        }
    }
    println!("messages in queue: {}", messages.len());
    println!("recipients not yet delivered: {pending}");
    println!("recipients deferred after a failed attempt: {deferred}");
    Ok(ExitCode::SUCCESS)
}

pub fn list(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    list_config(&arg.load()?)
}

/// `queue list` for a configuration already loaded (also `sendmail -bp` and `mailq`).
pub fn list_config(config: &crate::config::Config) -> Result<ExitCode, ExitCode> {
    let messages = load_config(config)?;
    if messages.is_empty() {
        println!("the queue is empty");
    }
    for message in &messages {
        let sender = &message.envelope.sender;
        println!(
            "{} msg {} size {} from <{}>",
            rfc5322_date(message.envelope.received_at),
            message.id,
            message.size,
            sender
        );
        for (recipient, state) in message.envelope.recipients.iter().zip(&message.states) {
            let state = match state {
                RecipientState::Delivered => "done".to_string(),
                RecipientState::Failed => "failed (bounced)".to_string(),
                RecipientState::Pending { attempts: 0, .. } => "pending".to_string(),
                RecipientState::Pending {
                    attempts,
                    next_attempt,
                } => {
                    format!(
                        "deferred, {attempts} attempts, next {}",
                        rfc5322_date(*next_attempt)
                    )
                }
            };
            println!("\t{state}\t{recipient}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
