//! Relay end to end, the paths that do not deliver at once: null MX, mixed per-recipient
//! results in one transaction, retry then success, queue lifetime expiry, double bounces, the
//! bounce that once landed in a local Maildir for a remote domain, downed-host backoff, and
//! the queue control commands (pause, resume, flush, delete, bounce) on the running server.

mod common;
#[path = "support/receiver.rs"]
mod receiver;
mod relay;

use receiver::{Receiver, Script};
use relay::{common_port, mailbox, queue_ctl, queue_list, send, start_relay, wait_until};

/// The id of the only message `queue list` shows with `recipient` in it.
fn queued_id(server: &common::Server, recipient: &str) -> String {
    let list = queue_list(server);
    let mut id = None;
    for line in list.lines() {
        if let Some((_, rest)) = line.split_once(" msg ") {
            id = rest.split_whitespace().next().map(str::to_string);
        } else if line.contains(recipient) {
            return id.unwrap_or_else(|| panic!("no message line before {recipient}:\n{list}"));
        }
    }
    panic!("{recipient} is not in the queue:\n{list}");
}

#[test]
fn null_mx_fails_at_once_with_a_dsn() {
    let relay = start_relay("null-mx", 25, "nullmx.test. 60 IN MX 0 .\n", "", "");
    send(
        &relay.server,
        "me@example.test",
        &["x@nullmx.test"],
        "Subject: n\n\nhi\n",
    );
    assert!(
        wait_until(20, || mailbox(&relay.server, "me@example.test").len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    let dsn = &mailbox(&relay.server, "me@example.test")[0];
    assert!(dsn.contains("multipart/report"), "{dsn}");
    assert!(dsn.contains("report-type=\"delivery-status\""), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; x@nullmx.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.10"), "{dsn}");
    assert!(
        dsn.contains("Return-Path: <>"),
        "a bounce has the null sender: {dsn}"
    );
}

#[test]
fn mixed_recipient_results_in_one_transaction() {
    let receiver = Receiver::start(
        "127.0.0.20:0",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    let route = format!("routes = {{ \"mixed.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay("mixed", 25, "", &route, "");
    send(
        &relay.server,
        "me@example.test",
        &["ok@mixed.test", "temp-a@mixed.test", "perm-b@mixed.test"],
        "Subject: mixed\n\nhi\n",
    );
    assert!(
        wait_until(20, || mailbox(&relay.server, "me@example.test").len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    let transactions = receiver.transactions();
    assert_eq!(transactions.len(), 1);
    assert_eq!(transactions[0].rcpts, vec!["<ok@mixed.test>"]);
    let dsn = &mailbox(&relay.server, "me@example.test")[0];
    assert!(
        dsn.contains("Final-Recipient: rfc822; perm-b@mixed.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{dsn}");
    assert!(
        !dsn.contains("Final-Recipient: rfc822; temp-a@mixed.test"),
        "{dsn}"
    );
    assert!(
        wait_until(10, || queue_list(&relay.server)
            .contains("deferred, 1 attempts")),
        "{}",
        queue_list(&relay.server)
    );
    let list = queue_list(&relay.server);
    assert!(list.contains("temp-a@mixed.test"), "{list}");
    assert!(list.contains("done\tok@mixed.test"), "{list}");
}

#[test]
fn retry_after_a_refused_connection_then_success_on_flush() {
    let port = common_port(&["127.0.0.21"]);
    let route =
        format!("routes = {{ \"later.test\" = \"127.0.0.21:{port}\" }}\nhost_backoff_secs = 1");
    let relay = start_relay("retry", 25, "", &route, "");
    send(
        &relay.server,
        "me@example.test",
        &["l@later.test"],
        "Subject: later\n\nhi\n",
    );
    assert!(
        wait_until(20, || relay.server.log().contains("deferral")),
        "log:\n{}",
        relay.server.log()
    );
    let receiver = Receiver::start(&format!("127.0.0.21:{port}"), Script::default());
    // The backoff (1 s) must pass before a flush tries the host again.
    assert!(
        wait_until(20, || {
            queue_ctl(&relay.server, &["flush"]);
            receiver.transactions().len() == 1
        }),
        "log:\n{}",
        relay.server.log()
    );
    assert!(wait_until(10, || queue_list(&relay.server).trim()
        == "the queue is empty"));
}

#[test]
fn queue_lifetime_expiry_bounces_with_a_dsn() {
    let receiver = Receiver::start("127.0.0.22:0", Script::default());
    let route = format!("routes = {{ \"slow.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay(
        "expiry",
        25,
        "",
        &route,
        "[queue]\nqueue_lifetime_secs = 2\n",
    );
    send(
        &relay.server,
        "me@example.test",
        &["temp-x@slow.test"],
        "Subject: e\n\nhi\n",
    );
    assert!(
        wait_until(30, || {
            queue_ctl(&relay.server, &["flush"]);
            std::thread::sleep(std::time::Duration::from_millis(300));
            mailbox(&relay.server, "me@example.test").len() == 1
        }),
        "log:\n{}",
        relay.server.log()
    );
    let dsn = &mailbox(&relay.server, "me@example.test")[0];
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    assert!(dsn.contains("Diagnostic-Code: smtp; 451"), "{dsn}");
    assert!(dsn.contains("too long"), "{dsn}");
}

#[test]
fn a_bounce_that_fails_becomes_a_double_bounce_to_the_postmaster() {
    let receiver = Receiver::start("127.0.0.23:0", Script::default());
    let route = format!("routes = {{ \"strict.test\" = \"{}\" }}", receiver.addr());
    let zone = "nullmx.test. 60 IN MX 0 .\n";
    let relay = start_relay("double-bounce", 25, zone, &route, "");
    // The recipient is refused, and the bounce to the sender's null-MX domain fails too.
    send(
        &relay.server,
        "someone@nullmx.test",
        &["perm-x@strict.test"],
        "Subject: d\n\nhi\n",
    );
    assert!(
        wait_until(20, || mailbox(&relay.server, "postmaster@mx.test").len()
            == 1),
        "log:\n{}",
        relay.server.log()
    );
    let double = &mailbox(&relay.server, "postmaster@mx.test")[0];
    assert!(
        double.contains("Final-Recipient: rfc822; someone@nullmx.test"),
        "{double}"
    );
    assert!(double.contains("Return-Path: <#@[]>"), "{double}");
    assert!(wait_until(10, || queue_list(&relay.server).trim()
        == "the queue is empty"));
}

#[test]
fn bounce_for_a_remote_sender_goes_out_not_into_a_local_maildir() {
    // The bug: a looping message's bounce to alice@remote.example was written into
    // <mail root>/remote.example/alice/Maildir.
    let receiver = Receiver::start("127.0.0.24:0", Script::default());
    let route = format!(
        "routes = {{ \"remote.example\" = \"{}\" }}",
        receiver.addr()
    );
    let relay = start_relay("bounce-bug", 25, "", &route, "");
    send(
        &relay.server,
        "alice@remote.example",
        &["bob@example.test"],
        "Delivered-To: bob@example.test\nSubject: loop\n\nhi\n",
    );
    assert!(
        wait_until(20, || receiver.transactions().len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    let t = &receiver.transactions()[0];
    assert!(t.mail_from.starts_with("<>"), "{}", t.mail_from);
    assert_eq!(t.rcpts, vec!["<alice@remote.example>"]);
    assert!(String::from_utf8_lossy(&t.data).contains("Status: 5.4.6"));
    assert!(!relay.server.mail_root().join("remote.example").exists());
}

#[test]
fn a_downed_host_is_skipped_and_its_mail_waits_without_using_retries() {
    let port = common_port(&["127.0.0.25"]);
    let route =
        format!("routes = {{ \"down.test\" = \"127.0.0.25:{port}\" }}\nhost_backoff_secs = 300");
    let relay = start_relay("backoff", 25, "", &route, "");
    send(
        &relay.server,
        "me@example.test",
        &["a@down.test"],
        "Subject: 1\n\nhi\n",
    );
    assert!(wait_until(20, || relay.server.log().contains("deferral")));
    send(
        &relay.server,
        "me@example.test",
        &["b@down.test"],
        "Subject: 2\n\nhi\n",
    );
    assert!(
        wait_until(20, || relay.server.log().contains("failed recently")),
        "log:\n{}",
        relay.server.log()
    );
    let log = relay.server.log();
    assert_eq!(
        log.matches("cannot use 127.0.0.25").count(),
        1,
        "the downed host was tried again:\n{log}"
    );
    let list = queue_list(&relay.server);
    assert!(
        list.contains("pending\tb@down.test"),
        "no retry used up: {list}"
    );
}

#[test]
fn pause_holds_delivery_and_resume_releases_it() {
    let relay = start_relay("pause", 25, "", "", "");
    queue_ctl(&relay.server, &["pause"]);
    send(
        &relay.server,
        "me@example.test",
        &["bob@example.test"],
        "Subject: p\n\nhi\n",
    );
    // Accepted and queued, and still there after the scheduler has seen it.
    assert!(wait_until(10, || relay.server.log().contains("new msg")));
    assert!(queue_list(&relay.server).contains("pending\tbob@example.test"));
    assert!(relay.server.new_mail("bob@example.test").is_empty());
    queue_ctl(&relay.server, &["resume"]);
    assert_eq!(
        relay.server.wait_for_mail("bob@example.test", 1, 20).len(),
        1
    );
}

#[test]
fn delete_drops_a_message_and_bounce_returns_it_to_the_sender() {
    let receiver = Receiver::start("127.0.0.26:0", Script::default());
    let route = format!("routes = {{ \"hold.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay("delete-bounce", 25, "", &route, "");
    send(
        &relay.server,
        "me@example.test",
        &["temp-del@hold.test"],
        "Subject: d\n\nhi\n",
    );
    send(
        &relay.server,
        "me@example.test",
        &["temp-bnc@hold.test"],
        "Subject: b\n\nhi\n",
    );
    assert!(wait_until(20, || queue_list(&relay.server)
        .matches("deferred")
        .count()
        == 2));

    let deleted = queued_id(&relay.server, "temp-del@hold.test");
    queue_ctl(&relay.server, &["delete", &deleted]);
    assert!(wait_until(10, || !queue_list(&relay.server).contains("temp-del")));

    let bounced = queued_id(&relay.server, "temp-bnc@hold.test");
    queue_ctl(&relay.server, &["bounce", &bounced]);
    assert!(wait_until(20, || queue_list(&relay.server).trim()
        == "the queue is empty"));
    let mail = mailbox(&relay.server, "me@example.test");
    assert_eq!(mail.len(), 1, "one DSN, for the bounced message only");
    assert!(
        mail[0].contains("Final-Recipient: rfc822; temp-bnc@hold.test"),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("postmaster removed"), "{}", mail[0]);

    let out = relay.server.ctl(&["queue", "delete", "ff.0.99"]);
    assert!(!out.status.success(), "an unknown id is an error");
}
