//! `ringmail import-qmail DIR`: read a qmail control directory (/var/qmail/control) and print
//! the equivalent ringmail configuration. Each file is translated by one row of [`translate`];
//! what has no ringmail equivalent is named in a `# not translated:` comment in the output and
//! on stderr, never dropped silently. The output passes `ringmail check-config`: values that
//! would not (a malformed domain, a zero that means "unlimited") are left out with a comment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// The control files read from DIR, as trimmed non-empty lines.
struct Control {
    files: BTreeMap<String, Vec<String>>,
}

impl Control {
    fn read(dir: &Path) -> std::io::Result<Control> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.file_type()?.is_file() {
                continue;
            }
            // Binary files (rcpthosts.cdb, morercpthosts.cdb) are built from text ones.
            if name.ends_with(".cdb") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                files.insert(name, vec!["\u{0}unreadable".to_string()]);
                continue;
            };
            let lines = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            files.insert(name, lines);
        }
        Ok(Control { files })
    }

    fn lines(&self, name: &str) -> Option<&[String]> {
        self.files.get(name).map(Vec::as_slice)
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.lines(name).and_then(|l| l.first()).map(String::as_str)
    }
}

/// The configuration being written, section by section, and what could not be said in it.
#[derive(Default)]
struct Output {
    sections: BTreeMap<&'static str, Vec<String>>,
    untranslated: Vec<String>,
}

impl Output {
    fn set(&mut self, section: &'static str, line: String) {
        self.sections.entry(section).or_default().push(line);
    }

    fn skip(&mut self, why: String) {
        self.untranslated.push(why);
    }
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A domain as ringmail's configuration takes it (config/validate.rs `check_domain`).
fn plain_domain(domain: &str) -> bool {
    !domain.is_empty()
        && !domain.ends_with('.')
        && !domain.contains(|c: char| c == '@' || c == '/' || c.is_whitespace() || c == ':')
}

/// A positive number of seconds (or units) from a control file.
fn positive(control: &Control, file: &str, out: &mut Output) -> Option<u64> {
    let text = control.first(file)?;
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            out.skip(format!("{file} = {text:?}: not a positive number"));
            None
        }
    }
}

/// qmail's domain list files, with the malformed entries reported and dropped.
fn domains(control: &Control, file: &str, out: &mut Output) -> Vec<String> {
    let mut list = Vec::new();
    for domain in control.lines(file).unwrap_or_default() {
        let lower = domain.to_ascii_lowercase();
        if plain_domain(&lower) {
            if !list.contains(&lower) {
                list.push(lower);
            }
        } else {
            out.skip(format!("{file}: {domain:?} is not a domain name"));
        }
    }
    list
}

