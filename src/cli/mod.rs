//! The `ringmail` command line: argument definitions (clap) and dispatch to one small file per
//! command group.

mod check_config;
mod dkim;
mod import_qmail;
mod newaliases;
mod passwd;
mod queue;
mod queue_control;
pub mod sendmail;
mod serve;
mod stats;
mod suppress;

use crate::control::ControlRequest;
use crate::queue::MessageId;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
QUICK START:
    ringmail serve                     # embedded default: SMTP 127.0.0.1:2525, POP3 127.0.0.1:2110
    python3 -c 'import smtplib; smtplib.SMTP(\"127.0.0.1\", 2525).sendmail(\"me@localhost\", [\"bob@example.test\"], \"Subject: hi\\r\\n\\r\\nhello\\r\\n\")'
    ls ringmail-data/mail/example.test/bob/Maildir/new/
    ringmail queue list                # what is queued; `ringmail queue flush` retries it now

FILES:
    <data_dir>/queue/     the durable queue (one directory per shard)
    <data_dir>/mail/      default mail root: <domain>/<user>/Maildir
    <data_dir>/passwd     built-in POP3 user database (argon2id hashes)
    <data_dir>/suppression  the suppression list (`ringmail suppress`), appended to by the
                          server (hard bounces, unsubscribes, complaints) and the CLI
    <data_dir>/lock       held by the running server; a second one refuses to start
    <data_dir>/control.sock  the running server's control socket (mode 0600), used by
                          `ringmail queue flush|delete|bounce|pause|resume|status`; created
                          at start, removed at shutdown
    <data_dir>/inject.sock   the injection socket (mode 0666; inject.socket moves it), used by
                          `ringmail sendmail` and /usr/sbin/sendmail

EXIT STATUS:
    0 success; 1 runtime error (message on stderr), including a queue control request the
    server refused or no running server to ask; 2 usage or configuration error (a malformed
    message id, and a server.user that does not exist on this host, included).

See README.md for the configuration reference.";

/// ringmail: a thread-per-core mail transfer agent (SMTP, local Maildir delivery, POP3).
#[derive(Debug, Parser)]
#[command(name = "ringmail", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mail server in the foreground until SIGTERM or SIGINT.
    #[command(long_about = "\
Run the mail server in the foreground: one shard (thread) per CPU, each accepting SMTP and POP3 \
connections, queueing mail durably (fdatasync before every 250), delivering local mail into \
Maildirs and relaying the rest by MX or by the static routes of [relay], as the route step \
decides for every recipient. Only clients in smtp.relay_networks may relay.

Without --config, runs the embedded default: SMTP on 127.0.0.1:2525 and POP3 on 127.0.0.1:2110, \
the domains `localhost` and `example.test` are local and accept any user, nobody may relay, DNS \
is asked only of a resolver on 127.0.0.1:53, and all data lives under ./ringmail-data. Prints \
where it listens and where mail goes, then logs one line per event to stderr.

Started as root, it binds its ports and then runs as server.user (default ringmail) before \
it accepts a connection; started as any other user, it runs as that user.

Signals:
    SIGTERM, SIGINT  shut down gracefully: listeners close, open SMTP sessions are answered 421, \
the queue is synced, the log is flushed, and the process exits 0 (a second one exits at once). \
Mail still queued is delivered after the next start.
    SIGALRM          retry every deferred recipient now (as qmail-send; `ringmail queue flush`).
    SIGHUP           reload the configuration file: access rules, limits, timeouts, DNSBL zones, \
relay_networks, rcpthosts, the TLS certificate, POP3 settings and log_level apply to new \
sessions; listen addresses, shards, data_dir, user and the [queue], [dns] and [relay] sections \
need a restart. A file with an error is refused (logged) and the running settings stay. Also \
reopens the log file.
    SIGUSR1          reopen the log file (server.log_file), e.g. after logrotate renamed it.
    SIGPIPE          ignored.

