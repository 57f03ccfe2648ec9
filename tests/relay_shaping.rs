//! Traffic shaping end to end, against real receivers on loopback: a destination's connection
//! and rate limits across two shards while another domain flows at full speed, the MX rollup
//! sharing one provider's limit, source-IP pools binding 127.0.0.x sources in their weights,
//! reply-pattern backoff suspending one destination (visible in `ringmail queue status`), and
//! two ringmail nodes sharing one rate limit through a real redis-server (and one node failing
//! open to its own limit when Redis is down), the Redis client itself, and config errors.

mod common;
#[path = "support/receiver.rs"]
mod receiver;
mod relay;

use common::{Server, base_config, test_dir};
use receiver::{Receiver, Script};
use relay::{queue_ctl, receivers_on_common_port, send_many, start_relay, wait_until};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `count` messages from `sender` to `rcpt` in `connections` parallel SMTP sessions (so
/// both shards of the server queue some).
fn send_parallel(server: &Server, sender: &str, rcpt: &str, count: usize, connections: usize) {
    std::thread::scope(|scope| {
        for c in 0..connections {
            scope.spawn(move || {
                let subjects: Vec<String> = (c..count)
                    .step_by(connections)
                    .map(|i| format!("m{i}"))
                    .collect();
                let rcpts = [rcpt];
                let messages: Vec<(&str, &[&str], &str, usize)> = subjects
                    .iter()
                    .map(|s| (sender, &rcpts[..], s.as_str(), 0))
                    .collect();
                if !messages.is_empty() {
                    send_many(server, &messages);
                }
            });
        }
    });
}

/// Asserts that no two arrivals are closer than their count allows at one per `interval`:
/// the k-th after any arrival comes at least `(k - 1) * interval` after it. The one interval of
/// slack absorbs the jitter between the relay's turn and the receiver's clock on a busy host
/// (two shards, other builds); unshaped, the same messages arrive within a fraction of one
/// interval of each other, so the check still tells a held limit from none.
fn assert_paced(arrivals: &[Instant], interval: Duration) {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    for i in 0..sorted.len() {
        for j in i + 1..sorted.len() {
            let gap = sorted[j] - sorted[i];
            let least = interval * (j - i - 1) as u32;
            assert!(
                gap >= least,
                "messages {i} and {j} arrived {gap:?} apart; the limit allows no less than {least:?}"
            );
        }
    }
}

#[test]
fn a_limited_domain_keeps_its_limits_across_shards_while_others_flow() {
    let (port, mut receivers) =
        receivers_on_common_port(&["127.0.0.2", "127.0.0.3"], Script::default());
    let fast = receivers.pop().unwrap();
    let slow = receivers.pop().unwrap();
    let zone = "slow.test. 60 IN MX 10 mx.slow.test.\nmx.slow.test. 60 IN A 127.0.0.2\n\
                fast.test. 60 IN MX 10 mx.fast.test.\nmx.fast.test. 60 IN A 127.0.0.3\n";
    let relay = start_relay(
        "shaping-limits",
        port,
        zone,
        "",
        "[relay.shaping.\"slow.test\"]\nmax_connections = 2\nmessages_per_minute = 100\n",
    );
    let count = 10;
    std::thread::scope(|scope| {
        // One SMTP session per message, so that the kernel spreads them over both shards.
        scope.spawn(|| send_parallel(&relay.server, "a@example.test", "x@slow.test", count, count));
        scope.spawn(|| send_parallel(&relay.server, "a@example.test", "y@fast.test", count, 4));
    });
    assert!(
        wait_until(20, || fast.transactions().len() == count),
        "fast.test got {}; log:\n{}",
        fast.transactions().len(),
        relay.server.log()
    );
    assert!(
        wait_until(30, || slow.transactions().len() == count),
        "slow.test got {}; log:\n{}",
        slow.transactions().len(),
        relay.server.log()
    );
    let slow_times: Vec<Instant> = slow.transactions().iter().map(|t| t.at).collect();
    let fast_times: Vec<Instant> = fast.transactions().iter().map(|t| t.at).collect();
    // 100 per minute: one per 600 ms, never two closer (within scheduling slack).
    assert_paced(&slow_times, Duration::from_millis(600));
    assert!(
        slow.max_concurrent() <= 2,
        "{} connections at once",
        slow.max_concurrent()
    );
    // The other domain was not held back: all of it arrived before the limited one was half
    // done.
    let last_fast = fast_times.iter().max().unwrap();
    let mut sorted = slow_times.clone();
    sorted.sort();
    assert!(
        *last_fast < sorted[count / 2],
        "fast.test finished {:?} after slow.test began",
        *last_fast - sorted[0]
    );
    // Both shards took part: each queued some of the limited mail (the log's message ids are
    // <segment>.<shard>.<index>), and still the one owner kept the limits.
    let log = relay.server.log();
    let shards: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains(" to x@slow.test via "))
        .filter_map(|l| {
            l.split("relay ")
                .nth(1)?
                .split(' ')
                .next()?
                .split('.')
                .nth(1)
        })
        .collect();
    assert_eq!(shards.len(), 2, "queued on shards {shards:?}; log:\n{log}");
}

