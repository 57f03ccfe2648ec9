//! Who can receive mail here, known without touching the disk: the RCPT check with
//! `unknown_users = "reject"` asks [`RecipientTable::get`] on the shard, and only ever reads
//! memory.
//!
//! The table ([`KnownRecipients`]) is built on a local-delivery thread from everything that
//! makes an address deliverable: `[local] users`, the built-in passwd database, the system
//! users (with `[local] system_users`), and, for every domain directory under the mail root,
//! its Maildirs (`<domain>/<local>/Maildir`) and its `.qmail-*` instruction files (so
//! `.qmail-lists-default` makes every `lists-*` address known, and `.qmail-default` the whole
//! domain). It is shared read-only (`Arc`) and rebuilt in the background once it is
//! `[local] refresh_secs` old: the check that finds it stale starts the rebuild and answers
//! from the table it has; the next check after the rebuild picks the new one up. A change on
//! disk is therefore seen within about that time.

use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::blocking::BlockingPool;
use crate::config::Config;
use crate::local::aliases::Aliases;
use crate::local::assign::{Assign, VirtualDomains};
use crate::local::extension;
use crate::local::users::SystemUsers;

/// Where the table is built from (plain data, sent to the building thread).
#[derive(Debug, Clone)]
pub struct Sources {
    pub users: Vec<String>,
    pub passwd: PathBuf,
    pub mail_root: PathBuf,
    /// `/etc/passwd` and the lowest uid, when system users receive mail.
    pub system_users: Option<(PathBuf, u32)>,
    pub separator: char,
    /// The data directory whose `aliases.idx` is read, when `[local] aliases` is set.
    pub aliases_in: Option<PathBuf>,
    /// qmail's `virtualdomains` and `users/assign`, when configured.
    pub virtualdomains: Option<PathBuf>,
    pub assign: Option<PathBuf>,
    /// List the Maildirs and `.qmail` files under the mail root (the RCPT check needs them;
    /// local delivery, which reads the tables for aliases and users, does not).
    pub scan_mailboxes: bool,
}

impl Sources {
    pub fn from_config(config: &Config) -> Sources {
        Sources {
            users: config.local.users.clone(),
            passwd: config.passwd_path(),
            mail_root: config.mail_root(),
            system_users: config
                .local
                .system_users
                .then(|| (PathBuf::from("/etc/passwd"), config.local.min_uid)),
            separator: config
                .local
                .extension_separator
                .chars()
                .next()
                .unwrap_or('-'),
            aliases_in: config
                .local
                .aliases
                .as_ref()
                .map(|_| config.server.data_dir.clone()),
            virtualdomains: config.local.virtualdomains.clone(),
            assign: config.local.assign.clone(),
            scan_mailboxes: true,
        }
    }
}

/// What one domain directory under the mail root holds, as of its modification time.
#[derive(Debug, Default)]
struct DomainEntries {
    /// The directory's mtime when it was listed: an unchanged directory is not listed again.
    mtime: Option<std::time::SystemTime>,
    /// Local parts with a Maildir.
    mailboxes: HashSet<String>,
    /// `.qmail-*` file names.
    dot_qmail: HashSet<String>,
}

/// A snapshot of the known recipients.
#[derive(Debug, Default)]
pub struct KnownRecipients {
    addresses: HashSet<String>,
    domains: HashMap<String, Arc<DomainEntries>>,
    /// The system users (`[local] system_users`), reread with the rest.
    pub system: Option<SystemUsers>,
    separator: char,
    /// The compiled aliases (`ringmail newaliases`).
    pub aliases: Aliases,
    pub virtual_domains: VirtualDomains,
    pub assign: Assign,
}

