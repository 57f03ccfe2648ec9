//! The server's life as an operator sees it: config errors, the data directory lock, graceful
//! shutdown with 421, restart, and the queue commands.

mod common;

use common::{BIN, Server, base_config, exchange, test_dir};
use std::path::Path;
use std::process::Command;

#[test]
fn invalid_config_names_file_line_and_key() {
    let dir = test_dir("badconfig");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nhostname = \"mx.test\"\n\n[smtp]\nlisten = [\"127.0.0.1:99999\"]\n",
    )
    .unwrap();
    for command in ["serve", "check-config"] {
        let mut cmd = Command::new(BIN);
        if command == "serve" {
            cmd.args(["serve", "--config"]);
        } else {
            cmd.arg("check-config");
        }
        let out = cmd.arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:5: smtp.listen:", path.display())),
            "{command}: {err}"
        );
    }
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/ringmail.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn check_config_lists_every_error_in_words() {
    let dir = test_dir("allerrors");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nshards = \"two\"\nbogus = 1\n\n[pop3]\ncheckpassword = [\"/nonexistent/checkpw\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display();
    for line in [
        format!("{file}:2: server.shards: must be a whole number, not text (\"two\")"),
        format!("{file}:3: server.bogus: unknown key `bogus`"),
        format!("{file}:6: pop3.checkpassword: program /nonexistent/checkpw does not exist"),
        format!("3 errors in {file}"),
    ] {
        assert!(err.contains(&line), "{line}\nnot in:\n{err}");
    }
    assert!(!err.contains("expected usize"), "{err}");
}

#[test]
fn second_instance_on_the_same_data_dir_refuses() {
    let dir = test_dir("lock");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&server.config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another ringmail"), "{err}");
    assert!(err.contains(&server.pid().to_string()), "{err}");
}

#[test]
fn sigterm_answers_421_and_exits_0_then_restart_serves() {
    let dir = test_dir("sigterm");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    let (mut s, _) = server.raw();
    assert!(exchange(&mut s, b"HELO c.test\r\n").starts_with("250"));
    common::send_signal(server.pid(), "TERM");
    let reply = common::read_reply(&mut s);
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}\n{}", server.log());

    let server = Server::start_with(&dir, &dir.join("ringmail.toml"));
    let (mut s, greeting) = server.raw();
    assert!(greeting.starts_with("220"));
    assert!(exchange(&mut s, b"QUIT\r\n").starts_with("221"));
}

/// Makes a directory immutable (`chattr +i`), so even root gets EPERM writing in it: the one
/// way to cause a temporary delivery failure in a server running as root. Returns false where
/// that cannot be done (no `chattr`, not root, or a filesystem without the attribute).
fn set_immutable(path: &Path, on: bool) -> bool {
    let flag = if on { "+i" } else { "-i" };
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Clears the immutable flag again however the test ends, so its directory can be removed.
struct Immutable<'a>(&'a Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        set_immutable(self.0, false);
    }
}

#[test]
fn queue_commands_show_a_deferred_message() {
    let dir = test_dir("queuecli");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let out = server.ctl(&["queue", "stat"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("messages in queue: 0"));

    let maildir = server.mail_root().join("example.test/stuck/Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    // Without the immutable flag there is no deferral to look at: fail rather than pass
    // untested.
    let tmp = maildir.join("tmp");
    assert!(
        set_immutable(&tmp, true),
        "chattr +i failed: this test needs root (CAP_LINUX_IMMUTABLE) and a filesystem with the \
         immutable attribute (ext4, xfs, btrfs) for its temporary directory; where there is \
         none, skip it with `--skip queue_commands_show_a_deferred_message`"
    );
    let immutable = Immutable(&tmp);
    let (mut s, _) = server.raw();
    for command in [
        "HELO c.test\r\n",
        "MAIL FROM:<a@localhost>\r\n",
        "RCPT TO:<stuck@example.test>\r\n",
        "DATA\r\n",
    ] {
        assert!(!exchange(&mut s, command.as_bytes()).starts_with('5'));
    }
    assert!(exchange(&mut s, b"Subject: stuck\r\n\r\nwaiting\r\n.\r\n").starts_with("250"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listing = loop {
        let out = server.ctl(&["queue", "list"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("deferred") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(immutable);
    assert!(listing.contains("from <a@localhost>"), "{listing}");
    assert!(listing.contains("deferred, 1 attempts, next "), "{listing}");
    assert!(listing.contains("\tstuck@example.test"), "{listing}");
    let stat = String::from_utf8_lossy(&server.ctl(&["queue", "stat"]).stdout).into_owned();
    assert!(stat.contains("messages in queue: 1"), "{stat}");
    assert!(
        stat.contains("recipients deferred after a failed attempt: 1"),
        "{stat}"
    );
    assert!(server.log().contains("deferral"), "{}", server.log());
}

#[test]
fn help_describes_every_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "serve",
        "check-config",
        "queue",
        "passwd",
        "FILES",
        "EXIT STATUS",
    ] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
}
