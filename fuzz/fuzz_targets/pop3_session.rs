//! Fuzz target: the POP3 session fed arbitrary command lines never panics; logins succeed and
//! the mailbox holds three messages, so TRANSACTION-state commands are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::pop3::session::{Action, AuthOutcome, MessageInfo, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let config = SessionConfig {
        allow_plaintext_auth: true,
        tls_available: true,
        tls_active: false,
        login_delay: None,
    };
    let mut session = Session::new(config, Some("<1.2@fuzz>".into()));
    let _ = session.greeting();
    let mut pending: Vec<Action> = Vec::new();
    for line in data.split_inclusive(|b| *b == b'\n') {
        pending.extend(session.handle_line(line, false));
        while let Some(action) = pending.pop() {
            let more = match action {
                Action::CheckPassword { .. } | Action::CheckApop { .. } => {
                    session.auth_result(AuthOutcome::Accepted)
                }
                Action::OpenMailbox { .. } => session.mailbox_opened(Ok((0..3)
                    .map(|i| MessageInfo {
                        uid: format!("uid{i}"),
                        size: 100 * (i + 1),
                    })
                    .collect())),
                Action::Commit { .. } => session.committed(true),
                Action::Close => return,
                Action::Send(_) | Action::StartTls | Action::SendMessage { .. } => Vec::new(),
            };
            pending.extend(more);
        }
    }
});
