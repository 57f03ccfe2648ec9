//! qmail's variable envelope return paths (VERP): one reverse path per recipient, so that a
//! bounce names the recipient that failed even when the remote's bounce is unreadable.
//!
//! A sender of the form `prefix-@domain-@[]` asks for VERP. The `@[]` (an empty address
//! literal) is qmail's marker: no one can deliver to it, so it cannot be mistaken for a real
//! address. For recipient `local@rdomain` the reverse path becomes `prefix-local=rdomain@domain`
//! (qmail-send does the same; ezmlm and most list managers decode it). The `prefix-` keeps its
//! dash, exactly as given: `list-@example.com-@[]` and `bob@x.test` give
//! `list-bob=x.test@example.com`.
//!
//! Rules, beyond qmail's plain concatenation:
//! - `prefix` (before the last `-`) and `domain` must be non-empty, and the prefix must be a
//!   plain dot-atom local part (RFC 5321 §4.1.2); anything else is not a VERP request.
//! - Case is kept as given (RFC 5321 §2.4: local parts are case-sensitive).
//! - When the recipient cannot be folded into a valid dot-atom local part (a quoted local part,
//!   an address literal as its domain, no `@`), or the result's local part would be longer than
//!   64 octets (RFC 5321 §4.5.3.1.1, which ringmail's own SMTP server enforces, so a bounce to
//!   a longer address sent to us would be refused), the reverse path is the base address
//!   `prefix-@domain`: the bounce still reaches the list owner, only without the recipient.

/// The marker that ends a VERP sender (qmail's).
const VERP_SUFFIX: &str = "-@[]";

/// Longest local part we make, RFC 5321 §4.5.3.1.1.
const MAX_LOCAL_PART: usize = 64;

/// Whether `sender` is a VERP request (`prefix-@domain-@[]`).
pub fn is_verp(sender: &str) -> bool {
    split(sender).is_some()
}

/// The base address of a VERP sender, `prefix-@domain`: where mail goes that names no one
/// recipient (a bounce listing several). `None` when `sender` is not a VERP request.
pub fn verp_base(sender: &str) -> Option<&str> {
    split(sender)?;
    sender.strip_suffix(VERP_SUFFIX)
}

/// The reverse path to use for `recipient` when the message was sent with `sender`:
/// `prefix-local=rdomain@domain` for a VERP sender, `None` when `sender` is not a VERP request
/// (the caller then uses `sender` unchanged).
pub fn verp_sender(sender: &str, recipient: &str) -> Option<String> {
    let (local, domain) = split(sender)?;
    let encoded = match recipient.rsplit_once('@') {
        Some((rlocal, rdomain))
            if dot_atom(rlocal)
                && dot_atom(rdomain)
                && local.len() + rlocal.len() + 1 + rdomain.len() <= MAX_LOCAL_PART =>
        {
            format!("{local}{rlocal}={rdomain}")
        }
        _ => local.to_string(),
    };
    Some(format!("{encoded}@{domain}"))
}

/// Splits `prefix-@domain-@[]` into (`prefix-`, `domain`), or `None` when it is not VERP.
fn split(sender: &str) -> Option<(&str, &str)> {
    let base = sender.strip_suffix(VERP_SUFFIX)?;
    let (local, domain) = base.rsplit_once('@')?;
    let prefix = local.strip_suffix('-')?;
    let valid_domain = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        });
    (!prefix.is_empty() && dot_atom(local) && valid_domain).then_some((local, domain))
}

/// Non-empty atext and dots (RFC 5322 §3.2.3), UTF-8 allowed (RFC 6531): safe to paste into
/// a local part.
fn dot_atom(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verp_senders() {
        let table: &[(&str, &str, Option<&str>)] = &[
            (
                "list-@example.com-@[]",
                "bob@x.test",
                Some("list-bob=x.test@example.com"),
            ),
            (
                "owner-list-@lists.example.com-@[]",
                "carol@y.test",
                Some("owner-list-carol=y.test@lists.example.com"),
            ),
            // `=` and `+` in the recipient are kept; decoders split at the last `=`.
            (
                "list-@example.com-@[]",
                "a=b+tag@x.test",
                Some("list-a=b+tag=x.test@example.com"),
            ),
            // Case is kept, in the sender and in the recipient.
            (
                "List-@Example.COM-@[]",
                "Bob.Smith@X.Test",
                Some("List-Bob.Smith=X.Test@Example.COM"),
            ),
            // Not foldable into a local part: the base address.
            (
                "list-@example.com-@[]",
                "\"a b\"@x.test",
                Some("list-@example.com"),
            ),
            (
                "list-@example.com-@[]",
                "bob@[192.0.2.1]",
                Some("list-@example.com"),
            ),
            (
                "list-@example.com-@[]",
                "postmaster",
                Some("list-@example.com"),
            ),
            ("list-@example.com-@[]", "", Some("list-@example.com")),
            (
                "list-@example.com-@[]",
                "a@b.test\r\nBcc: x",
                Some("list-@example.com"),
            ),
            // Too long a local part for our own server to accept back: the base address.
            (
                "list-@example.com-@[]",
                "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz@xyz.test",
                Some("list-@example.com"),
            ),
            // Not VERP: nothing changes.
            ("alice@example.com", "bob@x.test", None),
            ("", "bob@x.test", None),
            ("#@[]", "bob@x.test", None),
            ("-@example.com-@[]", "bob@x.test", None),
            ("list-@-@[]", "bob@x.test", None),
            ("list@example.com-@[]", "bob@x.test", None),
            ("list-@example.com@[]", "bob@x.test", None),
            ("list-example.com-@[]", "bob@x.test", None),
            ("-@[]", "bob@x.test", None),
            ("a b-@example.com-@[]", "bob@x.test", None),
            ("list-@exa\r\nmple.com-@[]", "bob@x.test", None),
            ("list-@example..com-@[]", "bob@x.test", None),
        ];
        for (sender, recipient, want) in table {
            assert_eq!(
                verp_sender(sender, recipient).as_deref(),
                *want,
                "{sender:?} {recipient:?}"
            );
            assert_eq!(is_verp(sender), want.is_some(), "{sender:?}");
        }
    }

    #[test]
    fn base_addresses() {
        assert_eq!(
            verp_base("list-@example.com-@[]"),
            Some("list-@example.com")
        );
        assert_eq!(verp_base("alice@example.com"), None);
        assert_eq!(verp_base("#@[]"), None);
    }
}
