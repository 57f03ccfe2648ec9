//! Relay end to end, the queue under waiting mail: compaction keeps a deferred message through
//! restarts while its old segment is recycled, delay notices, bodies beyond the memory budget
//! read back from the queue, and delivery over IPv6.

mod common;
#[path = "support/receiver.rs"]
mod receiver;
mod relay;

use common::Server;
use receiver::{Receiver, Script};
use relay::{mailbox, queue_ctl, queue_list, send, send_many, start_relay, wait_until};

/// Files named `seg-*.log` under the queue directory: the live segments.
fn live_segments(server: &Server) -> usize {
    let queue = server.dir.join("data").join("queue");
    let mut count = 0;
    for shard in std::fs::read_dir(queue).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with("seg-") && name.ends_with(".log") {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn compaction_keeps_a_deferred_message_through_restarts() {
    let receiver = Receiver::start("127.0.0.40:0", Script::default());
    let route = format!("routes = {{ \"hold.test\" = \"{}\" }}", receiver.addr());
    let mut relay = start_relay(
        "compaction",
        25,
        "",
        &route,
        "[queue]\nsegment_size_mib = 1\ncompact_after_secs = 0\n",
    );
    // One connection, so one shard: the deferred message, then 1.5 MiB of local mail that is
    // delivered at once and seals the deferred message's segment.
    let mut messages: Vec<(&str, &[&str], &str, usize)> =
        vec![("me@example.test", &["temp-keep@hold.test"], "keep", 1)];
    for _ in 0..15 {
        messages.push(("me@example.test", &["bob@example.test"], "fill", 100));
    }
    send_many(&relay.server, &messages);
    assert_eq!(
        relay.server.wait_for_mail("bob@example.test", 15, 30).len(),
        15
    );
    // The next attempt defers it again, and then it moves out of the sealed segment.
    assert!(
        wait_until(20, || {
            queue_ctl(&relay.server, &["flush"]);
            std::thread::sleep(std::time::Duration::from_millis(200));
            relay.server.log().contains("moved forward in the queue")
        }),
        "log:\n{}",
        relay.server.log()
    );
    let config = relay.server.config_path.clone();
    for _ in 0..2 {
        assert!(relay.server.terminate().success());
        relay.server = Server::start_with(&relay.dir, &config);
        let list = queue_list(&relay.server);
        assert_eq!(list.matches(" msg ").count(), 1, "{list}");
        assert!(list.contains("temp-keep@hold.test"), "{list}");
    }
    // The old segment is gone (recycled): one live segment per shard at most.
    assert!(
        live_segments(&relay.server) <= 2,
        "{} live segments",
        live_segments(&relay.server)
    );
    assert!(receiver.transactions().is_empty());
}

#[test]
fn delay_notice_after_the_configured_wait() {
    let receiver = Receiver::start("127.0.0.41:0", Script::default());
    let route = format!("routes = {{ \"slow.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay("delay", 25, "", &route, "[queue]\ndelay_notice_secs = 1\n");
    send(
        &relay.server,
        "me@example.test",
        &["temp-d@slow.test"],
        "Subject: d\n\nhi\n",
    );
    assert!(
        wait_until(20, || {
            queue_ctl(&relay.server, &["flush"]);
            std::thread::sleep(std::time::Duration::from_millis(300));
            !mailbox(&relay.server, "me@example.test").is_empty()
        }),
        "log:\n{}",
        relay.server.log()
    );
    let notice = &mailbox(&relay.server, "me@example.test")[0];
    assert!(notice.contains("Action: delayed"), "{notice}");
    assert!(
        notice.contains("Final-Recipient: rfc822; temp-d@slow.test"),
        "{notice}"
    );
    // Still queued: a delay notice gives nothing up.
    assert!(queue_list(&relay.server).contains("temp-d@slow.test"));
}

#[test]
fn bodies_beyond_the_memory_budget_are_read_back_from_the_queue() {
    // One delivery at a time to a slow receiver: accepted messages wait behind it. The first
    // waiting body fits the 1 MiB budget; the others wait on disk and are read back.
    let receiver = Receiver::start(
        "127.0.0.42:0",
        Script {
            reply_delay: std::time::Duration::from_millis(150),
            ..Script::default()
        },
    );
    let route = format!("routes = {{ \"big.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay(
        "budget",
        25,
        "",
        &route,
        "[queue]\nmemory_budget_mib = 1\ndelivery_concurrency = 1\n",
    );
    let messages: Vec<(&str, &[&str], &str, usize)> = (0..4)
        .map(|_| ("me@example.test", &["a@big.test"][..], "big", 600))
        .collect();
    send_many(&relay.server, &messages);
    assert!(
        wait_until(30, || receiver.transactions().len() == 4),
        "log:\n{}",
        relay.server.log()
    );
    let log = relay.server.log();
    assert!(
        log.matches("beyond the memory budget").count() >= 2,
        "{log}"
    );
    for t in receiver.transactions() {
        let data = String::from_utf8_lossy(&t.data);
        assert_eq!(
            data.matches(&format!("{}\r\n", "f".repeat(62))).count(),
            600 * 16
        );
    }
}

#[test]
fn an_ipv6_only_domain_is_reached_over_ipv6() {
    let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let receiver = Receiver::start(&format!("[::1]:{port}"), Script::default());
    let zone = "v6.test. 60 IN AAAA ::1\n";
    let relay = start_relay("ipv6", port, zone, "", "");
    send(
        &relay.server,
        "me@example.test",
        &["six@v6.test"],
        "Subject: v6\n\nhi\n",
    );
    assert!(
        wait_until(20, || receiver.transactions().len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    assert!(
        relay.server.log().contains("[::1]"),
        "{}",
        relay.server.log()
    );
}
