//! `POST /api/inject`, sans-IO: the JSON body, `{{name}}` substitution, and one personalised
//! message per recipient, checked by the same address syntax, recipient policy and size rule as
//! SMTP. Committing the messages is the shards' job (shard_service.rs); nothing here does I/O.
//!
//! ```json
//! {"from": "news@example.com",
//!  "recipients": [{"to": "ann@example.org", "vars": {"name": "Ann"}}],
//!  "subject": "Hello {{name}}", "text": "Dear {{name}}, ...", "html": "<p>Dear {{name}}</p>",
//!  "headers": {"X-Campaign": "42"}, "header_from": "News <news@example.com>"}
//! ```
//!
//! or, instead of `subject`/`text`/`html`/`headers`/`header_from`, `"message": "<RFC 5322 text>"`.
//!
//! Every `{{name}}` (letters, digits, `_`, `-`, `.`) is replaced by the recipient's value;
//! `{{to}}` is the recipient's address unless `vars` sets it. A placeholder with no value
//! refuses that recipient (a half-personalised mail is worse than none). Values may not hold
//! CR or LF, so no value can add a header.

use crate::clock::unix_seconds;
use crate::envelope::Envelope;
use crate::smtp::{Command, PeerInfo, RcptVerdict, RecipientPolicy, parse_command};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// The envelope sender (MAIL FROM); `""` is the null sender.
    pub from: String,
    pub recipients: Vec<RecipientSpec>,
    /// A whole RFC 5322 message (headers, blank line, body), used as the template.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    /// Extra header fields for the built message.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The `From:` header of the built message (default: the envelope sender).
    #[serde(default)]
    pub header_from: Option<String>,
}

/// One recipient and its substitution values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientSpec {
    pub to: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// What a whole request is refused for (400, before any message is made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    NoRecipients,
    TooManyRecipients(usize),
    /// Neither `message` nor `subject`/`text`/`html`, or both kinds.
    Content(&'static str),
    BadSender(String),
    BadHeader(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NoRecipients => f.write_str("recipients is empty"),
            RequestError::TooManyRecipients(max) => {
                write!(f, "too many recipients (limit {max} per request)")
            }
            RequestError::Content(what) => f.write_str(what),
            RequestError::BadSender(from) => write!(f, "from: `{from}` is not a valid sender"),
            RequestError::BadHeader(name) => write!(f, "headers: {name}"),
        }
    }
}

/// The rules a request is checked against.
pub struct InjectRules<'a> {
    pub hostname: &'a str,
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// The most message bytes one call builds ([`MAX_TOTAL_BYTES`] in the server).
    pub max_total_bytes: usize,
    pub policy: &'a dyn RecipientPolicy,
    /// The HTTP client, as the recipient policy sees it (authenticated: it had the token).
    pub peer: PeerInfo,
    pub now: SystemTime,
}

/// One recipient's message, ready to commit, or why it was refused.
pub type Prepared = Result<(Envelope, Vec<u8>), String>;

/// Checks the request and builds one message per recipient, in request order.
pub fn prepare(
    request: &InjectRequest,
    rules: &InjectRules<'_>,
) -> Result<Vec<Prepared>, RequestError> {
    if request.recipients.is_empty() {
        return Err(RequestError::NoRecipients);
    }
    if request.recipients.len() > rules.max_recipients {
        return Err(RequestError::TooManyRecipients(rules.max_recipients));
    }
    let built = request.subject.is_some() || request.text.is_some() || request.html.is_some();
    match (&request.message, built) {
        (Some(_), true) => {
            return Err(RequestError::Content(
                "give either message or subject/text/html, not both",
            ));
        }
        (None, false) => {
            return Err(RequestError::Content(
                "no content: give message (a whole RFC 5322 message) or subject with text and/or html",
            ));
        }
        (Some(_), false) if !request.headers.is_empty() || request.header_from.is_some() => {
            return Err(RequestError::Content(
                "headers and header_from go with subject/text/html; a whole message carries its own",
            ));
        }
        _ => {}
    }
    let sender = check_sender(&request.from)?;
    for name in request.headers.keys() {
        check_header_name(name)?;
    }
    // Every message is held in memory until it is committed: the whole call has a cap.
    let mut total = 0usize;
    Ok(request
        .recipients
        .iter()
        .map(|recipient| {
            if total > rules.max_total_bytes {
                return Err(format!(
                    "452 4.5.3 this call's messages pass {} bytes in all; send the rest in another call",
                    rules.max_total_bytes
                ));
            }
            let prepared = prepare_one(request, &sender, recipient, rules);
            if let Ok((_, message)) = &prepared {
                total += message.len();
            }
            prepared
        })
        .collect())
}

