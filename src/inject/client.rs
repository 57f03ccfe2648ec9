//! The injection socket's client, for `ringmail sendmail`: plain blocking std I/O.

use super::protocol::{Head, Outcome, Reply, format_head};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for the server's answer: its commit deadline plus slack.
const REPLY_TIMEOUT: Duration = Duration::from_secs(150);

/// Hands one message to the server behind `socket` and returns its answer. Every failure to get
/// an answer is a temporary failure (EX_TEMPFAIL): the message was not accepted, and the caller
/// keeps it (cron mails again, a program retries).
pub fn inject(socket: &Path, sender: &str, recipients: &[String], message: &[u8]) -> Reply {
    let tempfail = |text: String| Reply::new(Outcome::TempFail, text);
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => {
            let why = match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    "is the ringmail server running?".to_string()
                }
                io::ErrorKind::PermissionDenied => {
                    "permission denied (see inject.socket in the configuration)".to_string()
                }
                _ => e.to_string(),
            };
            return tempfail(format!(
                "cannot reach the injection socket {}: {e}; {why}",
                socket.display()
            ));
        }
    };
    let head = Head {
        sender: sender.to_string(),
        recipients: recipients.to_vec(),
        size: message.len() as u64,
    };
    let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    let sent = stream
        .write_all(&format_head(&head))
        .and_then(|()| stream.write_all(message));
    if let Err(e) = sent {
        // The server may have refused early (a too-big message) and closed: read its answer.
        if !matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            return tempfail(format!("{}: {e}", socket.display()));
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    if let Err(e) = stream.take(64 * 1024).read_to_end(&mut answer) {
        return tempfail(format!("no answer from {}: {e}", socket.display()));
    }
    let text = String::from_utf8_lossy(&answer);
    Reply::decode(&text).unwrap_or_else(|| {
        tempfail(format!(
            "unexpected answer from {}: {:?}",
            socket.display(),
            text.chars().take(80).collect::<String>()
        ))
    })
}
