//! The `ringmail` command line: argument definitions (clap) and dispatch to one small file per
//! command group.

mod check_config;
mod passwd;
mod queue;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
QUICK START:
    ringmail serve                     # embedded default: SMTP 127.0.0.1:2525, POP3 127.0.0.1:2110
    python3 -c 'import smtplib; smtplib.SMTP(\"127.0.0.1\", 2525).sendmail(\"me@localhost\", [\"bob@example.test\"], \"Subject: hi\\r\\n\\r\\nhello\\r\\n\")'
    ls ringmail-data/mail/example.test/bob/Maildir/new/

FILES:
    <data_dir>/queue/     the durable queue (one directory per shard)
    <data_dir>/mail/      default mail root: <domain>/<user>/Maildir
    <data_dir>/passwd     built-in POP3 user database (argon2id hashes)
    <data_dir>/lock       held by the running server; a second one refuses to start

EXIT STATUS:
    0 success; 1 runtime error (message on stderr); 2 usage or configuration error.

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
connections, queueing mail durably (fdatasync before every 250) and delivering it into Maildirs.

Without --config, runs the embedded default: SMTP on 127.0.0.1:2525 and POP3 on 127.0.0.1:2110, \
the domains `localhost` and `example.test` are local and accept any user, and all data lives \
under ./ringmail-data. Prints where it listens and where mail goes, then logs one line per event \
to stderr.

SIGTERM or SIGINT shuts down gracefully: listeners close, open SMTP sessions are answered 421, \
the queue is synced, and the process exits 0. Mail still queued is delivered after the next start.")]
    Serve(ConfigArg),

    /// Check a configuration file and print the settings it yields.
    #[command(long_about = "\
Parse and validate a configuration file exactly as `serve` would, without starting anything. \
Prints `FILE: ok` and a summary, or the first error with its file, line and key, and exits 2.")]
    CheckConfig {
        /// The TOML configuration file to check.
        file: PathBuf,
    },

    /// Inspect the queue (works on a running or a stopped server's data directory).
    #[command(subcommand)]
    Queue(QueueCommand),

    /// Manage the built-in POP3 user database (<data_dir>/passwd).
    #[command(subcommand)]
    Passwd(PasswdCommand),
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Count queued messages and their recipients, like qmail-qstat.
    Stat(ConfigArg),
    /// List every queued message: id, date, size, sender, each recipient and its state (like
    /// qmail-qread).
    List(ConfigArg),
}

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
        Command::CheckConfig { file } => check_config::run(&file),
        Command::Queue(QueueCommand::Stat(arg)) => queue::stat(&arg),
        Command::Queue(QueueCommand::List(arg)) => queue::list(&arg),
        Command::Passwd(PasswdCommand::Add { address, config }) => passwd::add(&config, &address),
        Command::Passwd(PasswdCommand::Del { address, config }) => passwd::del(&config, &address),
        Command::Passwd(PasswdCommand::List(arg)) => passwd::list(&arg),
    };
    outcome.unwrap_or_else(|code| code)
}

/// Prints a runtime error in the one format every command uses, and gives exit code 1.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ringmail: {message}");
    ExitCode::from(1)
}
