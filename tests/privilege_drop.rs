//! Privilege separation, end to end: the real binary, started as root, binds a port below 1024,
//! drops to a scratch system user, and every one of its threads then runs as that user with no
//! capability left; mail is accepted and delivered into a Maildir that user owns. A missing
//! user, or a data directory the user cannot write, is a clear startup error; started as an
//! ordinary user, the server drops nothing and says so.
//!
//! These tests create system users (`useradd`) and start the server as root, so they need root;
//! this project's test user is root. Run as anyone else they fail and say why, rather than pass
//! without testing anything.

mod common;

use common::{BIN, Server, base_config, exchange, send_signal, test_dir};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A system user made for one test and deleted when it ends, passed or failed.
struct ScratchUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl ScratchUser {
    fn create(name: &str) -> ScratchUser {
        require_root();
        // A leftover from an earlier, killed run would make useradd fail.
        let _ = Command::new("userdel").arg(name).output();
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", name])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        ScratchUser {
            name: name.to_string(),
            uid: id("-u"),
            gid: id("-g"),
        }
    }
}

impl Drop for ScratchUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the privilege-drop tests must run as root (they create users with useradd and start \
         the server as root); run `cargo test` as root"
    );
}

/// A free loopback port below 1024: only root may bind it, so serving on it proves the server
/// bound before it dropped root.
fn privileged_port() -> u16 {
    (600..1024)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free loopback port below 1024")
}

/// `base_config` with `[server] user = "<user>"` (on line 6) and small queue segments.
fn config_for(dir: &Path, user: &str) -> String {
    let config = base_config(dir, "", "[queue]\nsegment_size_mib = 1\n");
    let default_user = format!("user = \"{}\"\n", common::TEST_USER);
    assert!(config.contains(&default_user), "{config}");
    config.replacen(&default_user, &format!("user = \"{user}\"\n"), 1)
}

/// Every thread of `pid`: its name and its `Uid:`, `Gid:` and `CapEff:` lines.
fn threads(pid: u32) -> Vec<(String, String, String, String)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let line = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        found.push((line("Name:"), line("Uid:"), line("Gid:"), line("CapEff:")));
    }
    found
}

/// Asserts that every thread of `pid` runs as `uid`/`gid` (real, effective, saved and fs ids)
/// with no effective capability, and that the shards, the sidecar and the blocking pool are
/// among them.
fn assert_all_threads_run_as(pid: u32, uid: u32, gid: u32) {
    let threads = threads(pid);
    let want_uid = vec![uid.to_string(); 4].join(" ");
    let want_gid = vec![gid.to_string(); 4].join(" ");
    for (name, uids, gids, caps) in &threads {
        assert_eq!(uids, &want_uid, "thread {name}: {threads:?}");
        assert_eq!(gids, &want_gid, "thread {name}: {threads:?}");
        assert_eq!(caps, "0000000000000000", "thread {name}: {threads:?}");
    }
    for prefix in ["ringmail-shard", "ringmail-sideca", "ringmail-blocki"] {
        assert!(
            threads.iter().any(|(name, ..)| name.starts_with(prefix)),
            "no {prefix} thread: {threads:?}"
        );
    }
}

fn send_one(server: &Server, to: &str) {
    let (mut s, greeting) = server.raw();
    assert!(greeting.starts_with("220"), "{greeting}");
    for (command, want) in [
        ("HELO client.test\r\n".to_string(), "250"),
        ("MAIL FROM:<alice@localhost>\r\n".to_string(), "250"),
        (format!("RCPT TO:<{to}>\r\n"), "250"),
        ("DATA\r\n".to_string(), "354"),
        ("Subject: hi\r\n\r\nhello\r\n.\r\n".to_string(), "250"),
        ("QUIT\r\n".to_string(), "221"),
    ] {
        let reply = exchange(&mut s, command.as_bytes());
        assert!(reply.starts_with(want), "{command:?}: {reply}");
    }
}

