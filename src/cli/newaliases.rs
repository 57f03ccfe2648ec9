//! `ringmail newaliases`: compile `[local] aliases` (an /etc/aliases-style file, with its
//! `:include:` files) into `<data_dir>/aliases.idx`, which a running server picks up within
//! `[local] refresh_secs`. Every error names the file and line; nothing is written then.

use std::process::ExitCode;

use super::ConfigArg;
use crate::local::aliases;

pub fn run(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    let config = arg.load()?;
    let Some(source) = config
        .local
        .aliases
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
    else {
        eprintln!("ringmail newaliases: [local] aliases is not set: there is nothing to compile");
        return Err(ExitCode::from(2));
    };
    let text = std::fs::read_to_string(&source).map_err(|e| {
        eprintln!("ringmail newaliases: cannot read {}: {e}", source.display());
        ExitCode::FAILURE
    })?;
    let parsed = aliases::parse(&source, &text, &mut |path| std::fs::read_to_string(path))
        .map_err(|e| {
            eprintln!("ringmail newaliases: {e}");
            ExitCode::FAILURE
        })?;
    let data_dir = &config.server.data_dir;
    crate::durable_dir::create_dir_all(data_dir).map_err(|e| {
        eprintln!(
            "ringmail newaliases: cannot create {}: {e}",
            data_dir.display()
        );
        ExitCode::FAILURE
    })?;
    let written =
        aliases::write_index(data_dir, &aliases::index_text(&parsed, &source)).map_err(|e| {
            eprintln!(
                "ringmail newaliases: cannot write the index in {}: {e}",
                data_dir.display()
            );
            ExitCode::FAILURE
        })?;
    println!(
        "{}: {} aliases from {}",
        written.display(),
        parsed.len(),
        source.display()
    );
    Ok(ExitCode::SUCCESS)
}
