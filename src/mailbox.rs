//! Where a local address's mail lives: `<mail root>/<domain>/<local part>/Maildir`.
//!
//! Shared by local delivery (which writes there) and POP3 (which reads there), so the two can
//! never disagree about a mailbox's path.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::address::{AddressError, mailbox_key};

/// Why an address has no mailbox path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxError {
    /// No `@`, or an empty local part or domain, or broken quoting.
    NotAnAddress,
    /// A name that could escape the mail root, name a hidden file or carry routing (`/`, `%`,
    /// `!`, `@`, a leading dot, a control character...: see [`crate::address`]).
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

impl From<AddressError> for MailboxError {
    fn from(e: AddressError) -> MailboxError {
        match e {
            AddressError::NotAnAddress | AddressError::BadQuoting => MailboxError::NotAnAddress,
            AddressError::UnsafeLocalPart(_) | AddressError::UnsafeDomain => {
                MailboxError::UnsafeName
            }
        }
    }
}

/// Splits `user@domain` into the canonical `(local part, domain)` of its mailbox: quoting
/// removed, both lowercased, routing and path characters refused ([`crate::address::mailbox_key`]).
pub fn split_address(address: &str) -> Result<(String, String), MailboxError> {
    let key = mailbox_key(address)?;
    Ok((key.local, key.domain))
}

/// The Maildir directory for `address` under `mail_root`.
pub fn maildir_for(mail_root: &Path, address: &str) -> Result<PathBuf, MailboxError> {
    let (local, domain) = split_address(address)?;
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
            maildir_for(root, "\"Bob\"@example.test").unwrap(),
            PathBuf::from("/m/example.test/bob/Maildir")
        );
        assert!(matches!(
            maildir_for(root, "a@b@c.test"),
            Err(MailboxError::UnsafeName)
        ));
        assert!(matches!(
            maildir_for(root, "\"bob@gmail.com\"@example.test"),
            Err(MailboxError::UnsafeName)
        ));
        assert_eq!(maildir_for(root, "bob"), Err(MailboxError::NotAnAddress));
        assert_eq!(maildir_for(root, "@x"), Err(MailboxError::NotAnAddress));
        for unsafe_name in ["../etc@x", "a/b@x", "a@..", ".x@y"] {
            assert!(
                matches!(
                    maildir_for(root, unsafe_name),
                    Err(MailboxError::UnsafeName)
                ),
                "{unsafe_name}"
            );
        }
    }
}
