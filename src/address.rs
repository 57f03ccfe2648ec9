//! Canonical addresses: the one place that decides when two spellings of an address are the same
//! mailbox, and which local parts may ever become a directory name.
//!
//! Two forms, for two uses:
//!
//! - [`canonical_address`]: the address as it is stored in the queue and sent onward. RFC 5321
//!   §4.1.2 makes `"Bob"@example.test` and `Bob@example.test` the same address ("a quoted
//!   string should not be used unless needed"), so quoting that is not needed is removed; a local
//!   part that needs its quotes keeps them, untouched. Case is kept: a remote host may treat
//!   local parts case-sensitively (RFC 5321 §2.4), so we never change what we relay.
//! - [`mailbox_key`]: the `(local part, domain)` that names a local mailbox (a directory, a user,
//!   a passwd entry). Quotes and backslash escapes are decoded, and both parts are lowercased:
//!   RFC 5321 lets the receiving host decide case for its own mailboxes, and qmail
//!   (qmail-getpw and qmail-users lowercase the local part before any lookup) and Postfix
//!   (local(8) folds the recipient to lower case) both make `Bob` and `bob` one mailbox. A
//!   mailbox per spelling would split one person's mail.
//!
//! A local part that holds `/`, `\`, `%`, `!`, `@`, `"`, white space or a control character,
//! starts with `.`, or holds `..` never becomes a mailbox key: such names could escape the mail
//! root, name hidden files, or carry routing that only a relay should interpret
//! (`"bob@gmail.com"@example.test`, `bob%gmail.com@example.test`). The SMTP server refuses them
//! at RCPT (553 5.1.3) and local delivery bounces them; nothing creates a directory for them.

use std::fmt;

/// Longest local part, RFC 5321 §4.5.3.1.1.
const MAX_LOCAL_PART: usize = 64;

/// Why an address has no canonical mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    /// No `@`, or an empty local part or domain.
    NotAnAddress,
    /// A quoted local part without its closing quote, or with a dangling backslash.
    BadQuoting,
    /// A local part that may not name a mailbox; the text says what is wrong with it.
    UnsafeLocalPart(&'static str),
    /// A domain that may not name a directory (`/`, a leading `.`, a control character).
    UnsafeDomain,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::NotAnAddress => f.write_str("not a user@domain address"),
            AddressError::BadQuoting => f.write_str("unterminated quoting in the local part"),
            AddressError::UnsafeLocalPart(why) => write!(f, "the local part {why}"),
            AddressError::UnsafeDomain => {
                f.write_str("the domain is not a domain name or address literal")
            }
        }
    }
}

impl std::error::Error for AddressError {}

/// A local mailbox's name: the decoded, lowercased local part and the lowercased domain, both
/// safe to use as a directory name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxKey {
    pub local: String,
    pub domain: String,
}

impl fmt::Display for MailboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Splits `address` into local part and domain at the `@` that ends the local part: after a
/// quoted local part, or else the last `@` (the domain holds none).
pub fn split(address: &str) -> Result<(&str, &str), AddressError> {
    let split_at = if address.starts_with('"') {
        let end = quoted_end(address).ok_or(AddressError::BadQuoting)?;
        if address.as_bytes().get(end) != Some(&b'@') {
            return Err(AddressError::NotAnAddress);
        }
        end
    } else {
        address.rfind('@').ok_or(AddressError::NotAnAddress)?
    };
    let (local, domain) = (&address[..split_at], &address[split_at + 1..]);
    if local.is_empty() || domain.is_empty() {
        return Err(AddressError::NotAnAddress);
    }
    Ok((local, domain))
}