/// The most message bytes one call builds (they wait in memory for their commit).
pub const MAX_TOTAL_BYTES: usize = 256 << 20;

fn prepare_one(
    request: &InjectRequest,
    sender: &str,
    recipient: &RecipientSpec,
    rules: &InjectRules<'_>,
) -> Prepared {
    let address = check_recipient(&recipient.to)?;
    match rules.policy.check_recipient(&rules.peer, &address) {
        RcptVerdict::Accept => {}
        verdict => return Err(verdict_text(&verdict, &address)),
    }
    if let Some((name, value)) = recipient
        .vars
        .iter()
        .find(|(_, v)| v.contains(['\r', '\n']))
    {
        let _ = value;
        return Err(format!("vars.{name}: values may not contain line breaks"));
    }
    let vars = Vars {
        values: &recipient.vars,
        to: &address,
    };
    let body = match &request.message {
        Some(template) => raw_message(&substitute(template, &vars)?, rules)?,
        None => built_message(request, sender, &address, &vars, rules)?,
    };
    let trace = trace_header(rules, &address);
    let mut message = Vec::with_capacity(trace.len() + body.len());
    message.extend_from_slice(trace.as_bytes());
    message.extend_from_slice(&body);
    if message.len() > rules.max_message_size {
        return Err(format!(
            "message too big: {} bytes (limit {})",
            message.len(),
            rules.max_message_size
        ));
    }
    let envelope = Envelope {
        sender: sender.to_string(),
        recipients: vec![address],
        received_at: unix_seconds(rules.now),
        smtputf8: !message.is_ascii() || !sender.is_ascii(),
        body_8bit: !message.is_ascii(),
    };
    Ok((envelope, message))
}

/// The same syntax rules as `MAIL FROM:<...>`.
fn check_sender(from: &str) -> Result<String, RequestError> {
    match parse_command(format!("MAIL FROM:<{from}> SMTPUTF8").as_bytes()) {
        Ok(Command::Mail(mail)) if !from.contains(['<', '>']) => Ok(mail.address),
        _ => Err(RequestError::BadSender(from.to_string())),
    }
}

/// The same syntax rules as `RCPT TO:<...>`.
fn check_recipient(to: &str) -> Result<String, String> {
    match parse_command(format!("RCPT TO:<{to}>").as_bytes()) {
        Ok(Command::Rcpt(rcpt)) if !to.contains(['<', '>']) && to.contains('@') => Ok(rcpt.address),
        _ => Err(format!("`{to}` is not a valid recipient address")),
    }
}

/// Header names a built message sets itself (or that would break its MIME structure).
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "received",
];

fn check_header_name(name: &str) -> Result<(), RequestError> {
    // RFC 5322 §3.6.8: printable ASCII except the colon.
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(RequestError::BadHeader(format!(
            "`{name}` is not a header field name"
        )));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(RequestError::BadHeader(format!(
            "{name} is set from the request's own fields, not headers"
        )));
    }
    Ok(())
}

fn verdict_text(verdict: &RcptVerdict, address: &str) -> String {
    match verdict {
        RcptVerdict::Accept => "accepted".to_string(),
        RcptVerdict::UnknownUser => format!("550 5.1.1 <{address}>: no such user here"),
        RcptVerdict::RelayDenied => format!("554 5.7.1 <{address}>: relaying denied"),
        RcptVerdict::BadAddress => {
            format!("553 5.1.3 <{address}>: routing characters in the address are not accepted")
        }
        RcptVerdict::BadDestination => {
            format!("553 5.1.2 <{address}>: this server does not deliver there")
        }
        RcptVerdict::TempFail(why) => format!("451 4.3.0 <{address}>: {why}"),
    }
}

/// One recipient's substitution values.
struct Vars<'a> {
    values: &'a BTreeMap<String, String>,
    to: &'a str,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(value) => Some(value),
            None if name == "to" => Some(self.to),
            None => None,
        }
    }
}

