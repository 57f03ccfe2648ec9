//! `ringmail sendmail` (and the binary run under the name `sendmail` or `mailq`): the
//! sendmail-compatible injection command. It reads a message, applies qmail-inject's header
//! rules (`headers`), and hands it to the running server through the injection socket
//! (`crate::inject`), which answers only once the message is durable. `-bs` runs the server's
//! own SMTP session on stdin and stdout (`stdio_smtp`).
//!
//! Exit codes are sendmail's (sysexits.h): 0 queued; 64 usage; 65 bad message or address; 66
//! no input; 67 unknown local user; 74 I/O error; 75 try again later (the server is not
//! running, or could not queue); 77 sender not allowed; 78 configuration error.

mod args;
mod headers;
mod stdio_smtp;

pub use args::{Invocation, Mode, parse};

use crate::config::Config;
use crate::inject::protocol::Outcome;
use headers::{Additions, AddressRules};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_IOERR: u8 = 74;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

/// Where the configuration is looked for when neither `-C` nor `RINGMAIL_CONFIG` names one:
/// the file `scripts/install` writes. Without it, the embedded default (data under
/// ./ringmail-data) is used, as `ringmail serve` does.
pub const SYSTEM_CONFIG: &str = "/etc/ringmail/ringmail.toml";

/// The help text for `ringmail sendmail --help` (clap never sees sendmail's own options).
pub const HELP: &str = "\
Usage: ringmail sendmail [options] [recipient ...]
       sendmail [options] [recipient ...]      (the same binary under the name sendmail)

