//! The SMTP load: N sessions, one thread and one connection each, drawing message numbers from
//! one shared counter until the total or the time limit is reached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::SmtpArgs;
use crate::message::{self, Eol};
use crate::smtp_client::{Outcome, SmtpConnection};
use crate::stats::{self, ErrorSampler, Latency};
use crate::template;
use crate::tls_client::{self, TlsMode};

/// A session that cannot connect this many times in a row gives up (the server is gone).
const MAX_CONNECT_FAILURES: u32 = 20;
/// Pause between failed connects, so a dead server does not turn into a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// Longest a single socket read or write may block.
const MAX_IO_TIMEOUT: Duration = Duration::from_secs(30);

static ERRORS: ErrorSampler = ErrorSampler::new(5);

/// What one session did.
#[derive(Debug, Default)]
struct SessionReport {
    accepted: u64,
    errors: u64,
    refused_recipients: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
    first_send: Option<Instant>,
    finished: Option<Instant>,
    pipelining: Option<bool>,
}

/// The whole run, summed over sessions.
#[derive(Debug)]
pub struct SmtpRun {
    pub accepted: u64,
    pub errors: u64,
    pub refused_recipients: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub latency: Latency,
    pub first_send: Option<Instant>,
    pub sessions_lost: u64,
    pub pipelining: Option<bool>,
}

struct Shared {
    args: SmtpArgs,
    next: AtomicU64,
    deadline: Instant,
    /// The client config every TLS session shares (session resumption tickets included, as a
    /// real client pool would).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Runs the load and returns its totals; returns even if sessions hang (they are abandoned).
pub fn run(args: &SmtpArgs) -> SmtpRun {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        args: args.clone(),
        next: AtomicU64::new(0),
        deadline: start + args.duration_limit,
        tls: (args.tls != TlsMode::None).then(tls_client::any_certificate),
    });
    let (tx, rx) = mpsc::channel();
    for id in 0..args.sessions {
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("smtp-{id}"))
            .spawn(move || {
                let _ = tx.send(session(&shared));
            });
        if let Err(e) = spawned {
            ERRORS.report(&format!("cannot start session thread: {e}"));
        }
    }
    drop(tx);
    // Every socket operation is bounded by MAX_IO_TIMEOUT, so this is only a backstop.
    let give_up = shared.deadline + MAX_IO_TIMEOUT + Duration::from_secs(5);
    let mut reports = Vec::new();
    while let Ok(report) = rx.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
        reports.push(report);
    }
    summarise(start, args.sessions, reports)
}

fn summarise(start: Instant, sessions: u64, reports: Vec<SessionReport>) -> SmtpRun {
    let mut latencies = Vec::new();
    let mut run = SmtpRun {
        accepted: 0,
        errors: 0,
        refused_recipients: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency: Latency::default(),
        first_send: None,
        sessions_lost: sessions.saturating_sub(reports.len() as u64),
        pipelining: None,
    };
    let mut end = start;
    for r in reports {
        run.accepted += r.accepted;
        run.errors += r.errors;
        run.refused_recipients += r.refused_recipients;
        run.bytes += r.bytes;
        latencies.extend(r.latencies_us);
        run.first_send = match (run.first_send, r.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        end = end.max(r.finished.unwrap_or(end));
        run.pipelining = run.pipelining.or(r.pipelining);
    }
    if run.sessions_lost > 0 {
        end = Instant::now();
    }
    run.elapsed = end - start;
    run.latency = Latency::from_samples(&mut latencies);
    run
}

fn io_timeout(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_secs(1), MAX_IO_TIMEOUT)
}

fn session(shared: &Shared) -> SessionReport {
    let args = &shared.args;
    let date = message::date_now();
    let mut report = SessionReport::default();
    let mut conn: Option<SmtpConnection> = None;
    let mut sent_on_conn = 0;
    let mut connect_failures = 0;
    while Instant::now() < shared.deadline {
        if args.handshake_only {
            if !handshake_only(shared, &mut report) {
                break;
            }
            continue;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let connected = SmtpConnection::connect_tls(
                    args.server,
                    &args.helo,
                    io_timeout(shared.deadline),
                    args.tls,
                    shared.tls.as_ref(),
                );
                match connected {
                    Ok(c) => {
                        report.pipelining = Some(c.pipelining());
                        connect_failures = 0;
                        sent_on_conn = 0;
                        conn.insert(c)
                    }
                    Err(e) => {
                        report.errors += 1;
                        ERRORS.report(&format!("connect to {}: {e}", args.server));
                        connect_failures += 1;
                        if connect_failures >= MAX_CONNECT_FAILURES {
                            break;
                        }
                        thread::sleep(RECONNECT_PAUSE);
                        continue;
                    }
                }
            }
        };
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= args.total {
            break;
        }
        let rcpts = template::recipients(&args.to, n, args.recipients, args.to_spread);
        let text = message::build(&args.from, &rcpts, n, args.size, &date, Eol::Crlf);
        let data = message::for_data(&text);
        let started = Instant::now();
        report.first_send.get_or_insert(started);
        match c.send(&args.from, &rcpts, &data) {
            Ok((outcome, refused)) => {
                report.refused_recipients += refused as u64;
                match outcome {
                    Outcome::Accepted => {
                        report.accepted += 1;
                        report.bytes += text.len() as u64;
                        report.latencies_us.push(stats::micros(started.elapsed()));
                    }
                    Outcome::Rejected(reply) => {
                        report.errors += 1;
                        ERRORS.report(&format!("message {n}: {reply}"));
                    }
                }
                sent_on_conn += 1;
                if sent_on_conn >= args.per_connection
                    && let Some(c) = conn.take()
                {
                    c.quit();
                }
            }
            Err(e) => {
                report.errors += 1;
                ERRORS.report(&format!("message {n}: {e}"));
                conn = None;
            }
        }
    }
    if let Some(c) = conn {
        c.quit();
    }
    report.finished = Some(Instant::now());
    report
}

