//! `ringmail queue flush|delete|bounce|pause|resume|status`: ask the running server, over its
//! control socket, to act on its queue (like qmailctl, postqueue -f and postsuper -d).

use super::{ConfigArg, fail};
use crate::control::ControlRequest;
use crate::control::client::{self, CLIENT_TIMEOUT};
use std::process::ExitCode;

/// Sends `request` to the server using `arg`'s data directory and prints its reply: the text
/// of an `ok` reply on stdout (exit 0), that of an `err` reply on stderr (exit 1).
pub fn run(arg: &ConfigArg, request: ControlRequest) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    // Absolute, as the server makes it, so the error names the directory unambiguously.
    let data_dir = std::path::absolute(&config.server.data_dir)
        .unwrap_or_else(|_| config.server.data_dir.clone());
    let reply = client::send(&data_dir, &request, CLIENT_TIMEOUT).map_err(fail)?;
    if reply.ok {
        println!("{}", reply.text);
        for line in &reply.details {
            println!("{line}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let code = fail(&reply.text);
        for line in &reply.details {
            eprintln!("{line}");
        }
        Err(code)
    }
}
