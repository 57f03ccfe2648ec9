//! Table-driven tests of the RCPT policy: every relay trick, for a stranger and for each kind of
//! client that may relay.

use super::*;
use crate::smtp::{Command, CommandError, parse_command};

const CONFIG: &str = r#"
[server]
hostname = "mx.test"
data_dir = "/nonexistent/ringmail-policy-test"

[smtp]
relay_networks = ["10.0.0.0/8", "2001:db8::/32"]
rcpthosts = ["backup.example", ".gw.example"]

[local]
domains = ["example.test", "[192.0.2.1]"]

[relay]
routes = { "routed.example" = "local", ".sub.example" = "local", "*" = "127.0.0.1:9" }
"#;

fn policy(text: &str) -> RcptPolicy {
    RcptPolicy::new(&crate::config::load_str(text, "test.toml").expect("test config"))
}

fn peer(remote: &str) -> PeerInfo {
    PeerInfo {
        remote: remote.parse().unwrap(),
        local: "192.0.2.1:25".parse().unwrap(),
        authenticated: false,
    }
}

const STRANGER: &str = "192.0.2.7:40000";

/// The clients allowed to relay by `CONFIG`: an IPv4 range, an IPv6 range, and an IPv4 client
/// seen through an IPv6 socket (RFC 4291 §2.5.5.2 IPv4-mapped).
const RELAY_CLIENTS: [&str; 3] = [
    "10.1.2.3:40000",
    "[2001:db8::5]:40000",
    "[::ffff:10.1.2.3]:40000",
];

use RcptVerdict::{Accept, BadAddress, BadDestination, RelayDenied};

/// (address as it reaches the policy, verdict for a stranger, verdict for a relay client).
const TABLE: &[(&str, RcptVerdict, RcptVerdict)] = &[
    // Local domains, case-insensitively (RFC 5321 §2.4), the hostname, and `local` routes.
    ("bob@example.test", Accept, Accept),
    ("Bob@EXAMPLE.Test", Accept, Accept),
    ("postmaster@mx.test", Accept, Accept),
    ("bob@routed.example", Accept, Accept),
    ("bob@a.sub.example", Accept, Accept),
    // rcpthosts: accepted from anyone; `.gw.example` covers subdomains, not gw.example itself.
    ("bob@backup.example", Accept, Accept),
    ("bob@BACKUP.EXAMPLE", Accept, Accept),
    ("bob@x.gw.example", Accept, Accept),
    ("bob@gw.example", RelayDenied, Accept),
    // Plain remote recipients.
    ("bob@remote.test", RelayDenied, Accept),
    ("bob@sub.example", RelayDenied, Accept),
    // Address literals: only the one listed in local.domains is ours.
    ("bob@[192.0.2.1]", Accept, Accept),
    ("bob@[10.0.0.1]", RelayDenied, BadDestination),
    ("bob@[IPv6:::1]", RelayDenied, BadDestination),
    ("bob@[192.0.2.1.]", RelayDenied, BadDestination),
    // Percent hack, bang paths, quoted local parts hiding a route: refused for everyone.
    ("bob%remote.test@example.test", RelayDenied, BadAddress),
    ("bob%remote.test@mx.test", RelayDenied, BadAddress),
    ("bob%remote.test@backup.example", RelayDenied, BadAddress),
    ("bob%remote.test@other.test", RelayDenied, BadAddress),
    ("remote.test!bob@example.test", RelayDenied, BadAddress),
    ("a!b!bob@example.test", RelayDenied, BadAddress),
    ("\"bob@remote.test\"@example.test", RelayDenied, BadAddress),
    ("\"bob%remote.test\"@example.test", RelayDenied, BadAddress),
    ("\"remote.test!bob\"@example.test", RelayDenied, BadAddress),
    (
        "\"bob\\@remote.test\"@example.test",
        RelayDenied,
        BadAddress,
    ),
    // Not RFC 5321 domains (the parser refuses these first; the policy does not rely on it).
    ("bob@example.test.", RelayDenied, BadAddress),
    ("bob@.example.test", RelayDenied, BadAddress),
    ("bob@example..test", RelayDenied, BadAddress),
    ("bob@", RelayDenied, BadAddress),
    ("bob", RelayDenied, BadAddress),
    // Look-alikes are other domains: no suffix, prefix, IDNA or Unicode matching.
    ("bob@example.test.evil.com", RelayDenied, Accept),
    ("bob@evil-example.test", RelayDenied, Accept),
    ("bob@evilexample.test", RelayDenied, Accept),
    ("bob@xn--exmple-cua.test", RelayDenied, Accept),
    ("bob@ex\u{0430}mple.test", RelayDenied, Accept), // Cyrillic a
    ("bob@\u{ff45}xample.test", RelayDenied, Accept), // fullwidth e
    ("bob@example.test\u{200b}", RelayDenied, Accept), // zero-width space
    // U+212A KELVIN SIGN lowercases to `k` under Unicode rules: it must not become backup.
    ("bob@bac\u{212a}up.example", RelayDenied, Accept),
    ("bob@EXAMPLE.TEST.", RelayDenied, BadAddress),
];

#[test]
fn stranger_gets_local_domains_and_rcpthosts_only() {
    let policy = policy(CONFIG);
    for (address, stranger, _) in TABLE {
        assert_eq!(
            &policy.check_recipient(&peer(STRANGER), address),
            stranger,
            "{address}"
        );
    }
}