/// `--handshake-only`: one connection (TLS as `--tls` says, EHLO, QUIT) for one unit of
/// `--total`; counted as accepted, its latency the whole connection's. False once the total
/// is reached.
fn handshake_only(shared: &Shared, report: &mut SessionReport) -> bool {
    let args = &shared.args;
    if shared.next.fetch_add(1, Ordering::Relaxed) >= args.total {
        return false;
    }
    let started = Instant::now();
    report.first_send.get_or_insert(started);
    let timeout = io_timeout(shared.deadline);
    match SmtpConnection::connect_tls(
        args.server,
        &args.helo,
        timeout,
        args.tls,
        shared.tls.as_ref(),
    ) {
        Ok(c) => {
            report.pipelining = Some(c.pipelining());
            c.quit();
            report.accepted += 1;
            report.latencies_us.push(stats::micros(started.elapsed()));
        }
        Err(e) => {
            report.errors += 1;
            ERRORS.report(&format!("connect to {}: {e}", args.server));
        }
    }
    true
}

/// Prints the human summary and the machine-readable RESULT line.
pub fn print(args: &SmtpArgs, run: &SmtpRun) {
    let rate = stats::per_second(run.accepted as f64, run.elapsed);
    let mb_s = stats::mb_per_second(run.bytes, run.elapsed);
    println!(
        "smtp load: server={} sessions={} size={} recipients={} per_connection={} total={} pipelining={}",
        args.server,
        args.sessions,
        args.size,
        args.recipients,
        args.per_connection,
        args.total,
        run.pipelining
            .map_or("unknown", |p| if p { "yes" } else { "no" })
    );
    if args.tls != TlsMode::None || args.handshake_only {
        println!(
            "  tls {:?}{}",
            args.tls,
            if args.handshake_only {
                ", handshake only: each accepted unit is one connection (connect, TLS, EHLO, QUIT)"
            } else {
                ""
            }
        );
    }
    println!("  accepted          {}", run.accepted);
    println!("  errors            {}", run.errors);
    if run.refused_recipients > 0 {
        println!("  refused rcpts     {}", run.refused_recipients);
    }
    if run.sessions_lost > 0 {
        println!(
            "  sessions lost     {} (hung; abandoned)",
            run.sessions_lost
        );
    }
    println!("  elapsed           {:.3} s", run.elapsed.as_secs_f64());
    println!("  messages/s        {rate:.1}");
    println!("  MB/s              {mb_s:.2}");
    println!("  latency ms        {}", run.latency.human());
    println!(
        "RESULT smtp tls={} handshake_only={} sessions={} size={} recipients={} accepted={} errors={} elapsed_s={:.3} rate={rate:.1} mb_s={mb_s:.2} {}",
        format!("{:?}", args.tls).to_lowercase(),
        args.handshake_only,
        args.sessions,
        args.size,
        args.recipients,
        run.accepted,
        run.errors,
        run.elapsed.as_secs_f64(),
        run.latency.machine()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::test_server::accept_all_smtp;
    use clap::Parser;
    use std::net::TcpListener;

    fn smtp_args(extra: &[&str]) -> SmtpArgs {
        let mut argv = vec!["ringmail-load", "smtp"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Smtp(args) => args,
            _ => panic!("not smtp"),
        }
    }

    #[test]
    fn sends_the_total_and_reconnects_per_connection() {
        let (addr, counts) = accept_all_smtp();
        let server = addr.to_string();
        let args = smtp_args(&[
            "--server",
            &server,
            "--sessions",
            "3",
            "--total",
            "50",
            "--per-connection",
            "4",
            "--size",
            "300",
            "--to",
            "u{n}@example.test",
            "--to-spread",
            "5",
        ]);
        let run = run(&args);
        assert_eq!(run.accepted, 50);
        assert_eq!(run.errors, 0);
        assert_eq!(run.bytes, 50 * 300);
        assert_eq!(run.pipelining, Some(true));
        assert!(run.latency.max >= run.latency.p50);
        assert_eq!(counts.messages.load(Ordering::Relaxed), 50);
        // 50 messages at 4 per connection need at least 13 connections.
        assert!(counts.connections.load(Ordering::Relaxed) >= 13);
    }

    #[test]
    fn stops_at_the_time_limit_when_the_server_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let args = smtp_args(&[
            "--server",
            &server,
            "--sessions",
            "2",
            "--duration-limit",
            "1s",
        ]);
        let started = Instant::now();
        let run = run(&args);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(run.accepted, 0);
        assert!(run.errors >= 2);
        drop(listener);
    }

    #[test]
    fn counts_refused_connections_as_errors_and_gives_up() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let args = smtp_args(&[
            "--server",
            &port.to_string(),
            "--sessions",
            "1",
            "--duration-limit",
            "30s",
        ]);
        let run = run(&args);
        assert_eq!(run.accepted, 0);
        assert_eq!(run.errors, u64::from(MAX_CONNECT_FAILURES));
    }
}