/// `template` with every `{{name}}` replaced; a `{{...}}` that is not a name stays as it is.
fn substitute(template: &str, vars: &Vars<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = after[..close].trim();
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if is_name {
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => return Err(format!("no value for {{{{{name}}}}}")),
            }
        } else {
            out.push_str(&rest[open..open + 2 + close + 2]);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A whole message from the request: line ends made CRLF (RFC 5322 §2.3), Message-ID and Date
/// added when missing (RFC 5322 §3.6: Date is required; Message-ID SHOULD be present).
fn raw_message(text: &str, rules: &InjectRules<'_>) -> Result<Vec<u8>, String> {
    let mut crlf = String::with_capacity(text.len() + text.len() / 32);
    for line in text.split_inclusive('\n') {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        crlf.push_str(line);
        crlf.push_str("\r\n");
    }
    let header_end = crlf.find("\r\n\r\n").map(|i| i + 2);
    let headers = &crlf[..header_end.unwrap_or(crlf.len())];
    let fields: Vec<&str> = headers
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
        .collect();
    if fields.is_empty() || fields.iter().any(|f| !f.contains(':')) {
        return Err(
            "message: not an RFC 5322 message (header fields, a blank line, the body)".to_string(),
        );
    }
    let has = |name: &str| {
        fields.iter().any(|f| {
            f.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    };
    let mut added = String::new();
    if !has("Message-ID") {
        let _ = write!(added, "Message-ID: {}\r\n", message_id(rules));
    }
    if !has("Date") {
        let _ = write!(
            added,
            "Date: {}\r\n",
            crate::clock::rfc5322_date(unix_seconds(rules.now))
        );
    }
    let mut out = Vec::with_capacity(added.len() + crlf.len() + 2);
    out.extend_from_slice(added.as_bytes());
    out.extend_from_slice(crlf.as_bytes());
    if header_end.is_none() {
        // Headers only: the empty body still needs the blank line after the header section.
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// A built message (mail-builder) from subject/text/html/headers.
fn built_message(
    request: &InjectRequest,
    sender: &str,
    to: &str,
    vars: &Vars<'_>,
    rules: &InjectRules<'_>,
) -> Result<Vec<u8>, String> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::address::Address;
    use mail_builder::headers::text::Text;
    let from_header = match &request.header_from {
        Some(from) => substitute(from, vars)?,
        None if sender.is_empty() => {
            return Err("header_from is needed when from (the envelope sender) is empty".into());
        }
        None => sender.to_string(),
    };
    let from: Address<'_> = match from_header.rsplit_once('<') {
        Some((name, rest)) => {
            let address = rest.trim_end().trim_end_matches('>').trim().to_string();
            let name = name.trim().trim_matches('"').to_string();
            if name.is_empty() {
                Address::from(address)
            } else {
                Address::from((name, address))
            }
        }
        None => Address::from(from_header.trim().to_string()),
    };
    let mut builder = MessageBuilder::new()
        .from(from)
        .to(to.to_string())
        .message_id(message_id(rules).trim_matches(['<', '>']).to_string())
        .date(unix_seconds(rules.now));
    if let Some(subject) = &request.subject {
        builder = builder.subject(substitute(subject, vars)?);
    }
    if let Some(text) = &request.text {
        builder = builder.text_body(substitute(text, vars)?);
    }
    if let Some(html) = &request.html {
        builder = builder.html_body(substitute(html, vars)?);
    }
    for (name, value) in &request.headers {
        builder = builder.header(name.clone(), Text::new(substitute(value, vars)?));
    }
    builder
        .write_to_vec()
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// `<random.seconds@hostname>`.
fn message_id(rules: &InjectRules<'_>) -> String {
    format!(
        "<{:016x}.{}@{}>",
        fastrand::u64(..),
        unix_seconds(rules.now),
        rules.hostname
    )
}

/// The trace header for a message that came in over HTTP (RFC 5321 §4.4 in spirit: who
/// handed it over, to whom, how, when).
fn trace_header(rules: &InjectRules<'_>, to: &str) -> String {
    let ip = match rules.peer.remote.ip() {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("IPv6:{ip}"),
    };
    format!(
        "Received: from [{ip}]\r\n\tby {} (ringmail) with HTTP\r\n\tfor <{to}>; {}\r\n",
        rules.hostname,
        crate::clock::rfc5322_date(unix_seconds(rules.now))
    )
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
