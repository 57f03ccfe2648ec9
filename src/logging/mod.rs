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
//! A log call formats its line on the calling thread and pushes it onto one bounded
//! crossbeam channel (lock-free for a sender that finds room); the logger thread
//! (`ringmail-logger`, [`writer`]) is the only one that writes, to standard error or to
//! `log_file`. Each line is written whole, so lines never interleave.
//!
//! **When the queue is full** ([`QUEUE_LINES`] lines waiting: the disk or the pipe behind
//! stderr has stalled for a long while), the line is dropped and counted, and the logger writes
//! `N log lines dropped ...` as soon as it catches up. Waiting instead would stall every
//! session and delivery on the shard behind a slow log, which is worse for mail than a gap in
//! the log that says it is there.
//!
//! **Nothing is lost at shutdown**: [`flush`] waits until everything queued before it is
//! written and flushed. `ringmail serve` flushes after its last line (`ringmail stopped`),
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

/// Lines the queue holds before log calls start dropping. At ~150 bytes a line that is ~10 MB
/// at worst, and several seconds of the busiest server's logging.
pub const QUEUE_LINES: usize = 65_536;

/// How long [`flush`] waits for the logger thread before giving up (a log on a dead NFS mount
/// must not keep the server from exiting).
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
    queue: crossbeam_channel::Sender<Command>,
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
        match self.queue.try_send(Command::Line(line)) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The logger thread is gone (it panicked): better a blocking write than no line.
            Err(crossbeam_channel::TrySendError::Disconnected(Command::Line(line))) => {
                use std::io::Write;
                let _ = io::stderr().lock().write_all(line.as_bytes());
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {}
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
    let (queue, lines) = crossbeam_channel::bounded(QUEUE_LINES);
    let shared = Arc::new(Shared::default());
    let thread = writer::Writer::new(sink, settings.format, Arc::clone(&shared), QUEUE_LINES);
    std::thread::Builder::new()
        .name(writer::THREAD_NAME.into())
        .spawn(move || thread.run(lines))?;
    let logger = LOGGER.get_or_init(|| QueueLogger {
        format: settings.format,
        queue,
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

/// Waits (at most 5 s) until every line logged before this call is written and flushed.
/// Does nothing before [`init`], or on the logger thread itself.
pub fn flush() {
    let Some(logger) = LOGGER.get() else { return };
    if std::thread::current().name() == Some(writer::THREAD_NAME) {
        return;
    }
    let (done, flushed) = crossbeam_channel::bounded(1);
    // Unlike a log line, the flush request waits for room: its caller is about to exit.
    if logger
        .queue
        .send_timeout(Command::Flush(done), FLUSH_TIMEOUT)
        .is_ok()
    {
        let _ = flushed.recv_timeout(FLUSH_TIMEOUT);
    }
}

/// Asks the logger thread to reopen the log file (logrotate); `signal` is named in the line it
/// logs. Never blocks: a signal thread calls it.
pub fn reopen(signal: i32) {
    let Some(logger) = LOGGER.get() else { return };
    logger.shared.reopen.store(signal, Ordering::SeqCst);
    // A full queue means the logger is busy and sees the request after its current line.
    let _ = logger.queue.try_send(Command::Wake);
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
