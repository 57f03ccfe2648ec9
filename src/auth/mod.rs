//! Password checking for POP3, modular in qmail's checkpassword spirit: the built-in argon2id
//! database (`passwd`), external checkpassword programs (`checkpassword`), APOP secrets (`apop`),
//! and the failed-login rate limiter (`limiter`).
//!
//! Every check here blocks (argon2id takes tens of milliseconds, programs fork): the POP3 driver
//! runs them on `crate::blocking::BlockingPool`, never on a shard thread.

pub mod apop;
pub mod checkpassword;
pub mod limiter;
pub mod passwd;

use std::net::IpAddr;
use std::path::PathBuf;

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Accepted,
    /// Wrong password or unknown user (never distinguished).
    Rejected,
    /// The checker could not decide (I/O error, checkpassword exit 111, timeout).
    TempFail,
}

/// Why a login failed, as the log line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong password or unknown user.
    BadCredentials,
    /// Refused unchecked: too many recent failures from this IP or for this user.
    RateLimited,
    /// The checker could not decide, or was too busy to try.
    Temporary,
}

impl LoginFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::BadCredentials => "bad-credentials",
            LoginFailure::RateLimited => "rate-limited",
            LoginFailure::Temporary => "temporary",
        }
    }
}

/// Logs one login attempt (SMTP AUTH or POP3), one line each, with a fixed shape operators
/// match with fail2ban (README, "Logging logins"):
///
/// ```text
/// login ok: service=smtp ip=192.0.2.7 method=PLAIN user="bob@example.com"
/// login failed: service=pop3 ip=192.0.2.7 method=USER reason=bad-credentials user="bob"
/// ```
///
/// The user name comes from the client: it is quoted with Rust's escaping, last on the line,
/// so it can neither forge another field nor break the line.
pub fn log_login(
    service: &str,
    ip: IpAddr,
    method: &str,
    user: &str,
    result: Result<(), LoginFailure>,
) {
    let user = user.escape_debug();
    match result {
        Ok(()) => log::info!("login ok: service={service} ip={ip} method={method} user=\"{user}\""),
        Err(why) => log::warn!(
            "login failed: service={service} ip={ip} method={method} reason={} user=\"{user}\"",
            why.as_str()
        ),
    }
}

/// Where passwords are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordChecker {
    /// The built-in database file (`<data_dir>/passwd`), re-read on each check so
    /// `ringmail passwd add` takes effect without a restart.
    Builtin { passwd: PathBuf },
    /// A DJB checkpassword program and its arguments.
    Checkpassword { program: PathBuf, args: Vec<String> },
}

impl PasswordChecker {
    /// Checks `user`'s `password`. Blocking: run it on the blocking pool.
    pub fn check(&self, user: &str, password: &str) -> CheckOutcome {
        match self {
            PasswordChecker::Builtin { passwd: path } => match passwd::load(path) {
                Ok(db) if db.verify(user, password) => CheckOutcome::Accepted,
                Ok(_) => CheckOutcome::Rejected,
                Err(e) => {
                    log::error!("auth: {e}");
                    CheckOutcome::TempFail
                }
            },
            PasswordChecker::Checkpassword { program, args } => {
                checkpassword::run(program, args, user, password, crate::clock::now_unix())
            }
        }
    }
}
