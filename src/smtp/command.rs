//! Parses one SMTP command line (without its CRLF) into a [`Command`]; RFC 5321 4.1 grammar.
//!
//! The parser knows nothing about session state: whether a command is allowed now, and whether a
//! non-ASCII address is allowed (SMTPUTF8), is the session's call.

use std::fmt;

use crate::relay::verp;

/// Longest path, RFC 5321 4.5.3.1.3 (including the brackets).
const MAX_PATH: usize = 256;
/// Longest local part, RFC 5321 4.5.3.1.1.
const MAX_LOCAL_PART: usize = 64;
/// Longest domain, RFC 5321 4.5.3.1.2.
const MAX_DOMAIN: usize = 255;

/// One client command, one variant per verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// EHLO with the client's domain or address literal.
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    /// RFC 3030 BDAT: `size` raw octets follow the command line.
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    /// RFC 3207 STARTTLS.
    StartTls,
    /// RFC 4954 `AUTH mechanism [initial-response]`; the mechanism as sent (the session
    /// matches it case-insensitively).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

/// `MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// The reverse path without brackets or source route; `""` is the null sender.
    pub address: String,
    /// RFC 1870 declared size.
    pub size: Option<u64>,
    /// RFC 6152 BODY=8BITMIME.
    pub body_8bit: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// Any ESMTP parameter was given (not allowed after plain HELO).
    pub has_params: bool,
}

/// `RCPT TO:<address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    /// The forward path without brackets or source route. `<postmaster>` (no domain, RFC 5321
    /// 4.5.1) comes through as plain `postmaster`; the session adds our domain.
    pub address: String,
}

/// Why a command line was refused. The client is at fault in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The verb is not one we implement (500 5.5.2).
    Unknown,
    /// A known verb with malformed arguments; carries the usage line (501 5.5.4).
    Syntax(&'static str),
    /// The MAIL FROM path is not a valid reverse path (501 5.1.7).
    BadSender,
    /// The RCPT TO path is not a valid forward path (501 5.1.3).
    BadRecipient,
    /// An ESMTP parameter we do not support or did not advertise (555 5.5.4).
    UnsupportedParameter,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown => f.write_str("command not recognized"),
            CommandError::Syntax(usage) => write!(f, "syntax error, usage: {usage}"),
            CommandError::BadSender => f.write_str("bad sender address syntax"),
            CommandError::BadRecipient => f.write_str("bad recipient address syntax"),
            CommandError::UnsupportedParameter => f.write_str("unsupported parameter"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Parses a command line, CRLF already removed. Verbs are case-insensitive (RFC 5321 2.4).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let (verb, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let args = args.trim_ascii();
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    let no_args = |cmd: Command, usage| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax(usage))
        }
    };
    if is("NOOP") {
        Ok(Command::Noop)
    } else if is("RCPT") {
        parse_rcpt(args).map(Command::Rcpt)
    } else if is("MAIL") {
        parse_mail(args).map(Command::Mail)
    } else if is("DATA") {
        no_args(Command::Data, "DATA")
    } else if is("BDAT") {
        parse_bdat(args)
    } else if is("EHLO") {
        parse_domain_arg(args, "EHLO hostname").map(Command::Ehlo)
    } else if is("HELO") {
        parse_domain_arg(args, "HELO hostname").map(Command::Helo)
    } else if is("RSET") {
        no_args(Command::Rset, "RSET")
    } else if is("QUIT") {
        no_args(Command::Quit, "QUIT")
    } else if is("VRFY") {
        Ok(Command::Vrfy)
    } else if is("EXPN") {
        Ok(Command::Expn)
    } else if is("HELP") {
        Ok(Command::Help)
    } else if is("STARTTLS") {
        no_args(Command::StartTls, "STARTTLS")
    } else if is("AUTH") {
        parse_auth(args)
    } else {
        Err(CommandError::Unknown)
    }
}

