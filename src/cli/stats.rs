//! `ringmail stats`: read log files (or stdin) and print the statistics of src/stats/.

use super::fail;
use crate::stats::{Report, Window, parse_time};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--since`/`--until`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]`, `YYYY-MM-DDTHH:MM[:SS]Z`, or Unix
/// seconds; always UTC, as the log writes it.
pub fn parse_instant(text: &str) -> Result<f64, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(seconds as f64);
    }
    let trimmed = text.trim().trim_end_matches('Z');
    let (date, time) = trimmed
        .split_once(['T', ' '])
        .unwrap_or((trimmed, "00:00:00"));
    parse_time(date, time).ok_or_else(|| {
        format!("`{text}` is not a time (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS, or Unix seconds; UTC)")
    })
}

pub fn run(
    since: Option<&str>,
    until: Option<&str>,
    json: bool,
    files: &[PathBuf],
) -> Result<ExitCode, ExitCode> {
    let usage = |e: String| {
        eprintln!("ringmail: {e}");
        ExitCode::from(2)
    };
    let window = Window {
        since: since.map(parse_instant).transpose().map_err(usage)?,
        until: until.map(parse_instant).transpose().map_err(usage)?,
    };
    let mut report = Report::default();
    if files.is_empty() {
        read(std::io::stdin().lock(), &mut report, &window)
            .map_err(|e| fail(format!("reading stdin: {e}")))?;
    }
    for file in files {
        let opened = std::fs::File::open(file)
            .map_err(|e| fail(format!("cannot open {}: {e}", file.display())))?;
        read(std::io::BufReader::new(opened), &mut report, &window)
            .map_err(|e| fail(format!("reading {}: {e}", file.display())))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds every line; a line that is not UTF-8 is read lossily (it cannot be a mail event).
fn read(mut input: impl BufRead, report: &mut Report, window: &Window) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        report.add_line(&String::from_utf8_lossy(&line), window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1764000000"), Ok(1_764_000_000.0));
        let day = parse_instant("2026-11-25").unwrap();
        assert_eq!(parse_instant("2026-11-25 00:00:00"), Ok(day));
        assert_eq!(parse_instant("2026-11-25T01:00:00Z"), Ok(day + 3600.0));
        assert_eq!(parse_instant("2026-11-25 01:00"), Ok(day + 3600.0));
        assert!(parse_instant("yesterday").is_err());
        assert!(parse_instant("2026-13-01").is_err());
    }
}