/// The text a local part stands for: a quoted string's content with its backslash escapes
/// decoded (RFC 5321 §4.1.2 quoted-pairSMTP), or an unquoted local part as it is.
pub fn unquote_local_part(local: &str) -> Result<String, AddressError> {
    let Some(inner) = local.strip_prefix('"') else {
        return Ok(local.to_string());
    };
    let inner = inner.strip_suffix('"').ok_or(AddressError::BadQuoting)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next().ok_or(AddressError::BadQuoting)?),
            '"' => return Err(AddressError::BadQuoting),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The local part in its canonical wire form: unquoted when the quotes are not needed (the
/// content is a dot-atom, RFC 5322 §3.2.3), otherwise exactly as given.
pub fn canonical_local_part(local: &str) -> String {
    if local.starts_with('"')
        && let Ok(text) = unquote_local_part(local)
        && is_dot_atom(&text)
    {
        return text;
    }
    local.to_string()
}

/// `address` with unneeded quoting removed from its local part (see the module docs); anything
/// that is not a plain `local@domain` (the null sender, `postmaster`, a VERP request) comes back
/// unchanged.
pub fn canonical_address(address: &str) -> String {
    match split(address) {
        Ok((local, domain)) if local.starts_with('"') => {
            format!("{}@{domain}", canonical_local_part(local))
        }
        _ => address.to_string(),
    }
}

/// The mailbox `address` names here, or why it may not name one (see the module docs).
pub fn mailbox_key(address: &str) -> Result<MailboxKey, AddressError> {
    let (local, domain) = split(address)?;
    let local = unquote_local_part(local)?;
    check_local_part(&local)?;
    // Letters, digits, `-`, `_` and dots (or an address literal's brackets and colons), and
    // UTF-8 U-labels: nothing else can be a domain, and nothing else may name a directory.
    let domain_char = |c: char| {
        c.is_ascii_alphanumeric() || "-_.[]:".contains(c) || (!c.is_ascii() && c.is_alphanumeric())
    };
    if domain.starts_with('.') || domain.contains("..") || !domain.chars().all(domain_char) {
        return Err(AddressError::UnsafeDomain);
    }
    Ok(MailboxKey {
        local: local.to_lowercase(),
        domain: domain.to_ascii_lowercase(),
    })
}

/// Whether a decoded local part may name a mailbox.
fn check_local_part(local: &str) -> Result<(), AddressError> {
    let refuse = |why| Err(AddressError::UnsafeLocalPart(why));
    if local.is_empty() {
        return refuse("is empty");
    }
    if local.len() > MAX_LOCAL_PART {
        return refuse("is longer than 64 octets");
    }
    if local.contains(['%', '!', '@']) {
        return refuse("holds routing (`%`, `!` or `@`)");
    }
    if local.contains(['/', '\\']) {
        return refuse("holds a slash or backslash");
    }
    if local.contains(|c: char| c.is_control() || c.is_whitespace() || c == '"') {
        return refuse("holds a control character, white space or a quote");
    }
    if local.starts_with('.') || local.contains("..") {
        return refuse("starts with a dot or holds `..`");
    }
    Ok(())
}

/// RFC 5322 §3.2.3 dot-atom-text (with RFC 6531 UTF-8): atoms of atext joined by single dots.
fn is_dot_atom(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                })
        })
}

