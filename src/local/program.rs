//! Running a `|command` delivery: `sh -c command` with the message on standard input and
//! qmail's environment, its exit status read the way qmail-local reads it.
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | delivered; go on with the next instruction |
//! | 99 | delivered; ignore the instructions after this one |
//! | 100 | permanent failure: bounce |
//! | 111, any other, killed by a signal, timed out | temporary failure: try again later |
//!
//! What the program prints (standard output and error together) becomes the failure reason,
//! on one line, as qmail-local reports it. The program runs in its own process group, so a
//! timeout kills everything it started.
//!
//! Blocking: runs on a local-delivery thread (or in the privileged delivery helper, for a
//! system user), never on a shard.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The most bytes of the program's output kept for the failure reason.
const MAX_OUTPUT: usize = 1000;

/// The `PATH` a delivery program starts with (it gets no other environment of ours).
pub const PROGRAM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// One program to run.
#[derive(Debug, Clone)]
pub struct ProgramJob {
    /// Given to `/bin/sh -c`.
    pub command: String,
    /// The working directory (the home directory the `.qmail` file belongs to).
    pub cwd: PathBuf,
    /// The whole environment (qmail's variables, `HOME`, `USER`, `PATH`).
    pub env: Vec<(String, String)>,
    /// Standard input: the message.
    pub stdin: Vec<u8>,
    pub timeout: Duration,
    /// Run as this uid and gid (with no supplementary groups); `None` runs as we are.
    pub ids: Option<(u32, u32)>,
}

/// How a program delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramOutcome {
    /// Exit 0.
    Delivered,
    /// Exit 99: delivered, and the instructions after this one are skipped.
    DeliveredStop,
    /// Exit 100; the reason is the program's output.
    Permanent(String),
    /// Anything else; the reason says what happened.
    Temporary(String),
}

/// Runs `job` to its end (or its timeout) and reads the outcome.
pub fn run(job: &ProgramJob) -> ProgramOutcome {
    if let Some((uid, _)) = job.ids
        && uid == 0
    {
        // Never: a .qmail program is someone's code, and root is no one's mailbox.
        return ProgramOutcome::Temporary(
            "Refusing to run a delivery program as root. (#4.3.0)".into(),
        );
    }
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(e) => {
            return ProgramOutcome::Temporary(format!("Unable to make a pipe: {e}. (#4.3.0)"));
        }
    };
    let stderr = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => {
            return ProgramOutcome::Temporary(format!("Unable to make a pipe: {e}. (#4.3.0)"));
        }
    };
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&job.command)
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&job.cwd)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(stderr)
        .process_group(0);
    if let Some((uid, gid)) = job.ids {
        // std clears the supplementary groups itself when a root parent sets the uid.
        command.uid(uid).gid(gid);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return ProgramOutcome::Temporary(format!(
                "Unable to run the delivery program in {}: {e}. (#4.3.0)",
                job.cwd.display()
            ));
        }
    };
    // The command holds the pipe's write ends; drop ours so the reader sees the end of output.
    drop(command);
    let pid = child.id();
    // Standard input is written on its own thread: a program that prints a lot before it reads
    // would otherwise deadlock with us.
    let feeder = child.stdin.take().map(|mut stdin| {
        let message = job.stdin.clone();
        std::thread::spawn(move || {
            // A program that does not read all of its input is its own business (EPIPE).
            let _ = stdin.write_all(&message);
        })
    });
    let collector = std::thread::spawn(move || read_capped(reader));
    let started = Instant::now();
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() >= job.timeout => {
                // The whole group: a shell pipeline's children must not outlive the delivery.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                break Err(());
            }
            Ok(None) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                return ProgramOutcome::Temporary(format!(
                    "Unable to wait for the delivery program: {e}. (#4.3.0)"
                ));
            }
        }
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    // A background process of the program may keep the pipe open: the group is killed after
    // a timeout, and otherwise the reader ends when the last writer goes.
    let output = collector.join().unwrap_or_default();
    let output = one_line(&output);
    match status {
        Err(()) => ProgramOutcome::Temporary(format!(
            "Delivery program timed out after {} seconds. (#4.3.0)",
            job.timeout.as_secs()
        )),
        Ok(status) => outcome(status.code(), status.signal(), output),
    }
}

