//! A destination turned into the ordered list of servers to try: MX hosts by preference
//! (shuffled within a preference), each expanded to its AAAA and A addresses; the domain's own
//! addresses when it has no MX; a permanent failure for NXDOMAIN and null MX.
//!
//! The ordering and the failure decisions are sans-IO (`order_mx`, `mx_targets`, the error
//! mappings) and tested by tables; `resolve_targets` only asks the resolver and feeds them.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::Poll;

use crate::delivery::report::{Detail, StatusCode};
use crate::dns::{DnsError, Mx, MxAnswer, Resolver};
use crate::relay::Destination;

/// At most this many MX hosts are looked up (by preference order); a domain with more is
/// misconfigured or hostile, and the rest would never be reached anyway.
pub const MAX_MX_HOSTS: usize = 10;

/// At most this many addresses are tried for one destination (Postfix's
/// `smtp_mx_address_limit` plays the same role).
pub const MAX_TARGETS: usize = 20;

/// An MX host's name and what its AAAA/A lookup returned.
pub type HostAddrs = (String, Result<Vec<IpAddr>, DnsError>);

/// One server to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The MX host name (or the static route's host) this address belongs to: the name for
    /// TLS certificate checks and for `Remote-MTA:` in a DSN.
    pub host: String,
    pub addr: SocketAddr,
}

/// Why no server could be found. Permanent failures bounce the recipient; temporary ones
/// defer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The domain does not exist, or says it takes no mail: the sender's problem.
    Permanent(Detail),
    /// The DNS failed, or nothing answered with an address: try again later.
    Temporary(Detail),
}

/// The servers for `destination`, in the order to try them; the caller moves to the next one
/// when a server fails. `port` is used for MX and implicit-MX deliveries (a static route
/// carries its own port).
pub async fn resolve_targets(
    resolver: &Resolver,
    destination: &Destination,
    port: u16,
) -> Result<Vec<Target>, TargetError> {
    match destination {
        Destination::Static { host, port } => static_targets(resolver, host, *port).await,
        Destination::Mx { domain } => match resolver.mx(domain).await {
            Ok(MxAnswer::Hosts(records)) => {
                let ordered = order_mx(records, fastrand::shuffle);
                let hosts: Vec<String> = ordered
                    .into_iter()
                    .map(|mx| mx.exchange)
                    // RFC 5321 §5.1 (and RFC 1035 §3.3.9): an exchange is a host name; an
                    // address in its place is a misconfiguration to skip, not to follow.
                    .filter(|exchange| exchange.parse::<IpAddr>().is_err())
                    .take(MAX_MX_HOSTS)
                    .collect();
                let answers =
                    join_all(hosts.iter().map(|host| resolver.ip_addrs(host)).collect()).await;
                mx_targets(domain, hosts.into_iter().zip(answers).collect(), port)
            }
            Ok(MxAnswer::NullMx) => Err(null_mx(domain)),
            // RFC 5321 §5.1: no MX records means the domain itself is the only MX, at
            // preference 0.
            Ok(MxAnswer::None) => match resolver.ip_addrs(domain).await {
                Ok(addrs) => implicit_mx_targets(domain, &addrs, port),
                Err(e) => Err(from_domain_error(domain, e)),
            },
            Err(e) => Err(from_domain_error(domain, e)),
        },
    }
}

async fn static_targets(
    resolver: &Resolver,
    host: &str,
    port: u16,
) -> Result<Vec<Target>, TargetError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![Target {
            host: host.to_string(),
            addr: SocketAddr::new(ip, port),
        }]);
    }
    // A static route is the operator's configuration, never the sender's fault: even
    // NXDOMAIN defers rather than bounces, so that a typo in a smarthost name can be fixed
    // before any mail is lost (Postfix treats a relayhost lookup failure the same way).
    match resolver.ip_addrs(host).await {
        Ok(addrs) if !addrs.is_empty() => Ok(targets_of(host, &addrs, port)),
        Ok(_) => Err(temporary(format!(
            "Sorry, the route host {host} has no address in the DNS. (#4.4.3)"
        ))),
        Err(e) => Err(temporary(format!(
            "Sorry, I couldn't look up the route host {host}: {e}. (#4.4.3)"
        ))),
    }
}

/// Sorts MX records by preference, lowest first, and lets `shuffle` reorder each run of equal
/// preference (RFC 5321 §5.1: "randomize them to spread the load"). An exchange listed twice
/// keeps only its most preferred entry.
pub fn order_mx(mut records: Vec<Mx>, mut shuffle: impl FnMut(&mut [Mx])) -> Vec<Mx> {
    records.sort_by_key(|mx| mx.preference);
    let mut seen = std::collections::HashSet::new();
    records.retain(|mx| seen.insert(mx.exchange.clone()));
    for same in records.chunk_by_mut(|a, b| a.preference == b.preference) {
        shuffle(same);
    }
    records
}