/// The HELO/EHLO argument: one printable word (a domain or an address literal). It ends up in
/// our `Received:` header, so control characters are refused.
fn parse_domain_arg(args: &[u8], usage: &'static str) -> Result<String, CommandError> {
    let text = std::str::from_utf8(args).map_err(|_| CommandError::Syntax(usage))?;
    let word = text.split(' ').next().unwrap_or("");
    if word.is_empty() || word.len() > MAX_DOMAIN || word.chars().any(char::is_control) {
        return Err(CommandError::Syntax(usage));
    }
    Ok(word.to_string())
}

fn parse_mail(args: &[u8]) -> Result<MailFrom, CommandError> {
    const USAGE: &str = "MAIL FROM:<address>";
    let rest = strip_prefix_ci(args, b"FROM:").ok_or(CommandError::Syntax(USAGE))?;
    let rest = std::str::from_utf8(rest).map_err(|_| CommandError::BadSender)?;
    let (path, params) =
        parse_path(rest.trim_start(), AllowVerp::Yes).ok_or(CommandError::BadSender)?;
    let address = match path {
        Path::Null => String::new(),
        Path::Mailbox(a) => a,
        Path::Postmaster => return Err(CommandError::BadSender),
    };
    let mut mail = MailFrom {
        address,
        ..MailFrom::default()
    };
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        mail.has_params = true;
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        if key.eq_ignore_ascii_case("SIZE") {
            // RFC 1870 4: size-value ::= 1*20DIGIT. Beyond u64 is beyond any limit anyway.
            let digits = value.ok_or(CommandError::Syntax("SIZE=<octets>"))?;
            if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(CommandError::Syntax("SIZE=<octets>"));
            }
            mail.size = Some(digits.parse().unwrap_or(u64::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            match value {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => mail.body_8bit = false,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => mail.body_8bit = true,
                _ => return Err(CommandError::UnsupportedParameter),
            }
        } else if key.eq_ignore_ascii_case("SMTPUTF8") && value.is_none() {
            mail.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("AUTH") && value.is_some() {
            // RFC 4954 5: the identity a relaying client claims for the message. Accepted and
            // ignored: we trust only our own AUTH, which the session records.
        } else {
            return Err(CommandError::UnsupportedParameter);
        }
    }
    Ok(mail)
}

/// `AUTH mechanism [initial-response]` (RFC 4954 4). The response is base64 or `=`; the
/// session decodes it.
fn parse_auth(args: &[u8]) -> Result<Command, CommandError> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let text = std::str::from_utf8(args).map_err(|_| CommandError::Syntax(USAGE))?;
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(CommandError::Syntax(USAGE))?;
    let initial = words.next().map(str::to_string);
    if words.next().is_some() || !mechanism.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_string(),
        initial,
    })
}

fn parse_rcpt(args: &[u8]) -> Result<RcptTo, CommandError> {
    let rest = strip_prefix_ci(args, b"TO:").ok_or(CommandError::Syntax("RCPT TO:<address>"))?;
    let rest = std::str::from_utf8(rest).map_err(|_| CommandError::BadRecipient)?;
    let (path, params) =
        parse_path(rest.trim_start(), AllowVerp::No).ok_or(CommandError::BadRecipient)?;
    let address = match path {
        Path::Null => return Err(CommandError::BadRecipient),
        Path::Mailbox(a) => a,
        Path::Postmaster => "postmaster".to_string(),
    };
    // We advertise no RCPT parameters (no DSN), so any is unsupported.
    if !params.trim().is_empty() {
        return Err(CommandError::UnsupportedParameter);
    }
    Ok(RcptTo { address })
}

fn parse_bdat(args: &[u8]) -> Result<Command, CommandError> {
    const USAGE: &str = "BDAT <size> [LAST]";
    let text = std::str::from_utf8(args).map_err(|_| CommandError::Syntax(USAGE))?;
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(CommandError::Syntax(USAGE))?;
    if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError::Syntax(USAGE));
    }
    let size = size.parse().map_err(|_| CommandError::Syntax(USAGE))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::Syntax(USAGE)),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn strip_prefix_ci<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// A parsed `<...>` path.
