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
