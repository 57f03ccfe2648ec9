//! SIGTERM triggers a graceful shutdown (own test binary: it installs process-wide handlers).

use std::sync::mpsc;
use std::time::Duration;

use shards::{ShardContext, ShardSetConfig};

#[test]
fn sigterm_stops_the_set() {
    let config = ShardSetConfig {
        shard_count: 2,
        name: "sigtest".into(),
        ..ShardSetConfig::default()
    };
    let set = shards::start::<(), _, _>(config, |ctx: ShardContext<()>| async move {
        ctx.shutdown().wait().await;
        ctx.id()
    })
    .expect("start");
    shards::install_signal_handlers(&set).expect("signal handlers");
    // SAFETY: kill(2) on our own pid with a handled signal has no memory-safety effects.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    assert_eq!(rc, 0);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(set.join());
    });
    let outputs = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shards did not stop on SIGTERM")
        .expect("join");
    assert_eq!(outputs, vec![0, 1]);
}
