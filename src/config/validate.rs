//! Checking a parsed configuration: every value in range, every address parsable, every file
//! and program it names present and usable. Every problem is collected, not only the first, so
//! `ringmail check-config` can list them all in one run.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cidr::Cidr;
use super::schema::Config;

/// Every problem found, as (dotted key, message), in the order the checks run.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push((key.to_string(), message.into()));
    }
}

/// Checks every value of `config`, and that the files and programs it names are there.
pub fn validate(config: &Config) -> Problems {
    let mut p = Problems::default();
    let p = &mut p;
    check_values(config, p);
    check_abuse_defences(config, p);
    check_files(config, p);
    check_inject(config, p);
    check_deliverability(config, p);
    std::mem::take(p)
}

fn check_values(config: &Config, p: &mut Problems) {
    let server = &config.server;
    if server.hostname.is_empty()
        || server
            .hostname
            .contains(|c: char| c.is_whitespace() || c == '/')
    {
        p.add(
            "server.hostname",
            "must be a host name without spaces or slashes",
        );
    }
    if server.data_dir.as_os_str().is_empty() {
        p.add("server.data_dir", "must not be empty");
    }
    if server.shards > 1024 {
        p.add("server.shards", "must be 0 (one per CPU) or at most 1024");
    }
    if !["error", "warn", "info", "debug", "trace"].contains(&server.log_level.as_str()) {
        p.add(
            "server.log_level",
            "must be one of error, warn, info, debug, trace",
        );
    }
    check_account_name(p, "server.user", &server.user);
    if server.user == "root" {
        p.add(
            "server.user",
            "must not be root: a server started as root drops to this user once its ports \
             are bound, and never handles network input as root",
        );
    }
    if !server.group.is_empty() {
        check_account_name(p, "server.group", &server.group);
    }
    if !server.log_file.as_os_str().is_empty() {
        let parent = match server.log_file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if server.log_file.file_name().is_none() {
            p.add("server.log_file", "must name a file, not a directory");
        } else if !parent.is_dir() {
            p.add(
                "server.log_file",
                format!(
                    "the directory {} does not exist (ringmail creates the file, not its directory)",
                    parent.display()
                ),
            );
        }
    }
    if !(1..=1024).contains(&server.blocking_threads) {
        p.add("server.blocking_threads", "must be between 1 and 1024");
    }
    if !(1..=1_000_000).contains(&server.blocking_queue) {
        p.add("server.blocking_queue", "must be between 1 and 1000000");
    }

    let smtp = &config.smtp;
    check_listeners(p, "smtp.listen", &smtp.listen);
    if smtp.max_message_size < 1024 {
        p.add("smtp.max_message_size", "must be at least 1024 octets");
    }
    if smtp.max_recipients == 0 {
        p.add(
            "smtp.max_recipients",
            "must be at least 1 (RFC 5321 asks for 100)",
        );
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
            p.add(key, "must be greater than 0");
        }
    }
    for range in &smtp.relay_networks {
        if let Err(e) = range.parse::<Cidr>() {
            p.add("smtp.relay_networks", e);
        }
    }
    for domain in &smtp.rcpthosts {
        check_domain(p, "smtp.rcpthosts", domain);
    }

    let local = &config.local;
    if local.domains.is_empty() {
        p.add(
            "local.domains",
            "list at least one domain to deliver locally",
        );
    }
    for domain in &local.domains {
        check_domain(p, "local.domains", domain);
    }
    for user in &local.users {
        if crate::mailbox::maildir_for(Path::new("/"), user).is_err() {
            p.add(
                "local.users",
                format!("`{user}` is not a user@domain address"),
            );
        }
    }
    if !matches!(local.extension_separator.as_str(), "-" | "+") {
        p.add(
            "local.extension_separator",
            format!(
                "`{}` is not `-` (qmail's) or `+`",
                local.extension_separator
            ),
        );
    }
    if local.program_timeout_secs == 0 {
        p.add("local.program_timeout_secs", "must be greater than 0");
    }
    if local.refresh_secs == 0 {
        p.add("local.refresh_secs", "must be greater than 0");
    }
    if local.min_uid == 0 {
        p.add(
            "local.min_uid",
            "must be greater than 0: root never receives mail as a user",
        );
    }
    if !(1..=256).contains(&local.delivery_threads) {
        p.add("local.delivery_threads", "must be between 1 and 256");
    }

    let queue = &config.queue;
    if !(1..=4096).contains(&queue.segment_size_mib) {
        p.add("queue.segment_size_mib", "must be between 1 and 4096");
    }
    if queue.delivery_concurrency == 0 {
        p.add("queue.delivery_concurrency", "must be greater than 0");
    }
    if queue.queue_lifetime_secs == 0 {
        p.add("queue.queue_lifetime_secs", "must be greater than 0");
    }
    if queue.memory_budget_mib == 0 {
        p.add("queue.memory_budget_mib", "must be greater than 0");
    }

    let dns = &config.dns;
    for server in &dns.nameservers {
        if server.parse::<SocketAddr>().is_err() {
            p.add(
                "dns.nameservers",
                format!("`{server}` is not an ip:port address (e.g. 127.0.0.1:53)"),
            );
        }
    }
    if dns.timeout_secs == 0 {
        p.add("dns.timeout_secs", "must be greater than 0");
    }
    if dns.attempts == 0 {
        p.add("dns.attempts", "must be at least 1");
    }

    let relay = &config.relay;
    for (domain, target) in &relay.routes {
        if domain != "*" {
            check_domain(
                p,
                "relay.routes",
                domain.strip_prefix('.').unwrap_or(domain),
            );
        }
        if let Err(e) = crate::relay::route::RouteTarget::parse(target) {
            p.add("relay.routes", format!("route for `{domain}`: {e}"));
        }
    }
    for domain in relay.tls_policy.keys() {
        check_domain(p, "relay.tls_policy", domain);
    }
    if relay.port == 0 {
        p.add("relay.port", "must be a port number from 1 to 65535");
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
            p.add(key, "must be greater than 0");
        }
    }

    check_shaping(config, p);

    let pop3 = &config.pop3;
    check_listeners(p, "pop3.listen", &pop3.listen);
    check_listeners(p, "pop3.pop3s_listen", &pop3.pop3s_listen);
    if pop3.idle_timeout_secs < 600 {
        p.add(
            "pop3.idle_timeout_secs",
            "RFC 1939 §3 asks for at least 600 seconds",
        );
    }
    let no_certificate = config.tls.cert.is_none() && !config.tls.self_signed;
    if !pop3.pop3s_listen.is_empty() && no_certificate {
        p.add(
            "pop3.pop3s_listen",
            "POP3S needs a certificate: set tls.cert and tls.key, or tls.self_signed = true",
        );
    }
    check_listeners(p, "smtp.smtps_listen", &smtp.smtps_listen);
    if !smtp.smtps_listen.is_empty() && no_certificate {
        p.add(
            "smtp.smtps_listen",
            "SMTPS needs a certificate: set tls.cert and tls.key, or tls.self_signed = true",
        );
    }
    check_listeners(p, "submission.listen", &config.submission.listen);
    if config.auth.failure_delay_ms > 60_000 {
        p.add(
            "auth.failure_delay_ms",
            "at most 60000 (a minute): longer only holds connections open",
        );
    }
    for (key, value) in [
        (
            "auth.max_failures_per_ip",
            config.auth.max_failures_per_ip as u64,
        ),
        (
            "auth.max_failures_per_user",
            config.auth.max_failures_per_user as u64,
        ),
        ("auth.failure_window_secs", config.auth.failure_window_secs),
    ] {
        if value == 0 {
            p.add(key, "must be greater than 0");
        }
    }

    let tls = &config.tls;
    match (&tls.cert, &tls.key) {
        (Some(_), None) => p.add("tls.key", "tls.cert is set, so tls.key is needed too"),
        (None, Some(_)) => p.add("tls.cert", "tls.key is set, so tls.cert is needed too"),
        _ => {}
    }

    check_http(config, p);

    let http_listen: Vec<String> = config.http.listen_address().into_iter().collect();
    let mut seen = Vec::new();
    for (key, list) in [
        ("smtp.listen", &smtp.listen),
        ("pop3.listen", &pop3.listen),
        ("pop3.pop3s_listen", &pop3.pop3s_listen),
        ("smtp.smtps_listen", &smtp.smtps_listen),
        ("submission.listen", &config.submission.listen),
        ("http.listen", &http_listen),
    ] {
        for addr in list {
            // A bad address was reported by `check_listeners` already.
            let Ok(addr) = addr.parse::<SocketAddr>() else {
                continue;
            };
            if addr.port() != 0 && seen.contains(&addr) {
                p.add(key, format!("{addr} is listed twice"));
            }
            seen.push(addr);
        }
    }
}

