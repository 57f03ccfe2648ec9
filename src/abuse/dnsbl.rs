//! DNS blocklists (RFC 5782): a client `a.b.c.d` is listed in `zone` when `d.c.b.a.zone` has an
//! A record in 127.0.0.0/8; an IPv6 client is asked as its 32 nibbles in reverse (§2.4).
//! Lookups go through the resolver on the sidecar thread, every zone at once.
//!
//! Failures fail open: a zone that times out, answers SERVFAIL, or answers with one of the
//! 127.255.255.0/24 error codes that some lists return to refused or over-quota queriers
//! (Spamhaus) does not block the client; it is logged so the operator can see a dead list.

use crate::dns::{DnsError, Resolver};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

/// Why a client is blocked: the zone that lists it and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub zone: String,
    pub answer: Ipv4Addr,
}

/// The name asked of `zone` about `ip` (RFC 5782 §2.1, §2.4). IPv4-mapped clients are asked
/// as IPv4.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let mut name = String::with_capacity(80);
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(name, "{d}.{c}.{b}.{a}.");
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
        }
    }
    name.push_str(zone.trim_end_matches('.'));
    name
}

/// What one zone's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Listed(Ipv4Addr),
    NotListed,
    /// The lookup failed or the list answered with an error code: let the client in.
    Failed(String),
}

/// Reads the addresses a zone answered (RFC 5782 §2.1: 127.0.0.2 and up mean listed;
/// 127.255.255.x are the error codes some lists use).
pub fn classify(result: Result<Vec<IpAddr>, DnsError>) -> Answer {
    match result {
        Ok(addrs) => {
            let v4 = addrs.iter().find_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            });
            match v4 {
                None => Answer::NotListed,
                Some(a) if a.octets()[..3] == [127, 255, 255] => {
                    Answer::Failed(format!("the list answered the error code {a}"))
                }
                Some(a) if a.octets()[0] == 127 => Answer::Listed(a),
                Some(a) => Answer::Failed(format!("the list answered {a}, not 127.0.0.x")),
            }
        }
        Err(DnsError::NoSuchDomain(_)) => Answer::NotListed,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// Asks every zone about `ip` at once; the first zone (in configured order) that lists it.
/// Failures are logged and ignored (fail open).
pub async fn check(resolver: Resolver, ip: IpAddr, zones: Vec<String>) -> Option<Listing> {
    let lookups: Vec<_> = zones
        .iter()
        .map(|zone| {
            let resolver = resolver.clone();
            let name = query_name(ip, zone);
            glommio::spawn_local(async move { classify(resolver.ip_addrs(&name).await) })
        })
        .collect();
    let mut found = None;
    for (zone, lookup) in zones.iter().zip(lookups) {
        match lookup.await {
            Answer::Listed(answer) => {
                found.get_or_insert(Listing {
                    zone: zone.clone(),
                    answer,
                });
            }
            Answer::NotListed => {}
            Answer::Failed(why) => {
                log::warn!("dnsbl {zone}: lookup for [{ip}] failed, client let in: {why}");
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_reverse_octets_and_nibbles() {
        let cases = [
            ("192.0.2.99", "zen.example", "99.2.0.192.zen.example"),
            (
                "::ffff:192.0.2.99",
                "zen.example.",
                "99.2.0.192.zen.example",
            ),
            (
                "2001:db8:1:2:3:4:567:89ab",
                "bl.test",
                "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test",
            ),
        ];
        for (ip, zone, want) in cases {
            assert_eq!(query_name(ip.parse().unwrap(), zone), want);
        }
    }

    #[test]
    fn answers_mean_listed_not_listed_or_failed() {
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        assert_eq!(
            classify(Ok(vec![v4("127.0.0.2")])),
            Answer::Listed("127.0.0.2".parse().unwrap())
        );
        assert_eq!(classify(Ok(vec![])), Answer::NotListed);
        assert_eq!(
            classify(Err(DnsError::NoSuchDomain("x".into()))),
            Answer::NotListed
        );
        assert!(matches!(
            classify(Ok(vec![v4("127.255.255.254")])),
            Answer::Failed(_)
        ));
        assert!(matches!(
            classify(Ok(vec![v4("10.0.0.1")])),
            Answer::Failed(_)
        ));
        assert!(matches!(
            classify(Err(DnsError::Temporary("timeout".into()))),
            Answer::Failed(_)
        ));
    }
}
