//! Who may receive mail here: the RCPT TO decision (local domain? known user? relay?).
//!
//! ringmail is closed by default: a recipient outside the local domains is refused with
//! `554 5.7.1` for every client (relaying arrives with remote delivery).

use crate::config::{Config, UnknownUsers};
use crate::smtp::{PeerInfo, RcptVerdict, RecipientPolicy};
use std::collections::HashSet;
use std::path::PathBuf;

/// The recipient rules of one configuration; each shard holds its own copy.
pub struct LocalPolicy {
    domains: HashSet<String>,
    unknown_users: UnknownUsers,
    users: HashSet<String>,
    mail_root: PathBuf,
    passwd: PathBuf,
}

impl LocalPolicy {
    pub fn new(config: &Config) -> LocalPolicy {
        LocalPolicy {
            // The server's own name is always local, as qmail's `me` is, so that the bare
            // `postmaster` (RFC 5321 §4.5.1: postmaster@<hostname>) has somewhere to go.
            domains: config
                .local
                .domains
                .iter()
                .chain(std::iter::once(&config.server.hostname))
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            unknown_users: config.local.unknown_users,
            users: config
                .local
                .users
                .iter()
                .map(|u| u.to_lowercase())
                .collect(),
            mail_root: config.mail_root(),
            passwd: config.passwd_path(),
        }
    }

    /// Whether `address` is at one of the local domains.
    pub fn is_local(&self, address: &str) -> bool {
        match crate::mailbox::split_address(address) {
            Ok((_, domain)) => self.domains.contains(&domain),
            Err(_) => false,
        }
    }

    /// A user is known if configured, in the passwd database, or already has a Maildir; every
    /// local domain has a postmaster (RFC 5321 §4.5.1).
    fn is_known_user(&self, address: &str) -> bool {
        let lowered = address.to_lowercase();
        if lowered.starts_with("postmaster@") || self.users.contains(&lowered) {
            return true;
        }
        if let Ok(maildir) = crate::mailbox::maildir_for(&self.mail_root, address)
            && maildir.is_dir()
        {
            return true;
        }
        crate::auth::passwd::list(&self.passwd)
            .map(|users| users.iter().any(|u| u.to_lowercase() == lowered))
            .unwrap_or(false)
    }
}

impl RecipientPolicy for LocalPolicy {
    fn check_recipient(&self, _peer: &PeerInfo, address: &str) -> RcptVerdict {
        if !self.is_local(address) {
            return RcptVerdict::RelayDenied;
        }
        if crate::mailbox::maildir_for(&self.mail_root, address).is_err() {
            return RcptVerdict::UnknownUser;
        }
        match self.unknown_users {
            UnknownUsers::Accept => RcptVerdict::Accept,
            UnknownUsers::Reject if self.is_known_user(address) => RcptVerdict::Accept,
            UnknownUsers::Reject => RcptVerdict::UnknownUser,
        }
    }
}
