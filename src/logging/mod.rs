//! Log lines in qmail's readable spirit: one line per event, with message ids, e.g.
//!
//! ```text
//! 2026-11-25 16:31:31 ringmail-shard-0 info: new msg 3.1a.00000040 from <a@x.test> 1043 bytes 1 rcpt
//! 2026-11-25 16:31:31 ringmail-shard-0 info: delivery 3.1a.00000040 to bob@example.test: success: new/1764...
//! ```
//!
//! Lines go to standard error (systemd's journal or the supervisor collects them). Each line is
//! written with a single `write` so lines from different shards never interleave.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct LineLogger {
    level: LevelFilter,
}

impl Log for LineLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = std::time::SystemTime::now();
        let stamp = timestamp(now);
        let thread = std::thread::current();
        let who = thread.name().unwrap_or("main");
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let line = format!("{stamp} {who} {level}: {}\n", record.args());
        // A failed write to stderr has nowhere better to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
fn timestamp(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let date = crate::clock::iso_date(secs);
    let rem = secs % 86_400;
    format!(
        "{date} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
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

/// Installs the logger once; later calls only change the level.
pub fn init(level: LevelFilter) {
    static LOGGER: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger = Box::leak(Box::new(LineLogger {
            level: LevelFilter::Trace,
        }));
        // Only fails if another logger was installed first, which ringmail never does.
        let _ = log::set_logger(logger);
    });
    log::set_max_level(level);
}
