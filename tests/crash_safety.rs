//! Crash safety: concurrent smtplib clients send 2,000 messages, the server is SIGKILLed at a
//! random moment, restarted, and every message that got a 250 must be delivered. Duplicates
//! (a message delivered twice because the crash came between delivery and its record) are
//! reported, not failed: the promise is "never lose", and qmail makes the same one.

mod common;

use common::{Server, base_config, client_script, test_dir};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const MESSAGES: usize = 2_000;
const CLIENTS: usize = 8;

/// Every `blast-NNNNNN` token in the delivered files, with how often each was delivered.
fn delivered_tokens(server: &Server, address: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for file in server.new_mail(address) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(token) = line.strip_prefix("Subject: ") {
                *seen.entry(token.to_string()).or_insert(0) += 1;
            }
        }
    }
    seen
}

#[test]
fn every_acknowledged_message_survives_sigkill() {
    let dir = test_dir("crash");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    let recipient = "crash@example.test";

    let mut blaster = Command::new("python3")
        .arg(client_script("smtp_blast.py"))
        .args(["127.0.0.1", &server.smtp.port().to_string()])
        .args([
            &MESSAGES.to_string(),
            &CLIENTS.to_string(),
            recipient,
            "120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");

    // Kill at a pseudo-random moment in the middle of the load: once 200..1400 messages have
    // been acknowledged (so the queue holds delivered, in-flight and unsent work at once).
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let kill_at = 200 + (nanos as usize % 1200);
    let stdout = BufReader::new(blaster.stdout.take().unwrap());
    let mut acknowledged = HashSet::new();
    let mut lines = stdout.lines();
    let give_up = Instant::now() + Duration::from_secs(120);
    while acknowledged.len() < kill_at && Instant::now() < give_up {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(token) = line.strip_prefix("OK ") {
                    acknowledged.insert(token.to_string());
                }
            }
            _ => break,
        }
    }
    server.kill9();
    // Acknowledgements that were already on their way when the kill came count too.
    for line in lines.map_while(Result::ok) {
        if let Some(token) = line.strip_prefix("OK ") {
            acknowledged.insert(token.to_string());
        }
    }
    let _ = blaster.wait();
    eprintln!(
        "killed after {} acknowledged messages (target {kill_at})",
        acknowledged.len()
    );

    let server = Server::start_with(&dir, &server.config_path.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let delivered = delivered_tokens(&server, recipient);
        if acknowledged.iter().all(|t| delivered.contains_key(t)) || Instant::now() > deadline {
            break delivered;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|t| !delivered.contains_key(*t))
        .collect();
    let duplicates = delivered.values().filter(|n| **n > 1).count();
    eprintln!(
        "after restart: {} distinct delivered ({} beyond the acknowledged), {duplicates} duplicated",
        delivered.len(),
        delivered.len().saturating_sub(acknowledged.len())
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        !acknowledged.is_empty(),
        "no message was acknowledged before the kill; log:\n{}",
        server.log()
    );
}

#[test]
fn all_messages_arrive_without_a_crash() {
    let dir = test_dir("nocrash");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let recipient = "steady@example.test";
    let output = Command::new("python3")
        .arg(client_script("smtp_blast.py"))
        .args([
            "127.0.0.1",
            &server.smtp.port().to_string(),
            "500",
            "4",
            recipient,
            "120",
        ])
        .output()
        .expect("python3");
    let acknowledged = String::from_utf8_lossy(&output.stdout).lines().count();
    assert_eq!(
        acknowledged,
        500,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = server.wait_for_mail(recipient, 500, 60);
    assert_eq!(files.len(), 500);
    let delivered = delivered_tokens(&server, recipient);
    assert_eq!(delivered.len(), 500);
    assert!(
        delivered.values().all(|n| *n == 1),
        "duplicates without a crash"
    );
}

#[test]
fn sigterm_under_load_loses_nothing_and_duplicates_nothing() {
    let dir = test_dir("termload");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    let recipient = "term@example.test";
    let mut blaster = Command::new("python3")
        .arg(client_script("smtp_blast.py"))
        .args([
            "127.0.0.1",
            &server.smtp.port().to_string(),
            "5000",
            "8",
            recipient,
            "120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(blaster.stdout.take().unwrap()).lines();
    let mut acknowledged = HashSet::new();
    while acknowledged.len() < 300 {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(token) = line.strip_prefix("OK ") {
                    acknowledged.insert(token.to_string());
                }
            }
            _ => break,
        }
    }
    common::send_signal(server.pid(), "TERM");
    for line in lines.map_while(Result::ok) {
        if let Some(token) = line.strip_prefix("OK ") {
            acknowledged.insert(token.to_string());
        }
    }
    let _ = blaster.wait();
    assert!(server.wait_exit().success(), "{}", server.log());

    // Whatever was not delivered before the stop is delivered after the restart, once.
    let server = Server::start_with(&dir, &dir.join("ringmail.toml"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let delivered = delivered_tokens(&server, recipient);
        if acknowledged.iter().all(|t| delivered.contains_key(t)) || Instant::now() > deadline {
            break delivered;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lost = acknowledged
        .iter()
        .filter(|t| !delivered.contains_key(*t))
        .count();
    assert_eq!(lost, 0, "acknowledged messages lost after a graceful stop");
    let duplicated: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "graceful stop duplicated {duplicated:?}"
    );
}