/// Index just past the closing quote of the quoted string that starts `text`.
fn quoted_end(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate().skip(1) {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_addresses_drop_needless_quotes_only() {
        let table = [
            ("\"Bob\"@example.test", "Bob@example.test"),
            ("\"bob.smith\"@example.test", "bob.smith@example.test"),
            ("\"b\\ob\"@example.test", "bob@example.test"),
            ("bob@example.test", "bob@example.test"),
            ("Bob@Example.TEST", "Bob@Example.TEST"),
            // Quotes that are needed stay, exactly as given.
            ("\"b c\"@example.test", "\"b c\"@example.test"),
            (
                "\"bob@gmail.com\"@example.test",
                "\"bob@gmail.com\"@example.test",
            ),
            ("\".bob\"@example.test", "\".bob\"@example.test"),
            ("\"a..b\"@example.test", "\"a..b\"@example.test"),
            ("\"\"@example.test", "\"\"@example.test"),
            // Not plain addresses: unchanged.
            ("", ""),
            ("postmaster", "postmaster"),
            ("list-@lists.test-@[]", "list-@lists.test-@[]"),
            ("\"unterminated@example.test", "\"unterminated@example.test"),
        ];
        for (input, want) in table {
            assert_eq!(canonical_address(input), want, "{input}");
        }
    }

    #[test]
    fn quoted_and_unquoted_forms_are_one_mailbox() {
        let key = mailbox_key("bob@example.test").unwrap();
        for form in [
            "\"Bob\"@example.test",
            "BOB@EXAMPLE.TEST",
            "\"b\\ob\"@Example.Test",
            "Bob@example.test",
        ] {
            assert_eq!(mailbox_key(form).unwrap(), key, "{form}");
        }
        assert_eq!(key.to_string(), "bob@example.test");
    }

    #[test]
    fn routing_and_path_characters_never_name_a_mailbox() {
        let refused = [
            "\"bob@gmail.com\"@example.test",
            "bob%gmail.com@example.test",
            "gmail.com!bob@example.test",
            "a@b@example.test",
            "\"a/b\"@example.test",
            "a/b@example.test",
            "\"..\"@example.test",
            "\".hidden\"@example.test",
            ".hidden@example.test",
            "a..b@example.test",
            "\"a\\\\b\"@example.test",
            "\"a\u{0}b\"@example.test",
            "\"a\tb\"@example.test",
            "\"a\\\"b\"@example.test",
            "\"b c\"@example.test",
            "\"\"@example.test",
            "bob@../etc",
            "bob@a/b",
            "bob@.example.test",
            "\"a\"@\"b\"@example.test",
            "bob@exa mple.test",
            "bob@example..test",
        ];
        for address in refused {
            assert!(mailbox_key(address).is_err(), "{address:?}");
        }
        assert_eq!(
            mailbox_key("\"bob@gmail.com\"@example.test"),
            Err(AddressError::UnsafeLocalPart(
                "holds routing (`%`, `!` or `@`)"
            ))
        );
        let long = format!("{}@example.test", "a".repeat(65));
        assert!(mailbox_key(&long).is_err());
    }

    #[test]
    fn malformed_addresses() {
        assert_eq!(mailbox_key("bob"), Err(AddressError::NotAnAddress));
        assert_eq!(mailbox_key("@x.test"), Err(AddressError::NotAnAddress));
        assert_eq!(mailbox_key("bob@"), Err(AddressError::NotAnAddress));
        assert_eq!(mailbox_key("\"bob@x.test"), Err(AddressError::BadQuoting));
        assert_eq!(
            mailbox_key("\"bob\"x@x.test"),
            Err(AddressError::NotAnAddress)
        );
        assert_eq!(unquote_local_part("\"a\\\""), Err(AddressError::BadQuoting));
    }

    /// The fuzz target's invariants (fuzz/fuzz_targets/address.rs) on hand-picked inputs.
    #[test]
    fn invariants_hold_on_tricky_inputs() {
        let inputs = [
            "\"a\"@\"b\"@c.test",
            "\"a.b\"@c.test",
            "\"a\\\"b\"@c.test",
            "\"\"@c.test",
            "\"bob\"",
            "\"a\"b@c.test",
            "\"Ünï\"@Bücher.test",
            "a@b@c@d",
            "\"x@y\"@[127.0.0.1]",
            "\"..\"@x",
            "\\@x",
            "@",
            "\"",
            "\"\\",
        ];
        for address in inputs {
            let canonical = canonical_address(address);
            assert_eq!(canonical_address(&canonical), canonical, "{address}");
            if let Ok(key) = mailbox_key(address) {
                for part in [&key.local, &key.domain] {
                    assert!(!part.is_empty() && !part.starts_with('.') && !part.contains(".."));
                    assert!(
                        !part.contains(['/', '\\', '\0', '@', '"', '%', '!']),
                        "{address}"
                    );
                }
                assert_eq!(mailbox_key(&canonical), Ok(key), "{address}");
            }
        }
    }

    #[test]
    fn address_literals_name_mailboxes() {
        let key = mailbox_key("bob@[192.0.2.1]").unwrap();
        assert_eq!(key.domain, "[192.0.2.1]");
        assert!(mailbox_key("bob@[IPv6:2001:db8::1]").is_ok());
    }

    #[test]
    fn unicode_local_parts_fold_case() {
        let key = mailbox_key("Jörg@Bücher.test").unwrap();
        assert_eq!(key.local, "jörg");
        // Domains are compared ASCII case-insensitively only (U-labels are not folded).
        assert_eq!(key.domain, "bücher.test");
    }
}