HTTP control plane: with [http] listen set (the embedded default: 127.0.0.1:2580), GET /metrics \
(Prometheus) and /healthz, and with the bearer token of http.token the queue API and \
POST /api/inject (see README.md, \"HTTP API and metrics\").

Logging: server.log_file (empty: stderr), server.log_format (\"text\" or \"json\"). \
Blocking work (password checks, POP3 mailboxes) runs on server.blocking_threads threads behind \
a queue of server.blocking_queue jobs.")]
    Serve(ConfigArg),

    /// Check a configuration file and print the settings it yields.
    #[command(long_about = "\
Parse and validate a configuration file exactly as `serve` would, without starting anything. \
Prints `FILE: ok` and a summary, or the first error with its file, line and key, and exits 2.")]
    CheckConfig {
        /// The TOML configuration file to check.
        file: PathBuf,
    },

    /// Inspect the queue (stat, list: running or stopped server), or control delivery on the
    /// running server (flush, delete, bounce, pause, resume, status).
    #[command(subcommand)]
    Queue(QueueCommand),

    /// Manage the built-in POP3 user database (<data_dir>/passwd).
    #[command(subcommand)]
    Passwd(PasswdCommand),

    /// Delivery statistics from ringmail's log (qmailanalog's zoverall, zddist, zrecipients).
    #[command(long_about = "\
Read ringmail log files (text or JSON format, mixed is fine; standard input when no file is \
given) and print: messages queued, their bytes and recipients, bounces queued, delivery \
successes, deferrals and failures; the distribution of delivery times (from a message's \
`new msg` line to each recipient's success or failure); the busiest recipient domains; the \
commonest failure and deferral reasons.

--since and --until take YYYY-MM-DD, `YYYY-MM-DD HH:MM[:SS]`, YYYY-MM-DDTHH:MM:SSZ or Unix \
seconds, in UTC as the log is written; lines before --since or at/after --until are skipped.

