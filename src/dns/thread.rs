//! The resolver's side on the sidecar thread: builds hickory's tokio resolver, serves the
//! lookups that shards send, and turns hickory's answers and errors into `MxAnswer`,
//! addresses and `DnsError`.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use super::{DnsError, DnsSettings, Mx, MxAnswer};

/// One lookup a shard asked for, with the one-shot its answer goes back on.
pub(super) enum Request {
    Mx {
        name: String,
        reply: flume::Sender<Result<MxAnswer, DnsError>>,
    },
    IpAddrs {
        name: String,
        reply: flume::Sender<Result<Vec<IpAddr>, DnsError>>,
    },
}

/// Builds the resolver and spawns the task that serves requests on `runtime`. The task ends
/// when every `Resolver` handle is gone or the runtime stops.
pub(super) fn start(
    runtime: &tokio::runtime::Handle,
    settings: &DnsSettings,
) -> Result<flume::Sender<Request>, DnsError> {
    let name_servers = if settings.nameservers.is_empty() {
        // Only resolv.conf's nameservers: its `search`/`domain` must never apply to mail
        // domains, and its options (ndots, timeout) are replaced by ours.
        let (system, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError::Setup(format!("reading /etc/resolv.conf: {e}")))?;
        system.name_servers().to_vec()
    } else {
        settings
            .nameservers
            .iter()
            .map(|addr| {
                // UDP first, TCP for truncated answers (RFC 7766 §5: TCP is not optional).
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect()
    };
    let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);

    let mut options = ResolverOpts::default();
    options.timeout = settings.timeout;
    // hickory counts retries after the first try; ours counts tries.
    options.attempts = settings.attempts.max(1) - 1;
    // Mail routing follows the DNS only, as qmail and Postfix do: /etc/hosts is for this
    // host's own programs.
    options.use_hosts_file = ResolveHosts::Never;
    options.ndots = 0;

    // hickory's tokio provider spawns its connection tasks with `tokio::spawn`, so it must be
    // built (and used) inside the sidecar's runtime.
    let _inside = runtime.enter();
    let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| DnsError::Setup(format!("building the resolver: {e}")))?;

    // One pool attempt is capped at `timeout` by hickory; this cap is a backstop so that a
    // shard's lookup always ends, whatever hickory does.
    let deadline = settings
        .timeout
        .saturating_mul(u32::try_from(settings.attempts.max(1) + 1).unwrap_or(u32::MAX));
    let (requests, incoming) = flume::unbounded::<Request>();
    runtime.spawn(async move {
        while let Ok(request) = incoming.recv_async().await {
            let resolver = resolver.clone();
            // Each lookup is its own task, so one slow domain never holds up another.
            tokio::spawn(async move { serve(&resolver, request, deadline).await });
        }
    });
    Ok(requests)
}

async fn serve(resolver: &TokioResolver, request: Request, deadline: Duration) {
    match request {
        Request::Mx { name, reply } => {
            let answer = within(deadline, &name, mx(resolver, &name)).await;
            let _ = reply.send(answer);
        }
        Request::IpAddrs { name, reply } => {
            let answer = within(deadline, &name, ip_addrs(resolver, &name)).await;
            let _ = reply.send(answer);
        }
    }
}

async fn within<T>(
    deadline: Duration,
    name: &str,
    lookup: impl Future<Output = Result<T, DnsError>>,
) -> Result<T, DnsError> {
    tokio::time::timeout(deadline, lookup)
        .await
        .unwrap_or_else(|_| Err(DnsError::Temporary(format!("{name}: lookup timed out"))))
}

async fn mx(resolver: &TokioResolver, domain: &str) -> Result<MxAnswer, DnsError> {
    let name = absolute(domain)?;
    match resolver.lookup(name, RecordType::MX).await {
        Ok(lookup) => Ok(mx_answer(lookup.answers())),
        Err(e) => match classify(domain, e)? {
            Empty::NoData => Ok(MxAnswer::None),
        },
    }
}

async fn ip_addrs(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    let name = absolute(host)?;
    // AAAA and A in parallel, as hickory's own `lookup_ip` does, but keeping the NXDOMAIN /
    // NODATA / temporary distinction that `lookup_ip` folds into one error.
    let (v6, v4) = futures_lite::future::zip(
        resolver.lookup(name.clone(), RecordType::AAAA),
        resolver.lookup(name, RecordType::A),
    )
    .await;
    let mut addrs = Vec::new();
    let mut failure = None;
    for result in [v6, v4] {
        match result {
            Ok(lookup) => addrs.extend(addresses(lookup.answers())),
            Err(e) => match classify(host, e) {
                Ok(Empty::NoData) => {}
                // NXDOMAIN outranks a temporary failure of the other query: the name is gone.
                Err(e @ DnsError::NoSuchDomain(_)) => failure = Some(e),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            },
        }
    }
    match failure {
        Some(e @ DnsError::NoSuchDomain(_)) => Err(e),
        Some(e) if addrs.is_empty() => Err(e),
        _ => Ok(addrs),
    }
}

