//! The POP3 load: N sessions, each logging in as its own user, fetching every message, quitting.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Pop3Args;
use crate::error::ClientError;
use crate::pop3_client::Pop3Connection;
use crate::stats::{self, ErrorSampler, Latency};
use crate::template;

/// Longest a single socket read or write may block.
const MAX_IO_TIMEOUT: Duration = Duration::from_secs(30);

static ERRORS: ErrorSampler = ErrorSampler::new(5);

#[derive(Debug, Default)]
struct SessionReport {
    logins: u64,
    messages: u64,
    bytes: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    finished: Option<Instant>,
}

/// The whole run, summed over sessions.
#[derive(Debug)]
pub struct Pop3Run {
    pub logins: u64,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Per-RETR latency, command sent to terminator read.
    pub latency: Latency,
    pub sessions_lost: u64,
}

/// The login name for session `id` (from 0).
pub fn user_for(args: &Pop3Args, id: u64) -> String {
    let user = template::expand(&args.user_template, id % args.users.max(1) + 1);
    if args.plain_user_names {
        template::local_part(&user).to_string()
    } else {
        user
    }
}

/// Runs the load; returns even if sessions hang (they are abandoned).
pub fn run(args: &Pop3Args) -> Pop3Run {
    let start = Instant::now();
    let deadline = start + args.duration_limit;
    let args_shared = Arc::new(args.clone());
    let (tx, rx) = mpsc::channel();
    for id in 0..args.sessions {
        let args = Arc::clone(&args_shared);
        let tx = tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("pop3-{id}"))
            .spawn(move || {
                let _ = tx.send(session(&args, id, deadline));
            });
        if let Err(e) = spawned {
            ERRORS.report(&format!("cannot start session thread: {e}"));
        }
    }
    drop(tx);
    let give_up = deadline + MAX_IO_TIMEOUT + Duration::from_secs(5);
    let mut reports = Vec::new();
    while let Ok(report) = rx.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
        reports.push(report);
    }
    let mut run = Pop3Run {
        logins: 0,
        messages: 0,
        bytes: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Latency::default(),
        sessions_lost: args.sessions.saturating_sub(reports.len() as u64),
    };
    let mut latencies = Vec::new();
    let mut end = start;
    for r in reports {
        run.logins += r.logins;
        run.messages += r.messages;
        run.bytes += r.bytes;
        run.errors += r.errors;
        latencies.extend(r.latencies_us);
        end = end.max(r.finished.unwrap_or(end));
    }
    if run.sessions_lost > 0 {
        end = Instant::now();
    }
    run.elapsed = end - start;
    run.latency = Latency::from_samples(&mut latencies);
    run
}

fn session(args: &Pop3Args, id: u64, deadline: Instant) -> SessionReport {
    let user = user_for(args, id);
    let mut report = SessionReport::default();
    for _ in 0..args.rounds {
        if Instant::now() >= deadline {
            break;
        }
        if let Err(e) = one_round(args, &user, deadline, &mut report) {
            report.errors += 1;
            ERRORS.report(&format!("{user}: {e}"));
        }
    }
    report.finished = Some(Instant::now());
    report
}

/// Connect, log in, STAT, RETR 1..=n, QUIT.
fn one_round(
    args: &Pop3Args,
    user: &str,
    deadline: Instant,
    report: &mut SessionReport,
) -> Result<(), ClientError> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_secs(1), MAX_IO_TIMEOUT);
    let mut conn = Pop3Connection::connect(args.server, timeout)?;
    conn.login(user, &args.password)?;
    report.logins += 1;
    let (count, _octets) = conn.stat()?;
    for number in 1..=count {
        if Instant::now() >= deadline {
            break;
        }
        let started = Instant::now();
        let bytes = conn.retr(number)?;
        report.latencies_us.push(stats::micros(started.elapsed()));
        report.messages += 1;
        report.bytes += bytes;
    }
    conn.quit()
}

/// Prints the human summary and the machine-readable RESULT line.
pub fn print(args: &Pop3Args, run: &Pop3Run) {
    let rate = stats::per_second(run.messages as f64, run.elapsed);
    let mb_s = stats::mb_per_second(run.bytes, run.elapsed);
    println!(
        "pop3 load: server={} sessions={} users={} rounds={}",
        args.server, args.sessions, args.users, args.rounds
    );
    println!("  logins            {}", run.logins);
    println!("  messages          {}", run.messages);
    println!("  bytes             {}", run.bytes);
    println!("  errors            {}", run.errors);
    if run.sessions_lost > 0 {
        println!(
            "  sessions lost     {} (hung; abandoned)",
            run.sessions_lost
        );
    }
    println!("  elapsed           {:.3} s", run.elapsed.as_secs_f64());
    println!("  messages/s        {rate:.1}");
    println!("  MB/s              {mb_s:.2}");
    println!("  RETR latency ms   {}", run.latency.human());
    println!(
        "RESULT pop3 sessions={} users={} rounds={} logins={} messages={} errors={} bytes={} elapsed_s={:.3} rate={rate:.1} mb_s={mb_s:.2} {}",
        args.sessions,
        args.users,
        args.rounds,
        run.logins,
        run.messages,
        run.errors,
        run.bytes,
        run.elapsed.as_secs_f64(),
        run.latency.machine()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn assigns_users_to_sessions() {
        let cli =
            crate::args::Cli::try_parse_from(["ringmail-load", "pop3", "--users", "3"]).unwrap();
        let crate::args::Command::Pop3(mut args) = cli.command else {
            panic!("not pop3");
        };
        let users: Vec<String> = (0..4).map(|i| user_for(&args, i)).collect();
        assert_eq!(
            users,
            [
                "u1@example.test",
                "u2@example.test",
                "u3@example.test",
                "u1@example.test"
            ]
        );
        args.plain_user_names = true;
        assert_eq!(user_for(&args, 1), "u2");
    }
}