/// Every control file ringmail understands, and what it becomes.
fn translate(control: &Control) -> Output {
    let mut out = Output::default();
    let me = control.first("me").map(str::to_ascii_lowercase);
    if let Some(me) = &me {
        if plain_domain(me) {
            out.set("server", format!("hostname = {}  # me", quote(me)));
        } else {
            out.skip(format!("me = {me:?}: not a host name"));
        }
    }

    // locals: delivered here. qmail's default is `me`.
    let mut locals = domains(control, "locals", &mut out);
    if control.lines("locals").is_none()
        && let Some(me) = &me
    {
        locals.push(me.clone());
    }
    // virtualdomains: `domain:prefix` (or `:prefix` for every domain). The domains are
    // delivered here; the mapping to users belongs to the local delivery instructions.
    let mut virtual_domains = Vec::new();
    for line in control.lines("virtualdomains").unwrap_or_default() {
        let (domain, target) = line.split_once(':').unwrap_or((line, ""));
        let domain = domain.to_ascii_lowercase();
        if domain.is_empty() {
            out.skip(format!(
                "virtualdomains: {line:?}: a catch-all for every domain has no equivalent"
            ));
        } else if plain_domain(&domain) {
            virtual_domains.push(domain.clone());
            out.skip(format!(
                "virtualdomains: {domain} -> {target}: the domain is made local; delivery to \
                 the user or prefix {target:?} needs a .qmail-style instruction (not generated)"
            ));
        } else {
            out.skip(format!("virtualdomains: {line:?} is not domain:prefix"));
        }
    }
    for domain in &virtual_domains {
        if !locals.contains(domain) {
            locals.push(domain.clone());
        }
    }
    if !locals.is_empty() {
        out.set(
            "local",
            format!(
                "domains = {}  # locals + virtualdomains",
                quote_list(&locals)
            ),
        );
    }

    // rcpthosts: qmail lists the local domains there too; ringmail's list is the others.
    let mut rcpthosts = domains(control, "rcpthosts", &mut out);
    rcpthosts.extend(domains(control, "morercpthosts", &mut out));
    rcpthosts.retain(|d| !locals.contains(d));
    rcpthosts.dedup();
    if !rcpthosts.is_empty() {
        out.set(
            "smtp",
            format!(
                "rcpthosts = {}  # rcpthosts + morercpthosts, minus the local domains",
                quote_list(&rcpthosts)
            ),
        );
    }
    if control.lines("rcpthosts").is_none() {
        out.skip(
            "rcpthosts is missing: qmail-smtpd then accepts mail for any domain (an open \
             relay); ringmail accepts only its local domains and relays for smtp.relay_networks"
                .to_string(),
        );
    }

    if let Some(text) = control.first("databytes") {
        match text.parse::<u64>() {
            Ok(0) => out.skip(
                "databytes = 0 (unlimited): ringmail always has a limit; the default (25 MiB) applies"
                    .into(),
            ),
            Ok(n) => out.set("smtp", format!("max_message_size = {n}  # databytes")),
            Err(_) => out.skip(format!("databytes = {text:?}: not a number")),
        }
    }
    if let Some(n) = positive(control, "timeoutsmtpd", &mut out) {
        out.set(
            "smtp",
            format!("command_timeout_secs = {n}  # timeoutsmtpd"),
        );
        out.set("smtp", format!("data_timeout_secs = {n}  # timeoutsmtpd"));
    }
    if let Some(n) = positive(control, "queuelifetime", &mut out) {
        out.set(
            "queue",
            format!("queue_lifetime_secs = {n}  # queuelifetime"),
        );
    }
    if let Some(n) = positive(control, "concurrencyremote", &mut out) {
        out.set(
            "relay",
            format!("max_connections = {n}  # concurrencyremote (outbound connections in all)"),
        );
    }
    if let Some(helo) = control.first("helohost") {
        if plain_domain(helo) {
            out.set("relay", format!("helo_name = {}  # helohost", quote(helo)));
        } else {
            out.skip(format!("helohost = {helo:?}: not a host name"));
        }
    }
    if let Some(n) = positive(control, "timeoutconnect", &mut out) {
        out.set(
            "relay",
            format!("connect_timeout_secs = {n}  # timeoutconnect"),
        );
    }
    if let Some(n) = positive(control, "timeoutremote", &mut out) {
        for key in [
            "greeting_timeout_secs",
            "command_timeout_secs",
            "data_timeout_secs",
        ] {
            out.set("relay", format!("{key} = {n}  # timeoutremote"));
        }
    }
    smtproutes(control, &mut out);

    for (file, key) in [
        ("defaulthost", "default_host"),
        ("defaultdomain", "default_domain"),
        ("plusdomain", "plus_domain"),
        ("idhost", "id_host"),
    ] {
        if let Some(value) = control.first(file) {
            if plain_domain(value) {
                out.set("inject", format!("{key} = {}  # {file}", quote(value)));
            } else {
                out.skip(format!("{file} = {value:?}: not a domain name"));
            }
        }
    }

    let known = [
        "me",
        "locals",
        "virtualdomains",
        "rcpthosts",
        "morercpthosts",
        "databytes",
        "timeoutsmtpd",
        "queuelifetime",
        "concurrencyremote",
        "helohost",
        "timeoutconnect",
        "timeoutremote",
        "smtproutes",
        "defaulthost",
        "defaultdomain",
        "plusdomain",
        "idhost",
    ];
    for (file, lines) in &control.files {
        if known.contains(&file.as_str()) {
            continue;
        }
        if lines.first().is_some_and(|l| l.starts_with('\u{0}')) {
            out.skip(format!("{file}: cannot be read"));
            continue;
        }
        let why = match file.as_str() {
            "concurrencylocal" => "local deliveries share queue.delivery_concurrency (per shard)",
            "percenthack" => {
                "ringmail never follows the % hack: such recipients are refused (553 5.1.3)"
            }
            "badmailfrom" | "badrcptto" => {
                "sender and recipient block lists have no equivalent here"
            }
            "bouncefrom" | "bouncehost" => "bounces come from MAILER-DAEMON at server.hostname",
            "doublebouncehost" | "doublebounceto" => {
                "double bounces go to postmaster at server.hostname"
            }
            "envnoathost" => "envelope addresses without a domain are refused by the SMTP parser",
            "localiphost" => "mail to an address literal is refused unless listed in local.domains",
            "smtpgreeting" => "the greeting names server.hostname",
            "bouncemaxbytes" => "bounces quote the message header and the failure reasons only",
            _ => "no equivalent (not a qmail control file ringmail knows)",
        };
        out.skip(format!("{file}: {why}"));
    }
    out
}

