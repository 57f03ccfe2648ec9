//! `ringmail suppress add|del|list`: the suppression list (`<data_dir>/suppression`). Works the
//! same with the server running or stopped: changes are appended to the file, which a running
//! server replays within a second.

use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use super::{ConfigArg, fail};
use crate::suppression::{SuppressionList, Target, check_list_name};

fn open(arg: &ConfigArg) -> Result<std::sync::Arc<SuppressionList>, ExitCode> {
    let config = arg.load()?;
    let data_dir = &config.server.data_dir;
    let path = crate::suppression::path(data_dir);
    let existed = path.exists();
    let list = SuppressionList::open(&path).map_err(fail)?;
    // Created by root for a server that runs as another user: the file must be the server's
    // too, or its own appends (hard bounces, unsubscribes) would fail.
    if !existed && let Ok(meta) = std::fs::metadata(data_dir) {
        let _ = std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(list)
}

fn parse(target: &str, list: Option<&str>) -> Result<(Target, Option<String>), ExitCode> {
    let usage = |e: String| {
        eprintln!("ringmail: {e}");
        ExitCode::from(2)
    };
    let target = Target::parse(target).map_err(usage)?;
    if let Some(list) = list {
        check_list_name(list).map_err(usage)?;
    }
    Ok((target, list.map(str::to_string)))
}

pub fn add(
    arg: &ConfigArg,
    target: &str,
    list: Option<&str>,
    reason: &str,
) -> Result<ExitCode, ExitCode> {
    let (target, list_name) = parse(target, list)?;
    let suppression = open(arg)?;
    let shown = target.to_string();
    suppression
        .add(target, list_name, reason, crate::clock::now_unix())
        .map_err(fail)?;
    println!("{shown}: suppressed{}", for_list(list));
    Ok(ExitCode::SUCCESS)
}

pub fn del(arg: &ConfigArg, target: &str, list: Option<&str>) -> Result<ExitCode, ExitCode> {
    let (target, list_name) = parse(target, list)?;
    let suppression = open(arg)?;
    let shown = target.to_string();
    if suppression
        .del(target, list_name, crate::clock::now_unix())
        .map_err(fail)?
    {
        println!("{shown}: no longer suppressed{}", for_list(list));
        Ok(ExitCode::SUCCESS)
    } else {
        Err(fail(format!("{shown} is not suppressed{}", for_list(list))))
    }
}

pub fn list(arg: &ConfigArg) -> Result<ExitCode, ExitCode> {
    let suppression = open(arg)?;
    for ((target, list), entry) in suppression.snapshot().iter() {
        println!(
            "{target}\t{}\t{}\t{}",
            list.as_deref().unwrap_or("-"),
            crate::clock::rfc5322_date(entry.since),
            entry.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn for_list(list: Option<&str>) -> String {
    list.map(|l| format!(" for list {l}")).unwrap_or_default()
}