/// `relay.providers`, `relay.shaping`, `relay.pools`, `relay.backoff` and `[redis]`.
fn check_shaping(config: &Config, p: &mut Problems) {
    let relay = &config.relay;
    for (name, suffixes) in &relay.providers {
        let key = format!("relay.providers.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.add(
                &key,
                format!("`{name}` is not a provider name (letters, digits, - and _)"),
            );
        }
        for suffix in suffixes {
            check_domain(p, &key, suffix.trim_start_matches('.'));
        }
    }
    let providers = crate::relay::shaping::provider_names(relay);
    for (name, limits) in &relay.shaping {
        let key = format!("relay.shaping.{name}");
        if name == "*" {
        } else if name.contains('.') {
            check_domain(p, &key, name);
        } else if !providers
            .iter()
            .any(|known| known.eq_ignore_ascii_case(name))
        {
            p.add(
                &key,
                format!(
                    "`{name}` is neither a domain (it has no dot) nor a provider; providers are \
                     {} and those in relay.providers",
                    providers.join(", ")
                ),
            );
        }
        if limits.burst == Some(0) {
            p.add(&format!("{key}.burst"), "must be at least 1");
        }
    }
    for (name, pool) in &relay.pools {
        let key = format!("relay.pools.{name}.sources");
        if pool.sources.is_empty() {
            p.add(&key, "list at least one source address");
        }
        for source in &pool.sources {
            if source.address.parse::<std::net::IpAddr>().is_err() {
                p.add(
                    &key,
                    format!("`{}` is not an IPv4 or IPv6 address", source.address),
                );
            }
            if source.weight == 0 {
                p.add(
                    &key,
                    format!("{}: weight must be at least 1", source.address),
                );
            }
            if source
                .helo
                .contains(|c: char| c.is_whitespace() || c == '/')
            {
                p.add(&key, format!("`{}` is not a host name", source.helo));
            }
        }
    }
    if !relay.default_pool.is_empty() && !relay.pools.contains_key(&relay.default_pool) {
        p.add(
            "relay.default_pool",
            format!("no pool `{}` in relay.pools", relay.default_pool),
        );
    }
    for (domain, pool) in &relay.pool_by_sender_domain {
        check_domain(p, "relay.pool_by_sender_domain", domain);
        if !relay.pools.contains_key(pool) {
            p.add(
                "relay.pool_by_sender_domain",
                format!("{domain}: no pool `{pool}` in relay.pools"),
            );
        }
    }
    if relay
        .pool_header
        .bytes()
        .any(|b| !(33..=126).contains(&b) || b == b':')
    {
        p.add(
            "relay.pool_header",
            format!(
                "`{}` is not a header field name (printable ASCII, no spaces or colons)",
                relay.pool_header
            ),
        );
    }
    if let Err((key, message)) = crate::relay::backoff::BackoffRules::from_config(relay) {
        p.add(&key, message);
    }
    let redis = &config.redis;
    if !redis.url.is_empty() {
        if !(redis.url.starts_with("redis://") || redis.url.starts_with("redis+unix://")) {
            p.add(
                "redis.url",
                "must be redis://[user:password@]host:port[/db] or redis+unix:///path \
                 (rediss:// TLS is not supported)",
            );
        } else if let Err(e) = redis::Client::open(redis.url.as_str()) {
            p.add("redis.url", format!("not a Redis URL: {e}"));
        }
    }
    if redis.timeout_ms == 0 {
        p.add("redis.timeout_ms", "must be greater than 0");
    }
}