impl KnownRecipients {
    /// Builds the table. Blocking: reads files and lists directories; a domain directory
    /// whose modification time is the same as in `previous` is taken from it, not listed again
    /// (adding or removing a mailbox or a `.qmail` file changes it).
    pub fn load(sources: &Sources, previous: Option<&KnownRecipients>) -> KnownRecipients {
        let mut addresses: HashSet<String> =
            sources.users.iter().map(|u| u.to_lowercase()).collect();
        if let Ok(users) = crate::auth::passwd::list(&sources.passwd) {
            addresses.extend(users.iter().map(|u| u.to_lowercase()));
        }
        let system = sources.system_users.as_ref().map(|(path, min_uid)| {
            SystemUsers::load(path, *min_uid).unwrap_or_else(|e| {
                log::error!("cannot read {}: {e}", path.display());
                SystemUsers::default()
            })
        });
        let mut domains = HashMap::new();
        let listing = match sources.scan_mailboxes {
            true => std::fs::read_dir(&sources.mail_root).ok(),
            false => None,
        };
        for entry in listing.into_iter().flatten().flatten() {
            let Ok(domain) = entry.file_name().into_string() else {
                continue;
            };
            let domain = domain.to_ascii_lowercase();
            let path = entry.path();
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let unchanged = previous
                .and_then(|p| p.domains.get(&domain))
                .filter(|old| mtime.is_some() && old.mtime == mtime);
            let entries = match unchanged {
                Some(old) => Arc::clone(old),
                None => Arc::new(scan_domain(&path, mtime)),
            };
            domains.insert(domain, entries);
        }
        let aliases = sources
            .aliases_in
            .as_deref()
            .map(crate::local::aliases::load_index)
            .unwrap_or_default();
        let read = |path: &Option<PathBuf>| -> Option<(PathBuf, String)> {
            let path = path.as_ref()?;
            match std::fs::read_to_string(path) {
                Ok(text) => Some((path.clone(), text)),
                Err(e) => {
                    log::error!("cannot read {}: {e}", path.display());
                    None
                }
            }
        };
        let virtual_domains = read(&sources.virtualdomains)
            .map(|(path, text)| {
                VirtualDomains::parse(&text).unwrap_or_else(|e| {
                    log::error!("{}: {e}; ignored", path.display());
                    VirtualDomains::default()
                })
            })
            .unwrap_or_default();
        let assign = read(&sources.assign)
            .map(|(path, text)| {
                Assign::parse(&text).unwrap_or_else(|e| {
                    log::error!("{}: {e}; ignored", path.display());
                    Assign::default()
                })
            })
            .unwrap_or_default();
        KnownRecipients {
            addresses,
            domains,
            system,
            separator: sources.separator,
            aliases,
            virtual_domains,
            assign,
        }
    }

    /// Whether `address` (`local@domain`) can receive mail here.
    pub fn knows(&self, address: &str) -> bool {
        let lowered = address.to_lowercase();
        if self.addresses.contains(&lowered) {
            return true;
        }
        let Some((local, domain)) = lowered.rsplit_once('@') else {
            return false;
        };
        if self.alias_for(local).is_some() {
            return true;
        }
        let mapped = self.mapped_local(local, domain);
        if self.assign.find(&mapped).is_some() {
            return true;
        }
        if let Some(system) = &self.system
            && system.find(&mapped, self.separator).is_some()
        {
            return true;
        }
        let Some(entries) = self.domains.get(domain) else {
            return false;
        };
        entries.mailboxes.contains(local)
            || extension::candidates(Some(local), self.separator)
                .iter()
                .any(|c| entries.dot_qmail.contains(&c.file))
    }
}

impl KnownRecipients {
    /// The local address `local@domain` is delivered as: `prefix-local` for a domain in
    /// `virtualdomains`, else `local` itself.
    pub fn mapped_local(&self, local: &str, domain: &str) -> String {
        match self.virtual_domains.prefix(local, domain) {
            Some(prefix) => format!("{prefix}{}{local}", self.separator),
            None => local.to_string(),
        }
    }

    /// The alias `local` (lowercase) names: itself, or the part before its first extension
    /// separator (`team-news` falls back to `team`). Returns the alias name.
    pub fn alias_for(&self, local: &str) -> Option<&str> {
        if let Some((name, _)) = self.aliases.map.get_key_value(local) {
            return Some(name.as_str());
        }
        let (base, _) = local.split_once(self.separator)?;
        self.aliases
            .map
            .get_key_value(base)
            .map(|(name, _)| name.as_str())
    }
}

/// The Maildirs and `.qmail-*` files of one domain directory. Blocking.
fn scan_domain(dir: &Path, mtime: Option<std::time::SystemTime>) -> DomainEntries {
    let mut found = DomainEntries {
        mtime,
        ..DomainEntries::default()
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(".qmail-") {
            found.dot_qmail.insert(name);
        } else if !name.starts_with('.') && entry.path().join("Maildir").is_dir() {
            found.mailboxes.insert(name.to_lowercase());
        }
    }
    found
}

