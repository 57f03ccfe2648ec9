//! `ringmail-load`: a blocking, thread-per-session SMTP and POP3 load generator for benchmarking
//! ringmail (or any mail server) over loopback. It is a plain client: it uses none of ringmail's code.

#![forbid(unsafe_code)]

mod args;
mod delivery_wait;
mod error;
mod lines;
mod maildir_fill;
mod message;
mod pop3_client;
mod pop3_load;
mod sink_wait;
mod smtp_client;
mod smtp_load;
mod stats;
mod template;
#[cfg(test)]
mod test_server;
mod tls_client;

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;

use args::{Cli, Command, SmtpArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Smtp(args) => smtp(&args),
        Command::Pop3(args) => {
            let run = pop3_load::run(&args);
            pop3_load::print(&args, &run);
            exit_code(run.messages > 0 && run.errors == 0)
        }
        Command::FillMaildirs(args) => match maildir_fill::fill(&args) {
            Ok(n) => {
                println!("wrote {n} messages under {}", args.root.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fill-maildirs: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn smtp(args: &SmtpArgs) -> ExitCode {
    // Anchor to map the monotonic first-send instant onto file modification times.
    let anchor = (Instant::now(), SystemTime::now());
    let baseline = match &args.wait_delivered {
        Some(dir) => match delivery_wait::scan(dir) {
            Ok(s) => s.files,
            Err(_) => 0, // the server may not have created its mail root yet
        },
        None => 0,
    };
    // The sink watcher starts before the first message, so arrivals during the load count.
    let watcher = match &args.wait_sink {
        Some(path) => match sink_wait::Watcher::start(path.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("--wait-sink {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let run = smtp_load::run(args);
    smtp_load::print(args, &run);
    let mut ok = run.accepted > 0 && run.errors == 0;
    if let Some(watcher) = watcher {
        ok &= report_sink(args, &run, watcher);
    }
    if let (Some(dir), Some(expect)) = (&args.wait_delivered, args.expect) {
        let waited = delivery_wait::wait(dir, baseline, expect, args.wait_timeout);
        let first = run.first_send.unwrap_or(anchor.0);
        let first_wall = anchor.1 + first.saturating_duration_since(anchor.0);
        // Prefer the newest file's mtime (exact); fall back to when the poll saw it.
        let e2e = waited
            .newest
            .and_then(|t| t.duration_since(first_wall).ok())
            .unwrap_or_else(|| waited.last_increase.saturating_duration_since(first));
        let rate = stats::per_second(waited.delivered as f64, e2e);
        println!("delivery: dir={} expect={expect}", dir.display());
        println!(
            "  delivered         {}{}",
            waited.delivered,
            if waited.timed_out { " (timed out)" } else { "" }
        );
        println!("  first send → last file  {:.3} s", e2e.as_secs_f64());
        println!("  delivered/s       {rate:.1}");
        println!(
            "RESULT smtp-delivered sessions={} size={} expect={expect} delivered={} timed_out={} e2e_s={:.3} rate={rate:.1}",
            args.sessions,
            args.size,
            waited.delivered,
            waited.timed_out,
            e2e.as_secs_f64()
        );
        ok &= !waited.timed_out;
    }
    exit_code(ok)
}

/// Waits for the sink to receive what was accepted and prints the end-to-end figures; true if
/// everything arrived in time.
fn report_sink(args: &SmtpArgs, run: &smtp_load::SmtpRun, watcher: sink_wait::Watcher) -> bool {
    let expect = args.expect.unwrap_or(run.accepted);
    let waited = watcher.finish(expect, args.wait_timeout);
    let e2e = match (run.first_send, waited.reached) {
        (Some(first), Some(reached)) => reached.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let rate = stats::per_second(waited.relayed as f64, e2e);
    let rcpt_rate = rate * args.recipients as f64;
    println!(
        "relay: sink counter={} expect={expect} (baseline {})",
        args.wait_sink
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string()),
        waited.baseline
    );
    println!(
        "  relayed           {}{}",
        waited.relayed,
        if waited.timed_out { " (timed out)" } else { "" }
    );
    println!("  first send → sink has all  {:.3} s", e2e.as_secs_f64());
    println!("  relayed msg/s     {rate:.1}");
    println!(
        "RESULT smtp-relayed sessions={} size={} recipients={} expect={expect} relayed={} timed_out={} e2e_s={:.3} rate={rate:.1} rcpt_rate={rcpt_rate:.1}",
        args.sessions,
        args.size,
        args.recipients,
        waited.relayed,
        waited.timed_out,
        e2e.as_secs_f64()
    );
    !waited.timed_out && expect > 0
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
