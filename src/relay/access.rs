//! Who may receive mail here: the RCPT TO decision (local domain? known user? may this client
//! relay?). This is the one place that keeps ringmail from being an open relay (RFC 5321 §3.6,
//! §7.1; RFC 2505 "Anti-Spam Recommendations for SMTP MTAs").
//!
//! The command parser has already checked RFC 5321 §4.1.2 syntax, stripped any source route
//! (§4.1.1.3 and Appendix C: "SHOULD ignore the routes"; only the final mailbox reaches us, so a
//! route can never make us relay), refused a trailing dot or empty label with 501 5.1.3, and
//! turned `<postmaster>` into `postmaster@<hostname>`. Then, in order:
//!
//! ```text
//! local part holds `%`, `!` or `@` (percent hack, bang path, quoted "user@remote"),
//! or the domain is not a plain name (address literal, trailing dot)
//!     may relay ──▶ 553 5.1.3 / 5.1.2 (refused for everyone: we follow no hidden routes)
//!     otherwise ──▶ 554 5.7.1 (relay denied, even when the domain looks local)
//! domain is local (local.domains, server.hostname, routed `local`)
//!               ──▶ user checks: 250 2.1.5, or 550 5.1.1 (unknown_users = "reject")
//! domain is in smtp.rcpthosts       ──▶ 250 2.1.5 for anyone; the routes carry it onward
//! client may relay (smtp.relay_networks, or authenticated)
//!               ──▶ 250 2.1.5, or 553 5.1.2 when the route step would refuse the domain
//! anyone else                       ──▶ 554 5.7.1
//! ```
//!
//! Domains are compared exactly, ASCII case-insensitively (RFC 5321 §2.4); nothing is
//! Unicode-normalized, IDNA-decoded or suffix-matched except an explicit `.suffix` entry, so a
//! look-alike (`example.test.evil`, `xn--` homographs, fullwidth letters) is simply another
//! domain. An address literal (`user@[10.0.0.1]`) is never local unless that exact literal is
//! listed in `local.domains` (as qmail's `locals` allows); we refuse all others, our own
//! listening address included: a client that can name us by address can name us by domain.

use crate::config::{Cidr, Config, UnknownUsers};
use crate::local::recipients::{RecipientTable, Sources};
use crate::relay::{Route, Router};
use crate::smtp::{PeerInfo, RcptVerdict, RecipientPolicy};
use std::collections::HashSet;
use std::net::IpAddr;

/// The recipient rules of one configuration; each shard holds its own copy.
pub struct RcptPolicy {
    /// The route step: which domains are delivered here, and which it would refuse.
    router: Router,
    /// `smtp.rcpthosts`, lowercased; `.example.com` entries match subdomains (as in qmail).
    rcpthosts: HashSet<String>,
    /// `smtp.relay_networks`: clients allowed to relay (qmail's RELAYCLIENT).
    relay_networks: Vec<Cidr>,
    unknown_users: UnknownUsers,
    /// Who can receive mail, in memory (`local::recipients`): RCPT never reads the disk.
    /// Only built with `unknown_users = "reject"`.
    known: Option<RecipientTable>,
}

/// An address form we never route, whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadForm {
    /// `%`, `!` or `@` in the local part: the percent hack (`user%remote@us`), a UUCP bang path
    /// (`remote!user@us`) or a quoted address (`"user@remote"@us`). The local part is ours
    /// alone to interpret (RFC 5321 §2.3.11; the % hack is RFC 1123 §5.2.16); a host that
    /// expands these relays for anyone who asks.
    RoutingInLocalPart,
    /// A domain with a trailing dot or an empty label: not an RFC 5321 §4.1.2 Domain.
    MalformedDomain,
    /// An address literal that is not listed as a local domain (RFC 5321 §4.1.3).
    AddressLiteral,
}

impl RcptPolicy {
    pub fn new(config: &Config) -> RcptPolicy {
        // The loader has checked every route target, so this succeeds; if it ever did not,
        // dropping the routes only narrows what is local (fails closed).
        let router = Router::from_config(config)
            .or_else(|_| {
                let mut without_routes = config.clone();
                without_routes.relay.routes.clear();
                Router::from_config(&without_routes)
            })
            .expect("a router without routes has nothing to reject");
        RcptPolicy {
            router,
            rcpthosts: config
                .smtp
                .rcpthosts
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            // Checked by the loader too; a range that did not parse would only narrow relaying.
            relay_networks: config
                .smtp
                .relay_networks
                .iter()
                .filter_map(|range| range.parse().ok())
                .collect(),
            unknown_users: config.local.unknown_users,
            known: (config.local.unknown_users == UnknownUsers::Reject).then(|| {
                RecipientTable::new(
                    Sources::from_config(config),
                    std::time::Duration::from_secs(config.local.refresh_secs),
                    crate::local::local_pool(config.local.delivery_threads),
                )
            }),
        }
    }