Reads a message on standard input and queues it on the running ringmail server, which
answers only once the message is on disk (fdatasync'd), as for SMTP.

Options:
  -t             take recipients from To:, Cc: and Bcc: (or the Resent- ones), added to any
                 given as arguments; Bcc: is removed from the message
  -i, -oi        a line holding a lone `.` does not end the message
  -f ADDR        envelope sender (-r ADDR the same); -f '' or -f '<>' is the null sender;
                 default: your login at inject.default_host
  -F NAME        full name for an added From:
  -bm            read a message and queue it (the default)
  -bs            speak SMTP on standard input and output (the server's own SMTP session)
  -bp            list the queue (as `ringmail queue list`; `mailq` does the same)
  -C FILE        ringmail configuration (default: $RINGMAIL_CONFIG, else
                 /etc/ringmail/ringmail.toml when it exists, else the embedded default)
  -v             print the queue id
  -odi -odb -oem -oee -oep -om -B X -N X -R X -V X -L X -h N -m -n -U -G ...
                 accepted and ignored, as programs written for Sendmail or Postfix pass them

Header handling (qmail-inject's): Date:, Message-ID: and From: are added when missing;
addresses without a domain get inject.default_host, domains without a dot get
inject.default_domain, a domain ending in + gets inject.plus_domain; QMAILUSER, MAILUSER,
USER, LOGNAME name the sender, QMAILHOST, MAILHOST its domain, QMAILNAME, MAILNAME, NAME
(or -F) its full name; Return-Path: and Content-Length: are removed.

Exit status (sysexits): 0 queued; 64 usage; 65 bad message or address; 67 unknown local
user; 74 input error; 75 the server is not running or could not queue (try again; nothing
was queued); 77 this sender is not allowed (inject.sender_check); 78 configuration error.";

/// Runs sendmail with its arguments (argv[0] not included).
pub fn run(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help") {
        // A closed pipe (`| head`) is no error worth a panic.
        let _ = writeln!(std::io::stdout(), "{HELP}");
        return ExitCode::SUCCESS;
    }
    let inv = match parse(args) {
        Ok(inv) => inv,
        Err(e) => return fail(EX_USAGE, format!("{e} (see ringmail sendmail --help)")),
    };
    let config = match load_config(inv.config.as_deref()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match inv.mode {
        Mode::ListQueue => list_queue(&config),
        Mode::Smtp => match crate::inject::socket_path(&config) {
            Some(socket) => stdio_smtp::run(&config, &socket),
            None => fail(EX_TEMPFAIL, INJECTION_OFF),
        },
        Mode::Deliver => deliver(&inv, &config),
    }
}

/// `-bp`: what `ringmail queue list` prints.
fn list_queue(config: &Config) -> ExitCode {
    match crate::cli::queue::list_config(config) {
        Ok(code) | Err(code) => code,
    }
}

fn load_config(explicit: Option<&Path>) -> Result<Config, ExitCode> {
    let from_env = std::env::var_os("RINGMAIL_CONFIG").map(PathBuf::from);
    let path = explicit
        .map(Path::to_path_buf)
        .or(from_env)
        .or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()));
    let result = match &path {
        Some(path) => crate::config::load_file(path),
        None => crate::config::load_str(crate::config::EMBEDDED_DEFAULT, "<embedded default>"),
    };
    result.map_err(|e| fail(EX_CONFIG, format!("configuration error: {e}")))
}

const INJECTION_OFF: &str = "injection is turned off in the configuration (inject.socket = \"\")";

/// The default `-bm` mode: read, prepare, inject.
fn deliver(inv: &Invocation, config: &Config) -> ExitCode {
    let Some(socket) = crate::inject::socket_path(config) else {
        return fail(EX_TEMPFAIL, INJECTION_OFF);
    };
    let limit = config.smtp.max_message_size as u64;
    let mut input = Vec::new();
    // One octet past the limit tells "too big" from "exactly the limit".
    if let Err(e) = std::io::stdin()
        .lock()
        .take(limit + 64 * 1024)
        .read_to_end(&mut input)
    {
        return fail(EX_IOERR, format!("cannot read the message: {e}"));
    }
    let input = if inv.ignore_dots {
        &input[..]
    } else {
        headers::cut_at_dot(&input)
    };
    let me = Me::from_env(config);
    let rules = AddressRules {
        default_host: me.default_host.clone(),
        default_domain: config.inject.default_domain.clone(),
        plus_domain: non_empty(&config.inject.plus_domain, &me.default_host),
    };
    let additions = Additions {
        from_address: format!("{}@{}", me.user, me.host),
        full_name: inv.full_name.clone().or(me.full_name.clone()),
        id_host: non_empty(&config.inject.id_host, &me.default_host),
        now: crate::clock::now_unix(),
        unique: format!("{}.{:08x}", std::process::id(), fastrand::u32(..)),
    };
    let prepared = headers::prepare(input, &rules, &additions);
    if prepared.message.len() as u64 > limit {
        return fail(
            EX_DATAERR,
            format!("the message is larger than {limit} octets (smtp.max_message_size)"),
        );
    }
    let mut recipients: Vec<String> = inv.recipients.iter().map(|r| rules.qualify(r)).collect();
    if inv.recipients_from_headers {
        recipients.extend(prepared.header_recipients.iter().cloned());
    }
    if recipients.is_empty() {
        return fail(
            EX_USAGE,
            "no recipients: name them as arguments, or use -t to take them from the header",
        );
    }
    let sender = match inv.sender.as_deref() {
        Some("" | "<>") => String::new(),
        Some(sender) => rules.qualify(sender.trim_start_matches('<').trim_end_matches('>')),
        None => additions.from_address.clone(),
    };
    let reply = crate::inject::client::inject(&socket, &sender, &recipients, &prepared.message);
    match reply.outcome {
        Outcome::Queued => {
            if inv.verbose {
                println!("queued as {}", reply.text);
            }
            ExitCode::SUCCESS
        }
        other => fail(other.exit_code(), reply.text),
    }
}

/// Who is sending, by qmail-inject's environment variables and the password database.
struct Me {
    user: String,
    host: String,
    full_name: Option<String>,
    default_host: String,
}

impl Me {
    fn from_env(config: &Config) -> Me {
        let env = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| std::env::var(n).ok())
                .find(|v| !v.is_empty())
        };
        let account = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let default_host = non_empty(&config.inject.default_host, &config.server.hostname);
        let user = env(&["QMAILUSER", "MAILUSER", "USER", "LOGNAME"])
            .or_else(|| account.as_ref().map(|a| a.name.clone()))
            .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()));
        let host = env(&["QMAILHOST", "MAILHOST"]).unwrap_or_else(|| default_host.clone());
        let gecos = account.and_then(|a| {
            let gecos = a.gecos.to_string_lossy().into_owned();
            let name = gecos.split(',').next().unwrap_or("").trim().to_string();
            (!name.is_empty()).then_some(name)
        });
        Me {
            user,
            host,
            full_name: env(&["QMAILNAME", "MAILNAME", "NAME"]).or(gecos),
            default_host,
        }
    }
}

fn non_empty(value: &str, fallback: &str) -> String {
    if value.is_empty() {
        fallback.to_string()
    } else {
        value.to_string()
    }
}

/// Prints `sendmail: message` on stderr and returns the exit code.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("sendmail: {message}");
    ExitCode::from(code)
}