/// A negative answer that is not an error for the caller.
enum Empty {
    /// NOERROR with no records of the type asked (RFC 2308 §2.2).
    NoData,
}

/// Sorts a hickory error into NODATA, NXDOMAIN or temporary.
fn classify(name: &str, error: NetError) -> Result<Empty, DnsError> {
    if error.is_nx_domain() {
        // RFC 2308 §2.1: the name does not exist, with any type.
        Err(DnsError::NoSuchDomain(name.to_string()))
    } else if error.is_no_records_found() {
        Ok(Empty::NoData)
    } else {
        // SERVFAIL, REFUSED, timeouts, I/O: RFC 5321 §5.1 says to queue and retry.
        Err(DnsError::Temporary(format!("{name}: {error}")))
    }
}

/// `name` as an absolute DNS name. A name that cannot be a domain name (bad characters, a
/// label over 63 octets) cannot exist, so it is `NoSuchDomain`; UTF-8 names become A-labels.
fn absolute(name: &str) -> Result<Name, DnsError> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err(DnsError::NoSuchDomain(name.to_string()));
    }
    let mut parsed = Name::from_utf8(bare).map_err(|_| DnsError::NoSuchDomain(name.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The MX answer in `records` (CNAMEs and other types that a server added are skipped).
fn mx_answer(records: &[Record]) -> MxAnswer {
    let mut hosts = Vec::new();
    let mut null = false;
    for record in records {
        if let RData::MX(mx) = &record.data {
            if mx.exchange.is_root() {
                // RFC 7505 §3: exchange `.` means "no mail here". A domain must not publish
                // it beside real MX records; if one does, the real ones are still usable.
                null = true;
            } else {
                hosts.push(Mx {
                    preference: mx.preference,
                    exchange: host_name(&mx.exchange),
                });
            }
        }
    }
    match (hosts.is_empty(), null) {
        (false, _) => MxAnswer::Hosts(hosts),
        (true, true) => MxAnswer::NullMx,
        (true, false) => MxAnswer::None,
    }
}

fn addresses(records: &[Record]) -> impl Iterator<Item = IpAddr> + '_ {
    records.iter().filter_map(|record| match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    })
}

/// A DNS name as ringmail writes host names: lowercase ASCII, no trailing dot.
fn host_name(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    match text.strip_suffix('.') {
        Some(bare) => bare.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{A, CNAME, MX};

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn mx_record(preference: u16, exchange: &str) -> Record {
        Record::from_rdata(
            name("example.org."),
            60,
            RData::MX(MX::new(preference, name(exchange))),
        )
    }

    #[test]
    fn reads_mx_answers() {
        let cases: &[(&[Record], MxAnswer)] = &[
            (&[], MxAnswer::None),
            (&[mx_record(0, ".")], MxAnswer::NullMx),
            (
                &[
                    mx_record(10, "MX1.Example.ORG."),
                    mx_record(5, "mx2.example.org."),
                ],
                MxAnswer::Hosts(vec![
                    Mx {
                        preference: 10,
                        exchange: "mx1.example.org".into(),
                    },
                    Mx {
                        preference: 5,
                        exchange: "mx2.example.org".into(),
                    },
                ]),
            ),
            (
                &[mx_record(0, "."), mx_record(10, "mx.example.org.")],
                MxAnswer::Hosts(vec![Mx {
                    preference: 10,
                    exchange: "mx.example.org".into(),
                }]),
            ),
            (
                &[Record::from_rdata(
                    name("example.org."),
                    60,
                    RData::CNAME(CNAME(name("other.example."))),
                )],
                MxAnswer::None,
            ),
        ];
        for (records, want) in cases {
            assert_eq!(&mx_answer(records), want, "{records:?}");
        }
    }

    #[test]
    fn keeps_only_addresses() {
        let records = [
            Record::from_rdata(
                name("a.example."),
                60,
                RData::CNAME(CNAME(name("b.example."))),
            ),
            Record::from_rdata(name("b.example."), 60, RData::A(A::new(192, 0, 2, 1))),
        ];
        assert_eq!(
            addresses(&records).collect::<Vec<_>>(),
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn makes_names_absolute() {
        for (text, want) in [
            ("example.org", "example.org."),
            ("Example.ORG.", "example.org."),
            ("localhost", "localhost."),
            ("bücher.example", "xn--bcher-kva.example."),
        ] {
            let got = absolute(text).unwrap();
            assert!(got.is_fqdn(), "{text}");
            assert_eq!(got.to_lowercase().to_ascii(), want, "{text}");
        }
        for bad in ["", ".", "a..b", &"x".repeat(64)] {
            assert!(
                matches!(absolute(bad), Err(DnsError::NoSuchDomain(_))),
                "{bad}"
            );
        }
    }
}
