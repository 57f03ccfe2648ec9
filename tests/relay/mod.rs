//! Shared by the relay end-to-end tests: a ringmail that may relay (clients on 127.0.0.0/8),
//! resolving through a DNS server the test starts on loopback, delivering to receivers on
//! 127.0.0.2, 127.0.0.3, ... (Linux answers on all of 127.0.0.0/8), all on one port, since MX
//! records name hosts, not ports.
#![allow(dead_code)] // each test binary uses a different part of this

use crate::common::dns::DnsServer;
use crate::common::{Server, TestDir, base_config, python, test_dir};
use crate::receiver::{Receiver, Script};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A relay under test: the server, its DNS, and the port every receiver listens on.
pub struct Relay {
    pub server: Server,
    pub dns: DnsServer,
    pub port: u16,
    pub dir: TestDir,
}

/// Starts a receiver with `script` on each of `ips`, all on one port (MX records name hosts,
/// not ports). A port found free can be taken before the receivers bind it, so this retries
/// with another port.
pub fn receivers_on_common_port(ips: &[&str], script: Script) -> (u16, Vec<Receiver>) {
    for _ in 0..20 {
        let port = common_port(ips);
        let started: Result<Vec<Receiver>, _> = ips
            .iter()
            .map(|ip| Receiver::try_start(&format!("{ip}:{port}"), script.clone()))
            .collect();
        if let Ok(receivers) = started {
            return (port, receivers);
        }
    }
    panic!("no common port for receivers on {ips:?}");
}

/// A port that is free on every one of `ips` right now.
pub fn common_port(ips: &[&str]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind(format!("{}:0", ips[0])).unwrap();
        let port = first.local_addr().unwrap().port();
        if ips[1..]
            .iter()
            .all(|ip| TcpListener::bind(format!("{ip}:{port}")).is_ok())
        {
            return port;
        }
    }
    panic!("no common free port on {ips:?}");
}

/// Starts ringmail with `zone` on a loopback DNS server, `[relay]` keys `relay_keys` (port is
/// set), and extra whole sections `extra` (e.g. a `[queue]`).
pub fn start_relay(name: &str, port: u16, zone: &str, relay_keys: &str, extra: &str) -> Relay {
    let dir = test_dir(name);
    let dns = DnsServer::start(zone);
    let config = base_config(
        &dir,
        "relay_networks = [\"127.0.0.0/8\"]",
        &format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_secs = 2\nattempts = 1\n\n\
             [relay]\nport = {port}\nconnection_idle_secs = 2\n{relay_keys}\n\n{extra}",
            dns.addr()
        ),
    );
    let server = Server::start(&dir, &config);
    Relay {
        server,
        dns,
        port,
        dir,
    }
}

/// smtplib: one message; prints the refused recipients (`{}` when none).
const SEND: &str = r#"
import smtplib, sys
host, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rcpts = sys.argv[4].split(",")
body = sys.argv[5].replace("\r\n", "\n").replace("\n", "\r\n")
with smtplib.SMTP(host, port, timeout=20) as s:
    print(s.sendmail(sender, rcpts, body.encode()))
"#;

/// Sends `body` (line ends `\n`; sent as CRLF) from `sender` to `recipients` through the
/// server with Python's smtplib; panics unless every recipient was accepted.
pub fn send(server: &Server, sender: &str, recipients: &[&str], body: &str) {
    let out = python(
        SEND,
        &[
            "127.0.0.1",
            &server.smtp.port().to_string(),
            sender,
            &recipients.join(","),
            body,
        ],
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "{}",
        "smtplib: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `done` every 20 ms for at most `secs`; returns whether it came true.
pub fn wait_until(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ringmail queue list` output.
pub fn queue_list(server: &Server) -> String {
    let out = server.ctl(&["queue", "list"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ringmail queue ARGS` against the running server; panics unless it succeeds.
pub fn queue_ctl(server: &Server, args: &[&str]) -> String {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    let out = server.ctl(&all);
    assert!(
        out.status.success(),
        "queue {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The message files in a local Maildir's new/, as text.
pub fn mailbox(server: &Server, address: &str) -> Vec<String> {
    server
        .new_mail(address)
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// smtplib: several messages over one connection (so one shard queues them all). argv: `host
/// port` then a JSON list of `[sender, [recipients], subject, filler_kib]`; each body is the
/// subject line and `filler_kib` KiB of 64-character lines.
const SEND_MANY: &str = r#"
import json, smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, timeout=30) as s:
    for sender, rcpts, subject, kib in json.loads(sys.argv[3]):
        body = "Subject: %s\r\n\r\n" % subject + ("f" * 62 + "\r\n") * (kib * 16)
        refused = s.sendmail(sender, rcpts, body.encode())
        assert refused == {}, refused
print("sent")
"#;

/// Sends each `(sender, recipients, subject, filler KiB)` over one SMTP connection.
pub fn send_many(server: &Server, messages: &[(&str, &[&str], &str, usize)]) {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let json = format!(
        "[{}]",
        messages
            .iter()
            .map(|(sender, rcpts, subject, kib)| format!(
                "[{}, [{}], {}, {kib}]",
                quote(sender),
                rcpts
                    .iter()
                    .map(|r| quote(r))
                    .collect::<Vec<_>>()
                    .join(", "),
                quote(subject)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = python(
        SEND_MANY,
        &["127.0.0.1", &server.smtp.port().to_string(), &json],
    );
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
