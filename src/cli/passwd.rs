//! `ringmail passwd add|del|list`: manage the built-in POP3 user database.

use super::{ConfigArg, fail};
use std::io::BufRead;
use std::process::ExitCode;

pub fn add(arg: &ConfigArg, address: &str) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    crate::mailbox::split_address(address).map_err(|e| fail(format!("`{address}`: {e}")))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| fail(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(fail("no password on stdin (give it as the first line)"));
    }
    let path = config.passwd_path();
    crate::durable_dir::create_dir_all(&config.server.data_dir).map_err(|e| {
        fail(format!(
            "cannot create {}: {e}",
            config.server.data_dir.display()
        ))
    })?;
    crate::auth::passwd::add(&path, address, password).map_err(fail)?;
    println!("{address}: password set in {}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn del(arg: &ConfigArg, address: &str) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    let path = config.passwd_path();
    crate::auth::passwd::delete(&path, address).map_err(fail)?;
    println!("{address}: removed from {}", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn list(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    for address in crate::auth::passwd::list(&config.passwd_path()).map_err(fail)? {
        println!("{address}");
    }
    Ok(ExitCode::SUCCESS)
}
