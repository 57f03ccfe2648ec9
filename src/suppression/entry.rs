//! One line of the suppression file: an `add` or a `del` of an address or a whole domain,
//! optionally for one list only (what a one-click unsubscribe records), with its time and
//! reason. The file is a log of these lines, read in order; the last word on a key wins. The
//! fields are separated by tabs (shown as `<TAB>` here); `-` is "no list".
//!
//! ```text
//! add<TAB>bob@example.com<TAB>-<TAB>1764790000<TAB>hard bounce: mx.example.com said: 550 5.1.1 no such user
//! add<TAB>example.net<TAB>-<TAB>1764790100<TAB>operator
//! add<TAB>carol@example.org<TAB>news<TAB>1764790200<TAB>one-click unsubscribe
//! del<TAB>bob@example.com<TAB>-<TAB>1764790300
//! ```

use std::fmt;

/// What an entry suppresses: one mailbox, or every address at a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Address(String),
    Domain(String),
}

impl Target {
    /// `bob@example.com` is an address, `example.com` a domain; lowercased (the local part too:
    /// suppressing must not be defeated by case games).
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim().trim_start_matches('<').trim_end_matches('>');
        let bad = |c: char| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c);
        if text.is_empty() || text.contains(bad) {
            return Err(format!("{text:?} is not an address or a domain"));
        }
        let lower = text.to_ascii_lowercase();
        match lower.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                Ok(Target::Address(lower))
            }
            Some((_, domain)) if !domain.is_empty() && lower.starts_with('@') => {
                Ok(Target::Domain(domain.to_string()))
            }
            Some(_) => Err(format!("{text:?} is not an address or a domain")),
            None => Ok(Target::Domain(lower)),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Address(a) => f.write_str(a),
            Target::Domain(d) => f.write_str(d),
        }
    }
}

/// The key an entry is stored under: the target, and the list it is limited to (`None`: all
/// mail).
pub type Key = (Target, Option<String>);

/// Why and since when a key is suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub since: u64,
    pub reason: String,
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(Key, Entry),
    Del(Key, u64),
}

/// Checks a list name: a word of letters, digits and `._-` (it travels in tokens, headers and
/// this file's tab-separated fields).
pub fn check_list_name(list: &str) -> Result<(), String> {
    if list.is_empty()
        || list == "-"
        || list.len() > 64
        || !list
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "{list:?} is not a list name (1-64 letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

impl Change {
    /// The line for the file, with its newline. Tabs and newlines in a reason become spaces.
    pub fn to_line(&self) -> String {
        let list = |l: &Option<String>| l.clone().unwrap_or_else(|| "-".into());
        match self {
            Change::Add((target, l), entry) => {
                let reason: String = entry
                    .reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                format!("add\t{target}\t{}\t{}\t{reason}\n", list(l), entry.since)
            }
            Change::Del((target, l), at) => format!("del\t{target}\t{}\t{at}\n", list(l)),
        }
    }

    /// Reads one line (without its newline).
    pub fn parse(line: &str) -> Result<Change, String> {
        let mut fields = line.splitn(5, '\t');
        let (Some(op), Some(target), Some(list), Some(time)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err("expected op, target, list and time separated by tabs".into());
        };
        let target = Target::parse(target)?;
        let list = match list {
            "-" => None,
            l => {
                check_list_name(l)?;
                Some(l.to_string())
            }
        };
        let time: u64 = time
            .parse()
            .map_err(|_| format!("{time:?} is not a unix time"))?;
        match op {
            "add" => Ok(Change::Add(
                (target, list),
                Entry {
                    since: time,
                    reason: fields.next().unwrap_or("").to_string(),
                },
            )),
            "del" => Ok(Change::Del((target, list), time)),
            _ => Err(format!("{op:?} is neither add nor del")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("<Bob@Example.COM>"),
            Ok(Target::Address("bob@example.com".into()))
        );
        assert_eq!(
            Target::parse("example.net"),
            Ok(Target::Domain("example.net".into()))
        );
        assert_eq!(
            Target::parse("@example.net"),
            Ok(Target::Domain("example.net".into()))
        );
        for bad in ["", "a b@c", "bob@", "x\ty", "<>"] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_round_trip() {
        let add = Change::Add(
            (Target::Address("a@b.c".into()), Some("news".into())),
            Entry {
                since: 17,
                reason: "hard\tbounce\r\n550".into(),
            },
        );
        let line = add.to_line();
        assert_eq!(line, "add\ta@b.c\tnews\t17\thard bounce  550\n");
        let back = Change::parse(line.trim_end_matches('\n')).unwrap();
        let Change::Add(key, entry) = back else {
            panic!()
        };
        assert_eq!(key, (Target::Address("a@b.c".into()), Some("news".into())));
        assert_eq!(entry.reason, "hard bounce  550");
        let del = Change::Del((Target::Domain("b.c".into()), None), 18);
        assert_eq!(Change::parse(del.to_line().trim_end()).unwrap(), del);
        for bad in [
            "add\ta@b.c",
            "mod\ta@b.c\t-\t1",
            "add\ta@b.c\tn w\t1",
            "add\ta@b.c\t-\tx",
        ] {
            assert!(Change::parse(bad).is_err(), "{bad:?}");
        }
    }
}
