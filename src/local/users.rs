//! System users whose mail is delivered by their own `.qmail` files: the accounts of
//! `/etc/passwd` with a uid of at least `[local] min_uid` (never root, never a system
//! account), read once into memory so that finding a user never touches the disk.
//!
//! An address's user is found as qmail-getpw finds it: the whole local part if it is a user,
//! else the longest part before an extension separator that is (`mary-ann-lists` is user
//! `mary-ann` with extension `lists` when `mary-ann` exists, else `mary` with `ann-lists`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One account that may receive mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The accounts of a passwd file, by lowercased name.
#[derive(Debug, Clone, Default)]
pub struct SystemUsers {
    by_name: HashMap<String, SystemUser>,
}

impl SystemUsers {
    /// Parses passwd(5) text, keeping accounts with `uid >= min_uid` (and never uid 0 or gid 0),
    /// a home directory that is an absolute path, and a name that is a plain local part.
    pub fn parse(text: &str, min_uid: u32) -> SystemUsers {
        let mut by_name = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, uid, gid, _, home, ..] = fields[..] else {
                continue;
            };
            let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
                continue;
            };
            let plain = !name.is_empty()
                && !name.starts_with(['.', '-', '+'])
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if uid == 0 || gid == 0 || uid < min_uid || !plain || !home.starts_with('/') {
                continue;
            }
            by_name
                .entry(name.to_ascii_lowercase())
                .or_insert(SystemUser {
                    name: name.to_string(),
                    uid,
                    gid,
                    home: PathBuf::from(home),
                });
        }
        SystemUsers { by_name }
    }

    /// Reads and parses a passwd file. Blocking.
    pub fn load(path: &Path, min_uid: u32) -> std::io::Result<SystemUsers> {
        Ok(SystemUsers::parse(&std::fs::read_to_string(path)?, min_uid))
    }

    /// How many accounts may receive mail.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The user `local` (lowercase) belongs to, and its extension (`None` for none).
    pub fn find(&self, local: &str, separator: char) -> Option<(&SystemUser, Option<String>)> {
        if let Some(user) = self.by_name.get(local) {
            return Some((user, None));
        }
        let cuts: Vec<usize> = local.match_indices(separator).map(|(i, _)| i).collect();
        for &cut in cuts.iter().rev() {
            if let Some(user) = self.by_name.get(&local[..cut]) {
                let ext = &local[cut + separator.len_utf8()..];
                return Some((user, Some(ext.to_string())));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        bob:x:1000:1000:Bob:/home/bob:/bin/bash\n\
        mary:x:1001:1001::/home/mary:/bin/sh\n\
        mary-ann:x:1002:1002::/home/mary-ann:/bin/sh\n\
        toor:x:1003:0::/home/toor:/bin/sh\n\
        nohome:x:1004:1004::relative:/bin/sh\n\
        broken line\n";

    #[test]
    fn keeps_only_ordinary_accounts() {
        let users = SystemUsers::parse(PASSWD, 1000);
        assert_eq!(users.len(), 3);
        assert!(users.find("root", '-').is_none());
        assert!(users.find("daemon", '-').is_none());
        assert!(users.find("toor", '-').is_none(), "gid 0 is refused");
        assert!(users.find("nohome", '-').is_none());
        let (bob, ext) = users.find("bob", '-').unwrap();
        assert_eq!((bob.uid, bob.gid, ext), (1000, 1000, None));
        assert_eq!(bob.home, PathBuf::from("/home/bob"));
    }

    #[test]
    fn finds_the_longest_user_like_qmail_getpw() {
        let users = SystemUsers::parse(PASSWD, 1000);
        let found = |local: &str, sep| users.find(local, sep).map(|(u, ext)| (u.name.clone(), ext));
        assert_eq!(
            found("bob-lists", '-'),
            Some(("bob".into(), Some("lists".into())))
        );
        assert_eq!(
            found("bob-a-b", '-'),
            Some(("bob".into(), Some("a-b".into())))
        );
        assert_eq!(
            found("mary-ann-lists", '-'),
            Some(("mary-ann".into(), Some("lists".into())))
        );
        assert_eq!(
            found("mary-x", '-'),
            Some(("mary".into(), Some("x".into())))
        );
        assert_eq!(
            found("bob+news", '+'),
            Some(("bob".into(), Some("news".into())))
        );
        assert_eq!(found("bob+news", '-'), None);
        assert_eq!(found("carol", '-'), None);
    }
}
