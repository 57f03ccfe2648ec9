//! qmail-inject's header handling, pure: the message as a program wrote it in, the message as it
//! is queued out. What it does, in order:
//!
//! 1. Ends the message at a line holding a lone `.` unless `-i`/`-oi` was given (sendmail's rule
//!    for messages on stdin).
//! 2. Splits the header section from the body; a first line `From ` (an mbox separator) is
//!    dropped, as sendmail does.
//! 3. With `-t`, takes the recipients from `To:`, `Cc:` and `Bcc:`, or from `Resent-To:`,
//!    `Resent-Cc:` and `Resent-Bcc:` when the message has any of those (a resent message goes to
//!    the resent recipients only, RFC 5322 §3.6.6).
//! 4. Removes `Bcc:` and `Resent-Bcc:` (after the recipients were taken: that is what blind
//!    means), and `Return-Path:` and `Content-Length:`, which only the final delivery may write
//!    (qmail-inject removes the same).
//! 5. Adds `Date:`, `Message-ID:` and `From:` when missing.
//! 6. Ends every line in CRLF, as the queue stores messages.
//!
//! Addresses without a domain get qmail's rules ([`AddressRules::qualify`]).

use base64::Engine;

/// qmail-inject's rules for completing addresses (`inject.default_host` and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRules {
    /// Added to an address without `@` (qmail's defaulthost).
    pub default_host: String,
    /// Added to a domain without a dot (qmail's defaultdomain); empty: nothing added.
    pub default_domain: String,
    /// Replaces a trailing `+` in a domain (qmail's plusdomain).
    pub plus_domain: String,
}

impl AddressRules {
    /// `bob` → `bob@default_host`; `bob@mail` → `bob@mail.default_domain`; `bob@host+` →
    /// `bob@host.plus_domain`. An address literal (`[10.0.0.1]`) is left alone.
    pub fn qualify(&self, address: &str) -> String {
        let (local, domain) = match crate::address::split(address) {
            Ok((local, domain)) => (local, domain.to_string()),
            Err(_) if !address.contains('@') => (address, self.default_host.clone()),
            Err(_) => return address.to_string(),
        };
        let domain = if let Some(host) = domain.strip_suffix('+') {
            if host.is_empty() {
                self.plus_domain.clone()
            } else {
                format!("{host}.{}", self.plus_domain)
            }
        } else if !domain.contains('.')
            && !domain.starts_with('[')
            && !self.default_domain.is_empty()
        {
            format!("{domain}.{}", self.default_domain)
        } else {
            domain
        };
        format!("{local}@{domain}")
    }
}

/// What to add when the message lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Additions {
    /// The sender's address for an added `From:`.
    pub from_address: String,
    /// Their full name, if known.
    pub full_name: Option<String>,
    /// The domain of an added `Message-ID:` (qmail's idhost).
    pub id_host: String,
    /// Now, in Unix seconds (for `Date:` and the Message-ID).
    pub now: u64,
    /// Makes the Message-ID unique among messages of the same second (pid and randomness).
    pub unique: String,
}

/// The message ready for the queue, and the recipients its header named (for `-t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub message: Vec<u8>,
    pub header_recipients: Vec<String>,
}

/// One header field, as its lines (the first holds the name; the rest are continuations).
#[derive(Debug)]
struct Field<'a> {
    lines: Vec<&'a [u8]>,
}

impl Field<'_> {
    fn name(&self) -> String {
        let first = self.lines.first().copied().unwrap_or_default();
        let end = first.iter().position(|&b| b == b':').unwrap_or(first.len());
        String::from_utf8_lossy(&first[..end])
            .trim_end()
            .to_ascii_lowercase()
    }

    /// The unfolded value (RFC 5322 §2.2.3), after the colon.
    fn value(&self) -> String {
        let mut text = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            let line = String::from_utf8_lossy(line);
            if i == 0 {
                text.push_str(line.split_once(':').map(|(_, v)| v).unwrap_or(""));
            } else {
                text.push_str(&line);
            }
        }
        text.trim().to_string()
    }
}

/// Cuts the input at a line holding a lone `.` (sendmail without `-i`); the rest is ignored.
pub fn cut_at_dot(input: &[u8]) -> &[u8] {
    let mut start = 0;
    for line in input.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text == b"." {
            return &input[..start];
        }
        start += line.len();
    }
    input
}

/// Whether `line` starts a header field: a name of printable ASCII without `:`, then `:`.
fn is_field_start(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => {
            let name = line[..colon].trim_ascii_end();
            !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
        }
        _ => false,
    }
}

