//! Bad input against the real server: every case gets a clear reply, and the server keeps
//! serving the next client.

mod common;

use common::{Server, base_config, exchange, read_reply, test_dir};
use std::io::{Read, Write};
use std::time::Duration;

fn server(name: &str, smtp_extra: &str) -> Server {
    let dir = test_dir(name);
    let config = base_config(&dir, smtp_extra, "");
    Server::start_owning(dir, &config)
}

/// The server still takes a message after whatever the test did.
fn still_serves(server: &Server) {
    let (mut s, greeting) = server.raw();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(exchange(&mut s, b"HELO c.test\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"MAIL FROM:<a@localhost>\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"RCPT TO:<after@example.test>\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"DATA\r\n").starts_with("354"));
    let reply = exchange(&mut s, b"Subject: still here\r\n\r\nok\r\n.\r\n");
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
}

#[test]
fn nul_bytes_and_overlong_lines_get_replies() {
    let server = server("nul", "");
    let (mut s, _) = server.raw();
    assert!(exchange(&mut s, b"EHLO c.test\r\n").starts_with("250"));
    let reply = exchange(&mut s, b"NOOP\0\r\n");
    assert!(reply.starts_with("500 5.5.2"), "{reply}");
    let mut long = vec![b'A'; 2000];
    long.extend_from_slice(b"\r\n");
    let reply = exchange(&mut s, &long);
    assert!(reply.starts_with("500 5.5.2"), "{reply}");
    assert!(exchange(&mut s, b"NOOP\r\n").starts_with("250"));
    still_serves(&server);
}

#[test]
fn oversized_data_is_refused_with_552() {
    let server = server("oversize", "max_message_size = 10000");
    let (mut s, _) = server.raw();
    assert!(exchange(&mut s, b"EHLO c.test\r\n").contains("SIZE 10000"));
    let reply = exchange(&mut s, b"MAIL FROM:<a@localhost> SIZE=20000\r\n");
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    assert!(exchange(&mut s, b"MAIL FROM:<a@localhost>\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"RCPT TO:<big@example.test>\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"DATA\r\n").starts_with("354"));
    let mut body = Vec::new();
    for _ in 0..300 {
        body.extend_from_slice(&[b'x'; 78]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let reply = exchange(&mut s, &body);
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    // Whatever the server did with the message is done once the queue is idle.
    server.wait_queue_idle(20);
    assert!(server.new_mail("big@example.test").is_empty());
    still_serves(&server);
}

#[test]
fn ten_thousand_pipelined_commands() {
    let server = server("pipeline", "");
    let (mut s, _) = server.raw();
    let mut batch = b"EHLO c.test\r\n".to_vec();
    for _ in 0..10_000 {
        batch.extend_from_slice(b"NOOP\r\n");
    }
    batch.extend_from_slice(b"QUIT\r\n");
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(&batch))
    };
    let mut replies = Vec::new();
    s.read_to_end(&mut replies).unwrap();
    writer.join().unwrap().unwrap();
    let text = String::from_utf8_lossy(&replies);
    let noops = text.lines().filter(|l| l.starts_with("250 2.0.0")).count();
    assert_eq!(noops, 10_000, "every NOOP answered");
    assert!(
        text.trim_end().ends_with("Bye") || text.contains("221"),
        "QUIT answered"
    );
    still_serves(&server);
}

#[test]
fn client_vanishing_mid_data_loses_nothing_else() {
    let server = server("vanish", "");
    {
        let (mut s, _) = server.raw();
        assert!(exchange(&mut s, b"HELO c.test\r\n").starts_with("250"));
        assert!(exchange(&mut s, b"MAIL FROM:<a@localhost>\r\n").starts_with("250"));
        assert!(exchange(&mut s, b"RCPT TO:<half@example.test>\r\n").starts_with("250"));
        assert!(exchange(&mut s, b"DATA\r\n").starts_with("354"));
        s.write_all(b"Subject: half\r\n\r\nthis message never ends")
            .unwrap();
    } // dropped: the connection closes mid-DATA
    still_serves(&server);
    assert_eq!(server.wait_for_mail("after@example.test", 1, 20).len(), 1);
    assert!(server.new_mail("half@example.test").is_empty());
}

#[test]
fn smuggling_attempt_is_rejected_whole() {
    let server = server("smuggle", "");
    let (mut s, _) = server.raw();
    assert!(exchange(&mut s, b"HELO c.test\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"MAIL FROM:<a@localhost>\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"RCPT TO:<victim@example.test>\r\n").starts_with("250"));
    assert!(exchange(&mut s, b"DATA\r\n").starts_with("354"));
    let payload = b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@localhost>\r\nRCPT TO:<smuggled@example.test>\r\nDATA\r\nSubject: two\r\n\r\n.\r\n";
    let reply = exchange(&mut s, payload);
    assert!(
        reply.starts_with("554 5.6.11") || reply.starts_with("550"),
        "{reply}"
    );
    // A server that fell for it would run the smuggled transaction before answering a later
    // command on this connection (if it still answers at all), so ask, then wait until the
    // queue is idle: anything smuggled in is delivered by then.
    if s.write_all(b"NOOP\r\n").is_ok() {
        let _ = read_reply(&mut s);
    }
    server.wait_queue_idle(20);
    assert!(server.new_mail("smuggled@example.test").is_empty());
    assert!(server.new_mail("victim@example.test").is_empty());
}

#[test]
fn sessions_per_ip_are_capped_with_421() {
    let dir = test_dir("perip");
    let config =
        base_config(&dir, "max_sessions_per_ip = 2", "").replace("shards = 2", "shards = 1");
    let server = Server::start(&dir, &config);
    let (_first, g1) = server.raw();
    let (_second, g2) = server.raw();
    let (_third, g3) = server.raw();
    assert!(g1.starts_with("220") && g2.starts_with("220"), "{g1}{g2}");
    assert!(g3.starts_with("421 4.7.0"), "{g3}");
}

#[test]
fn idle_client_gets_421_timeout() {
    let dir = test_dir("timeout");
    let server = Server::start(&dir, &base_config(&dir, "command_timeout_secs = 1", ""));
    let (mut s, _) = server.raw();
    let started = std::time::Instant::now();
    let reply = read_reply(&mut s);
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}