/// `[http]`: a listen address if any, a usable token, caps above zero.
fn check_http(config: &Config, p: &mut Problems) {
    let http = &config.http;
    if let Some(addr) = http.listen_address() {
        check_listeners(p, "http.listen", &[addr]);
    }
    if !http.token.is_empty() && http.token_file.is_some() {
        p.add(
            "http.token",
            "set either http.token or http.token_file, not both",
        );
    }
    if !http.token.is_empty()
        && (http.token.len() < 16 || http.token.contains(|c: char| !c.is_ascii_graphic()))
    {
        p.add(
            "http.token",
            "must be at least 16 printable characters without spaces",
        );
    }
    if http.max_body_size == 0 {
        p.add("http.max_body_size", "must be at least 1 byte");
    }
    if http.max_requests_per_sec == 0 {
        p.add("http.max_requests_per_sec", "must be at least 1");
    }
    if http.max_inject_recipients == 0 {
        p.add("http.max_inject_recipients", "must be at least 1");
    }
}

/// `[smtp]`'s access rules, DNSBL zones, greeting delay and rate limits.
fn check_abuse_defences(config: &Config, p: &mut Problems) {
    let smtp = &config.smtp;
    for zone in &smtp.dnsbl_zones {
        check_domain(p, "smtp.dnsbl_zones", zone);
    }
    if smtp.greeting_delay_ms > 60_000 {
        p.add(
            "smtp.greeting_delay_ms",
            "must be at most 60000 (a minute); clients give up after a few seconds more",
        );
    }
    if smtp.min_data_rate > 0 && smtp.min_data_rate_grace_secs == 0 {
        p.add(
            "smtp.min_data_rate_grace_secs",
            "must be greater than 0 while smtp.min_data_rate is set",
        );
    }
    for (index, rule) in smtp.access.iter().enumerate() {
        let n = index + 1;
        if rule.from.is_empty() {
            p.add(
                "smtp.access",
                format!("rule {n}: `from` lists no address or range"),
            );
        }
        for range in &rule.from {
            if let Err(e) = range.parse::<Cidr>() {
                p.add("smtp.access", format!("rule {n}: {e}"));
            }
        }
        let allow_only = [
            ("relay", rule.relay),
            ("max_sessions", rule.max_sessions.is_some()),
            ("messages_per_minute", rule.messages_per_minute.is_some()),
            ("max_message_size", rule.max_message_size.is_some()),
            ("dnsbl", rule.dnsbl.is_some()),
        ];
        match rule.action {
            super::schema::AccessAction::Deny => {
                for (key, set) in allow_only {
                    if set {
                        p.add(
                            "smtp.access",
                            format!("rule {n}: `{key}` means nothing for action = \"deny\""),
                        );
                    }
                }
            }
            super::schema::AccessAction::Allow => {
                if rule.reply.is_some() {
                    p.add(
                        "smtp.access",
                        format!("rule {n}: `reply` is only for action = \"deny\""),
                    );
                }
            }
        }
        if let Some(reply) = &rule.reply
            && (reply.is_empty() || reply.len() > 400 || reply.chars().any(char::is_control))
        {
            p.add(
                "smtp.access",
                format!("rule {n}: `reply` must be one line of 1 to 400 characters"),
            );
        }
        if rule.max_sessions == Some(0) {
            p.add(
                "smtp.access",
                format!("rule {n}: `max_sessions` must be greater than 0 (use action = \"deny\")"),
            );
        }
        if rule.max_message_size.is_some_and(|size| size < 1024) {
            p.add(
                "smtp.access",
                format!("rule {n}: `max_message_size` must be at least 1024 octets"),
            );
        }
    }
}

