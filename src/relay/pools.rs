//! Source-IP pools: the local addresses outbound connections bind to, each with its own EHLO
//! name, grouped into weighted pools. A message chooses its pool by a header field
//! (`relay.pool_header`, removed before sending, as PowerMTA's `x-virtual-mta`), else its
//! sender's domain does, else the default pool.
//!
//! Source 0 is always the unbound source (the kernel picks the address, `relay.helo_name` is
//! sent); it forms the implicit pool 0, used when no pool is configured for a sender. Within a
//! pool, new connections go to the sources by smooth weighted round-robin (nginx's), so the
//! shares are exact over any few rounds rather than random, skipping a source that is at its
//! connection limit or suspended for the destination.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::RelaySection;

/// Index into [`Pools::sources`].
pub type SourceId = usize;
/// Index into [`Pools`]' pools.
pub type PoolId = usize;

/// One source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `None`: unbound (the kernel's choice).
    pub address: Option<IpAddr>,
    /// EHLO name; `None`: `relay.helo_name`.
    pub helo: Option<String>,
}

#[derive(Debug, Clone)]
struct Pool {
    name: String,
    /// (source, weight).
    members: Vec<(SourceId, u32)>,
}

/// Every pool and source, built once from `[relay]`; each shard holds a copy.
#[derive(Debug, Clone)]
pub struct Pools {
    sources: Vec<Source>,
    pools: Vec<Pool>,
    by_sender_domain: HashMap<String, PoolId>,
    by_name: HashMap<String, PoolId>,
    default: PoolId,
    /// `relay.pool_header`, when set.
    header: Option<String>,
}

impl Default for Pools {
    fn default() -> Pools {
        Pools {
            sources: vec![Source {
                address: None,
                helo: None,
            }],
            pools: vec![Pool {
                name: String::new(),
                members: vec![(0, 1)],
            }],
            by_sender_domain: HashMap::new(),
            by_name: HashMap::new(),
            default: 0,
            header: None,
        }
    }
}

impl Pools {
    /// The pools of `[relay]` (validated by the loader: addresses parse, names exist).
    pub fn from_config(relay: &RelaySection) -> Pools {
        let mut pools = Pools::default();
        let mut ids = HashMap::new();
        for (name, setting) in &relay.pools {
            let mut members = Vec::new();
            for source in &setting.sources {
                let Ok(address) = source.address.parse::<IpAddr>() else {
                    continue;
                };
                let helo = (!source.helo.is_empty()).then(|| source.helo.clone());
                let wanted = Source {
                    address: Some(address),
                    helo,
                };
                // One address in two pools is one source: its limits are shared.
                let id = match pools
                    .sources
                    .iter()
                    .position(|s| s.address == Some(address))
                {
                    Some(id) => id,
                    None => {
                        pools.sources.push(wanted);
                        pools.sources.len() - 1
                    }
                };
                members.push((id, source.weight.max(1)));
            }
            if members.is_empty() {
                continue;
            }
            pools.pools.push(Pool {
                name: name.clone(),
                members,
            });
            ids.insert(name.clone(), pools.pools.len() - 1);
        }
        if let Some(&id) = ids.get(&relay.default_pool) {
            pools.default = id;
        }
        for (domain, pool) in &relay.pool_by_sender_domain {
            if let Some(&id) = ids.get(pool) {
                pools
                    .by_sender_domain
                    .insert(domain.to_ascii_lowercase(), id);
            }
        }
        pools.by_name = ids;
        pools.header = (!relay.pool_header.is_empty()).then(|| relay.pool_header.clone());
        pools
    }

    /// The header field messages name their pool by, if any.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The pool called `name`.
    pub fn pool_named(&self, name: &str) -> Option<PoolId> {
        self.by_name.get(name).copied()
    }

    /// The pool for mail from `sender` (an address; empty for bounces).
    pub fn pool_for_sender(&self, sender: &str) -> PoolId {
        sender
            .rsplit_once('@')
            .and_then(|(_, domain)| self.by_sender_domain.get(&domain.to_ascii_lowercase()))
            .copied()
            .unwrap_or(self.default)
    }

    pub fn source(&self, id: SourceId) -> &Source {
        &self.sources[id.min(self.sources.len() - 1)]
    }

    /// The pool's name (empty for the implicit pool).
    pub fn pool_name(&self, pool: PoolId) -> &str {
        self.pools.get(pool).map_or("", |p| p.name.as_str())
    }

    /// The pool's sources and weights.
    pub fn members(&self, pool: PoolId) -> &[(SourceId, u32)] {
        self.pools.get(pool).map_or(&[], |p| p.members.as_slice())
    }
}

