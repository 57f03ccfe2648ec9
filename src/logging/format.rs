//! How one log line looks: qmail-style text (the default) or one JSON object per line.
//!
//! ```text
//! 2026-11-25 16:31:31.123 ringmail-shard-0 info: new msg 3.1a.00000040 from <a@x.test> 1043 bytes 1 rcpt
//! {"ts":"2026-11-25T16:31:31.123Z","level":"info","thread":"ringmail-shard-0","msg":"new msg 3.1a.00000040 ..."}
//! ```
//!
//! Pure functions of their arguments (the time is passed in), so the formats are tested here
//! byte for byte.

use log::Level;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// `[server] log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `DATE TIME THREAD LEVEL: MESSAGE`, as ringmail always wrote.
    #[default]
    Text,
    /// One JSON object per line with `ts`, `level`, `thread` and `msg`, for log shippers.
    Json,
}

/// The level as the line spells it.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// One whole line, newline included, ready for a single `write`.
pub fn line(
    format: LogFormat,
    at: SystemTime,
    thread: &str,
    level: Level,
    message: &std::fmt::Arguments<'_>,
) -> String {
    let (date, time) = date_time(at);
    let level = level_name(level);
    match format {
        LogFormat::Text => {
            let mut line = String::with_capacity(64 + thread.len());
            let _ = writeln!(line, "{date} {time} {thread} {level}: {message}");
            line
        }
        LogFormat::Json => {
            let mut line = String::with_capacity(96 + thread.len());
            let _ = write!(
                line,
                "{{\"ts\":\"{date}T{time}Z\",\"level\":\"{level}\",\"thread\":"
            );
            push_json_string(&mut line, thread);
            line.push_str(",\"msg\":");
            // Most messages need no escaping; format once, then escape what is there.
            match message.as_str() {
                Some(text) => push_json_string(&mut line, text),
                None => push_json_string(&mut line, &message.to_string()),
            }
            line.push_str("}\n");
            line
        }
    }
}

/// `("YYYY-MM-DD", "HH:MM:SS.mmm")` in UTC.
fn date_time(at: SystemTime) -> (String, String) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let rem = secs % 86_400;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    );
    (crate::clock::iso_date(secs), time)
}

/// Appends `text` as a JSON string (RFC 8259 §7): quotes, backslashes and control characters
/// escaped; everything else, non-ASCII included, as it is (the line is UTF-8).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // 2026-11-25 16:31:31.123 UTC
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_795_624_291_123)
    }

    #[test]
    fn text_is_the_qmail_style_line() {
        let got = line(
            LogFormat::Text,
            at(),
            "ringmail-shard-0",
            Level::Info,
            &format_args!("new msg {} from <{}>", "3.1a.40", "a@x.test"),
        );
        assert_eq!(
            got,
            "2026-11-25 16:31:31.123 ringmail-shard-0 info: new msg 3.1a.40 from <a@x.test>\n"
        );
    }

    #[test]
    fn json_escapes_what_it_must() {
        let cases: &[(&str, &str)] = &[
            ("plain", r#""plain""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("back\\slash", r#""back\\slash""#),
            ("two\nlines\r\tx", r#""two\nlines\r\tx""#),
            ("bell\u{7}", r#""bell\u0007""#),
            ("naïve ✓", "\"naïve ✓\""),
        ];
        for (text, want) in cases {
            let got = line(
                LogFormat::Json,
                at(),
                "ringmail-shard-1",
                Level::Warn,
                &format_args!("{text}"),
            );
            assert_eq!(
                got,
                format!(
                    "{{\"ts\":\"2026-11-25T16:31:31.123Z\",\"level\":\"warn\",\
                     \"thread\":\"ringmail-shard-1\",\"msg\":{want}}}\n"
                ),
                "{text:?}"
            );
        }
    }
}
