//! Crash safety: concurrent smtplib clients send 2,000 messages, the server is SIGKILLed at a
//! random moment, restarted, and every message that got a 250 must be delivered. Duplicates
//! (a message delivered twice because the crash came between delivery and its record) are
//! reported, not failed: the promise is "never lose", and qmail makes the same one.

mod common;
#[path = "support/receiver.rs"]
mod receiver;

use common::{Server, base_config, client_script, test_dir};
use receiver::{Receiver, Script};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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

/// The smtp_blast.py client: `total` messages over `clients` connections to `recipient`, printing
/// "OK <token>" for each 250.
fn start_blaster(server: &Server, total: usize, clients: usize, recipient: &str) -> Child {
    Command::new("python3")
        .arg(client_script("smtp_blast.py"))
        .args(["127.0.0.1", &server.smtp.port().to_string()])
        .args([&total.to_string(), &clients.to_string(), recipient, "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3")
}

/// Reads the blaster's acknowledgements until `count` are in (or it ends, or 120 s pass), runs
/// `interrupt` (the kill or stop under test), then collects the acknowledgements that were
/// already on their way, and waits for the client to end.
fn acknowledged_around(
    blaster: &mut Child,
    count: usize,
    interrupt: impl FnOnce(),
) -> HashSet<String> {
    let mut lines = BufReader::new(blaster.stdout.take().unwrap()).lines();
    let mut acknowledged = HashSet::new();
    let give_up = Instant::now() + Duration::from_secs(120);
    while acknowledged.len() < count && Instant::now() < give_up {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(token) = line.strip_prefix("OK ") {
                    acknowledged.insert(token.to_string());
                }
            }
            _ => break,
        }
    }
    interrupt();
    for line in lines.map_while(Result::ok) {
        if let Some(token) = line.strip_prefix("OK ") {
            acknowledged.insert(token.to_string());
        }
    }
    let _ = blaster.wait();
    acknowledged
}

/// Waits (at most 60 s) until every acknowledged token is delivered; returns what was delivered.
fn wait_for_tokens(
    server: &Server,
    recipient: &str,
    acknowledged: &HashSet<String>,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = delivered_tokens(server, recipient);
        if acknowledged.iter().all(|t| delivered.contains_key(t)) || Instant::now() > deadline {
            return delivered;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_acknowledged_message_survives_sigkill() {
    let dir = test_dir("crash");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    let recipient = "crash@example.test";

    let mut blaster = start_blaster(&server, MESSAGES, CLIENTS, recipient);

    // Kill at a pseudo-random moment in the middle of the load: once 200..1400 messages have
    // been acknowledged (so the queue holds delivered, in-flight and unsent work at once).
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let kill_at = 200 + (nanos as usize % 1200);
    let acknowledged = acknowledged_around(&mut blaster, kill_at, || server.kill9());
    eprintln!(
        "killed after {} acknowledged messages (target {kill_at})",
        acknowledged.len()
    );

    let server = Server::start_with(&dir, &server.config_path.clone());
    let delivered = wait_for_tokens(&server, recipient, &acknowledged);
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
    // A duplicate would arrive after the 500th message: count once the queue is idle.
    server.wait_queue_idle(60);
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
    let mut blaster = start_blaster(&server, 5000, 8, recipient);
    let pid = server.pid();
    let acknowledged = acknowledged_around(&mut blaster, 300, || common::send_signal(pid, "TERM"));
    assert!(server.wait_exit().success(), "{}", server.log());

    // Whatever was not delivered before the stop is delivered after the restart, once.
    let server = Server::start_with(&dir, &dir.join("ringmail.toml"));
    wait_for_tokens(&server, recipient, &acknowledged);
    // Duplicates would arrive after the last acknowledged message: count once the queue is
    // idle.
    server.wait_queue_idle(60);
    let delivered = delivered_tokens(&server, recipient);
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

#[test]
fn every_acknowledged_relay_message_reaches_the_receiver_after_sigkill() {
    // The same crash, with every message relayed to a remote receiver through a smarthost
    // route: the queue, the mesh handoff and the SMTP client all sit between 250 and delivery.
    let dir = test_dir("relay-crash");
    let receiver = Receiver::start(
        "127.0.0.30:0",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    let config = base_config(
        &dir,
        "relay_networks = [\"127.0.0.0/8\"]",
        &format!(
            "[dns]\nnameservers = [\"127.0.0.1:9\"]\n\n[relay]\nroutes = {{ \"*\" = \"{}\" }}\n",
            receiver.addr()
        ),
    );
    let mut server = Server::start(&dir, &config);
    let mut blaster = start_blaster(&server, MESSAGES, CLIENTS, "far@remote.test");
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let kill_at = 200 + (nanos as usize % 1200);
    let acknowledged = acknowledged_around(&mut blaster, kill_at, || server.kill9());
    let server = Server::start_with(&dir, &server.config_path.clone());
    let received = |receiver: &Receiver| -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for t in receiver.transactions() {
            let text = String::from_utf8_lossy(&t.data).into_owned();
            if let Some(token) = text.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                *seen.entry(token.trim().to_string()).or_insert(0) += 1;
            }
        }
        seen
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acknowledged
        .iter()
        .all(|t| received(&receiver).contains_key(t))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivered = received(&receiver);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|t| !delivered.contains_key(*t))
        .collect();
    eprintln!(
        "relay: killed after {} acknowledged; {} distinct received, {} duplicated",
        acknowledged.len(),
        delivered.len(),
        delivered.values().filter(|n| **n > 1).count()
    );
    assert!(!acknowledged.is_empty(), "log:\n{}", server.log());
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never reached the receiver, e.g. {:?}; log:\n{}",
        lost.len(),
        &lost[..lost.len().min(5)],
        server.log()
    );
}
