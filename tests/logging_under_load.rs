//! The log under load, in both formats: 2,000 messages, then a graceful stop, and the log file
//! holds a `new msg` and an `end msg` line for every one of them, and the shutdown lines after
//! them (the logger is flushed before the process exits). JSON lines are parsed by Python's
//! `json` module, one object per line with `ts`, `level`, `thread` and `msg`.
//!
//! The text run logs into a FIFO that a deliberately slow reader drains (as a log pipe to a
//! busy collector would), so at SIGTERM thousands of lines are still waiting in the logger's
//! queue: only a flush that waits for them keeps them. (Without the flush at exit this test
//! loses the tail of the log.)

mod common;

use common::{Server, base_config, client_script, python, test_dir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const MESSAGES: usize = 2000;
const RECIPIENT: &str = "load@example.test";

/// Every line as JSON: prints each `msg`, or fails on the first line that is not an object
/// with exactly the four keys.
const PARSE_JSON: &str = r#"
import json, sys
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    obj = json.loads(line)
    assert isinstance(obj, dict) and sorted(obj) == ["level", "msg", "thread", "ts"], (n, line)
    assert obj["level"] in ("error", "warn", "info", "debug", "trace"), (n, line)
    assert obj["ts"].endswith("Z") and "T" in obj["ts"], (n, line)
    print(obj["msg"])
"#;

/// The messages of the log file's lines, in order.
fn messages(log: &Path, json: bool) -> Vec<String> {
    if json {
        let out = python(PARSE_JSON, &[&log.display().to_string()]);
        assert!(
            out.status.success(),
            "not JSON lines: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    } else {
        std::fs::read_to_string(log)
            .expect("log file")
            .lines()
            .map(|line| {
                // `DATE TIME THREAD LEVEL: MESSAGE`; a line cut short (a log that lost its
                // tail) is kept whole, and the checks below say what is missing.
                let fields: Vec<&str> = line.splitn(5, ' ').collect();
                match fields.as_slice() {
                    [date, _, _, level, message] if date.len() == 10 && level.ends_with(':') => {
                        message.to_string()
                    }
                    _ => format!("(not a log line) {line}"),
                }
            })
            .collect()
    }
}

/// Copies the FIFO `argv[1]` to the file `argv[2]` in 4 KiB steps with a pause after each:
/// about 80 KB/s, several times slower than ringmail logs under this load.
const SLOW_READER: &str = r#"
import sys, time
with open(sys.argv[1], "rb", buffering=0) as src, open(sys.argv[2], "wb") as out:
    while True:
        data = src.read(4096)
        if not data:
            break
        out.write(data)
        out.flush()
        time.sleep(0.05)
"#;

/// Starts the slow reader on a new FIFO at `fifo`, copying to `copy`.
fn slow_reader(fifo: &Path, copy: &Path) -> Child {
    let made = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
    assert!(made.success());
    Command::new("python3")
        .args(["-c", SLOW_READER])
        .arg(fifo)
        .arg(copy)
        .spawn()
        .expect("python3")
}

fn run(format: &str, slow_log: bool) {
    let dir = test_dir(&format!("log-load-{format}"));
    let log_file = dir.join("ringmail.log-pipe");
    let (log, mut reader) = if slow_log {
        let copy = dir.join("ringmail.log");
        let reader = slow_reader(&log_file, &copy);
        (copy, Some(reader))
    } else {
        (log_file.clone(), None)
    };
    let config = base_config(&dir, "", "").replacen(
        "log_level = \"info\"\n",
        &format!(
            "log_level = \"info\"\nlog_file = \"{}\"\nlog_format = \"{format}\"\n",
            log_file.display()
        ),
        1,
    );
    let mut server = Server::start(&dir, &config);
    let out = Command::new("python3")
        .arg(client_script("smtp_blast.py"))
        .args(["127.0.0.1", &server.smtp.port().to_string()])
        .args([&MESSAGES.to_string(), "8", RECIPIENT, "240"])
        .output()
        .expect("python3");
    let acknowledged = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(
        acknowledged,
        MESSAGES,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.wait_for_mail(RECIPIENT, MESSAGES, 120).len(),
        MESSAGES
    );
    // Stop as soon as the mail has landed: the last `end msg` lines and the shutdown lines
    // are still in the logger's queue or buffer when SIGTERM arrives.
    assert_eq!(server.terminate().code(), Some(0));
    if let Some(reader) = reader.as_mut() {
        // The reader ends at EOF: when the last writer (ringmail) has exited.
        let deadline = Instant::now() + Duration::from_secs(120);
        while reader.try_wait().expect("reader").is_none() {
            assert!(Instant::now() < deadline, "the slow reader never saw EOF");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let lines = messages(&log, format == "json");
    // id -> (new msg seen, end msg seen)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for line in &lines {
        if let Some(rest) = line.strip_prefix("new msg ") {
            let id = rest.split(':').next().unwrap_or("").to_string();
            seen.entry(id).or_default().0 = true;
        } else if let Some(id) = line.strip_prefix("end msg ") {
            seen.entry(id.trim().to_string()).or_default().1 = true;
        }
    }
    let incomplete: BTreeSet<&String> = seen
        .iter()
        .filter(|(_, (new, end))| !(*new && *end))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(seen.len(), MESSAGES, "messages logged");
    assert!(
        incomplete.is_empty(),
        "missing new/end lines for {incomplete:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "the SIGTERM line"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("ringmail stopped"),
        "the last line is written before exit"
    );
    assert!(
        !lines.iter().any(|l| l.contains("log lines dropped")),
        "nothing dropped"
    );
}

#[test]
fn every_message_is_logged_in_text_through_a_graceful_stop() {
    run("text", true);
}

#[test]
fn every_message_is_logged_as_json_lines_through_a_graceful_stop() {
    run("json", false);
}
