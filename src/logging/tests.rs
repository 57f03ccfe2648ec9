//! The logger's promises without a server: a full queue drops and counts (and the count is
//! reported), a flush writes everything queued before it, and a reopen moves to a fresh file at
//! the same path, as logrotate needs.

use super::writer::{Command, Shared, Sink, Writer};
use super::*;
use log::Level;
use std::path::Path;

fn start_writer(path: &Path, capacity: usize) -> Arc<Shared> {
    let shared = Arc::new(Shared::new(capacity));
    let sink = Sink::open(Some(path)).expect("open log");
    let writer = Writer::new(sink, LogFormat::Text, Arc::clone(&shared));
    shared.start(writer).expect("logger thread");
    shared
}

fn flush_now(queue: &Shared) {
    let (done, flushed) = crossbeam_channel::bounded(1);
    assert!(queue.push(Command::Flush(done)).is_ok(), "room for flush");
    flushed.recv_timeout(FLUSH_TIMEOUT).expect("flushed");
}

fn send(queue: &Shared, command: Command) {
    assert!(queue.push(command).is_ok(), "room in the queue");
}

fn line(text: &str) -> Command {
    Command::Line(format!("{text}\n"))
}

#[test]
fn a_flush_writes_everything_before_it_and_drops_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ringmail.log");
    let shared = start_writer(&path, 16);
    let queue = &*shared;
    for i in 0..5 {
        send(queue, line(&format!("line {i}")));
    }
    shared.dropped.fetch_add(3, Ordering::Relaxed);
    flush_now(queue);
    let text = std::fs::read_to_string(&path).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..5],
        ["line 0", "line 1", "line 2", "line 3", "line 4"]
    );
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        lines[5].contains("ringmail-logger warn: 3 log lines dropped: the log queue (16 lines)"),
        "{text}"
    );
    assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn reopen_moves_to_a_fresh_file_at_the_same_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ringmail.log");
    let rotated = dir.path().join("ringmail.log.1");
    let shared = start_writer(&path, 16);
    let queue = &*shared;
    send(queue, line("before"));
    flush_now(queue);
    std::fs::rename(&path, &rotated).expect("rotate");
    // Still the old file: nothing asked for a reopen.
    send(queue, line("after rename"));
    flush_now(queue);
    shared.reopen.store(libc::SIGUSR1, Ordering::SeqCst);
    shared.wake();
    send(queue, line("after reopen"));
    flush_now(queue);
    let old = std::fs::read_to_string(&rotated).expect("old log");
    assert_eq!(old, "before\nafter rename\n");
    let new = std::fs::read_to_string(&path).expect("new log");
    let lines: Vec<&str> = new.lines().collect();
    assert_eq!(lines.len(), 2, "{new}");
    assert!(
        lines[0].ends_with(&format!(
            "ringmail-logger info: signal USR1: log file reopened: {}",
            path.display()
        )),
        "{new}"
    );
    assert_eq!(lines[1], "after reopen");
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    log::set_max_level(LevelFilter::Info);
    // No logger thread: nothing drains the queue.
    let logger = QueueLogger {
        format: LogFormat::Json,
        shared: Arc::new(Shared::new(2)),
    };
    let started = std::time::Instant::now();
    for i in 0..5 {
        logger.log(
            &Record::builder()
                .level(Level::Info)
                .args(format_args!("event {i}"))
                .build(),
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "log calls never wait"
    );
    assert_eq!(logger.shared.dropped.load(Ordering::Relaxed), 3);
    let Some(Command::Line(first)) = logger.shared.pop() else {
        panic!("a queued line")
    };
    assert!(first.starts_with("{\"ts\":\""), "{first}");
    assert!(first.ends_with(",\"msg\":\"event 0\"}\n"), "{first}");
}