/// Applies the steps of the module docs to `input` (the message as read, line ends LF or CRLF).
pub fn prepare(input: &[u8], rules: &AddressRules, add: &Additions) -> Prepared {
    let mut lines: Vec<&[u8]> = input
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            line.strip_suffix(b"\r").unwrap_or(line)
        })
        .collect();
    if lines.first().is_some_and(|l| l.starts_with(b"From ")) {
        lines.remove(0);
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut body_start = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            body_start = i + 1;
            break;
        }
        if (line[0] == b' ' || line[0] == b'\t') && !fields.is_empty() {
            if let Some(field) = fields.last_mut() {
                field.lines.push(line);
            }
            continue;
        }
        if is_field_start(line) {
            fields.push(Field { lines: vec![line] });
            continue;
        }
        // Not a header line: the body starts here, without a blank line of its own.
        body_start = i;
        break;
    }
    let body = &lines[body_start.min(lines.len())..];

    let names: Vec<String> = fields.iter().map(Field::name).collect();
    let resent = names
        .iter()
        .any(|n| matches!(n.as_str(), "resent-to" | "resent-cc" | "resent-bcc"));
    let wanted: &[&str] = if resent {
        &["resent-to", "resent-cc", "resent-bcc"]
    } else {
        &["to", "cc", "bcc"]
    };
    let mut header_recipients = Vec::new();
    for (field, name) in fields.iter().zip(&names) {
        if wanted.contains(&name.as_str()) {
            for address in parse_address_list(&field.value()) {
                header_recipients.push(rules.qualify(&address));
            }
        }
    }

    let has = |name: &str| names.iter().any(|n| n == name);
    let mut added = Vec::new();
    if !has("date") {
        added.push(format!("Date: {}", crate::clock::rfc5322_date(add.now)));
    }
    if !has("message-id") {
        added.push(format!(
            "Message-ID: <{}.{}@{}>",
            add.now, add.unique, add.id_host
        ));
    }
    if !has("from") {
        added.push(match &add.full_name {
            Some(name) if !name.trim().is_empty() => {
                format!("From: {} <{}>", display_name(name), add.from_address)
            }
            _ => format!("From: {}", add.from_address),
        });
    }

    let mut message = Vec::with_capacity(input.len() + 256);
    for (field, name) in fields.iter().zip(&names) {
        if matches!(
            name.as_str(),
            "bcc" | "resent-bcc" | "return-path" | "content-length"
        ) {
            continue;
        }
        for line in &field.lines {
            message.extend_from_slice(line);
            message.extend_from_slice(b"\r\n");
        }
    }
    for line in &added {
        message.extend_from_slice(line.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    for line in body {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    Prepared {
        message,
        header_recipients,
    }
}

/// A full name as an RFC 5322 display name: a quoted string, or an RFC 2047 encoded word when it
/// is not ASCII.
fn display_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_ascii() {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
        )
    }
}

