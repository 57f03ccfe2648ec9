//! DNS for relay against a real DNS server on loopback: the resolver on the sidecar, a shard
//! (a glommio executor) awaiting it, and `resolve_targets` turning MX, implicit-MX, null-MX,
//! NXDOMAIN, SERVFAIL and dead-nameserver answers into targets or RFC 3463 failures.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::dns::DnsServer;
use ringmail::delivery::report::StatusCode;
use ringmail::dns::{DnsError, DnsSettings, Mx, MxAnswer, Resolver};
use ringmail::relay::Destination;
use ringmail::relay::targets::{Target, TargetError, resolve_targets};
use ringmail::sidecar::Sidecar;

const ZONE: &str = r#"
$ORIGIN test.
$TTL 60
$SERVFAIL broken.test.
test.                 IN SOA  ns.test. hostmaster.test. 1 3600 600 86400 60
multi.test.           IN MX   10 mx1.multi.test.
multi.test.           IN MX   10 mx2.multi.test.
multi.test.           IN MX   20 mx3.multi.test.
mx1.multi.test.       IN A    127.0.0.2
mx1.multi.test.       IN AAAA ::1
mx2.multi.test.       IN A    127.0.0.3
mx3.multi.test.       IN A    127.0.0.4
plain.test.           IN A    127.0.0.5
null.test.            IN MX   0 .
empty.test.           IN TXT  "v=spf1 -all"
dangling.test.        IN MX   10 nowhere.dangling.test.
literal.test.         IN MX   10 127.0.0.9.
literal.test.         IN MX   20 mx3.multi.test.
"#;

fn settings(nameserver: SocketAddr) -> DnsSettings {
    DnsSettings {
        nameservers: vec![nameserver],
        timeout: Duration::from_secs(2),
        attempts: 2,
    }
}

fn mx(domain: &str) -> Destination {
    Destination::Mx {
        domain: domain.into(),
    }
}

/// Runs `test` on a glommio executor (as a shard would) with a resolver on a fresh sidecar.
fn on_shard<T: 'static>(
    settings: DnsSettings,
    test: impl AsyncFnOnce(Resolver) -> T + 'static,
) -> T {
    let sidecar = Sidecar::start().unwrap();
    let resolver = Resolver::start(&sidecar, &settings).unwrap();
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move { test(resolver).await })
}

fn addrs(targets: &[Target]) -> Vec<(String, SocketAddr)> {
    targets.iter().map(|t| (t.host.clone(), t.addr)).collect()
}

fn target(host: &str, addr: &str) -> (String, SocketAddr) {
    (host.to_string(), addr.parse().unwrap())
}

#[test]
fn resolver_tells_records_nodata_and_nxdomain_apart() {
    let server = DnsServer::start(ZONE);
    on_shard(settings(server.addr()), async |resolver| {
        let MxAnswer::Hosts(mut hosts) = resolver.mx("Multi.Test").await.unwrap() else {
            panic!("multi.test has MX records");
        };
        hosts.sort_by(|a, b| (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange)));
        let want = [
            (10, "mx1.multi.test"),
            (10, "mx2.multi.test"),
            (20, "mx3.multi.test"),
        ];
        let want: Vec<Mx> = want
            .iter()
            .map(|(p, e)| Mx {
                preference: *p,
                exchange: e.to_string(),
            })
            .collect();
        assert_eq!(hosts, want);
        assert_eq!(resolver.mx("plain.test").await, Ok(MxAnswer::None));
        assert_eq!(resolver.mx("null.test.").await, Ok(MxAnswer::NullMx));
        assert!(matches!(
            resolver.mx("nonexistent.test").await,
            Err(DnsError::NoSuchDomain(_))
        ));
        assert!(matches!(
            resolver.mx("broken.test").await,
            Err(DnsError::Temporary(_))
        ));

        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            resolver.ip_addrs("MX1.multi.test.").await,
            Ok(vec![ip("::1"), ip("127.0.0.2")])
        );
        assert_eq!(resolver.ip_addrs("empty.test").await, Ok(vec![]));
        assert!(matches!(
            resolver.ip_addrs("nonexistent.test").await,
            Err(DnsError::NoSuchDomain(_))
        ));
    });
}

