//! Canonical addresses end to end (src/address.rs): quoted and unquoted spellings of a local
//! part reach one Maildir, and a local part holding routing or path characters never becomes a
//! directory, neither at RCPT nor when a bounce is delivered to such a sender.

mod common;

use common::{Server, base_config, exchange, test_dir};
use std::path::Path;

/// Sends one message over raw SMTP (the quoted forms must reach the server exactly as written,
/// which library clients may normalise) and returns the reply to each recipient.
fn send(server: &Server, sender: &str, rcpts: &[&str], body: &str) -> Vec<String> {
    let (mut s, _) = server.raw();
    assert!(exchange(&mut s, b"EHLO client.test\r\n").starts_with("250"));
    let reply = exchange(&mut s, format!("MAIL FROM:<{sender}>\r\n").as_bytes());
    assert!(reply.starts_with("250"), "{reply}");
    let replies: Vec<String> = rcpts
        .iter()
        .map(|r| exchange(&mut s, format!("RCPT TO:<{r}>\r\n").as_bytes()))
        .collect();
    if replies.iter().any(|r| r.starts_with("250")) {
        assert!(exchange(&mut s, b"DATA\r\n").starts_with("354"));
        let reply = exchange(&mut s, format!("{body}\r\n.\r\n").as_bytes());
        assert!(reply.starts_with("250"), "{reply}");
    }
    exchange(&mut s, b"QUIT\r\n");
    replies
}

/// Every directory under the mail root, relative to it.
fn directories(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                let path = entry.path();
                out.push(path.strip_prefix(root).unwrap().display().to_string());
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn quoted_and_unquoted_forms_reach_one_mailbox() {
    let dir = test_dir("canonical-one-mailbox");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let forms = [
        "\"Bob\"@example.test",
        "bob@example.test",
        "BOB@Example.TEST",
        "\"b\\ob\"@example.test",
    ];
    for form in forms {
        let replies = send(
            &server,
            "alice@client.test",
            &[form],
            "Subject: x\r\n\r\nhi",
        );
        assert!(replies[0].starts_with("250 2.1.5"), "{form}: {replies:?}");
    }
    let files = server.wait_for_mail("bob@example.test", forms.len(), 20);
    assert_eq!(files.len(), forms.len(), "{}", server.log());
    let example = server.mail_root().join("example.test");
    let users: Vec<String> = std::fs::read_dir(&example)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(users, vec!["bob"]);
    // The queue and Delivered-To: carry the canonical form: the needless quotes are gone.
    let first = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!first.contains('"'), "{first}");
}

#[test]
fn routing_characters_never_become_directories() {
    let dir = test_dir("canonical-routing");
    // As a relay client, so the refusals are the address's own (553), not "relay denied".
    let server = Server::start(
        &dir,
        &base_config(&dir, "relay_networks = [\"127.0.0.0/8\"]", ""),
    );
    let refused = [
        "\"bob@gmail.com\"@example.test",
        "bob%gmail.com@example.test",
        "gmail.com!bob@example.test",
        "\"a/b\"@example.test",
        "a/b@example.test",
        "\".hidden\"@example.test",
        "\"..\"@example.test",
        "a..b@example.test",
        "\"sp ace\"@example.test",
    ];
    let replies = send(&server, "alice@client.test", &refused, "");
    for (rcpt, reply) in refused.iter().zip(&replies) {
        assert!(reply.starts_with("553 5.1.3"), "{rcpt}: {reply}");
    }
    // Control characters do not even parse (501 5.1.3).
    let replies = send(
        &server,
        "alice@client.test",
        &["\"tab\\\tx\"@example.test"],
        "",
    );
    assert!(replies[0].starts_with("501 5.1.3"), "{replies:?}");
    // A sender of that form, whose message bounces (it is looping): the bounce to
    // "bob@gmail.com"@example.test must fail for good (then go to the postmaster), never create
    // a Maildir of that name.
    let replies = send(
        &server,
        "\"bob@gmail.com\"@example.test",
        &["carol@example.test"],
        "Delivered-To: carol@example.test\r\nSubject: loop\r\n\r\nx",
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let double = server.wait_for_mail("postmaster@mx.test", 1, 30);
    assert_eq!(double.len(), 1, "no double bounce: {}", server.log());
    server.wait_queue_idle(30);
    let dirs = directories(&server.mail_root());
    for dir in &dirs {
        let name = dir.rsplit('/').next().unwrap();
        assert!(
            !name.contains(['@', '"', '%', '!', '\t']) && !name.starts_with('.'),
            "unsafe directory {dir:?} in {dirs:?}"
        );
    }
    assert!(!dirs.iter().any(|d| d.contains("gmail")), "{dirs:?}");
}