/// `[inject]`: the domains qmail-inject's rules add must be plain domain names.
fn check_inject(config: &Config, p: &mut Problems) {
    let inject = &config.inject;
    for (key, domain) in [
        ("inject.default_host", &inject.default_host),
        ("inject.default_domain", &inject.default_domain),
        ("inject.plus_domain", &inject.plus_domain),
        ("inject.id_host", &inject.id_host),
    ] {
        if !domain.is_empty() {
            check_domain(p, key, domain);
        }
    }
    if inject.socket.to_string_lossy().contains('\0') {
        p.add("inject.socket", "must be a path");
    }
}

/// A domain name as configuration lists them: not empty, no `@`, spaces or slashes, no
/// trailing dot (RCPT domains are compared without one).
/// A user or group name as `server.user`/`server.group` take it (whether it exists on this
/// host is checked at startup, where it matters).
fn check_account_name(p: &mut Problems, key: &str, name: &str) {
    if name.is_empty() || name.contains(|c: char| c == ':' || c == '/' || c.is_whitespace()) {
        p.add(key, format!("`{name}` is not a user or group name"));
    }
}

fn check_domain(p: &mut Problems, key: &str, domain: &str) {
    if domain.is_empty()
        || domain.ends_with('.')
        || domain.contains(|c: char| c == '@' || c == '/' || c.is_whitespace())
    {
        p.add(key, format!("`{domain}` is not a domain name"));
    }
}

