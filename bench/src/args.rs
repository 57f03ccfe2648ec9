//! Command-line arguments of `ringmail-load` (clap derive) and their small parsers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ringmail-load",
    version,
    about = "SMTP and POP3 load generator (loopback only)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send messages over SMTP from many sessions and measure acceptance.
    Smtp(SmtpArgs),
    /// Log in to many POP3 mailboxes and RETR every message.
    Pop3(Pop3Args),
    /// Create Maildirs full of test messages (for POP3 benchmarks).
    FillMaildirs(FillArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SmtpArgs {
    /// Server address (IP:port; only loopback makes sense here).
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub server: SocketAddr,
    /// Concurrent sessions, one thread each.
    #[arg(long, default_value_t = 20)]
    pub sessions: u64,
    /// Message size in bytes, headers included.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub recipients: u64,
    /// Messages per connection before reconnecting.
    #[arg(long, default_value_t = 100)]
    pub per_connection: u64,
    /// Messages to send in all (attempts, accepted or not).
    #[arg(long, default_value_t = 20_000)]
    pub total: u64,
    /// Envelope sender.
    #[arg(long, default_value = "load@sender.test")]
    pub from: String,
    /// Recipient template; `{n}` becomes a per-recipient number.
    #[arg(long, default_value = "user@example.test")]
    pub to: String,
    /// Cycle `{n}` through 1..=N.
    #[arg(long)]
    pub to_spread: Option<u64>,
    /// Stop sending after this long, whatever the count (e.g. 120s, 2m, 500ms).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub duration_limit: Duration,
    /// Name given in EHLO.
    #[arg(long, default_value = "loadgen.test")]
    pub helo: String,
    /// After sending, wait for delivered files under DIR/**/Maildir/new/.
    #[arg(long, requires = "expect")]
    pub wait_delivered: Option<PathBuf>,
    /// After sending, wait until the message counter of Postfix's `smtp-sink -c`, whose output
    /// goes to FILE, has grown by --expect (default: the number accepted in this run).
    #[arg(long, conflicts_with = "wait_delivered")]
    pub wait_sink: Option<PathBuf>,
    /// How many new delivered files (or sink messages) to wait for.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Give up waiting for deliveries after this long (counted from the end of the load).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub wait_timeout: Duration,
    /// TLS for every connection: `starttls` upgrades after EHLO (RFC 3207), `smtps` starts
    /// with the handshake (RFC 8314). Any certificate is accepted.
    #[arg(long, value_enum, default_value = "none")]
    pub tls: crate::tls_client::TlsMode,
    /// Send no mail: each unit of --total is one connection (connect, TLS as --tls says, EHLO,
    /// QUIT), so the rate is connections (handshakes) per second.
    #[arg(long)]
    pub handshake_only: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Pop3Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:2110")]
    pub server: SocketAddr,
    /// Concurrent sessions; session i logs in as user (i mod users) + 1.
    #[arg(long, default_value_t = 20)]
    pub sessions: u64,
    /// User name template; `{n}` becomes 1..=users.
    #[arg(long, default_value = "u{n}@example.test")]
    pub user_template: String,
    /// Number of distinct users.
    #[arg(long, default_value_t = 20)]
    pub users: u64,
    /// Password for every user.
    #[arg(long, default_value = "secret")]
    pub password: String,
    /// Log in with the local part only (`u1` instead of `u1@example.test`).
    #[arg(long)]
    pub plain_user_names: bool,
    /// Times each session logs in, fetches everything and quits.
    #[arg(long, default_value_t = 1)]
    pub rounds: u64,
    /// Stop after this long, whatever is left.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub duration_limit: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct FillArgs {
    /// Mail root; mailboxes go to ROOT/<domain>/<user>/Maildir.
    #[arg(long)]
    pub root: PathBuf,
    /// Domain directory.
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// User directory name template; `{n}` becomes 1..=users.
    #[arg(long, default_value = "u{n}")]
    pub user_template: String,
    /// Number of users.
    #[arg(long, default_value_t = 20)]
    pub users: u64,
    /// Messages per user.
    #[arg(long, default_value_t = 50)]
    pub messages: u64,
    /// Size of each message file in bytes.
    #[arg(long, default_value_t = 102_400)]
    pub size: usize,
}

/// Parses `120s`, `2m`, `500ms`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 120s, 2m or 500ms"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        let ok = [
            ("120s", 120_000),
            ("120", 120_000),
            ("2m", 120_000),
            ("500ms", 500),
            ("1h", 3_600_000),
            (" 3s ", 3_000),
        ];
        for (input, ms) in ok {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
        for bad in ["", "s", "12x", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_full_smtp_command_line() {
        let cli = Cli::try_parse_from([
            "ringmail-load",
            "smtp",
            "--server",
            "127.0.0.1:2525",
            "--sessions",
            "5",
            "--to",
            "u{n}@example.test",
            "--to-spread",
            "20",
            "--duration-limit",
            "10s",
            "--wait-delivered",
            "/tmp/m",
            "--expect",
            "100",
        ])
        .unwrap();
        let Command::Smtp(args) = cli.command else {
            panic!("not smtp");
        };
        assert_eq!(args.sessions, 5);
        assert_eq!(args.to_spread, Some(20));
        assert_eq!(args.duration_limit, Duration::from_secs(10));
        assert_eq!(args.expect, Some(100));
        assert!(Cli::try_parse_from(["ringmail-load", "smtp", "--wait-delivered", "/x"]).is_err());
        let cli = Cli::try_parse_from(["ringmail-load", "smtp", "--wait-sink", "/tmp/c"]).unwrap();
        let Command::Smtp(args) = cli.command else {
            panic!("not smtp");
        };
        assert_eq!(args.wait_sink, Some(PathBuf::from("/tmp/c")));
        assert_eq!(args.expect, None);
        assert!(
            Cli::try_parse_from([
                "ringmail-load",
                "smtp",
                "--wait-sink",
                "/a",
                "--wait-delivered",
                "/b",
                "--expect",
                "1",
            ])
            .is_err()
        );
    }
}