/// Reads a program's exit into an outcome (`code` is `None` when a signal killed it).
fn outcome(code: Option<i32>, signal: Option<i32>, output: String) -> ProgramOutcome {
    let said = |fallback: String| {
        if output.is_empty() {
            fallback
        } else {
            output.clone()
        }
    };
    match code {
        Some(0) => ProgramOutcome::Delivered,
        Some(99) => ProgramOutcome::DeliveredStop,
        Some(100) => ProgramOutcome::Permanent(said(
            "Delivery program refused the message (exit 100). (#5.2.0)".into(),
        )),
        Some(code) => ProgramOutcome::Temporary(said(format!(
            "Delivery program failed temporarily (exit {code}). (#4.3.0)"
        ))),
        None => ProgramOutcome::Temporary(format!(
            "Delivery program crashed (signal {}).{} (#4.3.0)",
            signal.unwrap_or(0),
            if output.is_empty() {
                String::new()
            } else {
                format!(" It said: {output}")
            }
        )),
    }
}

/// Keeps the first [`MAX_OUTPUT`] bytes and reads (and drops) the rest, so the program never
/// blocks on a full pipe.
fn read_capped(mut reader: std::io::PipeReader) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The output as one line of text: line breaks become `/` (as qmail-local writes them), other
/// control characters are dropped, blanks at the ends trimmed.
fn one_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let joined: String = text
        .trim()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("/");
    joined.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(command: &str) -> ProgramJob {
        ProgramJob {
            command: command.into(),
            cwd: std::env::temp_dir(),
            env: vec![
                ("PATH".into(), PROGRAM_PATH.into()),
                ("SENDER".into(), "a@x.test".into()),
            ],
            stdin: b"Subject: hi\n\nbody\n".to_vec(),
            timeout: Duration::from_secs(10),
            ids: None,
        }
    }

    #[test]
    fn exit_codes_follow_qmail() {
        assert_eq!(run(&job("cat >/dev/null")), ProgramOutcome::Delivered);
        assert_eq!(run(&job("exit 99")), ProgramOutcome::DeliveredStop);
        assert_eq!(
            run(&job("echo 'no such list (#5.1.1)'; exit 100")),
            ProgramOutcome::Permanent("no such list (#5.1.1)".into())
        );
        assert_eq!(
            run(&job("exit 100")),
            ProgramOutcome::Permanent(
                "Delivery program refused the message (exit 100). (#5.2.0)".into()
            )
        );
        assert_eq!(
            run(&job("echo busy >&2; echo try later; exit 111")),
            ProgramOutcome::Temporary("busy/try later".into())
        );
        assert_eq!(
            run(&job("exit 3")),
            ProgramOutcome::Temporary(
                "Delivery program failed temporarily (exit 3). (#4.3.0)".into()
            )
        );
        assert_eq!(
            run(&job("kill -SEGV $$")),
            ProgramOutcome::Temporary("Delivery program crashed (signal 11). (#4.3.0)".into())
        );
    }

    #[test]
    fn gets_message_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let command = format!("{{ echo \"$SENDER\"; cat; }} > {}", out.display());
        assert_eq!(run(&job(&command)), ProgramOutcome::Delivered);
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "a@x.test\nSubject: hi\n\nbody\n"
        );
    }

    #[test]
    fn a_program_that_ignores_its_input_still_works() {
        let mut big = job("exit 0");
        big.stdin = vec![b'x'; 4 << 20];
        assert_eq!(run(&big), ProgramOutcome::Delivered);
    }

    #[test]
    fn times_out_and_kills_the_group() {
        let mut slow = job("sleep 30 & sleep 30; exit 0");
        slow.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let outcome = run(&slow);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            matches!(&outcome, ProgramOutcome::Temporary(r) if r.contains("timed out")),
            "{outcome:?}"
        );
    }

    #[test]
    fn caps_the_output() {
        let outcome = run(&job("yes | head -c 100000; exit 111"));
        let ProgramOutcome::Temporary(reason) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.len() <= MAX_OUTPUT, "{}", reason.len());
    }

    #[test]
    fn never_as_root() {
        let mut as_root = job("exit 0");
        as_root.ids = Some((0, 0));
        assert!(matches!(run(&as_root), ProgramOutcome::Temporary(r) if r.contains("root")));
    }
}