fn check_listeners(p: &mut Problems, key: &str, list: &[String]) {
    for addr in list {
        if addr.parse::<SocketAddr>().is_err() {
            p.add(
                key,
                format!("`{addr}` is not an ip:port address (e.g. 127.0.0.1:25 or [::1]:25)"),
            );
        }
    }
}

/// The files and programs the configuration names: a missing certificate or an unexecutable
/// checkpassword program should stop `check-config`, not the first login or STLS.
fn check_files(config: &Config, p: &mut Problems) {
    for (key, path) in [
        ("tls.cert", &config.tls.cert),
        ("tls.key", &config.tls.key),
        ("pop3.apop_secrets", &config.pop3.apop_secrets),
        ("relay.tls_ca_file", &config.relay.tls_ca_file),
        ("http.token_file", &config.http.token_file),
    ] {
        if let Some(path) = path
            && let Err(problem) = readable_file(path)
        {
            p.add(key, problem);
        }
    }
    if let Some(program) = config.pop3.checkpassword.first()
        && let Err(problem) = executable(program)
    {
        p.add("pop3.checkpassword", problem);
    }
    if let Some(program) = config.auth.checkpassword.first()
        && let Err(problem) = executable(program)
    {
        p.add("auth.checkpassword", problem);
    }
}

/// Opens `path` for reading (non-blocking, so a FIFO cannot hang the check).
fn readable_file(path: &Path) -> Result<(), String> {
    let opened: std::io::Result<File> = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    match opened.and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_dir() => Err(format!("{} is a directory, not a file", path.display())),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot read {}: {}", path.display(), plain_io(&e))),
    }
}

