//! The route step: one place decides each recipient's fate (local Maildir, a static route, MX,
//! or refuse). The scheduler asks it for every recipient of every message, bounces included, so
//! a domain that is not local can never reach a local Maildir.
//!
//! Static routes follow qmail's smtproutes: an exact domain wins over a `.parent` suffix entry,
//! which wins over `*` (the smarthost). A route to `local` delivers that domain here.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// Where a recipient's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Into a Maildir on this host.
    Local,
    /// To a remote destination, by SMTP.
    Remote(Destination),
    /// Nowhere: fail permanently with this reason (one line ending in an RFC 3463 code).
    Refuse(String),
}

/// A remote destination: what the owner shard queues mail for and caches connections to. Two
/// recipients with the same destination can share a connection and a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// The domain's MX hosts (or its A/AAAA when it has no MX: RFC 5321 §5.1).
    Mx {
        /// Lowercased, without a trailing dot.
        domain: String,
    },
    /// A fixed host (smarthost or per-domain route): resolved by A/AAAA, never by MX.
    Static {
        /// A host name, or an IP address.
        host: String,
        port: u16,
    },
}

impl Destination {
    /// A stable hash of the destination, so every shard picks the same owner for it.
    pub fn owner_hash(&self) -> u64 {
        // FNV-1a: stable across processes and versions (std's hasher is randomly keyed).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        match self {
            Destination::Mx { domain } => {
                eat(b"mx:");
                eat(domain.as_bytes());
            }
            Destination::Static { host, port } => {
                eat(b"static:");
                eat(host.as_bytes());
                eat(&port.to_be_bytes());
            }
        }
        hash
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Mx { domain } => f.write_str(domain),
            Destination::Static { host, port } if host.contains(':') => {
                write!(f, "[{host}]:{port}")
            }
            Destination::Static { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// The right-hand side of a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Deliver the domain here, into Maildirs.
    Local,
    /// Send to this host (name or IP) and port.
    Host { host: String, port: u16 },
}

impl RouteTarget {
    /// Parses `local`, `host`, `host:port`, `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port` (the
    /// port defaults to 25).
    pub fn parse(text: &str) -> Result<RouteTarget, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("local") {
            return Ok(RouteTarget::Local);
        }
        let bad =
            || format!("`{text}` is not `local`, `host`, `host:port`, `ip:port` or `[ipv6]:port`");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
            inside.parse::<IpAddr>().map_err(|_| bad())?;
            match after {
                "" => (inside, None),
                p => (inside, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if text.parse::<IpAddr>().is_ok() {
            (text, None)
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let port = match port {
            None => 25,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("`{p}` is not a port number (1-65535)")),
            },
        };
        let host_ok = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !host_ok {
            return Err(bad());
        }
        Ok(RouteTarget::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// The route step's rules, built once from the configuration; each shard holds a copy.
#[derive(Debug, Clone)]
pub struct Router {
    local_domains: Vec<String>,
    routes: HashMap<String, RouteTarget>,
    smarthost: Option<RouteTarget>,
    mx_port: u16,
}

impl Router {
    /// `local_domains` are delivered here; `routes` maps domains (`*` for every other domain,
    /// `.example.com` for its subdomains) to route targets as written in the configuration;
    /// `mx_port` is the port for MX deliveries. Bad targets are an error (the config loader
    /// checked them already).
    pub fn new<'a>(
        local_domains: impl IntoIterator<Item = &'a String>,
        routes: impl IntoIterator<Item = (&'a String, &'a String)>,
        mx_port: u16,
    ) -> Result<Router, String> {
        let mut table = HashMap::new();
        let mut smarthost = None;
        for (domain, target) in routes {
            let target = RouteTarget::parse(target)?;
            if domain == "*" {
                smarthost = Some(target);
            } else {
                table.insert(domain.to_ascii_lowercase(), target);
            }
        }
        Ok(Router {
            local_domains: local_domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            routes: table,
            smarthost,
            mx_port,
        })
    }

    /// The route step of a configuration: `local.domains` and the server's own name (always
    /// local, as qmail's `me` is, so that the bare `postmaster` of RFC 5321 §4.5.1 has
    /// somewhere to go) are delivered here; `relay.routes`; MX on `relay.port`.
    pub fn from_config(config: &crate::config::Config) -> Result<Router, String> {
        let locals: Vec<String> = config
            .local
            .domains
            .iter()
            .chain(std::iter::once(&config.server.hostname))
            .cloned()
            .collect();
        Router::new(&locals, &config.relay.routes, config.relay.port)
    }

    /// Whether `domain` is delivered on this host (a local domain, or routed `local`).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        matches!(self.route_domain(domain), Route::Local)
    }

    /// The route for one recipient address (`local@domain`).
    pub fn route(&self, recipient: &str) -> Route {
        match recipient.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                self.route_domain(domain)
            }
            _ => Route::Refuse(format!(
                "Sorry, <{recipient}> is not a complete address. (#5.1.3)"
            )),
        }
    }

