//! Access rules, as qmail's tcprules: a list of client ranges, tried in order, the first match
//! deciding whether the client is served and on what terms (relaying, its own limits, DNSBL).
//! A client no rule matches gets the `[smtp]` defaults.

use crate::config::{AccessAction, Cidr, SmtpSection};
use std::net::IpAddr;

/// The reply text of a `deny` rule that sets none.
pub const DEFAULT_DENY_TEXT: &str = "Access denied";

/// What one client gets, after the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTerms {
    /// `Some(text)`: refuse the connection with `554 5.7.1 text`.
    pub deny: Option<String>,
    /// May relay to any domain (like `smtp.relay_networks`).
    pub relay: bool,
    pub max_sessions: usize,
    /// 0: no limit.
    pub messages_per_minute: u32,
    pub max_message_size: usize,
    /// `Some(false)`: never ask the DNSBL zones about this client; `Some(true)`: always;
    /// `None`: unless it is a loopback or relay client.
    pub dnsbl: Option<bool>,
    /// 1-based number of the rule that matched, for the log; `None`: the defaults.
    pub rule: Option<usize>,
}

#[derive(Debug, Clone)]
struct Rule {
    from: Vec<Cidr>,
    action: AccessAction,
    reply: Option<String>,
    relay: bool,
    max_sessions: Option<usize>,
    messages_per_minute: Option<u32>,
    max_message_size: Option<usize>,
    dnsbl: Option<bool>,
}

/// The compiled `[[smtp.access]]` rules with the `[smtp]` defaults they override.
#[derive(Debug, Clone)]
pub struct AccessRules {
    rules: Vec<Rule>,
    defaults: ClientTerms,
}

impl AccessRules {
    /// From a validated `[smtp]` section (a range that somehow does not parse is skipped, which
    /// only narrows the rule).
    pub fn from_section(smtp: &SmtpSection) -> AccessRules {
        let rules = smtp
            .access
            .iter()
            .map(|rule| Rule {
                from: rule.from.iter().filter_map(|r| r.parse().ok()).collect(),
                action: rule.action,
                reply: rule.reply.clone(),
                relay: rule.relay,
                max_sessions: rule.max_sessions,
                messages_per_minute: rule.messages_per_minute,
                max_message_size: rule.max_message_size,
                dnsbl: rule.dnsbl,
            })
            .collect();
        AccessRules {
            rules,
            defaults: ClientTerms {
                deny: None,
                relay: false,
                max_sessions: smtp.max_sessions_per_ip,
                messages_per_minute: smtp.max_messages_per_ip_per_minute,
                max_message_size: smtp.max_message_size,
                dnsbl: None,
                rule: None,
            },
        }
    }