/// Finds `program` as `Command` will (a path if it has a slash, else a search of `PATH`) and
/// checks that it is an executable file.
fn executable(program: &str) -> Result<(), String> {
    if program.is_empty() {
        return Err("the program (the list's first item) is empty".to_string());
    }
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(program))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut problem = None;
    for candidate in &candidates {
        match std::fs::metadata(candidate) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => return Ok(()),
            Ok(meta) if meta.is_file() => {
                problem.get_or_insert(format!(
                    "program {} is not executable (chmod +x it)",
                    candidate.display()
                ));
            }
            Ok(_) => {
                problem.get_or_insert(format!("program {} is not a file", candidate.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                problem.get_or_insert(format!(
                    "cannot run program {}: {}",
                    candidate.display(),
                    plain_io(&e)
                ));
            }
        }
    }
    Err(problem.unwrap_or_else(|| {
        if program.contains('/') {
            format!("program {program} does not exist")
        } else {
            format!("program {program} is not in PATH (give its full path)")
        }
    }))
}

/// An I/O error without Rust's `(os error 2)` suffix.
fn plain_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// `[dkim]`, `[unsubscribe]`, `[feedback]`: values, and the key and secret files (a key that
/// does not load is reported here with its file, as it would stop startup).
fn check_deliverability(config: &Config, p: &mut Problems) {
    let dkim = &config.dkim;
    for key in &dkim.keys {
        check_domain(p, "dkim.keys", &key.domain);
        if key.selector.is_empty()
            || !key
                .selector
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            p.add(
                "dkim.keys",
                format!(
                    "selector `{}` is not a DNS label (letters, digits, '-')",
                    key.selector
                ),
            );
        }
        if let Err(problem) = crate::dkim::check_key_file(&key.key_file, key.algorithm) {
            p.add("dkim.keys", problem);
        }
    }
    let canon_ok = |c: &str| matches!(c, "relaxed" | "simple");
    let canonicalization_ok = match dkim.canonicalization.split_once('/') {
        Some((h, b)) => canon_ok(h) && canon_ok(b),
        None => canon_ok(&dkim.canonicalization),
    };
    if !canonicalization_ok {
        p.add(
            "dkim.canonicalization",
            "must be relaxed/relaxed, relaxed/simple, simple/relaxed or simple/simple",
        );
    }
    if !dkim.headers.iter().any(|h| h.eq_ignore_ascii_case("From")) {
        p.add("dkim.headers", "must include From (RFC 6376 §5.4)");
    }
    if let Some(h) = dkim.headers.iter().find(|h| {
        h.is_empty() || h.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control())
    }) {
        p.add("dkim.headers", format!("`{h}` is not a header field name"));
    }

    let unsubscribe = &config.unsubscribe;
    if let Some(file) = &unsubscribe.secret_file {
        match std::fs::read(file) {
            Ok(secret) if secret.trim_ascii_end().len() < crate::unsubscribe::MIN_SECRET_LEN => p
                .add(
                    "unsubscribe.secret_file",
                    format!(
                        "{} holds fewer than {} bytes; use e.g. `head -c 32 /dev/urandom | base64`",
                        file.display(),
                        crate::unsubscribe::MIN_SECRET_LEN
                    ),
                ),
            Ok(_) => {}
            Err(e) => p.add(
                "unsubscribe.secret_file",
                format!("cannot read {}: {}", file.display(), plain_io(&e)),
            ),
        }
        if !(unsubscribe.base_url.starts_with("https://")
            || unsubscribe.base_url.starts_with("http://"))
        {
            p.add(
                "unsubscribe.base_url",
                "must be the endpoint's https:// (or http://) URL when secret_file is set",
            );
        }
    }
    if !unsubscribe.mailto.is_empty() && !unsubscribe.mailto.contains('@') {
        p.add(
            "unsubscribe.mailto",
            "must be an address (user@domain) or empty",
        );
    }
    for domain in &unsubscribe.domains {
        check_domain(p, "unsubscribe.domains", domain);
    }
    let feedback = &config.feedback.address;
    if !feedback.is_empty()
        && (feedback
            .split_once('@')
            .is_none_or(|(l, d)| l.is_empty() || d.is_empty())
            || feedback.contains(char::is_whitespace))
    {
        p.add(
            "feedback.address",
            "must be an address (user@domain) or empty",
        );
    }
}