/// The targets of ordered MX hosts and what their address lookups returned. Hosts that do
/// not exist or failed are skipped (the next MX may work); if no host yields an address the
/// destination is deferred: MX hosts that resolve to nothing are a transient state as often
/// as a broken zone, and deferring lets the retry schedule decide (qmail's "CNAME lookup
/// failed temporarily" does the same).
pub fn mx_targets(
    domain: &str,
    hosts: Vec<HostAddrs>,
    port: u16,
) -> Result<Vec<Target>, TargetError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut failures = Vec::new();
    for (host, answer) in hosts {
        match answer {
            Ok(addrs) if addrs.is_empty() => failures.push(format!("{host} has no address")),
            Ok(addrs) => {
                for target in targets_of(&host, &addrs, port) {
                    // The same address under two MX names is one server: try it once.
                    if !targets.iter().any(|t| t.addr == target.addr) {
                        targets.push(target);
                    }
                }
            }
            Err(DnsError::NoSuchDomain(_)) => failures.push(format!("{host} does not exist")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    targets.truncate(MAX_TARGETS);
    if targets.is_empty() {
        let why = if failures.is_empty() {
            "it has no usable MX host".to_string()
        } else {
            failures.join("; ")
        };
        return Err(temporary(format!(
            "Sorry, I couldn't find an address for any mail exchanger of {domain} ({why}). (#4.4.3)"
        )));
    }
    Ok(targets)
}

/// The targets of a domain with no MX: its own addresses (RFC 5321 §5.1). A domain that
/// exists but has neither MX nor address records cannot receive mail: that is permanent, as
/// in Postfix (RFC 5321 §5.1: "it MUST be treated as an error").
pub fn implicit_mx_targets(
    domain: &str,
    addrs: &[IpAddr],
    port: u16,
) -> Result<Vec<Target>, TargetError> {
    if addrs.is_empty() {
        return Err(TargetError::Permanent(Detail::local(
            StatusCode(5, 4, 4),
            format!("Sorry, {domain} has no mail exchanger and no address. (#5.4.4)"),
        )));
    }
    let mut targets = targets_of(domain, addrs, port);
    targets.truncate(MAX_TARGETS);
    Ok(targets)
}

/// The failure for a DNS error about the recipient's domain itself.
pub fn from_domain_error(domain: &str, error: DnsError) -> TargetError {
    match error {
        DnsError::NoSuchDomain(_) => TargetError::Permanent(Detail::local(
            StatusCode(5, 1, 2),
            format!("Sorry, I couldn't find any host named {domain}. (#5.1.2)"),
        )),
        // A setup error is ours, never the sender's: defer until it is fixed.
        DnsError::Temporary(why) | DnsError::Setup(why) => temporary(format!(
            "Sorry, I couldn't look up {domain} in the DNS ({why}). (#4.4.3)"
        )),
    }
}

/// RFC 7505 §4.2: mail to a null-MX domain fails at once with 5.1.10 (RFC 7505 §5).
pub fn null_mx(domain: &str) -> TargetError {
    TargetError::Permanent(Detail::local(
        StatusCode(5, 1, 10),
        format!("Sorry, {domain} does not accept mail (null MX). (#5.1.10)"),
    ))
}

fn targets_of(host: &str, addrs: &[IpAddr], port: u16) -> Vec<Target> {
    addrs
        .iter()
        .map(|ip| Target {
            host: host.to_string(),
            addr: SocketAddr::new(*ip, port),
        })
        .collect()
}

fn temporary(text: String) -> TargetError {
    TargetError::Temporary(Detail::local(StatusCode(4, 4, 3), text))
}

/// Awaits every future concurrently (each MX host's lookup runs on the sidecar at the same
/// time) and returns their outputs in order. Works on any executor: it only polls.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Mx {
        Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    fn names(records: &[Mx]) -> Vec<&str> {
        records.iter().map(|m| m.exchange.as_str()).collect()
    }

    #[test]
    fn orders_mx_by_preference_and_shuffles_within_one() {
        let reverse = |same: &mut [Mx]| same.reverse();
        let keep = |_: &mut [Mx]| {};
        type Shuffle = fn(&mut [Mx]);
        let cases: &[(&[Mx], Shuffle, &[&str])] = &[
            (&[], keep, &[]),
            (&[mx(10, "a")], reverse, &["a"]),
            (
                &[mx(20, "c"), mx(10, "a"), mx(10, "b")],
                keep,
                &["a", "b", "c"],
            ),
            (
                &[mx(20, "c"), mx(10, "a"), mx(10, "b")],
                reverse,
                &["b", "a", "c"],
            ),
            (
                &[mx(5, "x"), mx(30, "e"), mx(30, "d"), mx(20, "c")],
                reverse,
                &["x", "c", "d", "e"],
            ),
            // The same exchange twice: its best preference wins.
            (&[mx(20, "a"), mx(10, "a"), mx(15, "b")], keep, &["a", "b"]),
        ];
        for (records, shuffle, want) in cases {
            let got = order_mx(records.to_vec(), shuffle);
            assert_eq!(names(&got), *want, "{records:?}");
        }
    }

    #[test]
    fn shuffle_sees_only_one_preference_at_a_time() {
        let mut runs = Vec::new();
        order_mx(
            vec![mx(10, "a"), mx(20, "c"), mx(10, "b"), mx(30, "d")],
            |same| runs.push(names(same).join(",")),
        );
        assert_eq!(runs, ["a,b", "c", "d"]);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn expands_mx_hosts_to_addresses() {
        let ok = |addrs: &[&str]| Ok(addrs.iter().map(|a| ip(a)).collect::<Vec<_>>());
        let got = mx_targets(
            "example.org",
            vec![
                ("mx1.example.org".into(), ok(&["::1", "192.0.2.1"])),
                (
                    "gone.example.org".into(),
                    Err(DnsError::NoSuchDomain("gone.example.org".into())),
                ),
                ("mx2.example.org".into(), ok(&[])),
                (
                    "slow.example.org".into(),
                    Err(DnsError::Temporary("timeout".into())),
                ),
                // Same address as mx1: tried once.
                ("alias.example.org".into(), ok(&["192.0.2.1", "192.0.2.9"])),
            ],
            25,
        )
        .unwrap();
        let want = [
            ("mx1.example.org", "[::1]:25"),
            ("mx1.example.org", "192.0.2.1:25"),
            ("alias.example.org", "192.0.2.9:25"),
        ];
        let got: Vec<(&str, SocketAddr)> = got.iter().map(|t| (t.host.as_str(), t.addr)).collect();
        let want: Vec<(&str, SocketAddr)> = want.iter().map(|(h, a)| (*h, addr(a))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn mx_hosts_without_addresses_defer() {
        let cases: Vec<Vec<HostAddrs>> = vec![
            vec![],
            vec![("a".into(), Ok(vec![]))],
            vec![
                ("a".into(), Err(DnsError::NoSuchDomain("a".into()))),
                ("b".into(), Err(DnsError::Temporary("SERVFAIL".into()))),
            ],
        ];
        for hosts in cases {
            match mx_targets("example.org", hosts, 25) {
                Err(TargetError::Temporary(d)) => {
                    assert_eq!(d.code, StatusCode(4, 4, 3));
                    assert!(d.text.contains("example.org"), "{}", d.text);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn caps_targets() {
        let many: Vec<IpAddr> = (1..=50u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let got = mx_targets("example.org", vec![("mx".into(), Ok(many.clone()))], 25).unwrap();
        assert_eq!(got.len(), MAX_TARGETS);
        assert_eq!(
            implicit_mx_targets("example.org", &many, 25).unwrap().len(),
            MAX_TARGETS
        );
    }

    #[test]
    fn implicit_mx_uses_the_domain_itself() {
        let got = implicit_mx_targets("example.org", &[ip("192.0.2.7")], 2525).unwrap();
        assert_eq!(
            got,
            [Target {
                host: "example.org".into(),
                addr: addr("192.0.2.7:2525")
            }]
        );
        match implicit_mx_targets("example.org", &[], 25) {
            Err(TargetError::Permanent(d)) => assert_eq!(d.code, StatusCode(5, 4, 4)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_dns_errors_to_status_codes() {
        let cases = [
            (
                DnsError::NoSuchDomain("x".into()),
                true,
                StatusCode(5, 1, 2),
            ),
            (
                DnsError::Temporary("SERVFAIL".into()),
                false,
                StatusCode(4, 4, 3),
            ),
            (
                DnsError::Setup("no resolv.conf".into()),
                false,
                StatusCode(4, 4, 3),
            ),
        ];
        for (error, permanent, code) in cases {
            let (got_permanent, detail) = match from_domain_error("nowhere.example", error) {
                TargetError::Permanent(d) => (true, d),
                TargetError::Temporary(d) => (false, d),
            };
            assert_eq!((got_permanent, detail.code), (permanent, code));
            assert_eq!(StatusCode::from_qmail_text(&detail.text), Some(code));
        }
        let TargetError::Permanent(d) = from_domain_error(
            "nowhere.example",
            DnsError::NoSuchDomain("nowhere.example".into()),
        ) else {
            panic!("NXDOMAIN must be permanent");
        };
        assert_eq!(
            d.text,
            "Sorry, I couldn't find any host named nowhere.example. (#5.1.2)"
        );
        match null_mx("example.org") {
            TargetError::Permanent(d) => {
                assert_eq!(d.code, StatusCode(5, 1, 10));
                assert_eq!(StatusCode::from_qmail_text(&d.text), Some(d.code));
            }
            other => panic!("{other:?}"),
        }
    }
}
