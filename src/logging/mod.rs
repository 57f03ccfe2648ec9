//! Log lines in qmail's readable spirit: one line per event, with message ids, e.g.
//!
//! ```text
//! 2026-11-25 16:31:31.123 ringmail-shard-0 info: new msg 3.1a.00000040 from <a@x.test> 1043 bytes 1 rcpt
//! 2026-11-25 16:31:31.125 ringmail-shard-0 info: delivery 3.1a.00000040 to bob@example.test: success: new/1764...
//! ```
//!
//! or, with `log_format = "json"`, one JSON object per line (`ts`, `level`, `thread`, `msg`).
//!
//! # Nothing blocks a shard on logging
//!
//! A log call formats its line on the calling thread and pushes it onto one bounded lock-free
//! queue (crossbeam's `ArrayQueue`), then unparks the logger thread (`ringmail-logger`,
//! [`writer`]), the only one that writes, to standard error or to `log_file`. No lock and no
//! I/O on the calling thread. Each line is written whole, so lines never interleave.
//!
//! **When the queue is full** ([`QUEUE_LINES`] lines waiting: the disk or the pipe behind
//! stderr has stalled for a long while), the line is dropped and counted, and the logger writes
//! `N log lines dropped ...` as soon as it catches up. Waiting instead would stall every
//! session and delivery on the shard behind a slow log, which is worse for mail than a gap in
//! the log that says it is there.
//!
//! **Nothing is lost at shutdown**: [`flush`] waits until everything queued before it is
//! written and flushed, however slow the log is, as long as the logger makes progress (it gives
//! up after 5 s without any, so a dead log cannot hold the process forever). `ringmail serve` flushes after its last line (`ringmail stopped`),
//! on every error return, and the panic hook installed by [`init`] flushes after logging the
//! panic. A second SIGTERM's immediate exit flushes too (through `log::logger().flush()`).
//!
//! **Reopening**: SIGHUP and SIGUSR1 call [`reopen`]; the logger thread closes the file and
//! opens the configured path again, so logrotate's `postrotate` can rename the file and send
//! either signal (`tuning/logrotate.conf`).

mod format;
mod writer;

pub use format::LogFormat;

use log::{LevelFilter, Log, Metadata, Record};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use writer::{Command, Shared};

/// How long [`flush`] sleeps between tries while the queue is full.
const FLUSH_RETRY: Duration = Duration::from_millis(1);

/// Lines the queue holds before log calls start dropping. At ~150 bytes a line that is ~10 MB
/// at worst, and several seconds of the busiest server's logging.
pub const QUEUE_LINES: usize = 65_536;

/// How long [`flush`] waits while the logger thread makes no progress at all before giving up
/// (a log on a dead NFS mount must not keep the server from exiting). A log that is merely slow
/// is waited for, however long its backlog takes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server logs; from `[server]`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: LevelFilter,
    /// `None`: standard error.
    pub file: Option<PathBuf>,
    pub format: LogFormat,
}

struct QueueLogger {
    format: LogFormat,
    shared: Arc<Shared>,
}

static LOGGER: OnceLock<QueueLogger> = OnceLock::new();

impl Log for QueueLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let thread = std::thread::current();
        let line = format::line(
            self.format,
            std::time::SystemTime::now(),
            thread.name().unwrap_or("main"),
            record.level(),
            record.args(),
        );
        if self.shared.push(Command::Line(line)).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {
        flush();
    }
}

/// Parses a configured level name (validated by the config loader).
pub fn parse_level(name: &str) -> LevelFilter {
    match name {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Opens the log (the file, if one is configured), starts the logger thread and installs the
/// logger and a panic hook that flushes it. Once per process: a later call only changes the
/// level.
pub fn init(settings: &LogSettings) -> io::Result<()> {
    log::set_max_level(settings.level);
    if LOGGER.get().is_some() {
        return Ok(());
    }
    let sink = writer::Sink::open(settings.file.as_deref())?;
    let shared = Arc::new(Shared::new(QUEUE_LINES));
    shared.start(writer::Writer::new(
        sink,
        settings.format,
        Arc::clone(&shared),
    ))?;
    let logger = LOGGER.get_or_init(|| QueueLogger {
        format: settings.format,
        shared,
    });
    // Only fails if another logger was installed first, which ringmail never does.
    let _ = log::set_logger(logger);

    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The panic goes into the log (where the operator looks) and the log is flushed
        // before the process can go down with it; then the usual message on stderr.
        log::error!("panic: {info}");
        flush();
        previous(info);
    }));
    Ok(())
}

/// Waits until every line logged before this call is written and flushed, unless the logger
/// makes no progress for [`FLUSH_TIMEOUT`]. Does nothing before [`init`], or on the logger
/// thread itself.
pub fn flush() {
    let Some(logger) = LOGGER.get() else { return };
    if std::thread::current().name() == Some(writer::THREAD_NAME) {
        return;
    }
    let (done, flushed) = crossbeam_channel::bounded(1);
    let shared = &logger.shared;
    let mut progress = Progress::new(shared);
    // Unlike a log line, the flush request waits for room: its caller is about to exit.
    let mut request = Command::Flush(done);
    loop {
        match shared.push(request) {
            Ok(()) => break,
            Err(_) if progress.stuck(shared) => return,
            Err(back) => {
                request = back;
                std::thread::sleep(FLUSH_RETRY);
            }
        }
    }
    while flushed.recv_timeout(FLUSH_POLL).is_err() {
        if progress.stuck(shared) {
            return;
        }
    }
}

/// How often a waiting [`flush`] looks whether the logger is still moving.
const FLUSH_POLL: Duration = Duration::from_millis(100);

/// Whether the logger has taken anything off the queue lately.
struct Progress {
    taken: u64,
    since: std::time::Instant,
}

impl Progress {
    fn new(shared: &Shared) -> Self {
        Progress {
            taken: shared.taken.load(Ordering::Relaxed),
            since: std::time::Instant::now(),
        }
    }

    /// True once [`FLUSH_TIMEOUT`] has passed without the logger taking a command.
    fn stuck(&mut self, shared: &Shared) -> bool {
        let taken = shared.taken.load(Ordering::Relaxed);
        if taken != self.taken {
            *self = Progress {
                taken,
                since: std::time::Instant::now(),
            };
            return false;
        }
        self.since.elapsed() >= FLUSH_TIMEOUT
    }
}

/// Asks the logger thread to reopen the log file (logrotate); `signal` is named in the line it
/// logs. Never blocks: a signal thread calls it.
pub fn reopen(signal: i32) {
    let Some(logger) = LOGGER.get() else { return };
    logger.shared.reopen.store(signal, Ordering::SeqCst);
    logger.shared.wake();
}

/// Flushes the log when dropped: `ringmail serve` holds one for its whole run, so every way
/// out of it (including an early error) writes what was logged.
#[derive(Debug)]
pub struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush();
    }
}

#[cfg(test)]
mod tests;
