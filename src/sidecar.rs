//! The sidecar: one tokio runtime on its own thread, for everything that needs tokio rather
//! than glommio (DESIGN.md): the DNS resolver (hickory needs `Send` futures and sockets), the
//! control socket and the HTTP control plane (src/http/). Shards talk to it over flume channels
//! and await one-shot replies, so no shard ever blocks on it.

use std::thread::JoinHandle;

/// The running sidecar thread. Dropping it stops the runtime (tasks are cancelled) and joins the
/// thread.
pub struct Sidecar {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sidecar {
    /// Starts the runtime on a thread named `ringmail-sidecar`.
    pub fn start() -> std::io::Result<Sidecar> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ringmail-sidecar".into())
            .spawn(move || {
                // Runs spawned tasks until told to stop (or every Sidecar handle is gone).
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Sidecar {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where to spawn tokio tasks.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// Binds a Unix socket at `path` with `mode` and registers it with the sidecar's runtime, for
/// the control and injection sockets. The caller holds the data directory's lock, so a file
/// already there is a dead server's leftover and is replaced. Returns the socket file's
/// metadata too, so the owner can later check the file is still its own before removing it.
pub fn bind_unix_socket(
    sidecar: &Sidecar,
    path: &std::path::Path,
    mode: u32,
) -> std::io::Result<(tokio::net::UnixListener, std::fs::Metadata)> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    let secured = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::metadata(path))
        .and_then(|meta| listener.set_nonblocking(true).map(|()| meta));
    let meta = match secured {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    // from_std registers with the runtime's reactor, which must be the current one.
    let _runtime = sidecar.handle().enter();
    Ok((tokio::net::UnixListener::from_std(listener)?, meta))
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_and_stops() {
        let sidecar = Sidecar::start().unwrap();
        let (tx, rx) = flume::bounded(1);
        sidecar.handle().spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let _ = tx.send(7);
        });
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(7));
        drop(sidecar);
    }
}