    /// Whether the DNSBL zones are asked about a client with these terms.
    pub fn wants_dnsbl(terms: &ClientTerms, ip: IpAddr, relay_network: bool) -> bool {
        let loopback = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            IpAddr::V4(v4) => v4.is_loopback(),
        };
        terms
            .dnsbl
            .unwrap_or(!(loopback || terms.relay || relay_network))
    }

    /// The terms for a client at `ip`: the first rule that holds it, else the defaults.
    pub fn terms_for(&self, ip: IpAddr) -> ClientTerms {
        let Some((index, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.from.iter().any(|range| range.contains(ip)))
        else {
            return self.defaults.clone();
        };
        let d = &self.defaults;
        ClientTerms {
            deny: (rule.action == AccessAction::Deny).then(|| {
                rule.reply
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DENY_TEXT.to_string())
            }),
            relay: rule.relay,
            max_sessions: rule.max_sessions.unwrap_or(d.max_sessions),
            messages_per_minute: rule.messages_per_minute.unwrap_or(d.messages_per_minute),
            max_message_size: rule.max_message_size.unwrap_or(d.max_message_size),
            dnsbl: rule.dnsbl,
            rule: Some(index + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn rules(text: &str) -> AccessRules {
        AccessRules::from_section(&load_str(text, "t.toml").unwrap().smtp)
    }

    #[test]
    fn first_match_wins_over_ipv4_ipv6_and_mapped_addresses() {
        let rules = rules(
            "[smtp]\nmax_sessions_per_ip = 7\nmax_message_size = 5000\n\
             [[smtp.access]]\nfrom = [\"192.0.2.66\", \"2001:db8:bad::/48\"]\naction = \"deny\"\n\
             reply = \"go away\"\n\
             [[smtp.access]]\nfrom = [\"192.0.2.0/24\"]\nrelay = true\nmax_sessions = 50\n\
             dnsbl = false\n\
             [[smtp.access]]\nfrom = [\"0.0.0.0/0\"]\nmessages_per_minute = 3\n\
             max_message_size = 2048\n",
        );
        let terms = |ip: &str| rules.terms_for(ip.parse().unwrap());
        let denied = terms("192.0.2.66");
        assert_eq!(denied.deny.as_deref(), Some("go away"));
        assert_eq!(denied.rule, Some(1));
        assert_eq!(terms("::ffff:192.0.2.66").deny.as_deref(), Some("go away"));
        assert!(terms("2001:db8:bad:1::9").deny.is_some());
        let relay = terms("192.0.2.10");
        assert!(relay.deny.is_none() && relay.relay);
        assert_eq!(relay.dnsbl, Some(false));
        assert_eq!((relay.max_sessions, relay.max_message_size), (50, 5000));
        let anyone = terms("198.51.100.1");
        assert!(!anyone.relay && anyone.dnsbl.is_none());
        assert_eq!(anyone.messages_per_minute, 3);
        assert_eq!(anyone.max_message_size, 2048);
        assert_eq!(anyone.max_sessions, 7);
        // IPv6 outside every rule: the [smtp] defaults.
        let v6 = terms("2001:db8:1::1");
        assert_eq!(
            (v6.rule, v6.max_sessions, v6.max_message_size),
            (None, 7, 5000)
        );
    }

    #[test]
    fn a_deny_without_reply_has_a_default_text() {
        let rules = rules("[[smtp.access]]\nfrom = [\"10.0.0.0/8\"]\naction = \"deny\"\n");
        assert_eq!(
            rules.terms_for("10.1.2.3".parse().unwrap()).deny.as_deref(),
            Some(DEFAULT_DENY_TEXT)
        );
    }

    #[test]
    fn bad_rules_are_refused_at_load_with_file_line_and_key() {
        // The line is the first `[[smtp.access]]` header's; the message names the rule.
        let cases: &[(&str, usize, &str)] = &[
            (
                "[smtp]\n[[smtp.access]]\nfrom = [\"10.0.0.0/33\"]\n",
                2,
                "rule 1: `10.0.0.0/33`",
            ),
            (
                "[smtp]\n[[smtp.access]]\nfrom = [\"::1\"]\n[[smtp.access]]\nfrom = []\n",
                2,
                "rule 2: `from` lists no address",
            ),
            (
                "[smtp]\n[[smtp.access]]\nfrom = [\"::1\"]\naction = \"deny\"\nrelay = true\n",
                2,
                "`relay` means nothing",
            ),
            (
                "[smtp]\n[[smtp.access]]\nfrom = [\"::1\"]\nreply = \"x\"\n",
                2,
                "`reply` is only for",
            ),
            (
                "[smtp]\n[[smtp.access]]\nfrom = [\"::1\"]\nmax_sessions = 0\n",
                2,
                "greater than 0",
            ),
            (
                "[smtp]\ndnsbl_zones = [\"bad zone\"]\n",
                2,
                "not a domain name",
            ),
            ("[smtp]\ngreeting_delay_ms = 600000\n", 2, "at most 60000"),
        ];
        for (text, line, words) in cases {
            let err = load_str(text, "t.toml").unwrap_err();
            assert_eq!(err.line, Some(*line), "{text}: {err}");
            assert!(err.key.starts_with("smtp."), "{err}");
            assert!(err.message.contains(words), "{text}: {err}");
        }
        let err = load_str(
            "[[smtp.access]]\nfrom = [\"::1\"]\nactoin = \"deny\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.message.contains("unknown key `actoin`"), "{err}");
    }
}
