//! DJB's checkpassword interface: run `program args... /bin/true` with
//! `user\0password\0timestamp\0` readable on descriptor 3; exit 0 accepts, 1 rejects, anything
//! else (111 by convention) is a temporary failure. Blocking: run it on the blocking pool.
//!
//! The program would normally exec the command after it on success; POP3 only needs the verdict,
//! so that command is `/bin/true`. The program gets no stdin/stdout and is killed after
//! [`TIMEOUT`], which counts as a temporary failure.
//!
//! It runs as the server does: `server.user` when started as root (server::privileges), so a
//! program that must read /etc/shadow needs a privileged helper, not the server's rights.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::CheckOutcome;

/// The longest a checkpassword program may run.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the program and maps its exit status.
pub fn run(
    program: &Path,
    args: &[String],
    user: &str,
    password: &str,
    timestamp: u64,
) -> CheckOutcome {
    match spawn_and_wait(program, args, user, password, timestamp) {
        Ok(outcome) => outcome,
        Err(e) => {
            log::error!("checkpassword {}: {e}", program.display());
            CheckOutcome::TempFail
        }
    }
}

fn spawn_and_wait(
    program: &Path,
    args: &[String],
    user: &str,
    password: &str,
    timestamp: u64,
) -> std::io::Result<CheckOutcome> {
    if user.contains('\0') || password.contains('\0') {
        return Ok(CheckOutcome::Rejected);
    }
    // std pipes are close-on-exec; dup2 onto fd 3 in the child clears that for fd 3 only.
    let (reader, mut writer) = std::io::pipe()?;
    let data = format!("{user}\0{password}\0{timestamp}\0");
    // The data is far below the pipe's capacity, so writing before the child runs cannot block.
    writer.write_all(data.as_bytes())?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&reader);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; the closure allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec, so clear it by hand in that case.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // Held open until now so neither end's descriptor number could be reused by spawn itself.
    drop(reader);
    drop(writer);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(match status.code() {
                Some(0) => CheckOutcome::Accepted,
                Some(1) => CheckOutcome::Rejected,
                _ => CheckOutcome::TempFail,
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(CheckOutcome::TempFail);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A checkpassword that accepts bob/secret, rejects other users, fails on "tempfail".
    const SCRIPT: &str = r#"#!/bin/sh
data=$(tr '\0' '\n' <&3)
user=$(printf '%s\n' "$data" | sed -n 1p)
pass=$(printf '%s\n' "$data" | sed -n 2p)
[ "$pass" = tempfail ] && exit 111
[ "$user" = bob ] && [ "$pass" = secret ] && exec "$@"
exit 1
"#;

    #[test]
    fn runs_program_per_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("checkpw");
        std::fs::write(&prog, SCRIPT).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cases = [
            ("bob", "secret", CheckOutcome::Accepted),
            ("bob", "wrong", CheckOutcome::Rejected),
            ("nobody", "secret", CheckOutcome::Rejected),
            ("bob", "tempfail", CheckOutcome::TempFail),
        ];
        for (user, pass, want) in cases {
            assert_eq!(run(&prog, &[], user, pass, 1), want, "{user}/{pass}");
        }
        assert_eq!(
            run(&dir.path().join("missing"), &[], "bob", "secret", 1),
            CheckOutcome::TempFail
        );
    }
}
