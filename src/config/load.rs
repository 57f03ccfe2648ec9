//! Reading a configuration file: parse the TOML, then validate every value once, so a running
//! server never meets a bad setting. Every error names the file, the line and the key.

use super::cidr::Cidr;
use super::schema::Config;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A configuration that cannot be used, and where the mistake is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<embedded default>`.
    pub file: String,
    /// 1-based line of the offending key, when it is written in the file.
    pub line: Option<usize>,
    /// Dotted key, e.g. `smtp.listen`; empty when the file could not be read at all.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        line: None,
        key: String::new(),
        message: format!("cannot read the configuration file: {e}"),
    })?;
    load_str(&text, &name)
}

/// An error about `key` found after loading (e.g. a configured user that does not exist on this
/// host), located in the configuration file at `path` like a validation error; `None` is the
/// embedded default.
pub fn key_error(path: Option<&Path>, key: &str, message: String) -> ConfigError {
    let (file, line) = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            (path.display().to_string(), line_of_key(&text, key))
        }
        None => (
            "<embedded default>".to_string(),
            line_of_key(super::EMBEDDED_DEFAULT, key),
        ),
    };
    ConfigError {
        file,
        line,
        key: key.to_string(),
        message,
    }
}

/// Parses and validates configuration text; `name` is used in error messages.
pub fn load_str(text: &str, name: &str) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| parse_error(text, name, &e))?;
    validate(&config).map_err(|(key, message)| ConfigError {
        file: name.to_string(),
        line: line_of_key(text, &key),
        key,
        message,
    })?;
    Ok(config)
}

fn parse_error(text: &str, name: &str, error: &toml::de::Error) -> ConfigError {
    let line = error.span().map(|span| {
        text.as_bytes()[..span.start.min(text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    });
    let key = line.map(|l| key_at_line(text, l)).unwrap_or_default();
    ConfigError {
        file: name.to_string(),
        line,
        key,
        message: error.message().to_string(),
    }
}

/// The dotted key written on 1-based `line` (section header plus the key before `=`).
fn key_at_line(text: &str, line: usize) -> String {
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = header.trim().to_string();
        }
        if index + 1 == line {
            return match trimmed.split_once('=') {
                Some((key, _)) if !trimmed.starts_with('[') => join_key(&section, key.trim()),
                _ => section,
            };
        }
    }
    String::new()
}

/// The 1-based line where dotted `key` is set; failing that (a key missing from the file), the
/// line of its section's header.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (want_section, want_key) = key.rsplit_once('.').unwrap_or(("", key));
    let mut section = String::new();
    let mut section_line = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = header.trim().to_string();
            if section == key {
                return Some(index + 1);
            }
            if section == want_section && section_line.is_none() {
                section_line = Some(index + 1);
            }
            continue;
        }
        if let Some((k, _)) = trimmed.split_once('=')
            && section == want_section
            && k.trim() == want_key
        {
            return Some(index + 1);
        }
    }
    section_line
}

fn join_key(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

type Invalid = (String, String);

fn invalid(key: &str, message: impl Into<String>) -> Result<(), Invalid> {
    Err((key.to_string(), message.into()))
}

fn validate(config: &Config) -> Result<(), Invalid> {
    let server = &config.server;
    if server.hostname.is_empty()
        || server
            .hostname
            .contains(|c: char| c.is_whitespace() || c == '/')
    {
        invalid(
            "server.hostname",
            "must be a host name without spaces or slashes",
        )?;
    }
    if server.data_dir.as_os_str().is_empty() {
        invalid("server.data_dir", "must not be empty")?;
    }
    if server.shards > 1024 {
        invalid("server.shards", "must be 0 (one per CPU) or at most 1024")?;
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&server.log_level.as_str()) {
        invalid(
            "server.log_level",
            "must be one of error, warn, info, debug, trace",
        )?;
    }

    check_account_name("server.user", &server.user)?;
    if server.user == "root" {
        invalid(
            "server.user",
            "must not be root: a server started as root drops to this user once its ports \
             are bound, and never handles network input as root",
        )?;
    }
    if !server.group.is_empty() {
        check_account_name("server.group", &server.group)?;
    }
    if !server.log_file.as_os_str().is_empty() {
        let parent = match server.log_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if server.log_file.file_name().is_none() {
            invalid("server.log_file", "must name a file, not a directory")?;
        }
        if !parent.is_dir() {
            invalid(
                "server.log_file",
                format!(
                    "the directory {} does not exist (ringmail creates the file, not its directory)",
                    parent.display()
                ),
            )?;
        }
    }
    if !(1..=1024).contains(&server.blocking_threads) {
        invalid("server.blocking_threads", "must be between 1 and 1024")?;
    }
    if !(1..=1_000_000).contains(&server.blocking_queue) {
        invalid("server.blocking_queue", "must be between 1 and 1000000")?;
    }

    let smtp = &config.smtp;
    check_listeners("smtp.listen", &smtp.listen)?;
    if smtp.max_message_size < 1024 {
        invalid("smtp.max_message_size", "must be at least 1024 octets")?;
    }
    if smtp.max_recipients == 0 {
        invalid(
            "smtp.max_recipients",
            "must be at least 1 (RFC 5321 asks for 100)",
        )?;
    }
    for (key, value) in [
        ("smtp.command_timeout_secs", smtp.command_timeout_secs),
        ("smtp.data_timeout_secs", smtp.data_timeout_secs),
        (
            "smtp.max_sessions_per_shard",
            smtp.max_sessions_per_shard as u64,
        ),
        ("smtp.max_sessions_per_ip", smtp.max_sessions_per_ip as u64),
        ("smtp.max_errors", smtp.max_errors as u64),
        ("smtp.max_hops", smtp.max_hops as u64),
    ] {
        if value == 0 {
            invalid(key, "must be greater than 0")?;
        }
    }
    for range in &smtp.relay_networks {
        range
            .parse::<Cidr>()
            .map_err(|e| ("smtp.relay_networks".to_string(), e))?;
    }
    for domain in &smtp.rcpthosts {
        check_domain("smtp.rcpthosts", domain)?;
    }

    let local = &config.local;
    if local.domains.is_empty() {
        invalid(
            "local.domains",
            "list at least one domain to deliver locally",
        )?;
    }
    for domain in &local.domains {
        check_domain("local.domains", domain)?;
    }
    for user in &local.users {
        if crate::mailbox::maildir_for(Path::new("/"), user).is_err() {
            invalid(
                "local.users",
                format!("`{user}` is not a user@domain address"),
            )?;
        }
    }

    let queue = &config.queue;
    if !(1..=4096).contains(&queue.segment_size_mib) {
        invalid("queue.segment_size_mib", "must be between 1 and 4096")?;
    }
    if queue.delivery_concurrency == 0 {
        invalid("queue.delivery_concurrency", "must be greater than 0")?;
    }
    if queue.queue_lifetime_secs == 0 {
        invalid("queue.queue_lifetime_secs", "must be greater than 0")?;
    }
    if queue.memory_budget_mib == 0 {
        invalid("queue.memory_budget_mib", "must be greater than 0")?;
    }

    let dns = &config.dns;
    for server in &dns.nameservers {
        if server.parse::<SocketAddr>().is_err() {
            invalid(
                "dns.nameservers",
                format!("`{server}` is not an ip:port address (e.g. 127.0.0.1:53)"),
            )?;
        }
    }
    if dns.timeout_secs == 0 {
        invalid("dns.timeout_secs", "must be greater than 0")?;
    }
    if dns.attempts == 0 {
        invalid("dns.attempts", "must be at least 1")?;
    }

    let relay = &config.relay;
    for (domain, target) in &relay.routes {
        if domain != "*" {
            check_domain("relay.routes", domain.strip_prefix('.').unwrap_or(domain))?;
        }
        if let Err(e) = crate::relay::route::RouteTarget::parse(target) {
            invalid("relay.routes", format!("route for `{domain}`: {e}"))?;
        }
    }
    for domain in relay.tls_policy.keys() {
        check_domain("relay.tls_policy", domain)?;
    }
    if let Some(path) = &relay.tls_ca_file
        && let Err(e) = std::fs::metadata(path)
    {
        invalid(
            "relay.tls_ca_file",
            format!("cannot read {}: {e}", path.display()),
        )?;
    }
    if relay.port == 0 {
        invalid("relay.port", "must be a port number from 1 to 65535")?;
    }
    for (key, value) in [
        ("relay.connect_timeout_secs", relay.connect_timeout_secs),
        ("relay.greeting_timeout_secs", relay.greeting_timeout_secs),
        ("relay.command_timeout_secs", relay.command_timeout_secs),
        ("relay.data_timeout_secs", relay.data_timeout_secs),
        (
            "relay.max_connections_per_destination",
            relay.max_connections_per_destination as u64,
        ),
        ("relay.max_connections", relay.max_connections as u64),
        (
            "relay.max_messages_per_connection",
            relay.max_messages_per_connection as u64,
        ),
        (
            "relay.max_recipients_per_transaction",
            relay.max_recipients_per_transaction as u64,
        ),
    ] {
        if value == 0 {
            invalid(key, "must be greater than 0")?;
        }
    }

    let pop3 = &config.pop3;
    check_listeners("pop3.listen", &pop3.listen)?;
    check_listeners("pop3.pop3s_listen", &pop3.pop3s_listen)?;
    if pop3.idle_timeout_secs < 600 {
        invalid(
            "pop3.idle_timeout_secs",
            "RFC 1939 §3 asks for at least 600 seconds",
        )?;
    }
    if !pop3.pop3s_listen.is_empty() && config.tls.cert.is_none() {
        invalid(
            "pop3.pop3s_listen",
            "POP3S needs a certificate: set tls.cert and tls.key",
        )?;
    }

    let tls = &config.tls;
    match (&tls.cert, &tls.key) {
        (Some(_), None) => invalid("tls.key", "tls.cert is set, so tls.key is needed too")?,
        (None, Some(_)) => invalid("tls.cert", "tls.key is set, so tls.cert is needed too")?,
        _ => {}
    }
    for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
        if let Some(path) = path
            && let Err(e) = std::fs::metadata(path)
        {
            invalid(key, format!("cannot read {}: {e}", path.display()))?;
        }
    }

    let mut seen = Vec::new();
    for (key, list) in [
        ("smtp.listen", &smtp.listen),
        ("pop3.listen", &pop3.listen),
        ("pop3.pop3s_listen", &pop3.pop3s_listen),
    ] {
        for addr in list {
            let addr: SocketAddr = addr.parse().map_err(|_| (key.to_string(), String::new()))?;
            if addr.port() != 0 && seen.contains(&addr) {
                invalid(key, format!("{addr} is listed twice"))?;
            }
            seen.push(addr);
        }
    }
    Ok(())
}

/// A domain name as configuration lists them: not empty, no `@`, spaces or slashes, no
/// trailing dot (RCPT domains are compared without one).
fn check_domain(key: &str, domain: &str) -> Result<(), Invalid> {
    if domain.is_empty()
        || domain.ends_with('.')
        || domain.contains(|c: char| c == '@' || c == '/' || c.is_whitespace())
    {
        invalid(key, format!("`{domain}` is not a domain name"))?;
    }
    Ok(())
}

/// A user or group name as /etc/passwd can hold one: not empty, no `:`, slash or whitespace.
/// Whether the account exists is a fact about the host, checked when the server starts.
fn check_account_name(key: &str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() || name.contains(|c: char| c == ':' || c == '/' || c.is_whitespace()) {
        invalid(key, format!("`{name}` is not a user or group name"))?;
    }
    Ok(())
}

fn check_listeners(key: &str, list: &[String]) -> Result<(), Invalid> {
    for addr in list {
        if addr.parse::<SocketAddr>().is_err() {
            invalid(
                key,
                format!("`{addr}` is not an ip:port address (e.g. 127.0.0.1:25 or [::1]:25)"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_DEFAULT;

    #[test]
    fn embedded_default_is_valid() {
        let config = load_str(EMBEDDED_DEFAULT, "<embedded default>").unwrap();
        assert_eq!(config.smtp.listen, vec!["127.0.0.1:2525".to_string()]);
        assert_eq!(config.local.domains, vec!["localhost", "example.test"]);
        assert_eq!(config.pop3.listen, vec!["127.0.0.1:2110".to_string()]);
        // Logging to stderr in text, and the blocking pool's documented size and bound.
        assert!(config.server.log_file.as_os_str().is_empty());
        assert_eq!(
            config.server.log_format,
            crate::config::LogFormatSetting::Text
        );
        assert_eq!(
            (config.server.blocking_threads, config.server.blocking_queue),
            (4, 1024)
        );
    }

    #[test]
    fn log_and_blocking_keys_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[server]\nlog_file = \"{}/ringmail.log\"\nlog_format = \"json\"\n\
             blocking_threads = 8\nblocking_queue = 16\n",
            dir.path().display()
        );
        let config = load_str(&text, "test.toml").expect("valid");
        assert_eq!(config.server.log_file, dir.path().join("ringmail.log"));
        assert_eq!(
            config.server.log_format,
            crate::config::LogFormatSetting::Json
        );
        assert_eq!(
            (config.server.blocking_threads, config.server.blocking_queue),
            (8, 16)
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[smtp]\nlisten = [\"nowhere\"]\n",
                2,
                "smtp.listen",
                "not an ip:port",
            ),
            (
                "[server]\nshards = \"two\"\n",
                2,
                "server.shards",
                "invalid type",
            ),
            (
                "[server]\n\nbogus = 1\n",
                3,
                "server.bogus",
                "unknown field",
            ),
            (
                "[local]\ndomains = []\n",
                2,
                "local.domains",
                "at least one",
            ),
            (
                "[smtp]\nmax_recipients = 0\n",
                2,
                "smtp.max_recipients",
                "at least 1",
            ),
            (
                "[smtp]\nrelay_networks = [\"10.0.0.0/33\"]\n",
                2,
                "smtp.relay_networks",
                "prefix",
            ),
            (
                "[pop3]\nidle_timeout_secs = 60\n",
                2,
                "pop3.idle_timeout_secs",
                "600",
            ),
            (
                "[tls]\ncert = \"/nonexistent.pem\"\n",
                1,
                "tls.key",
                "needed",
            ),
            (
                "[server]\nlog_level = \"loud\"\n",
                2,
                "server.log_level",
                "one of",
            ),
            ("[smtp\n", 1, "smtp", "invalid table header"),
            (
                "[server]\nuser = \"root\"\n",
                2,
                "server.user",
                "must not be root",
            ),
            (
                "[server]\ngroup = \"a b\"\n",
                2,
                "server.group",
                "not a user or group name",
            ),
            (
                "[server]\nshards = 2\nlog_file = \"/nonexistent/dir/ringmail.log\"\n",
                3,
                "server.log_file",
                "/nonexistent/dir does not exist",
            ),
            (
                "[server]\nlog_format = \"xml\"\n",
                2,
                "server.log_format",
                "unknown variant",
            ),
            (
                "[server]\nblocking_threads = 0\n",
                2,
                "server.blocking_threads",
                "between 1 and 1024",
            ),
            (
                "[server]\n\nblocking_queue = 0\n",
                3,
                "server.blocking_queue",
                "between 1 and 1000000",
            ),
        ];
        for (text, line, key, words) in cases {
            let err = load_str(text, "test.toml").unwrap_err();
            assert_eq!(err.file, "test.toml");
            assert_eq!(err.line, Some(*line), "{text:?}: {err}");
            assert_eq!(&err.key, key, "{text:?}: {err}");
            assert!(err.message.contains(words), "{text:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("test.toml:{line}")),
                "{err}"
            );
        }
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let err = load_file(Path::new("/nonexistent/ringmail.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ringmail.toml"));
        assert!(err.to_string().contains("cannot read"));
    }
}