    /// Whether this client may send to any domain: it is in `smtp.relay_networks` (IPv4-mapped
    /// IPv6 peers match IPv4 ranges), or it has authenticated (RFC 4954, RFC 6409 §4.3: AUTH
    /// is how a roaming user earns relaying).
    pub fn may_relay(&self, peer: &PeerInfo) -> bool {
        peer.authenticated || self.in_relay_networks(peer.remote.ip())
    }

    fn in_relay_networks(&self, ip: IpAddr) -> bool {
        self.relay_networks.iter().any(|net| net.contains(ip))
    }

    /// Whether `domain` (already lowercase) is accepted from anyone by `smtp.rcpthosts`: an
    /// exact entry, or a `.parent` entry for any of its subdomains.
    fn in_rcpthosts(&self, domain: &str) -> bool {
        if self.rcpthosts.contains(domain) {
            return true;
        }
        domain
            .char_indices()
            .filter(|&(_, c)| c == '.')
            .any(|(dot, _)| self.rcpthosts.contains(&domain[dot..]))
    }

    /// A user is known if configured, in the passwd database, a system user, or has a Maildir
    /// or `.qmail` file (all from memory, see `local::recipients`); every local domain has a
    /// postmaster (RFC 5321 §4.5.1).
    fn is_known_user(&self, address: &str) -> bool {
        let key = canonical_key(address);
        key.starts_with("postmaster@")
            || self
                .known
                .as_ref()
                .is_some_and(|known| known.get().knows(&key))
    }

    /// The checks for a recipient at one of our own domains.
    fn check_local_user(&self, address: &str) -> RcptVerdict {
        // A local part that can never name a mailbox (a slash, a leading dot, a control
        // character...: crate::address) is refused as a bad address, for everyone: 553 5.1.3.
        if crate::mailbox::maildir_for(std::path::Path::new("/"), address).is_err() {
            return RcptVerdict::BadAddress;
        }
        match self.unknown_users {
            UnknownUsers::Accept => RcptVerdict::Accept,
            UnknownUsers::Reject if self.is_known_user(address) => RcptVerdict::Accept,
            UnknownUsers::Reject => RcptVerdict::UnknownUser,
        }
    }
}

/// The form addresses are compared in: the mailbox key (`"Bob"@X` is `bob@x`), or the address
/// lowercased when it can name no mailbox (it then matches only an equally unusable entry).
fn canonical_key(address: &str) -> String {
    crate::address::mailbox_key(address)
        .map(|key| key.to_string())
        .unwrap_or_else(|_| address.to_lowercase())
}

/// The first form in `local@domain` that we refuse to route, if any.
fn bad_form(local: &str, domain: &str, router: &Router) -> Option<BadForm> {
    if local.contains(['%', '!', '@']) {
        return Some(BadForm::RoutingInLocalPart);
    }
    if domain.starts_with('[') {
        return (!router.is_local_domain(domain)).then_some(BadForm::AddressLiteral);
    }
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Some(BadForm::MalformedDomain);
    }
    None
}

impl RecipientPolicy for RcptPolicy {
    fn check_recipient(&self, peer: &PeerInfo, address: &str) -> RcptVerdict {
        self.check_recipient_relaying(peer, address, false)
    }
}

impl RcptPolicy {
    /// The RCPT decision, where `relay_client` says an access rule (`[[smtp.access]]` with
    /// `relay = true`) lets this client relay, as `smtp.relay_networks` would.
    pub fn check_recipient_relaying(
        &self,
        peer: &PeerInfo,
        address: &str,
        relay_client: bool,
    ) -> RcptVerdict {
        let may_relay = relay_client || self.may_relay(peer);
        // The domain follows the last `@`: a quoted local part may hold more. No `@` at all
        // (the parser never lets one through) reads as an empty, malformed domain.
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        let domain = domain.to_ascii_lowercase();
        if let Some(form) = bad_form(local, &domain, &self.router) {
            return match (may_relay, form) {
                (false, _) => RcptVerdict::RelayDenied,
                (true, BadForm::AddressLiteral) => RcptVerdict::BadDestination,
                (true, _) => RcptVerdict::BadAddress,
            };
        }
        if self.router.is_local_domain(&domain) {
            return self.check_local_user(address);
        }
        if self.in_rcpthosts(&domain) {
            return RcptVerdict::Accept;
        }
        if !may_relay {
            return RcptVerdict::RelayDenied;
        }
        // Refuse now what the route step would bounce later.
        match self.router.route_domain(&domain) {
            Route::Refuse(_) => RcptVerdict::BadDestination,
            Route::Local | Route::Remote(_) => RcptVerdict::Accept,
        }
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
