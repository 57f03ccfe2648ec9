//! `ringmail check-config FILE`: validate a configuration exactly as `serve` would, and list
//! every error in it (not only the first), one per line as `file:line: key: message`.

use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path) -> Result<ExitCode, ExitCode> {
    let config = crate::config::check_file(file).map_err(|errors| {
        for e in &errors {
            eprintln!("ringmail: configuration error: {e}");
        }
        if errors.len() >= crate::config::MAX_ERRORS {
            eprintln!("ringmail: stopped after {} errors", errors.len());
        } else if errors.len() > 1 {
            eprintln!("ringmail: {} errors in {}", errors.len(), file.display());
        }
        ExitCode::from(2)
    })?;
    println!("{}: ok", file.display());
    println!("  hostname      {}", config.server.hostname);
    println!("  data_dir      {}", config.server.data_dir.display());
    // The user is a fact of the host, not of the file: say whether it exists here, and leave
    // the refusal to `serve` (a config may be checked on another machine than it runs on).
    let exists = match nix::unistd::User::from_name(&config.server.user) {
        Ok(Some(_)) => "",
        Ok(None) => ", which does not exist on this host",
        Err(_) => ", which cannot be looked up here",
    };
    println!(
        "  user          {} when started as root{exists}",
        config.server.user
    );
    println!("  smtp          {}", list_or_none(&config.smtp.listen));
    println!("  pop3          {}", list_or_none(&config.pop3.listen));
    println!(
        "  pop3s         {}",
        list_or_none(&config.pop3.pop3s_listen)
    );
    println!(
        "  smtps         {}",
        list_or_none(&config.smtp.smtps_listen)
    );
    println!(
        "  submission    {}",
        list_or_none(&config.submission.listen)
    );
    println!(
        "  http          {}",
        config
            .http
            .listen_address()
            .unwrap_or_else(|| "none".to_string())
    );
    println!(
        "  log           {} ({})",
        if config.server.log_file.as_os_str().is_empty() {
            "stderr".to_string()
        } else {
            config.server.log_file.display().to_string()
        },
        match config.server.log_format {
            crate::config::LogFormatSetting::Text => "text",
            crate::config::LogFormatSetting::Json => "json",
        }
    );
    println!(
        "  inject        {}",
        match crate::inject::socket_path(&config) {
            Some(socket) => format!(
                "{} (senders: {})",
                socket.display(),
                match config.inject.sender_check {
                    crate::config::SenderCheck::Any => "any",
                    crate::config::SenderCheck::Login => "login name only",
                }
            ),
            None => "(off)".to_string(),
        }
    );
    println!("  local domains {}", config.local.domains.join(", "));
    println!("  mail root     {}", config.mail_root().display());
    // Who may relay is the setting most worth a second look: an open relay is abused in hours.
    println!(
        "  relay from    {}",
        if config.smtp.relay_networks.is_empty() {
            "(nobody: only local domains and rcpthosts)".to_string()
        } else {
            config.smtp.relay_networks.join(", ")
        }
    );
    println!("  rcpthosts     {}", list_or_none(&config.smtp.rcpthosts));
    println!(
        "  tls           {}",
        match &config.tls.cert {
            Some(cert) => cert.display().to_string(),
            None if config.tls.self_signed => format!(
                "self-signed, in {} (made on first start)",
                config.self_signed_dir().display()
            ),
            None => "off (no certificate)".to_string(),
        }
    );
    println!(
        "  auth          {} (in the clear: {})",
        match config.checkpassword().first() {
            Some(program) => format!("checkpassword {program}"),
            None => format!("built-in database {}", config.passwd_path().display()),
        },
        match config.submission.allow_plaintext_auth {
            crate::config::PlaintextAuth::Never => "never",
            crate::config::PlaintextAuth::Loopback => "loopback only",
            crate::config::PlaintextAuth::Always => "always",
        }
    );
    // Access rules may grant relaying too, so they are shown beside relay_networks.
    println!("  access rules  {}", access_summary(&config.smtp.access));
    println!("  dnsbl         {}", list_or_none(&config.smtp.dnsbl_zones));
    let routes: Vec<String> = config
        .relay
        .routes
        .iter()
        .map(|(domain, target)| format!("{domain} -> {target}"))
        .collect();
    println!(
        "  routes        {}",
        if routes.is_empty() {
            "(none: every remote domain by MX)".to_string()
        } else {
            routes.join(", ")
        }
    );
    println!(
        "  dns           {}",
        if config.dns.nameservers.is_empty() {
            "the nameservers of /etc/resolv.conf".to_string()
        } else {
            config.dns.nameservers.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn list_or_none(list: &[String]) -> String {
    if list.is_empty() {
        "(none)".to_string()
    } else {
        list.join(", ")
    }
}

/// `[[smtp.access]]` in one line: each rule's action (with `+relay`) and its ranges, in order.
fn access_summary(rules: &[crate::config::AccessRuleSection]) -> String {
    if rules.is_empty() {
        return "(none)".to_string();
    }
    rules
        .iter()
        .map(|rule| {
            let action = match (rule.action, rule.relay) {
                (crate::config::AccessAction::Deny, _) => "deny",
                (crate::config::AccessAction::Allow, true) => "allow+relay",
                (crate::config::AccessAction::Allow, false) => "allow",
            };
            format!("{action} {}", rule.from.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