#[test]
fn domains_on_one_provider_share_its_limit() {
    let (port, mut receivers) = receivers_on_common_port(&["127.0.0.2"], Script::default());
    let receiver = receivers.remove(0);
    let zone = "a.test. 60 IN MX 10 mx1.rollup.test.\nb.test. 60 IN MX 10 mx2.rollup.test.\n\
                mx1.rollup.test. 60 IN A 127.0.0.2\nmx2.rollup.test. 60 IN A 127.0.0.2\n";
    let relay = start_relay(
        "shaping-rollup",
        port,
        zone,
        "",
        "[relay.providers]\nrolluptest = [\".rollup.test\"]\n\n\
         [relay.shaping.rolluptest]\nmax_connections = 1\nmessages_per_second = 4\n",
    );
    std::thread::scope(|scope| {
        scope.spawn(|| send_parallel(&relay.server, "a@example.test", "x@a.test", 5, 2));
        scope.spawn(|| send_parallel(&relay.server, "a@example.test", "y@b.test", 5, 2));
    });
    assert!(
        wait_until(30, || receiver.transactions().len() == 10),
        "got {}; log:\n{}",
        receiver.transactions().len(),
        relay.server.log()
    );
    let times: Vec<Instant> = receiver.transactions().iter().map(|t| t.at).collect();
    // Alone, each domain could go at 4/s on a connection of its own; rolled up, the two share
    // one connection at a time and one pace.
    assert_paced(&times, Duration::from_millis(250));
    assert_eq!(receiver.max_concurrent(), 1);
    let rcpts: Vec<String> = receiver
        .transactions()
        .iter()
        .map(|t| t.rcpts[0].clone())
        .collect();
    assert_eq!(rcpts.iter().filter(|r| r.contains("@a.test")).count(), 5);
    assert_eq!(rcpts.iter().filter(|r| r.contains("@b.test")).count(), 5);
}

#[test]
fn pool_sources_are_bound_in_their_weights_with_their_own_helo() {
    let (port, mut receivers) = receivers_on_common_port(&["127.0.0.5"], Script::default());
    let receiver = receivers.remove(0);
    let zone = "pools.test. 60 IN MX 10 mx.pools.test.\nmx.pools.test. 60 IN A 127.0.0.5\n";
    let relay = start_relay(
        "shaping-pools",
        port,
        zone,
        "max_messages_per_connection = 1\ndefault_pool = \"main\"\n\
         pool_by_sender_domain = { \"lists.example.test\" = \"lists\" }\n\
         pool_header = \"X-Ringmail-Pool\"",
        "[relay.pools.main]\nsources = [\n\
         { address = \"127.0.0.2\", helo = \"two.example.test\", weight = 3 },\n\
         { address = \"127.0.0.3\", helo = \"three.example.test\", weight = 1 },\n]\n\n\
         [relay.pools.lists]\nsources = [{ address = \"127.0.0.4\", helo = \"four.example.test\" }]\n",
    );
    send_parallel(&relay.server, "a@example.test", "x@pools.test", 8, 2);
    send_parallel(
        &relay.server,
        "news@lists.example.test",
        "y@pools.test",
        3,
        1,
    );
    // A message may name its own pool; the header is ours and is not sent on.
    relay::send(
        &relay.server,
        "a@example.test",
        &["z@pools.test"],
        "Subject: picked\nX-Ringmail-Pool: lists\n\nhi\n",
    );
    assert!(
        wait_until(30, || receiver.transactions().len() == 12),
        "got {}; log:\n{}",
        receiver.transactions().len(),
        relay.server.log()
    );
    let from = |ip: &str, rcpt: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        receiver
            .transactions()
            .iter()
            .filter(|t| t.peer.ip() == ip && t.rcpts[0].contains(rcpt))
            .map(|t| t.helo.clone())
            .collect::<Vec<_>>()
    };
    // Weights 3:1, by smooth weighted round-robin: exactly 6 and 2 of 8 connections.
    let two = from("127.0.0.2", "@pools.test");
    let three = from("127.0.0.3", "@pools.test");
    let four = from("127.0.0.4", "@pools.test");
    assert_eq!(two.len(), 6, "from 127.0.0.2: {two:?}");
    assert_eq!(three.len(), 2, "from 127.0.0.3: {three:?}");
    assert!(two.iter().all(|h| h == "two.example.test"), "{two:?}");
    assert!(three.iter().all(|h| h == "three.example.test"), "{three:?}");
    // The lists domain has its own pool, and so has the message that named it.
    assert_eq!(four, vec!["four.example.test"; 4]);
    let picked = receiver
        .transactions()
        .into_iter()
        .find(|t| t.rcpts[0].contains("z@pools.test"))
        .unwrap();
    assert_eq!(picked.peer.ip().to_string(), "127.0.0.4");
    let data = String::from_utf8_lossy(&picked.data).into_owned();
    assert!(
        data.contains("Subject: picked") && !data.to_ascii_lowercase().contains("x-ringmail-pool"),
        "{data}"
    );
    assert_eq!(receiver.connections(), 12);
}

