//! The log under load, in both formats: 2,000 messages, then a graceful stop, and the log file
//! holds a `new msg` and an `end msg` line for every one of them, and the shutdown lines after
//! them (the logger is flushed before the process exits). JSON lines are parsed by Python's
//! `json` module, one object per line with `ts`, `level`, `thread` and `msg`.

mod common;

use common::{Server, base_config, client_script, python, test_dir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

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
                // `DATE TIME THREAD LEVEL: MESSAGE`
                let mut fields = line.splitn(5, ' ');
                let date = fields.next().unwrap_or("");
                assert_eq!(date.len(), 10, "{line}");
                fields.nth(2).expect("level");
                fields.next().unwrap_or("").to_string()
            })
            .collect()
    }
}

fn run(format: &str) {
    let dir = test_dir(&format!("log-load-{format}"));
    let log = dir.join("ringmail.jsonl");
    let config = base_config(&dir, "", "").replacen(
        "log_level = \"info\"\n",
        &format!(
            "log_level = \"info\"\nlog_file = \"{}\"\nlog_format = \"{format}\"\n",
            log.display()
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
    run("text");
}

#[test]
fn every_message_is_logged_as_json_lines_through_a_graceful_stop() {
    run("json");
}