#[test]
fn resolves_targets_for_each_kind_of_destination() {
    let server = DnsServer::start(ZONE);
    on_shard(settings(server.addr()), async |resolver| {
        // Three MX at two preferences: the two at 10 (three addresses) in some order, then 20.
        let got = addrs(
            &resolve_targets(&resolver, &mx("multi.test"), 2525)
                .await
                .unwrap(),
        );
        assert_eq!(got.len(), 4, "{got:?}");
        let first: HashSet<_> = got[..3].iter().cloned().collect();
        let want_first: HashSet<_> = [
            target("mx1.multi.test", "[::1]:2525"),
            target("mx1.multi.test", "127.0.0.2:2525"),
            target("mx2.multi.test", "127.0.0.3:2525"),
        ]
        .into_iter()
        .collect();
        assert_eq!(first, want_first);
        assert_eq!(got[3], target("mx3.multi.test", "127.0.0.4:2525"));

        // No MX: the domain's own address (RFC 5321 §5.1 implicit MX).
        let got = resolve_targets(&resolver, &mx("plain.test"), 25)
            .await
            .unwrap();
        assert_eq!(addrs(&got), [target("plain.test", "127.0.0.5:25")]);

        // An MX that is an IP literal is skipped; the next MX is used.
        let got = resolve_targets(&resolver, &mx("literal.test"), 25)
            .await
            .unwrap();
        assert_eq!(addrs(&got), [target("mx3.multi.test", "127.0.0.4:25")]);

        // A static route: by name (A/AAAA, never MX) or by address.
        let route = Destination::Static {
            host: "mx2.multi.test".into(),
            port: 2526,
        };
        let got = resolve_targets(&resolver, &route, 25).await.unwrap();
        assert_eq!(addrs(&got), [target("mx2.multi.test", "127.0.0.3:2526")]);
        let route = Destination::Static {
            host: "::1".into(),
            port: 2527,
        };
        let got = resolve_targets(&resolver, &route, 25).await.unwrap();
        assert_eq!(addrs(&got), [target("::1", "[::1]:2527")]);

        let failures = [
            (mx("null.test"), true, StatusCode(5, 1, 10)),
            (mx("nonexistent.test"), true, StatusCode(5, 1, 2)),
            (mx("empty.test"), true, StatusCode(5, 4, 4)),
            (mx("broken.test"), false, StatusCode(4, 4, 3)),
            (mx("dangling.test"), false, StatusCode(4, 4, 3)),
            (
                Destination::Static {
                    host: "nonexistent.test".into(),
                    port: 25,
                },
                false,
                StatusCode(4, 4, 3),
            ),
        ];
        for (destination, permanent, code) in failures {
            let (got_permanent, detail) = match resolve_targets(&resolver, &destination, 25).await {
                Err(TargetError::Permanent(d)) => (true, d),
                Err(TargetError::Temporary(d)) => (false, d),
                Ok(targets) => panic!("{destination}: {targets:?}"),
            };
            assert_eq!(
                (got_permanent, detail.code),
                (permanent, code),
                "{destination}: {detail}"
            );
            assert_eq!(
                StatusCode::from_qmail_text(&detail.text),
                Some(code),
                "{detail}"
            );
        }
        let Err(TargetError::Permanent(d)) =
            resolve_targets(&resolver, &mx("nonexistent.test"), 25).await
        else {
            panic!("NXDOMAIN is permanent");
        };
        assert_eq!(
            d.text,
            "Sorry, I couldn't find any host named nonexistent.test. (#5.1.2)"
        );
    });
}

#[test]
fn equal_preference_order_varies() {
    let server = DnsServer::start(ZONE);
    let firsts = on_shard(settings(server.addr()), async |resolver| {
        let mut firsts = HashSet::new();
        for _ in 0..50 {
            let got = resolve_targets(&resolver, &mx("multi.test"), 25)
                .await
                .unwrap();
            assert_eq!(got.last().map(|t| t.host.as_str()), Some("mx3.multi.test"));
            firsts.insert(got[0].host.clone());
        }
        firsts
    });
    // RFC 5321 §5.1: equal preferences are tried in random order. The chance that 50 fair
    // shuffles of two hosts all agree is 2^-49.
    let want: HashSet<String> = ["mx1.multi.test".into(), "mx2.multi.test".into()].into();
    assert_eq!(firsts, want);
}

#[test]
fn dead_nameserver_fails_temporarily_within_the_timeout() {
    // Bound, so the kernel sends no ICMP "port unreachable", and silent.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let settings = DnsSettings {
        nameservers: vec![silent.local_addr().unwrap()],
        timeout: Duration::from_millis(500),
        attempts: 2,
    };
    let budget = settings.timeout * (settings.attempts as u32 + 1) + Duration::from_secs(1);
    let timeout = settings.timeout;
    on_shard(settings, async move |resolver| {
        let started = Instant::now();
        let got = resolver.mx("multi.test").await;
        let took = started.elapsed();
        assert!(matches!(got, Err(DnsError::Temporary(_))), "{got:?}");
        // It waited for the nameserver (no instant error), but not past the configured limit.
        assert!(took >= timeout, "took {took:?}, less than one timeout");
        assert!(took <= budget, "took {took:?}, more than {budget:?}");
        let started = Instant::now();
        match resolve_targets(&resolver, &mx("multi.test"), 25).await {
            Err(TargetError::Temporary(d)) => assert_eq!(d.code, StatusCode(4, 4, 3)),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() <= budget);
    });
    drop(silent);
}

#[test]
fn lookups_fail_temporarily_once_the_sidecar_stops() {
    let server = DnsServer::start(ZONE);
    let sidecar = Sidecar::start().unwrap();
    let resolver = Resolver::start(&sidecar, &settings(server.addr())).unwrap();
    drop(sidecar);
    let got = glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move { resolver.mx("multi.test").await });
    assert!(matches!(got, Err(DnsError::Temporary(_))), "{got:?}");
}
