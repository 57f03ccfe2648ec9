//! The `ringmail` command line: argument definitions (clap) and dispatch to one small file per
//! command group.

mod check_config;
mod newaliases;
mod passwd;
mod queue;
mod queue_control;
mod serve;

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
    <data_dir>/lock       held by the running server; a second one refuses to start
    <data_dir>/control.sock  the running server's control socket (mode 0600), used by
                          `ringmail queue flush|delete|bounce|pause|resume|status`; created
                          at start, removed at shutdown

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
    SIGHUP, SIGUSR1  reopen the log file (server.log_file), e.g. after logrotate renamed it; \
SIGHUP does not reload the configuration.
    SIGPIPE          ignored.

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
shard has pending. (`ringmail queue stat` counts from the queue files instead, and works \
without a running server.)")]
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
    };
    outcome.unwrap_or_else(|code| code)
}

/// Prints a runtime error in the one format every command uses, and gives exit code 1.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("ringmail: {message}");
    ExitCode::from(1)
}
