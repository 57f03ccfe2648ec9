//! `ringmail serve`: load the configuration and run the server until it is told to stop.

use super::{ConfigArg, fail};
use crate::server::ServerError;
use std::process::ExitCode;

pub fn run(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    match crate::server::run_from(config, arg.config.clone()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A setting that is wrong for this host (server.user does not exist) is a
        // configuration error like any other: exit 2, with the file, line and key.
        Err(ServerError::Config { key, message }) => {
            let error = crate::config::key_error(arg.config.as_deref(), key, message);
            eprintln!("ringmail: configuration error: {error}");
            Err(ExitCode::from(2))
        }
        Err(e) => Err(fail(e)),
    }
}