/// Finds the header field `name` (case-insensitive) in the header block of `message` (CRLF
/// lines, up to the first empty line): its value, trimmed, and the byte range of the whole
/// field, folded continuation lines included, to cut it out.
pub fn find_header(message: &[u8], name: &str) -> Option<(String, std::ops::Range<usize>)> {
    let mut at = 0;
    while at < message.len() {
        let end = memchr::memchr(b'\n', &message[at..]).map_or(message.len(), |i| at + i + 1);
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            return None; // the end of the header block
        }
        let is_it = line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':';
        if is_it {
            let mut field_end = end;
            while field_end < message.len() && matches!(message[field_end], b' ' | b'\t') {
                field_end = memchr::memchr(b'\n', &message[field_end..])
                    .map_or(message.len(), |i| field_end + i + 1);
            }
            let value = String::from_utf8_lossy(&message[at + name.len() + 1..field_end]);
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            return Some((value, at..field_end));
        }
        at = end;
    }
    None
}

/// Smooth weighted round-robin state for one pool at one destination: `current[i]` belongs to
/// the pool's member `i`.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    /// Picks the next member among those `eligible` says may take a connection now; `None`
    /// when none may.
    pub fn pick(
        &mut self,
        members: &[(SourceId, u32)],
        mut eligible: impl FnMut(SourceId) -> bool,
    ) -> Option<SourceId> {
        self.current.resize(members.len(), 0);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, &(source, weight)) in members.iter().enumerate() {
            if !eligible(source) {
                continue;
            }
            self.current[i] += i64::from(weight);
            total += i64::from(weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(members[best].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_gives_exact_shares() {
        let members = [(1, 3), (2, 1)];
        let mut rr = RoundRobin::default();
        let picks: Vec<SourceId> = (0..8)
            .map(|_| rr.pick(&members, |_| true).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&s| s == 1).count(), 6);
        assert_eq!(picks.iter().filter(|&&s| s == 2).count(), 2);
        // Smooth: the light source is not starved until the end of a round.
        assert!(picks[..4].contains(&2));
        // An ineligible source is skipped; none eligible is None.
        assert_eq!(rr.pick(&members, |s| s == 2), Some(2));
        assert_eq!(rr.pick(&members, |_| false), None);
    }

    #[test]
    fn finds_and_cuts_a_header_field() {
        let message = b"From: a@b\r\nX-Pool: bulk\r\nSubject: x\r\n\r\nX-Pool: body\r\n";
        let (value, range) = find_header(message, "x-pool").unwrap();
        assert_eq!(value, "bulk");
        let mut cut = message.to_vec();
        cut.drain(range);
        assert_eq!(cut, b"From: a@b\r\nSubject: x\r\n\r\nX-Pool: body\r\n");
        // Folded, and last in the header block.
        let folded = b"X-Pool:\r\n  bulk \r\n\r\nbody";
        let (value, range) = find_header(folded, "X-Pool").unwrap();
        assert_eq!((value.as_str(), range), ("bulk", 0..18));
        // Only in the body, or a longer name: not found.
        assert_eq!(find_header(b"A: b\r\n\r\nX-Pool: x\r\n", "X-Pool"), None);
        assert_eq!(find_header(b"X-Pools: x\r\n\r\n", "X-Pool"), None);
    }

    #[test]
    fn senders_choose_pools() {
        let config = crate::config::load_str(
            "[relay]\ndefault_pool = \"main\"\n\
             pool_by_sender_domain = { \"news.example\" = \"bulk\" }\n\
             [relay.pools.main]\nsources = [{ address = \"127.0.0.2\", helo = \"a.test\" }]\n\
             [relay.pools.bulk]\nsources = [{ address = \"127.0.0.2\", weight = 2 }, \
             { address = \"::1\", helo = \"b.test\" }]\n",
            "test",
        )
        .expect("config");
        let pools = Pools::from_config(&config.relay);
        let main = pools.pool_for_sender("a@example.org");
        let bulk = pools.pool_for_sender("list@News.Example");
        assert_eq!(pools.pool_name(main), "main");
        assert_eq!(pools.pool_name(bulk), "bulk");
        assert_eq!(pools.pool_for_sender(""), main);
        // 127.0.0.2 is one source in both pools.
        assert_eq!(pools.members(main)[0].0, pools.members(bulk)[0].0);
        let v6 = pools.source(pools.members(bulk)[1].0);
        assert_eq!(v6.address, Some("::1".parse().unwrap()));
        assert_eq!(v6.helo.as_deref(), Some("b.test"));
        assert_eq!(Pools::default().pool_for_sender("a@b"), 0);
    }
}
