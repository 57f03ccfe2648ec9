//! The logger thread: the only code that writes log lines. It drains the bounded queue the
//! shards push to, writes through a buffer that it flushes whenever the queue runs dry (so a
//! quiet server's log is always current), reopens the log file when asked (SIGHUP/SIGUSR1, for
//! logrotate), and reports lines that were dropped because the queue was full.
//!
//! The queue is a crossbeam `ArrayQueue` (a lock-free ring): a push is a few atomic operations
//! and never waits. A thread that pushes then unparks the logger, which parks only after finding
//! the queue empty; `unpark` before `park` makes the `park` return at once, so no wake-up is
//! lost and no lock is needed on either side.

use super::format::{self, LogFormat};
use crossbeam_queue::ArrayQueue;
use log::Level;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::SystemTime;

/// The logger thread's name, which its own lines carry.
pub const THREAD_NAME: &str = "ringmail-logger";

/// Buffered bytes before a write even while lines keep coming.
const BUFFER: usize = 64 * 1024;

/// What travels on the queue.
pub enum Command {
    /// A formatted line, newline included.
    Line(String),
    /// Write everything queued before this, flush, then answer.
    Flush(crossbeam_channel::Sender<()>),
}

/// What the log calls and the logger thread share.
pub struct Shared {
    queue: ArrayQueue<Command>,
    /// Lines the log calls could not queue since the last report.
    pub dropped: AtomicU64,
    /// The signal that asked for a reopen (0: none pending).
    pub reopen: AtomicI32,
    /// Commands the logger has taken off the queue, so a flush can tell a slow log (still
    /// moving) from a stuck one.
    pub taken: AtomicU64,
    /// The logger thread, to unpark; set once it is started.
    logger: OnceLock<Thread>,
}

impl Shared {
    /// An empty queue of `capacity` commands.
    pub fn new(capacity: usize) -> Self {
        Shared {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            reopen: AtomicI32::new(0),
            taken: AtomicU64::new(0),
            logger: OnceLock::new(),
        }
    }

    /// Commands the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Queues `command` and wakes the logger; gives it back if the queue is full. Never waits.
    pub fn push(&self, command: Command) -> Result<(), Command> {
        self.queue.push(command)?;
        self.wake();
        Ok(())
    }

    /// Wakes the logger thread (it looks at the queue and the reopen request).
    pub fn wake(&self) {
        if let Some(logger) = self.logger.get() {
            logger.unpark();
        }
    }

    /// Starts the logger thread (named [`THREAD_NAME`]) writing with `writer`.
    pub fn start(self: &Arc<Self>, writer: Writer) -> io::Result<()> {
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || writer.run())?;
        let _ = self.logger.set(handle.thread().clone());
        // Anything pushed before the thread was known gets looked at now.
        self.wake();
        Ok(())
    }

    #[cfg(test)]
    pub fn pop(&self) -> Option<Command> {
        self.queue.pop()
    }
}

/// Where lines go.
pub enum Sink {
    Stderr(BufWriter<io::Stderr>),
    File { path: PathBuf, out: BufWriter<File> },
}

impl Sink {
    /// Standard error, or the file at `path` (created if missing, appended to).
    pub fn open(path: Option<&Path>) -> io::Result<Sink> {
        Ok(match path {
            None => Sink::Stderr(BufWriter::with_capacity(BUFFER, io::stderr())),
            Some(path) => Sink::File {
                path: path.to_path_buf(),
                out: BufWriter::with_capacity(BUFFER, open_log_file(path)?),
            },
        })
    }

    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stderr(out) => out,
            Sink::File { out, .. } => out,
        }
    }
}

/// Appends to `path`, creating it readable by owner and group only: logs name senders and
/// recipients.
fn open_log_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The logger thread's state.
pub struct Writer {
    sink: Sink,
    format: LogFormat,
    shared: Arc<Shared>,
    /// Whether the last write failed (reported once per failing streak, on stderr).
    failing: bool,
}

impl Writer {
    pub fn new(sink: Sink, format: LogFormat, shared: Arc<Shared>) -> Self {
        Writer {
            sink,
            format,
            shared,
            failing: false,
        }
    }

    /// Runs for the life of the process (the process exits with it parked, after a flush).
    fn run(mut self) {
        loop {
            self.reopen_if_asked();
            let Some(command) = self.shared.queue.pop() else {
                // The queue ran dry: now is the time to say what was lost and to make the log
                // current, before sleeping until the next push (or a spurious wake-up).
                self.report_drops();
                self.flush();
                std::thread::park();
                continue;
            };
            self.shared.taken.fetch_add(1, Ordering::Relaxed);
            match command {
                Command::Line(line) => self.write(line.as_bytes()),
                Command::Flush(done) => {
                    self.reopen_if_asked();
                    self.report_drops();
                    self.flush();
                    let _ = done.send(());
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let result = self.sink.out().write_all(bytes);
        self.note(result);
    }

    fn flush(&mut self) {
        let result = self.sink.out().flush();
        self.note(result);
    }

    /// A log that cannot be written has nowhere better to complain than stderr; once per streak.
    fn note(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                let where_ = match &self.sink {
                    Sink::Stderr(_) => "standard error".to_string(),
                    Sink::File { path, .. } => path.display().to_string(),
                };
                eprintln!("ringmail: cannot write the log to {where_}: {e}");
            }
            Err(_) => {}
        }
    }

    /// Writes one line of the logger's own.
    fn own_line(&mut self, level: Level, message: std::fmt::Arguments<'_>) {
        let line = format::line(self.format, SystemTime::now(), THREAD_NAME, level, &message);
        self.write(line.as_bytes());
    }

    fn report_drops(&mut self) {
        let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let capacity = self.shared.capacity();
            self.own_line(
                Level::Warn,
                format_args!(
                    "{dropped} log lines dropped: the log queue ({capacity} lines) was full \
                     because the log could not be written fast enough"
                ),
            );
        }
    }

    /// Reopens the log file if a signal asked for it: logrotate has renamed the file, and
    /// lines must go to a fresh one at the configured path.
    fn reopen_if_asked(&mut self) {
        let signal = self.shared.reopen.swap(0, Ordering::SeqCst);
        if signal == 0 {
            return;
        }
        let name = signal_name(signal);
        let path = match &self.sink {
            Sink::Stderr(_) => {
                self.own_line(
                    Level::Info,
                    format_args!(
                        "signal {name}: the log goes to standard error, nothing to reopen"
                    ),
                );
                return;
            }
            Sink::File { path, .. } => path.clone(),
        };
        self.flush();
        match open_log_file(&path) {
            Ok(file) => {
                self.sink = Sink::File {
                    path: path.clone(),
                    out: BufWriter::with_capacity(BUFFER, file),
                };
                self.own_line(
                    Level::Info,
                    format_args!("signal {name}: log file reopened: {}", path.display()),
                );
            }
            Err(e) => self.own_line(
                Level::Error,
                format_args!(
                    "signal {name}: cannot reopen the log file {}: {e}; still writing to the \
                     file that was open",
                    path.display()
                ),
            ),
        }
        self.flush();
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGHUP => "HUP".into(),
        libc::SIGUSR1 => "USR1".into(),
        other => other.to_string(),
    }
}
