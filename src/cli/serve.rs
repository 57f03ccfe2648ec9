//! `ringmail serve`: load the configuration and run the server until it is told to stop.

use super::{ConfigArg, fail};
use std::process::ExitCode;

pub fn run(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    crate::server::run(config).map_err(fail)?;
    Ok(ExitCode::SUCCESS)
}
