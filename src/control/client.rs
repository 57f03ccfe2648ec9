//! The control socket's client, for `ringmail queue flush|delete|bounce|pause|resume|status`:
//! plain blocking std I/O with timeouts (a CLI needs no runtime).

use super::protocol::{BadReply, Reply, format_request};
use super::{ControlRequest, SHARD_TIMEOUT, socket_path};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the CLI waits for a reply: the server's own deadline for the shards, plus slack,
/// so that a stuck shard is reported by the server (naming the shard) rather than by us.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(SHARD_TIMEOUT.as_secs() + 5);

/// The most reply text read; a status for hundreds of shards is a few KiB.
const MAX_REPLY: u64 = 1024 * 1024;

/// Why no reply came back. Every variant means the request may not have been carried out.
#[derive(Debug)]
pub enum ClientError {
    /// No socket, or nobody listening on it: no server runs on this data directory.
    NotRunning {
        data_dir: PathBuf,
        socket: PathBuf,
        why: &'static str,
    },
    /// The socket is there but could not be connected to (permissions, path too long).
    Connect { socket: PathBuf, source: io::Error },
    /// Connected, but sending or receiving failed.
    Io { socket: PathBuf, source: io::Error },
    /// Connected and sent, but no reply within the timeout.
    TimedOut { socket: PathBuf, after: Duration },
    /// Something answered that does not speak this protocol.
    BadReply(BadReply),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRunning {
                data_dir,
                socket,
                why,
            } => write!(
                f,
                "no ringmail server is running on {} (control socket {}: {why})",
                data_dir.display(),
                socket.display()
            ),
            Self::Connect { socket, source } => {
                write!(f, "cannot connect to {}: {source}", socket.display())
            }
            Self::Io { socket, source } => write!(f, "{}: {source}", socket.display()),
            Self::TimedOut { socket, after } => write!(
                f,
                "no reply from {} within {} s; the request may still be carried out",
                socket.display(),
                after.as_secs()
            ),
            Self::BadReply(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends `request` to the server running on `data_dir` and returns its reply (which may be an
/// `err` reply: that is the server's answer, not a client error).
pub fn send(
    data_dir: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let socket = socket_path(data_dir);
    let mut stream = UnixStream::connect(&socket).map_err(|source| {
        let why = match source.kind() {
            io::ErrorKind::NotFound => "not found",
            // A leftover socket file of a server that was killed.
            io::ErrorKind::ConnectionRefused => "connection refused",
            _ => "",
        };
        if why.is_empty() {
            ClientError::Connect {
                socket: socket.clone(),
                source,
            }
        } else {
            ClientError::NotRunning {
                data_dir: data_dir.to_path_buf(),
                socket: socket.clone(),
                why,
            }
        }
    })?;
    let io_error = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ClientError::TimedOut {
                socket: socket.clone(),
                after: timeout,
            }
        } else {
            ClientError::Io {
                socket: socket.clone(),
                source,
            }
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_error)?;
    match stream.write_all(format_request(request).as_bytes()) {
        Ok(()) => {}
        // The server may have answered and closed already (it does so when it gives up on a
        // request); its answer is then waiting to be read.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(io_error(e)),
    }
    // Half-close: the request is complete. Failure is harmless (the line ends in a newline).
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    // The read timeout applies per read; the server writes its reply at once, so one slow
    // read is the whole wait.
    stream
        .take(MAX_REPLY)
        .read_to_end(&mut reply)
        .map_err(io_error)?;
    Reply::decode(&String::from_utf8_lossy(&reply)).map_err(ClientError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_means_no_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = send(dir.path(), &ControlRequest::Flush, Duration::from_secs(1))
            .expect_err("no server");
        assert!(matches!(
            err,
            ClientError::NotRunning {
                why: "not found",
                ..
            }
        ));
        let want = format!(
            "no ringmail server is running on {} (control socket {}/control.sock: not found)",
            dir.path().display(),
            dir.path().display()
        );
        assert_eq!(err.to_string(), want);
    }

    #[test]
    fn leftover_socket_file_is_connection_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A listener that is gone leaves its file behind, as a killed server does.
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).expect("bind"));
        let err = send(dir.path(), &ControlRequest::Pause, Duration::from_secs(1))
            .expect_err("no server");
        assert!(
            err.to_string()
                .ends_with("control.sock: connection refused)"),
            "{err}"
        );
    }

    #[test]
    fn silent_server_times_out_and_garbage_is_a_bad_reply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener =
            std::os::unix::net::UnixListener::bind(socket_path(dir.path())).expect("bind");
        let server = std::thread::spawn(move || {
            // First connection: never answer (hold it until the client gave up).
            let (silent, _) = listener.accept().expect("accept");
            // Second: take the request, then answer like an SMTP server would.
            let (mut smtp, _) = listener.accept().expect("accept");
            let mut request = String::new();
            let _ = smtp.read_to_string(&mut request);
            let _ = smtp.write_all(b"500 what?\r\n");
            drop(smtp);
            drop(silent);
        });
        let err = send(
            dir.path(),
            &ControlRequest::Flush,
            Duration::from_millis(200),
        )
        .expect_err("silent");
        assert!(matches!(err, ClientError::TimedOut { .. }), "{err}");
        let err =
            send(dir.path(), &ControlRequest::Flush, Duration::from_secs(5)).expect_err("garbage");
        assert!(matches!(err, ClientError::BadReply(_)), "{err}");
        server.join().expect("server thread");
    }
}