#[test]
fn a_matching_reply_suspends_that_destination_only() {
    let throttle_script = Script {
        final_replies_first: vec![
            "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of mail".into(),
        ],
        ..Script::default()
    };
    let (port, mut throttled) = receivers_on_common_port(&["127.0.0.2"], throttle_script);
    let throttled = throttled.remove(0);
    let calm = Receiver::start(&format!("127.0.0.3:{port}"), Script::default());
    let zone = "throttle.test. 60 IN MX 10 mx.throttle.test.\nmx.throttle.test. 60 IN A 127.0.0.2\n\
                calm.test. 60 IN MX 10 mx.calm.test.\nmx.calm.test. 60 IN A 127.0.0.3\n";
    let relay = start_relay(
        "shaping-backoff",
        port,
        zone,
        "shaping_max_wait_secs = 20",
        "[relay.backoff.gmail-rate]\nprefix = \"421 4.7.28\"\naction = \"suspend\"\nseconds = 10\n",
    );
    send_many(
        &relay.server,
        &[("a@example.test", &["first@throttle.test"], "first", 0)],
    );
    assert!(
        wait_until(20, || throttled.final_replies().len() == 1),
        "log:\n{}",
        relay.server.log()
    );
    let suspended_at = throttled.final_replies()[0].0;
    let status = queue_ctl(&relay.server, &["status"]);
    assert!(
        status.contains("suspended: throttle.test")
            && status.contains("rule gmail-rate: 421 4.7.28"),
        "{status}"
    );
    assert!(!status.contains("calm.test"), "{status}");
    // During the suspension: the calm destination flows, the throttled one waits (without a
    // deferral: the job waits at the owner) and goes once the suspension is over.
    send_many(
        &relay.server,
        &[
            ("a@example.test", &["second@throttle.test"], "second", 0),
            ("a@example.test", &["c@calm.test"], "calm", 0),
        ],
    );
    assert!(
        wait_until(10, || calm.transactions().len() == 1),
        "{}",
        relay.server.log()
    );
    let calm_at = calm.transactions()[0].at;
    assert!(
        calm_at - suspended_at < Duration::from_secs(10),
        "calm.test was delivered only {:?} after the suspension began",
        calm_at - suspended_at
    );
    assert!(
        wait_until(20, || throttled.transactions().len() == 1),
        "{}",
        relay.server.log()
    );
    let second = &throttled.transactions()[0];
    assert_eq!(second.rcpts, vec!["<second@throttle.test>"]);
    assert!(
        second.at - suspended_at >= Duration::from_millis(9900),
        "sent {:?} into a 10 s suspension",
        second.at - suspended_at
    );
    assert!(calm_at < second.at);
    // The first recipient was deferred by the 421 itself (a real attempt) and waits for its
    // retry; a flush sends it now that the destination is open again.
    queue_ctl(&relay.server, &["flush"]);
    assert!(
        wait_until(20, || throttled.transactions().len() == 2),
        "{}",
        relay.server.log()
    );
    let status = queue_ctl(&relay.server, &["status"]);
    assert!(!status.contains("suspended:"), "{status}");
}

