//! Where a local address's mail lives: `<mail root>/<domain>/<local part>/Maildir`.
//!
//! Shared by local delivery (which writes there) and POP3 (which reads there), so the two can
//! never disagree about a mailbox's path.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why an address has no mailbox path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxError {
    /// No `@`, or an empty local part or domain.
    NotAnAddress,
    /// A part that would escape the mail root or name a hidden file (`/`, `\0`, leading `.`).
    UnsafeName,
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::NotAnAddress => f.write_str("not a user@domain address"),
            MailboxError::UnsafeName => {
                f.write_str("address contains characters not allowed in a mailbox name")
            }
        }
    }
}

impl std::error::Error for MailboxError {}

/// Splits `user@domain` at the last `@` and returns `(local part, domain)`, both lowercased.
/// Local parts are matched case-insensitively, as qmail does.
pub fn split_address(address: &str) -> Result<(String, String), MailboxError> {
    let (local, domain) = address.rsplit_once('@').ok_or(MailboxError::NotAnAddress)?;
    if local.is_empty() || domain.is_empty() {
        return Err(MailboxError::NotAnAddress);
    }
    Ok((local.to_lowercase(), domain.to_ascii_lowercase()))
}

/// The Maildir directory for `address` under `mail_root`.
pub fn maildir_for(mail_root: &Path, address: &str) -> Result<PathBuf, MailboxError> {
    let (local, domain) = split_address(address)?;
    for part in [&local, &domain] {
        if part.starts_with('.') || part.contains(['/', '\0']) {
            return Err(MailboxError::UnsafeName);
        }
    }
    Ok(mail_root.join(domain).join(local).join("Maildir"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_addresses_to_maildirs() {
        let root = Path::new("/m");
        assert_eq!(
            maildir_for(root, "Bob@Example.TEST").unwrap(),
            PathBuf::from("/m/example.test/bob/Maildir")
        );
        assert_eq!(
            maildir_for(root, "a@b@c.test").unwrap(),
            PathBuf::from("/m/c.test/a@b/Maildir")
        );
        assert_eq!(maildir_for(root, "bob"), Err(MailboxError::NotAnAddress));
        assert_eq!(maildir_for(root, "@x"), Err(MailboxError::NotAnAddress));
        assert_eq!(maildir_for(root, "../etc@x"), Err(MailboxError::UnsafeName));
        assert_eq!(maildir_for(root, "a/b@x"), Err(MailboxError::UnsafeName));
        assert_eq!(maildir_for(root, "a@.."), Err(MailboxError::UnsafeName));
    }
}