#[derive(Debug, PartialEq, Eq)]
enum Path {
    /// `<>`
    Null,
    /// `<postmaster>` without a domain (RFC 5321 4.5.1).
    Postmaster,
    /// `local@domain`, source route removed.
    Mailbox(String),
}

/// Whether a path may be a VERP request `prefix-@domain-@[]` (qmail's marker, see
/// [`crate::relay::verp`]). Only a reverse path may: the `[]` literal is never an address
/// anyone delivers to, so it is refused in RCPT TO. `#@[]`, the double-bounce sender, is not a
/// VERP request and stays refused: only ringmail itself sends with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllowVerp {
    Yes,
    No,
}

/// Parses `<path>` at the start of `text`; returns the path and what follows it (parameters).
fn parse_path(text: &str, verp: AllowVerp) -> Option<(Path, &str)> {
    let inner_start = text.strip_prefix('<')?;
    let close = closing_bracket(inner_start)?;
    let inner = &inner_start[..close];
    let rest = &inner_start[close + 1..];
    if !(rest.is_empty() || rest.starts_with(' ')) || inner.len() + 2 > MAX_PATH {
        return None;
    }
    if inner.is_empty() {
        return Some((Path::Null, rest));
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Some((Path::Postmaster, rest));
    }
    // RFC 5321 4.1.2: A-d-l ":" Mailbox. Source routes must be accepted and ignored (C.).
    let mailbox = match inner.strip_prefix('@') {
        Some(_) => {
            let (route, mailbox) = inner.split_once(':')?;
            if !route
                .split(',')
                .all(|hop| hop.strip_prefix('@').is_some_and(valid_domain))
            {
                return None;
            }
            mailbox
        }
        None => inner,
    };
    let valid = valid_mailbox(mailbox)
        || (verp == AllowVerp::Yes && verp::verp_base(mailbox).is_some_and(valid_mailbox));
    valid.then(|| (Path::Mailbox(mailbox.to_string()), rest))
}

/// Index of the `>` that ends the path, skipping any inside a quoted local part.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// RFC 5321 4.1.2 Mailbox = Local-part "@" ( Domain / address-literal ), with RFC 6531 UTF-8
/// allowed (the session checks SMTPUTF8 was given).
fn valid_mailbox(mailbox: &str) -> bool {
    let (local, domain) = if mailbox.starts_with('"') {
        let Some(end) = quoted_end(mailbox) else {
            return false;
        };
        let (local, rest) = mailbox.split_at(end);
        let Some(domain) = rest.strip_prefix('@') else {
            return false;
        };
        if !valid_quoted(local) {
            return false;
        }
        (local, domain)
    } else {
        let Some((local, domain)) = mailbox.split_once('@') else {
            return false;
        };
        if local.is_empty() || !local.chars().all(is_atext_or_dot) {
            return false;
        }
        (local, domain)
    };
    local.len() <= MAX_LOCAL_PART && valid_domain(domain)
}

/// Length of a quoted string at the start of `text`, including both quotes.
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

/// RFC 5321 4.1.2 qtextSMTP / quoted-pairSMTP: printable ASCII (or UTF-8), no bare `"` or `\`.
fn valid_quoted(quoted: &str) -> bool {
    quoted.len() > 2 && quoted.chars().all(|c| !c.is_control())
}

/// atext (RFC 5322 3.2.3) plus `.`; UTF-8 is allowed here and checked against SMTPUTF8 later.
/// Consecutive dots are tolerated, as real mail (and Postfix) does.
fn is_atext_or_dot(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
}