/// One shard's view of the known recipients (see the module comment).
pub struct RecipientTable {
    /// Swapped whole when a rebuild lands; readers never wait (the HTTP plane's copy of the
    /// policy reads it from the sidecar's threads, so it must be `Sync` without a lock).
    current: ArcSwap<KnownRecipients>,
    /// When `current` was loaded, in milliseconds after `epoch`.
    loaded_at_ms: AtomicU64,
    epoch: Instant,
    rebuilding: AtomicBool,
    updates: (
        flume::Sender<Arc<KnownRecipients>>,
        flume::Receiver<Arc<KnownRecipients>>,
    ),
    sources: Arc<Sources>,
    refresh: Duration,
    pool: BlockingPool,
}

impl RecipientTable {
    /// Builds the first table now (blocking: call at startup), then keeps it fresh on `pool`.
    pub fn new(sources: Sources, refresh: Duration, pool: BlockingPool) -> RecipientTable {
        let first = Arc::new(KnownRecipients::load(&sources, None));
        RecipientTable {
            current: ArcSwap::new(first),
            loaded_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            rebuilding: AtomicBool::new(false),
            updates: flume::bounded(1),
            sources: Arc::new(sources),
            refresh,
            pool,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The current table. Never blocks: a stale table starts a rebuild and is still answered.
    pub fn get(&self) -> Arc<KnownRecipients> {
        if let Ok(fresh) = self.updates.1.try_recv() {
            self.current.store(fresh);
            self.loaded_at_ms.store(self.now_ms(), Ordering::Relaxed);
            self.rebuilding.store(false, Ordering::Release);
        }
        let age = self.now_ms() - self.loaded_at_ms.load(Ordering::Relaxed).min(self.now_ms());
        if age >= self.refresh.as_millis() as u64
            && self
                .rebuilding
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let sources = Arc::clone(&self.sources);
            let done = self.updates.0.clone();
            let previous = self.current.load_full();
            let submitted = self.pool.try_run(move || {
                let fresh = KnownRecipients::load(&sources, Some(&previous));
                let _ = done.try_send(Arc::new(fresh));
            });
            // The job runs whether or not anyone awaits its completion; a full pool is asked
            // again at the next check.
            if submitted.is_err() {
                self.rebuilding.store(false, Ordering::Release);
            }
        }
        self.current.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(root: &Path) -> Sources {
        Sources {
            users: vec!["Listed@Example.Test".into()],
            passwd: root.join("passwd"),
            mail_root: root.join("mail"),
            system_users: None,
            separator: '-',
            aliases_in: None,
            virtualdomains: None,
            assign: None,
            scan_mailboxes: true,
        }
    }

    #[test]
    fn knows_users_mailboxes_and_instruction_files() {
        let root = tempfile::tempdir().unwrap();
        let domain = root.path().join("mail/example.test");
        std::fs::create_dir_all(domain.join("bob/Maildir")).unwrap();
        std::fs::create_dir_all(domain.join("nomaildir")).unwrap();
        std::fs::write(domain.join(".qmail-carol"), "./carol/Maildir/\n").unwrap();
        std::fs::write(domain.join(".qmail-lists-default"), "|true\n").unwrap();
        let known = KnownRecipients::load(&sources(root.path()), None);
        for yes in [
            "listed@example.test",
            "Bob@example.test",
            "carol@EXAMPLE.test",
            "lists-rust@example.test",
            "lists-a-b@example.test",
        ] {
            assert!(known.knows(yes), "{yes}");
        }
        for no in [
            "nomaildir@example.test",
            "dave@example.test",
            "carol-x@example.test",
            "bob@other.test",
            "lists@example.test",
        ] {
            assert!(!known.knows(no), "{no}");
        }
        std::fs::write(domain.join(".qmail-default"), "./all/Maildir/\n").unwrap();
        let known = KnownRecipients::load(&sources(root.path()), None);
        assert!(known.knows("anyone@example.test"));
        assert!(!known.knows("anyone@other.test"));
    }

    #[test]
    fn a_stale_table_is_rebuilt_in_the_background() {
        let root = tempfile::tempdir().unwrap();
        let pool = BlockingPool::new("test-recipients", 1, 4);
        let table = RecipientTable::new(sources(root.path()), Duration::ZERO, pool);
        assert!(!table.get().knows("new@example.test"));
        std::fs::create_dir_all(root.path().join("mail/example.test/new/Maildir")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !table.get().knows("new@example.test") {
            assert!(Instant::now() < deadline, "never rebuilt");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