/// Runs `ringmail serve --config <config>` to its exit (killed after 30 s: a server that
/// should have refused to start but serves instead).
fn serve_expecting_exit(config: &Path) -> Output {
    Command::new("timeout")
        .arg("30")
        .arg(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn root_start_binds_port_below_1024_then_every_thread_runs_as_the_user() {
    let user = ScratchUser::create(&format!("ringmail-test-{}", std::process::id()));
    let dir = test_dir("privdrop");
    let port = privileged_port();
    let config = config_for(&dir, &user.name).replacen(
        "listen = [\"127.0.0.1:0\"]",
        &format!("listen = [\"127.0.0.1:{port}\"]"),
        1,
    );
    let mut server = Server::start(&dir, &config);
    assert_eq!(server.smtp.port(), port);
    assert_all_threads_run_as(server.pid(), user.uid, user.gid);

    send_one(&server, "bob@example.test");
    let files = server.wait_for_mail("bob@example.test", 1, 20);
    assert_eq!(files.len(), 1, "{}", server.log());
    for path in [
        files[0].as_path(),
        files[0].parent().unwrap(),
        &server.mail_root(),
        &dir.join("data").join("queue"),
        &dir.join("data").join("lock"),
    ] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (user.uid, user.gid),
            "{}",
            path.display()
        );
    }
    // Root created the data directory for the user, closed to others.
    let data = std::fs::metadata(dir.join("data")).unwrap();
    assert_eq!((data.uid(), data.mode() & 0o777), (user.uid, 0o750));
    let log = server.log();
    assert!(
        log.contains(&format!("dropped root: running as user {}", user.name)),
        "{log}"
    );
    // The threads started while serving (glommio's io workers among them) are the user's too.
    assert_all_threads_run_as(server.pid(), user.uid, user.gid);
    assert!(server.terminate().success(), "{}", server.log());

    // A data directory the user cannot write: refused after the drop, naming path and owner.
    let other = test_dir("privdrop-owner");
    std::fs::create_dir(other.join("data")).unwrap();
    std::fs::set_permissions(other.join("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = other.join("ringmail.toml");
    std::fs::write(&path, config_for(&other, &user.name)).unwrap();
    let out = serve_expecting_exit(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let data_dir = other.join("data").display().to_string();
    for words in [
        data_dir.as_str(),
        "belongs to root (uid 0, mode 0755)",
        &format!("not writable by {} (uid {})", user.name, user.uid),
        &format!("chown -R {}:", user.name),
    ] {
        assert!(err.contains(words), "want {words:?} in: {err}");
    }
    // Root touched nothing inside it.
    assert_eq!(std::fs::read_dir(other.join("data")).unwrap().count(), 0);
}

#[test]
fn started_as_an_ordinary_user_it_drops_nothing_and_says_so() {
    let user = ScratchUser::create(&format!("ringmail-test-{}-b", std::process::id()));
    let dir = test_dir("privdrop-plain");
    std::fs::create_dir(dir.join("data")).unwrap();
    std::os::unix::fs::chown(dir.join("data"), Some(user.uid), Some(user.gid)).unwrap();
    let config = dir.join("ringmail.toml");
    // `server.user` names a user that does not exist: ignored when not started as root.
    let text = config_for(&dir, "ringmail-nosuch-user");
    std::fs::write(&config, text).unwrap();
    let log = std::fs::File::create(dir.join("ringmail.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .uid(user.uid)
        .gid(user.gid)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("ringmail: queue in ") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let server_log = || std::fs::read_to_string(dir.join("ringmail.log")).unwrap_or_default();
    if !started {
        let _ = child.kill();
        panic!("ringmail did not start as {}: {}", user.name, server_log());
    }
    assert_all_threads_run_as(pid, user.uid, user.gid);
    send_signal(pid, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", server_log());
    let log = server_log();
    assert!(
        log.contains(&format!(
            "running as uid {} ({}), gid {}: not started as root, so there is nothing to drop",
            user.uid, user.name, user.gid
        )),
        "{log}"
    );
}

#[test]
fn a_user_that_does_not_exist_is_a_configuration_error() {
    require_root();
    let dir = test_dir("privdrop-nouser");
    let name = format!("ringmail-nosuch-{}", std::process::id());
    let path = dir.join("ringmail.toml");
    std::fs::write(&path, config_for(&dir, &name)).unwrap();
    let out = serve_expecting_exit(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    // Exit 2, as for every configuration error, with file, line and key.
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "{}:6: server.user: user {name} does not exist: create it (the install script does) \
         or set server.user",
        path.display()
    );
    assert!(err.contains(&want), "want {want:?} in: {err}");
    // Nothing was created or bound before the refusal.
    assert!(!dir.join("data").exists());
}
