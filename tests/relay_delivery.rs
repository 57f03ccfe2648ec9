//! Relay end to end, the paths that deliver: MX order and fallback, the A fallback, static
//! routes, STARTTLS, dot-stuffing on the wire, VERP, connection reuse, the per-destination
//! connection limit across two shards, and a receiving server nobody here wrote (aiosmtpd).

mod common;
#[path = "support/receiver.rs"]
mod receiver;
mod relay;

use common::aiosmtpd::Sink;
use common::client_script;
use receiver::{Receiver, Script, TlsIdentity};
use relay::{receivers_on_common_port, send, start_relay, wait_until};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn mx_preference_order_with_fallback_to_the_next_mx() {
    // mx1 (preference 10) has nothing listening: the next MX takes the mail.
    // Nothing listens on 127.0.0.4, whatever the port.
    let (port, mut receivers) = receivers_on_common_port(&["127.0.0.3"], Script::default());
    let good = receivers.remove(0);
    let zone = "mxorder.test. 60 IN MX 10 mx1.mxorder.test.\n\
                mxorder.test. 60 IN MX 20 mx2.mxorder.test.\n\
                mxorder.test. 60 IN MX 30 mx3.mxorder.test.\n\
                mx1.mxorder.test. 60 IN A 127.0.0.4\n\
                mx2.mxorder.test. 60 IN A 127.0.0.3\n\
                mx3.mxorder.test. 60 IN A 127.0.0.3\n";
    let relay = start_relay("mx-order", port, zone, "", "");
    send(
        &relay.server,
        "me@example.test",
        &["bob@mxorder.test"],
        "Subject: mx\n\nhi\n",
    );
    assert!(
        wait_until(20, || good.transactions().len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    let t = &good.transactions()[0];
    assert_eq!(t.rcpts, vec!["<bob@mxorder.test>"]);
    assert!(
        t.mail_from.starts_with("<me@example.test>"),
        "{}",
        t.mail_from
    );
    let log = relay.server.log();
    assert!(log.contains("mx1.mxorder.test [127.0.0.4]"), "{log}");
    assert!(
        log.contains("via mx2.mxorder.test [127.0.0.3]") && log.contains("delivered"),
        "{log}"
    );
}

#[test]
fn domain_without_mx_falls_back_to_its_address_record() {
    let (port, mut receivers) = receivers_on_common_port(&["127.0.0.5"], Script::default());
    let good = receivers.remove(0);
    let zone = "amx.test. 60 IN A 127.0.0.5\namx.test. 60 IN TXT \"no mx here\"\n";
    let relay = start_relay("a-fallback", port, zone, "", "");
    send(
        &relay.server,
        "me@example.test",
        &["ann@amx.test"],
        "Subject: a\n\nhi\n",
    );
    assert!(
        wait_until(20, || good.transactions().len() == 1),
        "log:\n{}",
        relay.server.log()
    );
}

#[test]
fn static_route_and_dot_stuffing_and_crlf_on_the_wire() {
    // The smarthost route needs no DNS at all: the zone is empty.
    let receiver = Receiver::start(
        "127.0.0.6:0",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    let route = format!("routes = {{ \"*\" = \"{}\" }}", receiver.addr());
    let relay = start_relay("static-route", 25, "", &route, "");
    let body = "Subject: dots\n\n.leading dot\n..two\n.\nlast\n";
    send(
        &relay.server,
        "me@example.test",
        &["a@far.test", "b@far.test", "c@other.test"],
        body,
    );
    assert!(
        wait_until(20, || {
            receiver
                .transactions()
                .iter()
                .map(|t| t.rcpts.len())
                .sum::<usize>()
                == 3
        }),
        "log:\n{}",
        relay.server.log()
    );
    let transactions = receiver.transactions();
    // far.test and other.test share the smarthost: one destination, so one transaction.
    assert_eq!(transactions.len(), 1, "{transactions:?}");
    let t = &transactions[0];
    assert!(
        t.pipelined,
        "the client pipelines when the server offers it"
    );
    let raw = String::from_utf8_lossy(&t.raw);
    assert!(
        raw.contains("\r\n..leading dot\r\n...two\r\n..\r\nlast\r\n.\r\n"),
        "{raw:?}"
    );
    assert!(
        !raw.replace("\r\n", "").contains('\n'),
        "bare LF on the wire: {raw:?}"
    );
    let data = String::from_utf8_lossy(&t.data);
    assert!(
        data.contains("\r\n.leading dot\r\n..two\r\n.\r\nlast\r\n"),
        "{data:?}"
    );
    assert!(
        data.starts_with("Received: from "),
        "our trace header first: {data:?}"
    );
}

#[test]
fn opportunistic_starttls_with_a_self_signed_certificate() {
    let receiver = Receiver::start(
        "127.0.0.7:0",
        Script {
            tls: Some(TlsIdentity::self_signed("tls.test")),
            ..Script::default()
        },
    );
    let route = format!("routes = {{ \"tls.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay("starttls", 25, "", &route, "");
    send(
        &relay.server,
        "me@example.test",
        &["t@tls.test"],
        "Subject: tls\n\nsecret\n",
    );
    assert!(
        wait_until(20, || receiver.transactions().len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    assert!(receiver.transactions()[0].tls, "sent over TLS");
    let log = relay.server.log();
    assert!(
        log.contains("TLSv1."),
        "the log names the TLS version: {log}"
    );
}

#[test]
fn verp_sender_is_rewritten_per_recipient() {
    let receiver = Receiver::start("127.0.0.8:0", Script::default());
    let route = format!("routes = {{ \"verp.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay("verp", 25, "", &route, "");
    send(
        &relay.server,
        "list-@example.test-@[]",
        &["bob@verp.test", "carol@verp.test"],
        "Subject: list\n\nposting\n",
    );
    assert!(
        wait_until(20, || receiver.transactions().len() == 2),
        "log:\n{}",
        relay.server.log()
    );
    let mut senders: Vec<String> = receiver
        .transactions()
        .iter()
        .map(|t| format!("{} {}", t.mail_from, t.rcpts.join(",")))
        .collect();
    senders.sort();
    assert_eq!(
        senders,
        vec![
            "<list-bob=verp.test@example.test> <bob@verp.test>",
            "<list-carol=verp.test@example.test> <carol@verp.test>",
        ]
    );
}

/// Sends `total` messages from 10 concurrent smtplib clients to `recipient`.
fn blast(relay: &relay::Relay, total: usize, recipient: &str) {
    let status = Command::new("python3")
        .arg(client_script("smtp_blast.py"))
        .args(["127.0.0.1", &relay.server.smtp.port().to_string()])
        .args([&total.to_string(), "10", recipient, "60"])
        .stdout(Stdio::null())
        .status()
        .expect("python3");
    assert!(status.success());
}

#[test]
fn per_destination_limit_holds_across_shards_and_connections_are_reused() {
    // Slow replies make every connection busy for a while, so that without a limit the two
    // shards would open one connection per message in flight.
    let receiver = Receiver::start(
        "127.0.0.9:0",
        Script {
            pipelining: true,
            reply_delay: Duration::from_millis(5),
            ..Script::default()
        },
    );
    let route = format!(
        "routes = {{ \"limit.test\" = \"{}\" }}\nmax_connections_per_destination = 2",
        receiver.addr()
    );
    let relay = start_relay("dest-limit", 25, "", &route, "");
    blast(&relay, 60, "user@limit.test");
    assert!(
        wait_until(60, || receiver.transactions().len() == 60),
        "delivered {}; log:\n{}",
        receiver.transactions().len(),
        relay.server.log()
    );
    assert!(
        receiver.max_concurrent() <= 2,
        "{} connections at once",
        receiver.max_concurrent()
    );
    assert!(
        receiver.connections() <= 6,
        "60 messages took {} connections: no reuse",
        receiver.connections()
    );
}

#[test]
fn delivers_to_aiosmtpd() {
    let sink = Sink::start("127.0.0.10");
    let route = format!("routes = {{ \"sink.test\" = \"{}\" }}", sink.addr());
    let relay = start_relay("aiosmtpd", 25, "", &route, "");
    send(
        &relay.server,
        "me@example.test",
        &["a@sink.test", "b@sink.test", "c@sink.test"],
        "Subject: to aiosmtpd\n\n.dot\nbody\n",
    );
    let messages = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(messages.len(), 1, "log:\n{}", relay.server.log());
    let m = &messages[0];
    assert_eq!(m.from, "me@example.test");
    assert_eq!(m.to, vec!["a@sink.test", "b@sink.test", "c@sink.test"]);
    let data = String::from_utf8_lossy(&m.data);
    assert!(data.contains("\r\n.dot\r\nbody\r\n"), "{data:?}");
}