/// smtproutes: `domain:relay[:port]` lines; `:relay` is the smarthost; `domain:` (MX despite a
/// smarthost) has no equivalent.
fn smtproutes(control: &Control, out: &mut Output) {
    let mut routes = Vec::new();
    for line in control.lines("smtproutes").unwrap_or_default() {
        let (domain, rest) = line.split_once(':').unwrap_or((line, ""));
        let domain = if domain.is_empty() {
            "*".to_string()
        } else {
            domain.to_ascii_lowercase()
        };
        // `[1.2.3.4]` and `[1.2.3.4]:587` name an address; IPv6 literals keep their brackets.
        let (host, port) = match rest.strip_prefix('[') {
            Some(inner) => match inner.split_once(']') {
                Some((addr, tail)) => {
                    let host = if addr.contains(':') {
                        format!("[{addr}]")
                    } else {
                        addr.to_string()
                    };
                    (host, tail.strip_prefix(':').unwrap_or("").to_string())
                }
                None => (rest.to_string(), String::new()),
            },
            None => match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), p.to_string()),
                None => (rest.to_string(), String::new()),
            },
        };
        if host.is_empty() {
            out.skip(format!(
                "smtproutes: {line:?}: \"deliver by MX despite the smarthost\" has no equivalent"
            ));
            continue;
        }
        let port = if port.is_empty() {
            "25".to_string()
        } else {
            port
        };
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            out.skip(format!("smtproutes: {line:?}: bad port {port:?}"));
            continue;
        }
        let domain_ok = domain == "*" || plain_domain(domain.trim_start_matches('.'));
        if !domain_ok {
            out.skip(format!("smtproutes: {line:?}: bad domain"));
            continue;
        }
        routes.push(format!(
            "{} = {}",
            quote(&domain),
            quote(&format!("{host}:{port}"))
        ));
    }
    if !routes.is_empty() {
        out.set(
            "relay",
            format!("routes = {{ {} }}  # smtproutes", routes.join(", ")),
        );
    }
}

/// The printed configuration.
fn render(dir: &Path, out: &Output) -> String {
    let mut text = format!(
        "# ringmail configuration imported from the qmail control directory {}\n\
         # by `ringmail import-qmail`. Check it with `ringmail check-config FILE`.\n\
         # Not in a qmail control directory, so not here: where SMTP listens (tcpserver's\n\
         # address: [smtp] listen), who may relay (tcp.smtp's RELAYCLIENT: [smtp]\n\
         # relay_networks), and [server] data_dir and user.\n",
        dir.display()
    );
    if !out.untranslated.is_empty() {
        text.push_str("#\n# not translated:\n");
        for why in &out.untranslated {
            let _ = writeln!(text, "#   {}", why.replace('\n', " "));
        }
    }
    for section in ["server", "smtp", "local", "queue", "relay", "inject"] {
        if let Some(lines) = out.sections.get(section) {
            let _ = writeln!(text, "\n[{section}]");
            for line in lines {
                let _ = writeln!(text, "{line}");
            }
        }
    }
    text
}

pub fn run(dir: &Path) -> Result<ExitCode, ExitCode> {
    let control = Control::read(dir).map_err(|e| {
        eprintln!(
            "ringmail: cannot read the qmail control directory {}: {e}",
            dir.display()
        );
        ExitCode::from(1)
    })?;
    if control.files.is_empty() {
        eprintln!("ringmail: {} holds no qmail control files", dir.display());
        return Err(ExitCode::from(1));
    }
    let out = translate(&control);
    print!("{}", render(dir, &out));
    for why in &out.untranslated {
        eprintln!("ringmail: import-qmail: not translated: {why}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(files: &[(&str, &str)]) -> Control {
        Control {
            files: files
                .iter()
                .map(|(name, text)| {
                    let lines = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect();
                    (name.to_string(), lines)
                })
                .collect(),
        }
    }

    #[test]
    fn translates_routes() {
        let c = control(&[(
            "smtproutes",
            ":smarthost.test:587\nexample.com:[10.0.0.1]\n.sub.test:relay.test\n\
             v6.test:[2001:db8::1]:2525\nmx.test:\nbad.test:host:0\n",
        )]);
        let out = translate(&c);
        assert_eq!(
            out.sections["relay"],
            vec![
                "routes = { \"*\" = \"smarthost.test:587\", \"example.com\" = \"10.0.0.1:25\", \
                 \".sub.test\" = \"relay.test:25\", \"v6.test\" = \"[2001:db8::1]:2525\" }  # smtproutes"
            ]
        );
        // The two bad lines, and the missing rcpthosts.
        assert_eq!(out.untranslated.len(), 3, "{:?}", out.untranslated);
    }

    #[test]
    fn rcpthosts_lose_the_local_domains_and_unknown_files_are_named() {
        let c = control(&[
            ("me", "mx.example.com"),
            ("rcpthosts", "example.com\nbackup.test\nmx.example.com\n"),
            ("locals", "example.com\nmx.example.com"),
            ("badmailfrom", "spam@x"),
            ("databytes", "0"),
        ]);
        let out = translate(&c);
        assert_eq!(
            out.sections["smtp"],
            vec![
                "rcpthosts = [\"backup.test\"]  # rcpthosts + morercpthosts, minus the local domains"
            ]
        );
        assert!(
            out.untranslated
                .iter()
                .any(|u| u.starts_with("badmailfrom:"))
        );
        assert!(
            out.untranslated
                .iter()
                .any(|u| u.starts_with("databytes = 0"))
        );
        assert!(!out.sections.contains_key("queue"));
    }

    #[test]
    fn quotes_toml_strings() {
        assert_eq!(quote("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