Examples:
    ringmail stats /var/log/ringmail/current
    ringmail stats --since 2026-11-25 --until '2026-11-26' --json ringmail.log.1 ringmail.log
    zcat ringmail.log.*.gz | ringmail stats")]
    Stats {
        /// Count only lines at or after this time (UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Count only lines before this time (UTC).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Log files to read, in order; standard input when none.
        #[arg(value_name = "LOGFILE")]
        files: Vec<PathBuf>,
    },

    /// Queue a message from stdin on the running server, as sendmail does (-t, -i, -f, -F,
    /// -bs, -bp...); `ringmail sendmail --help` lists the options.
    #[command(
        long_about = "\
The sendmail-compatible injection command: reads a message on standard input, adds the \
missing Date:, Message-ID: and From: (qmail-inject's rules), removes Bcc:, and queues it on \
the running server through its injection socket; it exits 0 only once the message is on \
disk. Installed as /usr/sbin/sendmail (a link to ringmail), the same options work under that \
name. `ringmail sendmail --help` lists them; exit codes follow sysexits.h (75: the server is \
not running, nothing was queued, try again).",
        disable_help_flag = true
    )]
    Sendmail {
        /// sendmail's options and the recipients, e.g. `-t -oi` or `-f me@example.test bob@example.test`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },

    /// Print the ringmail configuration equivalent to a qmail control directory.
    #[command(long_about = "\
Read a qmail control directory (usually /var/qmail/control: me, locals, rcpthosts, \
morercpthosts, virtualdomains, smtproutes, databytes, concurrencyremote, timeoutsmtpd, \
timeoutremote, timeoutconnect, queuelifetime, helohost, defaulthost, defaultdomain, plusdomain, \
idhost) and print the equivalent ringmail configuration on stdout. Everything that has no \
equivalent is named in a `# not translated:` comment at the top and on stderr. The output \
passes `ringmail check-config`:

    ringmail import-qmail /var/qmail/control > /etc/ringmail/ringmail.toml
    ringmail check-config /etc/ringmail/ringmail.toml")]
    ImportQmail {
        /// The qmail control directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// DKIM signing keys: `ringmail dkim keygen DOMAIN SELECTOR`.
    #[command(subcommand)]
    Dkim(DkimCommand),

    /// The suppression list: recipients ringmail never sends to (add, del, list).
    #[command(subcommand)]
    Suppress(SuppressCommand),

    /// Compile [local] aliases into the index the server reads (<data_dir>/aliases.idx).
    #[command(long_about = "\
Read the aliases file named by [local] aliases (the /etc/aliases format: `name: target, ...`, \
continuation lines starting with a blank, # comments; targets are addresses, /files (mbox), \
/dirs/ (Maildir), \"|programs\" and :include:/path lists), check every line, and write the \
compiled form to <data_dir>/aliases.idx (a temporary file, synced, renamed over the old one). \
A running server picks it up within [local] refresh_secs. On any error nothing is written and \
the error names the file and line; exit status 1 (2 when [local] aliases is not set).")]
    Newaliases(ConfigArg),

    /// Internal: the privileged local-delivery helper the server starts for system users.
    #[command(hide = true)]
    LocalHelper {
        /// Do one request from stdin as the ids we were started with, then exit.
        #[arg(long)]
        run_one: bool,
        /// The lowest uid the helper delivers as.
        #[arg(long, default_value_t = 1000)]
        min_uid: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Generate a signing key: write its private key (PEM, mode 0600) and print the DNS record.
    #[command(long_about = "\
Generate a DKIM signing key for DOMAIN and SELECTOR. The private key (PKCS#8 PEM, mode 0600) is \
written to DIR/DOMAIN.SELECTOR.pem (never over an existing file); the DNS TXT record that \
publishes the public key is printed on stdout, as a zone-file line with the value split into \
strings of at most 255 octets:

    SELECTOR._domainkey.DOMAIN. IN TXT ( \"v=DKIM1; k=rsa; p=MIIBIjANBgkq...\" \"...\" )

and the [[dkim.keys]] entry to add to the configuration is printed on stderr. Publish the record \
before the key signs mail. RSA-2048 is what every verifier accepts; Ed25519 (RFC 8463) is smaller \
and faster, but sign with an RSA key as well (two keys for one domain each sign).

EXIT STATUS:
    0 the key was written; 1 it could not be written (DIR missing, file exists);
    2 usage error (a bad domain, selector or size).")]
    Keygen {
        /// The signing domain (d=), e.g. example.com.
        domain: String,
        /// The selector (s=), e.g. s2026; the record is SELECTOR._domainkey.DOMAIN.
        selector: String,
        /// rsa (RSA-SHA256, RFC 6376) or ed25519 (Ed25519-SHA256, RFC 8463).
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: KeyAlgorithm,
        /// RSA modulus size: 2048, 3072 or 4096 (ignored for ed25519).
        #[arg(long, default_value_t = 2048)]
        bits: u32,
        /// Where to write the key file.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

/// `--algorithm` of `dkim keygen`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlgorithm {
    Rsa,
    Ed25519,
}

#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Suppress an address (bob@example.com) or a whole domain (example.com).
    #[command(long_about = "\
Add TARGET to the suppression list: an address (bob@example.com), or a domain (example.com, \
which also covers its subdomains). With --list NAME, only mail of that list (its \
X-Ringmail-List, or [unsubscribe] domain) is suppressed, as a one-click unsubscribe does. \
A suppressed recipient is failed (5.7.1, with a bounce to the sender) without a delivery \
attempt. The change is appended to <data_dir>/suppression and fsynced; a running server \
applies it within a second.")]
    Add {
        /// An address or a domain.
        target: String,
        /// Only for this list.
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        /// Why, for the list and the log.
        #[arg(long, default_value = "added by the postmaster")]
        reason: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Lift a suppression (the same TARGET and --list it was added with).
    Del {
        target: String,
        #[arg(long, value_name = "NAME")]
        list: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the list: target, list (- for all mail), since, reason; tab-separated.
    List(ConfigArg),
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Count queued messages and their recipients, like qmail-qstat.
    Stat(ConfigArg),
    /// List every queued message: id, date, size, sender, each recipient and its state (like
    /// qmail-qread).
    List(ConfigArg),

    /// Retry every deferred recipient now (like qmailctl flush, postqueue -f). Needs the
    /// running server.
    #[command(long_about = "\
Ask the running server to retry every deferred recipient now, ignoring the retry schedule \
(qmailctl flush, postqueue -f). Prints how many recipients were scheduled; the deliveries \
themselves happen afterwards, as usual.")]
    #[command(after_help = CONTROL_HELP)]
    Flush(ConfigArg),

    /// Drop a message without a bounce (like postsuper -d). Needs the running server.
    #[command(long_about = "\
Ask the running server to drop the message ID: every recipient not yet delivered is marked \
failed, and no bounce is sent to the sender. Recipients already delivered stay delivered. \
ID is a message id as `ringmail queue list` prints it, e.g. 1a.0.3.")]
    #[command(after_help = CONTROL_HELP)]
    Delete {
        /// The message id, as printed by `ringmail queue list` (<hex>.<shard>.<index>).
        #[arg(value_name = "ID")]
        id: MessageId,
        #[command(flatten)]
        config: ConfigArg,
    },

    /// Give up on a message and bounce it to its sender. Needs the running server.
    #[command(long_about = "\
Ask the running server to give up on the message ID: every recipient not yet delivered is \
returned to the sender in a bounce saying the message was deleted by the postmaster. \
ID is a message id as `ringmail queue list` prints it, e.g. 1a.0.3.")]
    #[command(after_help = CONTROL_HELP)]
    Bounce {
        /// The message id, as printed by `ringmail queue list` (<hex>.<shard>.<index>).
        #[arg(value_name = "ID")]
        id: MessageId,
        #[command(flatten)]
        config: ConfigArg,
    },

    /// Stop delivering; mail is still accepted and queued (like qmailctl pause, Postfix hold).
    #[command(long_about = "\
Ask the running server to stop starting deliveries, on every shard. Deliveries already under \
way finish; SMTP keeps accepting mail, which waits in the queue until `ringmail queue resume`. \
A restart resumes delivery.")]
    #[command(after_help = CONTROL_HELP)]
    Pause(ConfigArg),

    /// Start delivering again after `queue pause`. Needs the running server.
    #[command(after_help = CONTROL_HELP)]
    Resume(ConfigArg),

    /// Ask the running server whether delivery is paused, and how much is pending per shard.
    #[command(long_about = "\
Ask the running server whether delivery is running or paused, and how many recipients each \
shard has pending; then one line per destination (or source address at a destination) that a \
`[relay.backoff]` rule has suspended or slowed, with the time left, the rule and the reply that \
matched it. (`ringmail queue stat` counts from the queue files instead, and works without a \
running server.)")]
    #[command(after_help = CONTROL_HELP)]
    Status(ConfigArg),
}

/// The common part of every queue control command's help.
const CONTROL_HELP: &str = "\
This command talks to the running server through <data_dir>/control.sock (the data directory \
comes from --config, or ./ringmail-data for the embedded default), so it needs the server to \
be running, and permission to open the socket (mode 0600: the server's user).

EXIT STATUS:
    0 the server carried out the request (its answer is printed on stdout);
    1 the server refused or failed it (its answer is printed on stderr), it did not answer in
      time, or no server is running on the data directory;
    2 usage or configuration error, including a malformed message id.";

#[derive(Debug, Subcommand)]
pub enum PasswdCommand {
    /// Add a user, or change its password. The password is read from the first line of stdin.
    #[command(long_about = "\
Add ADDRESS to the built-in user database, or change its password. The password is the first \
line of standard input (without its newline), so it never shows in the process list:

    printf 'secret\\n' | ringmail passwd add bob@example.test

It is stored as an argon2id hash; the file is rewritten atomically, and a running server sees \
the change at the next login.")]
    Add {
        /// The user's address, e.g. bob@example.test (the POP3 login name).
        address: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove a user.
    Del {
        address: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the users (addresses only, never hashes).
    List(ConfigArg),
}

/// The `--config` option shared by every command that reads the configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML). Without it, the embedded default is used, with its data
    /// directory ./ringmail-data.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads the configuration this command runs with, or prints the error and returns the exit
    /// code for a configuration error.
    pub fn load(&self) -> Result<crate::config::Config, ExitCode> {
        let result = match &self.config {
            Some(path) => crate::config::load_file(path),
            None => crate::config::load_str(crate::config::EMBEDDED_DEFAULT, "<embedded default>"),
        };
        result.map_err(|e| {
            eprintln!("ringmail: configuration error: {e}");
            ExitCode::from(2)
        })
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Command::Serve(arg) => serve::run(&arg),
        Command::LocalHelper { run_one, min_uid } => {
            let done = if run_one {
                crate::local::helper::run_one()
            } else {
                crate::local::helper::serve(min_uid)
            };
            return match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ringmail local-helper: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::CheckConfig { file } => check_config::run(&file),
        Command::Newaliases(arg) => newaliases::run(&arg),
        Command::Queue(QueueCommand::Stat(arg)) => queue::stat(&arg),
        Command::Queue(QueueCommand::List(arg)) => queue::list(&arg),
        Command::Queue(QueueCommand::Flush(arg)) => queue_control::run(&arg, ControlRequest::Flush),
        Command::Queue(QueueCommand::Delete { id, config }) => {
            queue_control::run(&config, ControlRequest::Delete(id))
        }
        Command::Queue(QueueCommand::Bounce { id, config }) => {
            queue_control::run(&config, ControlRequest::Bounce(id))
        }
        Command::Queue(QueueCommand::Pause(arg)) => queue_control::run(&arg, ControlRequest::Pause),
        Command::Queue(QueueCommand::Resume(arg)) => {
            queue_control::run(&arg, ControlRequest::Resume)
        }
        Command::Queue(QueueCommand::Status(arg)) => {
            queue_control::run(&arg, ControlRequest::Status)
        }
        Command::Passwd(PasswdCommand::Add { address, config }) => passwd::add(&config, &address),
        Command::Passwd(PasswdCommand::Del { address, config }) => passwd::del(&config, &address),
        Command::Passwd(PasswdCommand::List(arg)) => passwd::list(&arg),
        Command::Stats {
            since,
            until,
            json,
            files,
        } => stats::run(since.as_deref(), until.as_deref(), json, &files),
        Command::Sendmail { args } => Ok(sendmail::run(&args)),
        Command::ImportQmail { dir } => import_qmail::run(&dir),
        Command::Dkim(DkimCommand::Keygen {
            domain,
            selector,
            algorithm,
            bits,
            dir,
        }) => {
            let algorithm = match algorithm {
                KeyAlgorithm::Rsa => crate::config::DkimAlgorithm::Rsa,
                KeyAlgorithm::Ed25519 => crate::config::DkimAlgorithm::Ed25519,
            };
            dkim::keygen(&domain, &selector, algorithm, bits, &dir)
        }
        Command::Suppress(SuppressCommand::Add {
            target,
            list,
            reason,
            config,
        }) => suppress::add(&config, &target, list.as_deref(), &reason),
        Command::Suppress(SuppressCommand::Del {
            target,
            list,
            config,
        }) => suppress::del(&config, &target, list.as_deref()),
        Command::Suppress(SuppressCommand::List(arg)) => suppress::list(&arg),
    };
    outcome.unwrap_or_else(|code| code)
}

/// Prints a runtime error in the one format every command uses, and gives exit code 1.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ringmail: {message}");
    ExitCode::from(1)
}