/// A redis-server (Debian's package, from scripts/install-test-deps) on a free loopback port;
/// stopped by its PID when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: common::TestDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let dir = test_dir("redis");
        for _ in 0..20 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.as_os_str())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (scripts/install-test-deps installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken: try another
                }
                if ping(port) {
                    return RedisServer {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a RESP `PING`; true on `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

#[test]
fn two_nodes_sharing_redis_keep_one_limit_together() {
    let redis = RedisServer::start();
    let (port, mut receivers) = receivers_on_common_port(&["127.0.0.2"], Script::default());
    let receiver = receivers.remove(0);
    let zone = "shared.test. 60 IN MX 10 mx.shared.test.\nmx.shared.test. 60 IN A 127.0.0.2\n";
    let extra = format!(
        "[relay.shaping.\"shared.test\"]\nmessages_per_second = 4\n\n[redis]\nurl = \"{}\"\n",
        redis.url()
    );
    let one = start_relay("shaping-redis-1", port, zone, "", &extra);
    let two = start_relay("shaping-redis-2", port, zone, "", &extra);
    let per_node = 6;
    std::thread::scope(|scope| {
        scope.spawn(|| send_parallel(&one.server, "a@example.test", "x@shared.test", per_node, 2));
        scope.spawn(|| send_parallel(&two.server, "b@example.test", "y@shared.test", per_node, 2));
    });
    assert!(
        wait_until(30, || receiver.transactions().len() == 2 * per_node),
        "got {}; logs:\n{}\n{}",
        receiver.transactions().len(),
        one.server.log(),
        two.server.log()
    );
    // Each node alone may send 4/s; together they still send no more than 4/s.
    let times: Vec<Instant> = receiver.transactions().iter().map(|t| t.at).collect();
    assert_paced(&times, Duration::from_millis(250));
    let senders: Vec<String> = receiver
        .transactions()
        .iter()
        .map(|t| t.mail_from.clone())
        .collect();
    assert_eq!(
        senders.iter().filter(|s| s.starts_with("<a@")).count(),
        per_node
    );
    for relay in [&one, &two] {
        let log = relay.server.log();
        assert!(log.contains("redis: connected"), "{log}");
        assert!(!log.contains("falls back"), "{log}");
    }
}

#[test]
fn bad_shaping_settings_are_refused_with_their_key() {
    let dir = test_dir("shaping-bad-config");
    let config = base_config(
        &dir,
        "",
        "[relay]\ndefault_pool = \"nope\"\n\n[relay.shaping.nosuchprovider]\nmax_connections = 1\n\n\
         [relay.pools.p]\nsources = [{ address = \"not-an-ip\" }]\n\n\
         [relay.backoff.r]\nregex = \"(\"\naction = \"suspend\"\nseconds = 5\n\n\
         [redis]\nurl = \"http://x\"\n",
    );
    let path = dir.join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(common::BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    for key in [
        "relay.default_pool",
        "relay.shaping.nosuchprovider",
        "relay.pools.p.sources",
        "relay.backoff.r.regex",
        "redis.url",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }
    assert!(text.contains("bad.toml:"), "{text}");
}

#[test]
fn without_redis_a_node_fails_open_to_its_own_limit() {
    // Nothing listens on this port: every Redis request fails at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (port, mut receivers) = receivers_on_common_port(&["127.0.0.2"], Script::default());
    let receiver = receivers.remove(0);
    let zone = "shared.test. 60 IN MX 10 mx.shared.test.\nmx.shared.test. 60 IN A 127.0.0.2\n";
    let relay = start_relay(
        "shaping-redis-down",
        port,
        zone,
        "",
        &format!(
            "[relay.shaping.\"shared.test\"]\nmessages_per_second = 4\n\n\
             [redis]\nurl = \"redis://127.0.0.1:{closed}\"\ntimeout_ms = 200\n"
        ),
    );
    send_parallel(&relay.server, "a@example.test", "x@shared.test", 6, 3);
    assert!(
        wait_until(30, || receiver.transactions().len() == 6),
        "got {}; log:\n{}",
        receiver.transactions().len(),
        relay.server.log()
    );
    let times: Vec<Instant> = receiver.transactions().iter().map(|t| t.at).collect();
    assert_paced(&times, Duration::from_millis(250));
    let log = relay.server.log();
    assert!(
        log.contains("falls back to this node's own limits"),
        "{log}"
    );
    // Said once, not once per message.
    assert_eq!(log.matches("falls back").count(), 1, "{log}");
}

#[test]
fn the_redis_client_runs_commands_on_the_sidecar_and_fails_fast_without_redis() {
    use ringmail::redis_client::RedisClient;
    let redis = RedisServer::start();
    let sidecar = ringmail::sidecar::Sidecar::start().unwrap();
    let client = RedisClient::start(&sidecar, &redis.url(), Duration::from_millis(500)).unwrap();
    let words = |ws: &[&str]| ws.iter().map(|w| w.as_bytes().to_vec()).collect::<Vec<_>>();
    futures_lite::future::block_on(async {
        let set = client.command(words(&["SET", "ringmail:test", "42"])).await;
        assert_eq!(set, Ok(redis::Value::Okay));
        let get = client.command(words(&["GET", "ringmail:test"])).await;
        assert_eq!(get, Ok(redis::Value::BulkString(b"42".to_vec())));
        let bad = client.command(words(&["NOSUCHCOMMAND"])).await;
        assert!(bad.is_err(), "{bad:?}");
    });
    drop(redis);
    // Redis gone: an answer (an error) comes within the timeout, never a hang.
    let started = Instant::now();
    let gone = futures_lite::future::block_on(client.command(words(&["GET", "ringmail:test"])));
    assert!(gone.is_err(), "{gone:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(RedisClient::start(&sidecar, "http://nope", Duration::from_millis(100)).is_err());
}
