//! Which relayed messages get one-click unsubscribe header fields, and the fields themselves.
//!
//! A message is list mail when it carries `X-Ringmail-List: NAME` (the list is NAME; the field
//! is removed before sending), or when its From: domain is in `[unsubscribe] domains` (the list
//! is that domain). Each recipient gets its own token, so each gets its own copy of the header
//! block: such a message goes out in one SMTP transaction per recipient, and, when it is also
//! DKIM-signed, with one signature per recipient (the signature covers List-Unsubscribe).

use std::path::Path;

use super::token::TokenKey;
use crate::config::UnsubscribeSection;
use crate::suppression::check_list_name;

/// The header field that names a message's list.
pub const LIST_HEADER: &str = "X-Ringmail-List";

/// The `[unsubscribe]` settings with the secret loaded.
pub struct Unsubscriber {
    pub key: TokenKey,
    base_url: String,
    mailto: String,
    domains: Vec<String>,
}

impl Unsubscriber {
    /// Loads the secret; `None` when `[unsubscribe]` has no `secret_file`.
    pub fn load(section: &UnsubscribeSection) -> Result<Option<Unsubscriber>, String> {
        let Some(file) = &section.secret_file else {
            return Ok(None);
        };
        let secret = read_secret(file)?;
        Ok(Some(Unsubscriber {
            key: TokenKey::new(&secret).map_err(|e| format!("{}: {e}", file.display()))?,
            base_url: section.base_url.trim_end_matches('/').to_string(),
            mailto: section.mailto.clone(),
            domains: section
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        }))
    }

    /// An unsubscriber from parts (tests, tools).
    pub fn new(key: TokenKey, base_url: &str, mailto: &str, domains: &[&str]) -> Unsubscriber {
        Unsubscriber {
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
            mailto: mailto.to_string(),
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// The list a message belongs to, from its `X-Ringmail-List:` value (if any) or its From:
    /// domain; `None`: not list mail, no headers.
    pub fn list_of(&self, list_header: Option<&str>, from_domain: Option<&str>) -> Option<String> {
        if let Some(name) = list_header {
            let name = name.trim();
            return check_list_name(name).is_ok().then(|| name.to_string());
        }
        let from = from_domain?;
        self.domains
            .iter()
            .any(|d| d == from)
            .then(|| from.to_string())
    }

    /// The URL a recipient's token is served at.
    pub fn url(&self, list: &str, recipient: &str, now: u64) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.base_url,
            self.key.issue(list, recipient, now)
        )
    }

    /// The header fields for `recipient` of `list`, each ending in CRLF, folded so no line
    /// passes 78 characters where it can be helped (RFC 5322 §2.1.1).
    pub fn header_fields(&self, list: &str, recipient: &str, now: u64) -> Vec<u8> {
        let mut value = String::new();
        if !self.mailto.is_empty() {
            value.push_str(&format!(
                "<mailto:{}?subject=unsubscribe%20{list}>,\r\n ",
                self.mailto
            ));
        }
        value.push_str(&format!("<{}>", self.url(list, recipient, now)));
        format!(
            "List-Unsubscribe: {value}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        )
        .into_bytes()
    }
}

/// Reads the secret file: its whole content, without a trailing newline.
fn read_secret(file: &Path) -> Result<Vec<u8>, String> {
    let mut secret =
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
        secret.pop();
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsubscriber() -> Unsubscriber {
        Unsubscriber::new(
            TokenKey::new(b"0123456789abcdef").unwrap(),
            "https://mail.example.com/",
            "unsubscribe@example.com",
            &["News.Example.com"],
        )
    }

    #[test]
    fn list_mail_is_named_by_header_or_domain() {
        let u = unsubscriber();
        assert_eq!(u.list_of(Some(" weekly "), None), Some("weekly".into()));
        assert_eq!(u.list_of(Some("bad name"), Some("news.example.com")), None);
        assert_eq!(
            u.list_of(None, Some("news.example.com")),
            Some("news.example.com".into())
        );
        assert_eq!(u.list_of(None, Some("other.example")), None);
    }

    #[test]
    fn header_fields_carry_a_token_that_verifies() {
        let u = unsubscriber();
        let fields = String::from_utf8(u.header_fields("weekly", "bob@example.org", 7)).unwrap();
        let mut lines = fields.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(
                "List-Unsubscribe: <mailto:unsubscribe@example.com?subject=unsubscribe%20weekly>,"
            )
        );
        let url = lines.next().unwrap();
        let token = url
            .strip_prefix(" <https://mail.example.com/unsubscribe/")
            .and_then(|t| t.strip_suffix('>'))
            .unwrap();
        assert_eq!(u.key.verify(token).unwrap().recipient, "bob@example.org");
        assert_eq!(
            lines.next(),
            Some("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        );
    }
}