#[test]
fn relay_networks_relay_but_never_follow_hidden_routes() {
    let policy = policy(CONFIG);
    for client in RELAY_CLIENTS {
        for (address, _, relay) in TABLE {
            assert_eq!(
                &policy.check_recipient(&peer(client), address),
                relay,
                "{client} -> {address}"
            );
        }
    }
}

#[test]
fn authenticated_clients_relay() {
    let policy = policy(CONFIG);
    let authenticated = PeerInfo {
        authenticated: true,
        ..peer(STRANGER)
    };
    for (address, _, relay) in TABLE {
        assert_eq!(
            &policy.check_recipient(&authenticated, address),
            relay,
            "{address}"
        );
    }
}

#[test]
fn addresses_near_a_relay_range_are_strangers() {
    let policy = policy(CONFIG);
    for client in [
        "11.0.0.1:1",
        "9.255.255.255:1",
        "[2001:db9::1]:1",
        "[::ffff:11.0.0.1]:1",
        // IPv4-compatible (deprecated, RFC 4291 §2.5.5.1) is not IPv4-mapped.
        "[::10.1.2.3]:1",
        "[::1]:1",
        "127.0.0.1:1",
    ] {
        assert_eq!(
            policy.check_recipient(&peer(client), "bob@remote.test"),
            RelayDenied,
            "{client}"
        );
    }
}

#[test]
fn without_relay_networks_nobody_relays() {
    let policy = policy(&CONFIG.replace(
        "relay_networks = [\"10.0.0.0/8\", \"2001:db8::/32\"]",
        "relay_networks = []",
    ));
    for client in RELAY_CLIENTS.iter().chain([&STRANGER]) {
        assert_eq!(
            policy.check_recipient(&peer(client), "bob@remote.test"),
            RelayDenied,
            "{client}"
        );
        assert_eq!(
            policy.check_recipient(&peer(client), "bob@example.test"),
            Accept
        );
    }
}

#[test]
fn unknown_local_users_are_refused_for_everyone_postmaster_never() {
    let policy = policy(&CONFIG.replace(
        "[local]\n",
        "[local]\nunknown_users = \"reject\"\nusers = [\"alice@example.test\"]\n",
    ));
    for client in [STRANGER, RELAY_CLIENTS[0]] {
        let check = |address| policy.check_recipient(&peer(client), address);
        assert_eq!(check("alice@example.test"), Accept);
        assert_eq!(check("ALICE@Example.Test"), Accept);
        assert_eq!(check("postmaster@example.test"), Accept);
        assert_eq!(check("PostMaster@mx.test"), Accept);
        assert_eq!(check("bob@example.test"), RcptVerdict::UnknownUser);
        // Unsafe Maildir names are bad addresses (553 5.1.3), never paths.
        assert_eq!(check("..@example.test"), BadAddress);
    }
}

/// Names that can never be a mailbox (crate::address) are refused at RCPT with 553 5.1.3 for
/// every client at a local domain, whatever `unknown_users` says; quoting that is not needed
/// changes nothing.
#[test]
fn unsafe_local_parts_are_bad_addresses_at_local_domains() {
    let policy = policy(CONFIG);
    for client in [STRANGER, RELAY_CLIENTS[0]] {
        let check = |address| policy.check_recipient(&peer(client), address);
        for address in [
            "\"a/b\"@example.test",
            "\".hidden\"@example.test",
            "\"..\"@example.test",
            "a..b@example.test",
            "\"tab\tch\"@example.test",
        ] {
            assert_eq!(check(address), BadAddress, "{address}");
        }
        assert_eq!(check("\"bob\"@example.test"), Accept);
    }
}

/// Source routes never reach the policy: the parser keeps only the final mailbox (RFC 5321
/// §4.1.1.3, Appendix C), so a route cannot make us relay, and a trailing dot is a syntax error.
#[test]
fn what_the_parser_hands_the_policy() {
    let policy = policy(CONFIG);
    let reaching = |line: &str| match parse_command(line.as_bytes()) {
        Ok(Command::Rcpt(rcpt)) => Ok(rcpt.address),
        Ok(other) => panic!("{line}: {other:?}"),
        Err(e) => Err(e),
    };
    let cases = [
        // The route names a remote hop; the mailbox is ours: local delivery, no relaying.
        (
            "RCPT TO:<@remote.test,@other.test:bob@example.test>",
            "bob@example.test",
            Accept,
        ),
        // The route names us; the mailbox is remote: relaying, denied.
        (
            "RCPT TO:<@example.test:bob@remote.test>",
            "bob@remote.test",
            RelayDenied,
        ),
        (
            "RCPT TO:<@example.test:bob%remote.test@example.test>",
            "bob%remote.test@example.test",
            RelayDenied,
        ),
        (
            "RCPT TO:<\"bob@remote.test\"@example.test>",
            "\"bob@remote.test\"@example.test",
            RelayDenied,
        ),
        (
            "RCPT TO:<remote!bob@example.test>",
            "remote!bob@example.test",
            RelayDenied,
        ),
    ];
    for (line, address, verdict) in cases {
        assert_eq!(reaching(line).as_deref(), Ok(address), "{line}");
        assert_eq!(
            policy.check_recipient(&peer(STRANGER), address),
            verdict,
            "{line}"
        );
    }
    for line in [
        "RCPT TO:<bob@example.test.>",
        "RCPT TO:<bob@.example.test>",
        "RCPT TO:<@remote.test.:bob@example.test>",
        "RCPT TO:<@:bob@example.test>",
        "RCPT TO:<bob@example.test:25>",
    ] {
        assert_eq!(reaching(line), Err(CommandError::BadRecipient), "{line}");
    }
}
