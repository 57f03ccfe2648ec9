//! End to end: the real binary on a free loopback port, real clients (Python's smtplib, curl),
//! and the exact bytes that land in the Maildir.

mod common;

use common::{Server, base_config, python, test_dir};
use std::process::Command;

const SMTPLIB_SEND: &str = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
body = ("From: Alice <alice@localhost>\r\n"
        "To: Bob <bob@example.test>\r\n"
        "Subject: first\r\n"
        "\r\n"
        "Hello Bob.\r\n"
        ".a line that starts with a dot\r\n"
        "..two dots\r\n"
        "last line\r\n")
with smtplib.SMTP(host, port, timeout=10) as s:
    code, ehlo = s.ehlo("client.test")
    assert code == 250, ehlo
    for word in (b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"SMTPUTF8", b"CHUNKING", b"SIZE"):
        assert word in ehlo, (word, ehlo)
    refused = s.sendmail("alice@localhost", ["bob@example.test"], body)
    assert refused == {}, refused
    print("sent")
"#;

#[test]
fn smtplib_message_lands_in_maildir_byte_for_byte() {
    let dir = test_dir("smtplib");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let out = python(
        SMTPLIB_SEND,
        &["127.0.0.1", &server.smtp.port().to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let files = server.wait_for_mail("bob@example.test", 1, 20);
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = stored.split('\n').collect();
    assert_eq!(lines[0], "Return-Path: <alice@localhost>");
    assert_eq!(lines[1], "Delivered-To: bob@example.test");
    assert_eq!(lines[2], "Received: from client.test ([127.0.0.1])");
    assert_eq!(lines[3], "\tby mx.test (ringmail) with ESMTP");
    assert!(
        lines[4].starts_with("\tfor <bob@example.test>; "),
        "{}",
        lines[4]
    );
    assert!(lines[4].ends_with(" +0000"), "{}", lines[4]);
    // The rest is the client's message, dot-stuffing undone, with Unix line ends.
    let rest = lines[5..].join("\n");
    assert_eq!(
        rest,
        "From: Alice <alice@localhost>\nTo: Bob <bob@example.test>\nSubject: first\n\n\
         Hello Bob.\n.a line that starts with a dot\n..two dots\nlast line\n"
    );
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains(".mx.test,S="), "{name}");
}

#[test]
fn curl_sends_as_a_second_client() {
    let dir = test_dir("curl");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let message = dir.join("message.eml");
    std::fs::write(&message, "Subject: from curl\r\n\r\nsent by curl\r\n").unwrap();
    let status = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg(format!("smtp://{}/client.test", server.smtp))
        .args([
            "--mail-from",
            "carol@localhost",
            "--mail-rcpt",
            "dave@example.test",
            "--upload-file",
        ])
        .arg(&message)
        .status()
        .expect("curl (scripts/install-test-deps installs it)");
    assert!(status.success());
    let files = server.wait_for_mail("dave@example.test", 1, 20);
    assert_eq!(files.len(), 1, "log:\n{}", server.log());
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        stored.starts_with("Return-Path: <carol@localhost>\nDelivered-To: dave@example.test\n")
    );
    assert!(
        stored.ends_with("Subject: from curl\n\nsent by curl\n"),
        "{stored}"
    );
}

#[test]
fn relaying_is_refused_and_unknown_users_can_be() {
    let dir = test_dir("relay");
    let config = base_config(&dir, "", "").replace(
        "[local]\ndomains = [\"example.test\", \"localhost\"]",
        "[local]\ndomains = [\"example.test\", \"localhost\"]\nunknown_users = \"reject\"\nusers = [\"known@example.test\"]",
    );
    let server = Server::start(&dir, &config);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
s.ehlo("c.test")
s.mail("a@localhost")
print(s.rcpt("someone@elsewhere.test"))
print(s.rcpt("nobody@example.test"))
print(s.rcpt("known@example.test"))
print(s.rcpt("postmaster"))
s.quit()
"#;
    let out = python(script, &["127.0.0.1", &server.smtp.port().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("(554, b'5.7.1"), "{text}");
    assert!(lines[1].starts_with("(550, b'5.1.1"), "{text}");
    assert!(lines[2].starts_with("(250,"), "{text}");
    assert!(lines[3].starts_with("(250,"), "{text}");
}