/// The addresses of an RFC 5322 §3.4 address list: `Name <a@b>`, `"Last, First" <c@d>`,
/// `e@f (comment)`, groups `team: g@h, i@j;`. Display names, comments and groups' names are
/// dropped; a source route in angle brackets is dropped too.
pub fn parse_address_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    let mut in_quote = false;
    let mut comment_depth = 0usize;
    let mut chars = value.chars();
    let finish = |plain: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let address = match angle.take() {
            Some(inside) => {
                let inside = inside.trim().to_string();
                // `<@route,@route:user@domain>`: the route goes (RFC 5322 §4.4).
                match inside.strip_prefix('@') {
                    Some(_) => inside
                        .split_once(':')
                        .map(|(_, a)| a.to_string())
                        .unwrap_or_default(),
                    None => inside,
                }
            }
            None => plain.trim().to_string(),
        };
        plain.clear();
        if !address.is_empty() {
            out.push(address);
        }
    };
    while let Some(c) = chars.next() {
        if comment_depth > 0 {
            match c {
                '\\' => {
                    chars.next();
                }
                '(' => comment_depth += 1,
                ')' => comment_depth -= 1,
                _ => {}
            }
            continue;
        }
        let target = if in_angle {
            angle.get_or_insert_with(String::new)
        } else {
            &mut plain
        };
        if in_quote {
            target.push(c);
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        target.push(next);
                    }
                }
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                target.push(c);
            }
            '(' => comment_depth = 1,
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            ',' if !in_angle => finish(&mut plain, &mut angle, &mut out),
            // A group's name ends here; its members follow.
            ':' if !in_angle => plain.clear(),
            ';' if !in_angle => finish(&mut plain, &mut angle, &mut out),
            c if c.is_whitespace() => {
                // Outside quotes, white space only separates words of a display name (kept
                // so that `Bob Smith bob@x` is not an address) or surrounds an address.
                if !in_angle && !plain.is_empty() && !plain.ends_with(' ') {
                    plain.push(' ');
                }
            }
            c => target.push(c),
        }
    }
    finish(&mut plain, &mut angle, &mut out);
    // A display name without angle brackets is not an address; `bob @ x` is `bob@x`.
    out.into_iter()
        .map(|a| {
            if a.contains('"') {
                a
            } else {
                a.replace(" @ ", "@").replace(" @", "@").replace("@ ", "@")
            }
        })
        .filter(|a| !a.contains(' ') || a.starts_with('"'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AddressRules {
        AddressRules {
            default_host: "host.example.test".into(),
            default_domain: "example.test".into(),
            plus_domain: "plus.example.test".into(),
        }
    }

    fn additions() -> Additions {
        Additions {
            from_address: "alice@host.example.test".into(),
            full_name: Some("Alice Example".into()),
            id_host: "id.example.test".into(),
            now: 1_800_000_000,
            unique: "42.abc".into(),
        }
    }

    #[test]
    fn qualifies_addresses_like_qmail_inject() {
        let r = rules();
        let table = [
            ("bob", "bob@host.example.test"),
            ("bob@mail", "bob@mail.example.test"),
            ("bob@mail.other.test", "bob@mail.other.test"),
            ("bob@mail+", "bob@mail.plus.example.test"),
            ("bob@[10.0.0.1]", "bob@[10.0.0.1]"),
            ("\"b c\"@mail.test", "\"b c\"@mail.test"),
        ];
        for (input, want) in table {
            assert_eq!(r.qualify(input), want, "{input}");
        }
    }

    #[test]
    fn parses_address_lists() {
        let table: &[(&str, &[&str])] = &[
            ("bob@x.test", &["bob@x.test"]),
            (
                "Bob <bob@x.test>, carol@y.test",
                &["bob@x.test", "carol@y.test"],
            ),
            (
                "\"Smith, Bob\" <bob@x.test>, (comment, here) dave@z.test (Dave)",
                &["bob@x.test", "dave@z.test"],
            ),
            (
                "team: a@x.test, b@x.test;, c@x.test",
                &["a@x.test", "b@x.test", "c@x.test"],
            ),
            ("undisclosed-recipients:;", &[]),
            ("<@relay.test:bob@x.test>", &["bob@x.test"]),
            ("\"b c\"@x.test", &["\"b c\"@x.test"]),
            ("bob", &["bob"]),
            ("Bob Smith", &[]),
            ("", &[]),
        ];
        for (input, want) in table {
            assert_eq!(parse_address_list(input), *want, "{input}");
        }
    }

    #[test]
    fn adds_missing_headers_and_removes_bcc() {
        let input =
            b"To: bob@example.test\nBcc: secret@example.test,\n carol\nSubject: hi\n\nbody\n";
        let prepared = prepare(input, &rules(), &additions());
        let text = String::from_utf8(prepared.message).unwrap();
        assert_eq!(
            text,
            "To: bob@example.test\r\nSubject: hi\r\n\
             Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n\
             Message-ID: <1800000000.42.abc@id.example.test>\r\n\
             From: \"Alice Example\" <alice@host.example.test>\r\n\r\nbody\r\n"
        );
        assert_eq!(
            prepared.header_recipients,
            vec![
                "bob@example.test",
                "secret@example.test",
                "carol@host.example.test"
            ]
        );
    }

    #[test]
    fn keeps_what_is_there() {
        let input = b"From: Bob <bob@x.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
            Message-ID: <a@b>\r\nReturn-Path: <forged@x>\r\n\r\nbody\r\n";
        let text = String::from_utf8(prepare(input, &rules(), &additions()).message).unwrap();
        assert_eq!(
            text,
            "From: Bob <bob@x.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
             Message-ID: <a@b>\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn resent_fields_replace_the_original_recipients() {
        let input = b"To: old@x.test\nResent-To: new@x.test\nResent-Bcc: hidden@x.test\n\nhi\n";
        let prepared = prepare(input, &rules(), &additions());
        assert_eq!(
            prepared.header_recipients,
            vec!["new@x.test", "hidden@x.test"]
        );
        let text = String::from_utf8(prepared.message).unwrap();
        assert!(!text.contains("hidden"), "{text}");
    }

    #[test]
    fn bodies_without_headers_and_mbox_lines() {
        let text = String::from_utf8(
            prepare(
                b"From alice Mon Jan 1\nhello there\n",
                &rules(),
                &additions(),
            )
            .message,
        )
        .unwrap();
        assert!(text.ends_with("\r\n\r\nhello there\r\n"), "{text}");
        assert!(!text.contains("From alice"), "{text}");
        let unicode = Additions {
            full_name: Some("Jörg".into()),
            ..additions()
        };
        let text = String::from_utf8(prepare(b"\nx\n", &rules(), &unicode).message).unwrap();
        assert!(
            text.contains("From: =?UTF-8?B?SsO2cmc=?= <alice@host.example.test>\r\n"),
            "{text}"
        );
    }

    #[test]
    fn lone_dot_ends_the_message_unless_told_otherwise() {
        assert_eq!(cut_at_dot(b"a\n.\nb\n"), b"a\n");
        assert_eq!(cut_at_dot(b"a\r\n.\r\nb\r\n"), b"a\r\n");
        assert_eq!(cut_at_dot(b"a\n..\nb\n"), b"a\n..\nb\n");
        assert_eq!(cut_at_dot(b"a\n.b\n"), b"a\n.b\n");
        assert_eq!(cut_at_dot(b".\n"), b"");
    }
}