    /// The route for a domain: local domains first, then the static routes (exact, then the
    /// longest `.suffix`, then `*`), then MX.
    pub fn route_domain(&self, domain: &str) -> Route {
        let domain = domain.to_ascii_lowercase();
        if self.local_domains.contains(&domain) {
            return Route::Local;
        }
        if domain.ends_with('.') || domain.starts_with('.') || domain.contains("..") {
            return Route::Refuse(format!(
                "Sorry, `{domain}` is not a valid domain name. (#5.1.2)"
            ));
        }
        if domain.starts_with('[') {
            // An address literal that is not one of ours (ours are local domains).
            return Route::Refuse(format!(
                "Sorry, I do not deliver to address literals such as {domain}. (#5.1.2)"
            ));
        }
        let target = self.routes.get(&domain).or_else(|| {
            let mut rest = domain.as_str();
            while let Some(dot) = rest.find('.') {
                if let Some(t) = self.routes.get(&rest[dot..]) {
                    return Some(t);
                }
                rest = &rest[dot + 1..];
            }
            self.smarthost.as_ref()
        });
        match target {
            Some(RouteTarget::Local) => Route::Local,
            Some(RouteTarget::Host { host, port }) => Route::Remote(Destination::Static {
                host: host.clone(),
                port: *port,
            }),
            None => Route::Remote(Destination::Mx { domain }),
        }
    }

    /// The port MX and A deliveries use.
    pub fn mx_port(&self) -> u16 {
        self.mx_port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let locals = vec!["localhost".to_string(), "example.test".to_string()];
        let routes: Vec<(String, String)> = routes
            .iter()
            .map(|(d, t)| (d.to_string(), t.to_string()))
            .collect();
        Router::new(&locals, routes.iter().map(|(d, t)| (d, t)), 25).unwrap()
    }

    fn host(h: &str, port: u16) -> Route {
        Route::Remote(Destination::Static {
            host: h.into(),
            port,
        })
    }

    #[test]
    fn routes_in_order_local_exact_suffix_star_mx() {
        let r = router(&[
            ("*", "127.0.0.1:12526"),
            ("example.net", "10.0.0.5:2525"),
            (".corp.example", "relay.corp.example"),
            ("in.corp.example", "local"),
        ]);
        assert_eq!(r.route("bob@Example.TEST"), Route::Local);
        assert_eq!(r.route("a@example.net"), host("10.0.0.5", 2525));
        assert_eq!(
            r.route("a@x.y.corp.example"),
            host("relay.corp.example", 25)
        );
        assert_eq!(r.route("a@in.corp.example"), Route::Local);
        assert_eq!(r.route("a@elsewhere.org"), host("127.0.0.1", 12526));
        let no_star = router(&[]);
        assert_eq!(
            no_star.route("a@Elsewhere.ORG"),
            Route::Remote(Destination::Mx {
                domain: "elsewhere.org".into()
            })
        );
    }

    #[test]
    fn refuses_what_cannot_be_routed() {
        let r = router(&[]);
        for bad in [
            "nobody",
            "a@",
            "@x.org",
            "a@x.org.",
            "a@[10.0.0.1]",
            "a@x..org",
        ] {
            assert!(matches!(r.route(bad), Route::Refuse(_)), "{bad}");
        }
    }

    #[test]
    fn parses_route_targets() {
        let ok = [
            ("local", RouteTarget::Local),
            (
                "mx.example.net",
                RouteTarget::Host {
                    host: "mx.example.net".into(),
                    port: 25,
                },
            ),
            (
                "Relay:2525",
                RouteTarget::Host {
                    host: "relay".into(),
                    port: 2525,
                },
            ),
            (
                "127.0.0.1:12526",
                RouteTarget::Host {
                    host: "127.0.0.1".into(),
                    port: 12526,
                },
            ),
            (
                "::1",
                RouteTarget::Host {
                    host: "::1".into(),
                    port: 25,
                },
            ),
            (
                "[::1]:2525",
                RouteTarget::Host {
                    host: "::1".into(),
                    port: 2525,
                },
            ),
        ];
        for (text, want) in ok {
            assert_eq!(RouteTarget::parse(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "host:0",
            "host:99999",
            "[nothost]:25",
            "a b",
            "x:y:z",
            "[::1]x",
        ] {
            assert!(RouteTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_hash_is_stable() {
        let d = Destination::Mx {
            domain: "example.org".into(),
        };
        assert_eq!(d.owner_hash(), d.clone().owner_hash());
        assert_ne!(
            d.owner_hash(),
            Destination::Mx {
                domain: "example.net".into()
            }
            .owner_hash()
        );
    }
}
