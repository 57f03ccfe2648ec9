//! qmail's `virtualdomains` and `users/assign`, read without I/O.
//!
//! `virtualdomains` (qmail-send(8)) maps a domain to a prefix: with `example.com:joe`, mail
//! for `list@example.com` is delivered as the local address `joe-list`. Lines are
//! `user@domain:prefix` (one address), `domain:prefix`, `.domain:prefix` (every subdomain),
//! and `:prefix` (every domain not matched otherwise, only among the local domains). The most
//! specific line wins, as in qmail. An empty prefix means "not virtual".
//!
//! `users/assign` (qmail-users(5)) maps local addresses to an account without /etc/passwd:
//!
//! ```text
//! =joe:joe:1001:1001:/home/joe:-:list:      joe exactly: /home/joe/.qmail-list, as uid 1001
//! +joe-:joe:1001:1001:/home/joe:-::         joe-anything: /home/joe/.qmail-anything (and -default)
//! .
//! ```
//!
//! The longest `+` prefix wins; `=` beats `+`. The `.qmail` name is `.qmail` + dash + ext
//! (`=`) or `.qmail` + dash + pre + the rest of the address (`+`), searched with qmail's
//! `-default` wildcards (`extension`).

use std::collections::HashMap;
use std::path::PathBuf;

/// One `users/assign` match: who to deliver as, and the extension to search for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// `None`: the file is `.qmail` itself.
    pub ext: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AssignLine {
    user: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    dash: String,
    ext: String,
}

/// A parsed `users/assign`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assign {
    exact: HashMap<String, AssignLine>,
    prefixes: Vec<(String, AssignLine)>,
}

/// A parsed `virtualdomains`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualDomains {
    map: HashMap<String, String>,
}

impl Assign {
    /// Parses `users/assign`; errors name the line. Lines after the `.` end line are ignored.
    pub fn parse(text: &str) -> Result<Assign, String> {
        let mut assign = Assign::default();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line == "." {
                break;
            }
            if line.is_empty() {
                continue;
            }
            let (kind, rest) = line.split_at(1);
            let fields: Vec<&str> = rest.split(':').collect();
            let bad = |what: &str| format!("line {number}: {what}");
            if fields.len() < 7 {
                return Err(bad("expected `=local:user:uid:gid:home:dash:ext:`"));
            }
            let uid = fields[2].parse().map_err(|_| bad("uid is not a number"))?;
            let gid = fields[3].parse().map_err(|_| bad("gid is not a number"))?;
            if !fields[4].starts_with('/') {
                return Err(bad("home is not an absolute path"));
            }
            let entry = AssignLine {
                user: fields[1].to_string(),
                uid,
                gid,
                home: PathBuf::from(fields[4]),
                dash: fields[5].to_string(),
                ext: fields[6].to_string(),
            };
            let local = fields[0].to_lowercase();
            match kind {
                "=" => {
                    assign.exact.insert(local, entry);
                }
                "+" => assign.prefixes.push((local, entry)),
                _ => return Err(bad("a line starts with `=`, `+`, or is the end line `.`")),
            }
        }
        assign
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(assign)
    }

    /// The account and extension for local address `local` (lowercase), if assigned.
    pub fn find(&self, local: &str) -> Option<Assigned> {
        let (line, ext) = if let Some(line) = self.exact.get(local) {
            (line, line.ext.clone())
        } else {
            let (prefix, line) = self
                .prefixes
                .iter()
                .find(|(prefix, _)| local.starts_with(prefix.as_str()))?;
            (line, format!("{}{}", line.ext, &local[prefix.len()..]))
        };
        let ext = (!line.dash.is_empty() || !ext.is_empty()).then_some(ext);
        Some(Assigned {
            user: line.user.clone(),
            uid: line.uid,
            gid: line.gid,
            home: line.home.clone(),
            ext: ext.filter(|e| !e.is_empty()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

impl VirtualDomains {
    /// Parses `virtualdomains`; errors name the line.
    pub fn parse(text: &str) -> Result<VirtualDomains, String> {
        let mut map = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, prefix) = line
                .rsplit_once(':')
                .ok_or_else(|| format!("line {}: expected `domain:prefix`", index + 1))?;
            map.insert(key.to_lowercase(), prefix.trim().to_string());
        }
        Ok(VirtualDomains { map })
    }

    /// The prefix for `local@domain` (both lowercase), most specific line first; `None` (or an
    /// empty prefix) means the domain is not virtual.
    pub fn prefix(&self, local: &str, domain: &str) -> Option<&str> {
        let exact = self
            .map
            .get(&format!("{local}@{domain}"))
            .or_else(|| self.map.get(domain));
        let found = exact.or_else(|| {
            let mut rest = domain;
            while let Some(dot) = rest.find('.') {
                if let Some(p) = self.map.get(&rest[dot..]) {
                    return Some(p);
                }
                rest = &rest[dot + 1..];
            }
            self.map.get("")
        })?;
        (!found.is_empty()).then_some(found.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSIGN: &str = "=joe:joe:1001:1002:/home/joe:::\n\
        =joe-list:joe:1001:1002:/home/joe:-:list:\n\
        +joe-:joe:1001:1002:/home/joe:-::\n\
        +vpop-:vpopmail:89:89:/var/vpopmail:-:d-:\n\
        .\n\
        =after:x:1:1:/x:::\n";

    #[test]
    fn assign_finds_like_qmail() {
        let assign = Assign::parse(ASSIGN).unwrap();
        let found = |local: &str| assign.find(local).map(|a| (a.user, a.uid, a.gid, a.ext));
        assert_eq!(found("joe"), Some(("joe".into(), 1001, 1002, None)));
        assert_eq!(
            found("joe-list"),
            Some(("joe".into(), 1001, 1002, Some("list".into())))
        );
        assert_eq!(
            found("joe-news-daily"),
            Some(("joe".into(), 1001, 1002, Some("news-daily".into())))
        );
        assert_eq!(
            found("vpop-bob"),
            Some(("vpopmail".into(), 89, 89, Some("d-bob".into())))
        );
        assert_eq!(found("after"), None, "lines after `.` are ignored");
        assert_eq!(found("mary"), None);
        assert!(
            Assign::parse("=a:b:x:1:/h:::\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(
            Assign::parse("=a:b:1:1:h:::\n")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(Assign::parse("?a:b:1:1:/h:::\n").is_err());
    }

    #[test]
    fn virtualdomains_most_specific_first() {
        let v = VirtualDomains::parse(
            "example.com:joe\n.corp.example:corp\nboss@example.com:boss\nlocal.example:\n:catch\n",
        )
        .unwrap();
        assert_eq!(v.prefix("list", "example.com"), Some("joe"));
        assert_eq!(v.prefix("boss", "example.com"), Some("boss"));
        assert_eq!(v.prefix("a", "x.corp.example"), Some("corp"));
        assert_eq!(v.prefix("a", "local.example"), None);
        assert_eq!(v.prefix("a", "other.test"), Some("catch"));
        assert!(VirtualDomains::parse("nocolon\n").is_err());
    }
}