/// A domain name (letters, digits, hyphens, UTF-8 U-labels) or an address literal `[...]`.
fn valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let Some(literal) = literal.strip_suffix(']') else {
            return false;
        };
        return !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"[]\\".contains(&b));
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(address: &str) -> MailFrom {
        MailFrom {
            address: address.to_string(),
            ..MailFrom::default()
        }
    }

    fn rcpt(address: &str) -> Command {
        Command::Rcpt(RcptTo {
            address: address.to_string(),
        })
    }

    #[test]
    fn parses_commands() {
        use CommandError::*;
        let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
            ("EHLO client.test", Ok(Command::Ehlo("client.test".into()))),
            ("ehlo [127.0.0.1]", Ok(Command::Ehlo("[127.0.0.1]".into()))),
            ("HELO client.test", Ok(Command::Helo("client.test".into()))),
            ("EHLO", Err(Syntax("EHLO hostname"))),
            ("HELO ", Err(Syntax("HELO hostname"))),
            ("MAIL FROM:<a@b.test>", Ok(Command::Mail(mail("a@b.test")))),
            ("mail from: <a@b.test>", Ok(Command::Mail(mail("a@b.test")))),
            ("MAIL FROM:<>", Ok(Command::Mail(mail("")))),
            (
                "MAIL FROM:<@r1.test,@r2.test:a@b.test>",
                Ok(Command::Mail(mail("a@b.test"))),
            ),
            (
                "MAIL FROM:<\"a b\"@b.test>",
                Ok(Command::Mail(mail("\"a b\"@b.test"))),
            ),
            (
                "MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8",
                Ok(Command::Mail(MailFrom {
                    address: "a@b.test".into(),
                    size: Some(1000),
                    body_8bit: true,
                    smtputf8: true,
                    has_params: true,
                })),
            ),
            (
                "MAIL FROM:<a@b.test> body=7bit",
                Ok(Command::Mail(MailFrom {
                    address: "a@b.test".into(),
                    has_params: true,
                    ..MailFrom::default()
                })),
            ),
            ("MAIL FROM:a@b.test", Err(BadSender)),
            ("MAIL FROM:<a@b.test", Err(BadSender)),
            ("MAIL FROM:<a b@b.test>", Err(BadSender)),
            ("MAIL FROM:<a@>", Err(BadSender)),
            ("MAIL FROM:<@b.test>", Err(BadSender)),
            ("MAIL FROM:<a@b..test>", Err(BadSender)),
            ("MAIL FROM:<postmaster>", Err(BadSender)),
            ("MAIL FROM:<a@b.test>x", Err(BadSender)),
            // qmail's VERP request (MAIL FROM only), and what merely looks like one.
            (
                "MAIL FROM:<list-@example.com-@[]>",
                Ok(Command::Mail(mail("list-@example.com-@[]"))),
            ),
            (
                "MAIL FROM:<@r.test:list-@example.com-@[]> SIZE=10",
                Ok(Command::Mail(MailFrom {
                    address: "list-@example.com-@[]".into(),
                    size: Some(10),
                    has_params: true,
                    ..MailFrom::default()
                })),
            ),
            ("MAIL FROM:<#@[]>", Err(BadSender)),
            ("MAIL FROM:<a@[]>", Err(BadSender)),
            ("MAIL FROM:<-@example.com-@[]>", Err(BadSender)),
            ("MAIL FROM:<list-@-@[]>", Err(BadSender)),
            ("MAIL FROM:<list@example.com-@[]>", Err(BadSender)),
            ("MAIL FROM:<list-@example.com@[]>", Err(BadSender)),
            ("MAIL FROM:<list-@exa mple.com-@[]>", Err(BadSender)),
            ("RCPT TO:<list-@example.com-@[]>", Err(BadRecipient)),
            ("RCPT TO:<#@[]>", Err(BadRecipient)),
            ("MAIL TO:<a@b.test>", Err(Syntax("MAIL FROM:<address>"))),
            ("MAIL", Err(Syntax("MAIL FROM:<address>"))),
            ("MAIL FROM:<a@b.test> SIZE=x", Err(Syntax("SIZE=<octets>"))),
            ("MAIL FROM:<a@b.test> SIZE", Err(Syntax("SIZE=<octets>"))),
            (
                "MAIL FROM:<a@b.test> BODY=BINARYMIME",
                Err(UnsupportedParameter),
            ),
            ("MAIL FROM:<a@b.test> RET=HDRS", Err(UnsupportedParameter)),
            ("RCPT TO:<c@d.test>", Ok(rcpt("c@d.test"))),
            ("RCPT TO:<Postmaster>", Ok(rcpt("postmaster"))),
            ("RCPT TO:<@hop.test:c@d.test>", Ok(rcpt("c@d.test"))),
            ("RCPT TO:<c@[192.0.2.1]>", Ok(rcpt("c@[192.0.2.1]"))),
            ("RCPT TO:<jö@dömain.test>", Ok(rcpt("jö@dömain.test"))),
            ("RCPT TO:<>", Err(BadRecipient)),
            ("RCPT TO:<c>", Err(BadRecipient)),
            ("RCPT TO:<@hop.test,c@d.test>", Err(BadRecipient)),
            ("RCPT TO:<c@d.test> NOTIFY=NEVER", Err(UnsupportedParameter)),
            ("RCPT FROM:<c@d.test>", Err(Syntax("RCPT TO:<address>"))),
            ("DATA", Ok(Command::Data)),
            ("data ", Ok(Command::Data)),
            ("DATA x", Err(Syntax("DATA"))),
            (
                "BDAT 100",
                Ok(Command::Bdat {
                    size: 100,
                    last: false,
                }),
            ),
            (
                "bdat 0 last",
                Ok(Command::Bdat {
                    size: 0,
                    last: true,
                }),
            ),
            ("BDAT", Err(Syntax("BDAT <size> [LAST]"))),
            ("BDAT -1", Err(Syntax("BDAT <size> [LAST]"))),
            (
                "BDAT 99999999999999999999",
                Err(Syntax("BDAT <size> [LAST]")),
            ),
            ("BDAT 1 LAST x", Err(Syntax("BDAT <size> [LAST]"))),
            ("BDAT 1 FIRST", Err(Syntax("BDAT <size> [LAST]"))),
            ("RSET", Ok(Command::Rset)),
            ("RSET x", Err(Syntax("RSET"))),
            ("NOOP whatever", Ok(Command::Noop)),
            ("QUIT", Ok(Command::Quit)),
            ("VRFY bob", Ok(Command::Vrfy)),
            ("EXPN list", Ok(Command::Expn)),
            ("HELP", Ok(Command::Help)),
            ("STARTTLS", Ok(Command::StartTls)),
            ("STARTTLS x", Err(Syntax("STARTTLS"))),
            (
                "AUTH plain AGJvYgBw",
                Ok(Command::Auth {
                    mechanism: "plain".into(),
                    initial: Some("AGJvYgBw".into()),
                }),
            ),
            ("AUTH", Err(Syntax("AUTH mechanism [initial-response]"))),
            (
                "AUTH PLAIN a b",
                Err(Syntax("AUTH mechanism [initial-response]")),
            ),
            (
                "MAIL FROM:<a@b.test> AUTH=<>",
                Ok(Command::Mail(MailFrom {
                    has_params: true,
                    ..mail("a@b.test")
                })),
            ),
            ("", Err(Unknown)),
            ("NOOPX", Err(Unknown)),
        ];
        for (line, want) in cases {
            assert_eq!(parse_command(line.as_bytes()), want, "{line:?}");
        }
    }

    #[test]
    fn enforces_path_lengths() {
        let long_local = format!("MAIL FROM:<{}@b.test>", "a".repeat(65));
        assert_eq!(
            parse_command(long_local.as_bytes()),
            Err(CommandError::BadSender)
        );
        let long_path = format!("RCPT TO:<a@{}.test>", "b.".repeat(130));
        assert_eq!(
            parse_command(long_path.as_bytes()),
            Err(CommandError::BadRecipient)
        );
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert_eq!(
            parse_command(b"MAIL FROM:<\xff@b.test>"),
            Err(CommandError::BadSender)
        );
        assert_eq!(
            parse_command(b"EHLO \xff"),
            Err(CommandError::Syntax("EHLO hostname"))
        );
    }
}
