//! Queue commit throughput: durable commits/s of 1 KB messages with 64 concurrent committers
//! on one glommio executor (group commit), and with one committer (an fdatasync per commit).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glommio::LocalExecutorBuilder;
use ringmail::envelope::Envelope;
use ringmail::queue::{QueueOptions, ShardQueue};

/// A fresh directory per measurement, under the system temp dir.
fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "ringmail-queue-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Opens a queue in a fresh directory and times `commits` commits spread over `committers`
/// tasks. Setup (open, preallocation) is not timed.
fn timed_commits(commits: u64, committers: u64) -> Duration {
    let dir = scratch_dir();
    let run_dir = dir.clone();
    let elapsed = LocalExecutorBuilder::default()
        .spawn(move || async move {
            let opts = QueueOptions {
                segment_size: 64 << 20,
                ..QueueOptions::default()
            };
            let (queue, _) = ShardQueue::open(&run_dir, 0, opts)
                .await
                .expect("queue opens");
            let envelope = Rc::new(Envelope {
                sender: "bench@example.org".into(),
                recipients: vec!["rcpt@example.net".into()],
                received_at: 1_795_624_291,
                smtputf8: false,
                body_8bit: false,
            });
            let message: Rc<Vec<u8>> = Rc::new(vec![b'x'; 1024]);
            let start = Instant::now();
            let tasks: Vec<_> = (0..committers)
                .map(|c| {
                    let (queue, envelope, message) =
                        (queue.clone(), envelope.clone(), message.clone());
                    let share = commits / committers + u64::from(c < commits % committers);
                    glommio::spawn_local(async move {
                        for _ in 0..share {
                            queue.commit(&envelope, &message).await.expect("commit");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
            let elapsed = start.elapsed();
            queue.close().await.expect("close");
            elapsed
        })
        .expect("executor starts")
        .join()
        .expect("bench body completes");
    // A few small files; deleting them does not disturb later samples much.
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

fn queue_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_append_1k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for committers in [64, 1] {
        group.bench_function(format!("{committers}_committers"), |b| {
            b.iter_custom(|iters| timed_commits(iters, committers))
        });
    }
    group.finish();
}

criterion_group!(benches, queue_append);
criterion_main!(benches);
