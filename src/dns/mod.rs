//! DNS for outbound relay: MX and A/AAAA lookups that a shard can await.
//!
//! hickory-resolver needs tokio (`Send` futures and sockets) and glommio's tasks are `!Send`,
//! so the resolver lives on the sidecar's tokio thread (DESIGN.md). A [`Resolver`] is only a
//! channel sender: each lookup travels to the sidecar as a request carrying a flume one-shot,
//! and the shard awaits `recv_async` on it, the way `crate::blocking` hands work to its pool.
//! The sidecar side is in `thread`.
//!
//! Every query name is made absolute (a trailing dot) before it is asked, so no `search` or
//! `domain` line of resolv.conf is ever appended to a recipient's domain (RFC 1034 §3.1: a
//! name ending in a dot is complete). hickory's cache answers repeated lookups.

mod thread;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::DnsSection;
use crate::sidecar::Sidecar;

/// How the resolver asks: plain data, usually made from the `[dns]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Nameservers to ask, in order; empty means those of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for one answer.
    pub timeout: Duration,
    /// Tries per nameserver before a lookup fails temporarily (at least 1).
    pub attempts: usize,
}

impl DnsSettings {
    /// The settings of a `[dns]` section (which the config loader has validated already).
    pub fn from_section(section: &DnsSection) -> Result<DnsSettings, DnsError> {
        let nameservers = section
            .nameservers
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    DnsError::Setup(format!("dns.nameservers: `{s}` is not an ip:port address"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DnsSettings {
            nameservers,
            timeout: Duration::from_secs(section.timeout_secs.max(1)),
            attempts: section.attempts.max(1),
        })
    }
}

/// What a domain's MX lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// The MX records, in the order the server sent them (the caller sorts and shuffles).
    Hosts(Vec<Mx>),
    /// A null MX (RFC 7505 §3: a single MX with preference 0 and exchange `.`): the domain
    /// accepts no mail.
    NullMx,
    /// The domain exists but has no MX (NODATA): deliver to its own A/AAAA (RFC 5321 §5.1).
    None,
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// Lowercased, without the trailing dot.
    pub exchange: String,
}

/// Why a lookup failed. Who is at fault decides whether mail bounces or waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN (RCODE 3): the name does not exist. Permanent: the sender's address is wrong.
    NoSuchDomain(String),
    /// SERVFAIL, REFUSED, a timeout, a network error, or the resolver has stopped: try again
    /// later.
    Temporary(String),
    /// The resolver could not be set up (bad settings, unreadable resolv.conf): our fault.
    Setup(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NoSuchDomain(name) => write!(f, "no such domain: {name}"),
            DnsError::Temporary(why) => write!(f, "temporary DNS failure: {why}"),
            DnsError::Setup(why) => write!(f, "DNS setup: {why}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// A handle to the resolver on the sidecar thread. Clones share it; it is cheap to clone and
/// may be sent to every shard. Lookups fail with [`DnsError::Temporary`] once the sidecar has
/// stopped.
#[derive(Debug, Clone)]
pub struct Resolver {
    requests: flume::Sender<thread::Request>,
}

impl Resolver {
    /// Builds the hickory resolver on the sidecar and starts the task that serves lookups.
    /// With no nameservers in `settings`, reads /etc/resolv.conf (its nameservers only).
    pub fn start(sidecar: &Sidecar, settings: &DnsSettings) -> Result<Resolver, DnsError> {
        if settings.timeout.is_zero() {
            return Err(DnsError::Setup(
                "the DNS timeout must be more than 0".into(),
            ));
        }
        let requests = thread::start(sidecar.handle(), settings)?;
        Ok(Resolver { requests })
    }

    /// The MX records of `domain`. NXDOMAIN is [`DnsError::NoSuchDomain`]; a domain with no
    /// MX records is `Ok(MxAnswer::None)`.
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        let (reply, answer) = flume::bounded(1);
        self.ask(thread::Request::Mx {
            name: domain.to_string(),
            reply,
        })?;
        answer.recv_async().await.map_err(|_| stopped())?
    }

    /// The AAAA and A addresses of `host`, IPv6 first (RFC 6724 prefers it; hickory orders
    /// them so). A name that exists but has neither is `Ok(vec![])`, not an error, so the
    /// caller decides what an address-less host means; NXDOMAIN is
    /// [`DnsError::NoSuchDomain`]. If one of the two queries fails temporarily but the other
    /// finds addresses, those addresses are the answer.
    pub async fn ip_addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let (reply, answer) = flume::bounded(1);
        self.ask(thread::Request::IpAddrs {
            name: host.to_string(),
            reply,
        })?;
        answer.recv_async().await.map_err(|_| stopped())?
    }

    fn ask(&self, request: thread::Request) -> Result<(), DnsError> {
        self.requests.send(request).map_err(|_| stopped())
    }
}

fn stopped() -> DnsError {
    DnsError::Temporary("the resolver has stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_dns_section() {
        let section = DnsSection {
            nameservers: vec!["127.0.0.1:5353".into(), "[::1]:53".into()],
            timeout_secs: 3,
            attempts: 4,
        };
        assert_eq!(
            DnsSettings::from_section(&section),
            Ok(DnsSettings {
                nameservers: vec![
                    "127.0.0.1:5353".parse().unwrap(),
                    "[::1]:53".parse().unwrap()
                ],
                timeout: Duration::from_secs(3),
                attempts: 4,
            })
        );
        let bad = DnsSection {
            nameservers: vec!["127.0.0.1".into()],
            ..DnsSection::default()
        };
        assert!(matches!(
            DnsSettings::from_section(&bad),
            Err(DnsError::Setup(_))
        ));
    }

    #[test]
    fn refuses_a_zero_timeout() {
        let sidecar = Sidecar::start().unwrap();
        let settings = DnsSettings {
            nameservers: vec!["127.0.0.1:53".parse().unwrap()],
            timeout: Duration::ZERO,
            attempts: 1,
        };
        assert!(matches!(
            Resolver::start(&sidecar, &settings),
            Err(DnsError::Setup(_))
        ));
    }
}
