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
