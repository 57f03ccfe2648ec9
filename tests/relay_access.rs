//! End to end: ringmail is not an open relay. The real binary, Python's smtplib, and the reply
//! to every RCPT TO trick for a client that may not relay, and for one that may.
//!
//! Every config here that can accept a remote recipient sends anything routed onward to a dead
//! loopback port and asks DNS of a dead loopback port, so nothing ever reaches the system
//! resolver or a real host; and no test sends DATA to a remote recipient.

mod common;

use common::{BIN, Server, base_config, python, test_dir};
use std::process::Command;

/// `[dns]` and `[relay]` that lead nowhere (127.0.0.1:9 is the discard port, closed here).
const NOWHERE: &str = "[dns]\nnameservers = [\"127.0.0.1:9\"]\n\n\
                       [relay]\nroutes = { \"*\" = \"127.0.0.1:9\" }\n";

/// Sends MAIL once, then `RCPT TO:<arg>` for each case exactly as written (smtplib's `rcpt()`
/// would re-parse and rewrite the odd ones), and prints one line per reply that does not start
/// with the expected code and enhanced code. Ends with RSET: nothing is queued.
const RCPT_CASES: &str = r#"
import json, smtplib, sys
host, port, cases = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
with smtplib.SMTP(host, port, timeout=10) as s:
    s.command_encoding = "utf-8"  # the look-alike cases are UTF-8 (RFC 6531 SMTPUTF8)
    code, _ = s.ehlo("client.test")
    assert code == 250
    code, msg = s.docmd("MAIL", "FROM:<alice@client.test> SMTPUTF8")
    assert code == 250, (code, msg)
    bad = 0
    for path, expected in cases:
        code, msg = s.docmd("RCPT", "TO:<%s>" % path)
        reply = "%d %s" % (code, msg.decode("utf-8", "replace"))
        if not reply.startswith(expected):
            bad += 1
            print("RCPT TO:<%s> got %r, expected %r" % (path, reply, expected))
    code, _ = s.rset()
    assert code == 250
print("bad: %d" % bad)
"#;

const DENIED: &str = "554 5.7.1";
const OK: &str = "250 2.1.5";
const BAD_SYNTAX: &str = "501 5.1.3";
const UNROUTABLE: &str = "553 5.1.3";
const LITERAL: &str = "553 5.1.2";

/// What a client that may not relay gets, whatever its address.
const STRANGER_CASES: &[(&str, &str)] = &[
    ("bob@remote.test", DENIED),
    ("bob@REMOTE.test", DENIED),
    // Percent hack, bang paths, quoted local parts hiding a route.
    ("bob%remote.test@example.test", DENIED),
    ("bob%remote.test@mx.test", DENIED),
    ("bob%remote.test@backup.example", DENIED),
    ("remote.test!bob@example.test", DENIED),
    ("\"bob@remote.test\"@example.test", DENIED),
    ("\"bob%remote.test\"@example.test", DENIED),
    ("\"remote.test!bob\"@example.test", DENIED),
    // Address literals, our own listening address included.
    ("bob@[10.0.0.1]", DENIED),
    ("bob@[127.0.0.1]", DENIED),
    ("bob@[IPv6:::1]", DENIED),
    // Look-alikes of example.test and backup.example.
    ("bob@example.test.evil.com", DENIED),
    ("bob@evil-example.test", DENIED),
    ("bob@xn--exmple-cua.test", DENIED),
    ("bob@ex\u{0430}mple.test", DENIED),
    ("bob@bac\u{212a}up.example", DENIED),
    ("bob@sub.backup.example", DENIED),
    // A source route is ignored (RFC 5321 Appendix C): only the final mailbox counts.
    ("@example.test:bob@remote.test", DENIED),
    ("@remote.test,@other.test:bob@example.test", OK),
    // A trailing dot is not RFC 5321 syntax: refused before any policy.
    ("bob@example.test.", BAD_SYNTAX),
    ("bob@remote.test.", BAD_SYNTAX),
    // What anyone may send to: local domains, the hostname, postmaster, rcpthosts.
    ("bob@example.test", OK),
    ("BOB@EXAMPLE.TEST", OK),
    ("postmaster@mx.test", OK),
    ("postmaster", OK),
    ("bob@backup.example", OK),
    ("bob@Backup.Example", OK),
];

/// What a client in relay_networks gets: any remote recipient, but still no hidden routes.
const RELAY_CASES: &[(&str, &str)] = &[
    ("bob@remote.test", OK),
    ("bob@xn--exmple-cua.test", OK),
    ("bob@example.test", OK),
    ("bob@backup.example", OK),
    ("bob%remote.test@example.test", UNROUTABLE),
    ("bob%remote.test@other.test", UNROUTABLE),
    ("remote.test!bob@example.test", UNROUTABLE),
    ("\"bob@remote.test\"@example.test", UNROUTABLE),
    ("bob@[10.0.0.1]", LITERAL),
    ("bob@remote.test.", BAD_SYNTAX),
];

fn check_rcpts(server: &Server, cases: &[(&str, &str)]) {
    let cases = format!(
        "[{}]",
        cases
            .iter()
            .map(|(path, expected)| format!("[{}, {}]", json(path), json(expected)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let out = python(
        RCPT_CASES,
        &["127.0.0.1", &server.smtp.port().to_string(), &cases],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.ends_with("bad: 0\n"),
        "{stdout}{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

/// A JSON string, ASCII only.
fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[test]
fn unauthorized_client_gets_554_for_every_relay_trick() {
    let dir = test_dir("relay-stranger");
    let config = base_config(
        &dir,
        "relay_networks = []\nrcpthosts = [\"backup.example\"]",
        NOWHERE,
    );
    let server = Server::start(&dir, &config);
    check_rcpts(&server, STRANGER_CASES);
}

#[test]
fn relay_networks_client_may_relay_but_not_by_percent_hack() {
    let dir = test_dir("relay-client");
    let config = base_config(
        &dir,
        "relay_networks = [\"127.0.0.0/8\", \"::1/128\"]\nrcpthosts = [\"backup.example\"]",
        NOWHERE,
    );
    let server = Server::start(&dir, &config);
    check_rcpts(&server, RELAY_CASES);

    // check-config shows who may relay, since that is the setting to get right.
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&server.config_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("relay from    127.0.0.0/8, ::1/128"),
        "{text}"
    );
    assert!(text.contains("rcpthosts     backup.example"), "{text}");
}

#[test]
fn check_config_says_when_nobody_relays() {
    let dir = test_dir("relay-check-config");
    let path = dir.join("ringmail.toml");
    std::fs::write(&path, base_config(&dir, "", "")).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("relay from    (nobody: only local domains and rcpthosts)"),
        "{text}"
    );
    assert!(text.contains("rcpthosts     (none)"), "{text}");
}
