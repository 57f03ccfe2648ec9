//! qmail-style local delivery, end to end: the real server, mail sent with Python's smtplib,
//! `.qmail` files in a virtual domain and in a real system user's home, and what lands on disk
//! (Maildirs, mbox files, program output, forwards, bounces).
//!
//! The system-user test creates an account with `useradd` and removes it; like the other
//! privilege tests it needs root (this project's test user).

mod common;

use common::{Server, base_config, python, test_dir};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Sends one message with Python's smtplib.
fn send(server: &Server, from: &str, to: &[&str], body: &str) {
    let script = "import smtplib, sys\n\
        host, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n\
        rcpts = sys.argv[4].split(',')\n\
        body = sys.argv[5]\n\
        with smtplib.SMTP(host, port, timeout=20) as s:\n\
        \x20   refused = s.sendmail(sender, rcpts, body)\n\
        \x20   assert not refused, refused\n";
    let out = python(
        script,
        &[
            &server.smtp.ip().to_string(),
            &server.smtp.port().to_string(),
            from,
            &to.join(","),
            body,
        ],
    );
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files in `dir/new`, waiting up to `secs` for `count` of them.
fn wait_files(dir: &Path, count: usize, secs: u64) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("new"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        if files.len() >= count || Instant::now() > deadline {
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `secs` for `path` to hold `needle`; returns the contents.
fn wait_contains(path: &Path, needle: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[test]
fn every_kind_of_line_for_a_virtual_mailbox() {
    let dir = test_dir("local-lines");
    let domain = dir.join("data/mail/example.test");
    write(
        &domain.join(".qmail-bob"),
        "# bob keeps a copy, an mbox, tells a program and forwards to carol\n\
         ./bob/Maildir/\n./bob.mbox\n&carol@example.test\n\
         |{ echo \"$RECIPIENT $SENDER $EXT\"; cat; } > bob-program.out\n",
    );
    write(&domain.join(".qmail-bob-default"), "./bob-lists/Maildir/\n");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    send(
        &server,
        "alice@x.test",
        &["bob@example.test"],
        "Subject: lines\r\n\r\nFrom the top\r\n",
    );
    let bob = wait_files(&domain.join("bob/Maildir"), 1, 20);
    assert_eq!(bob.len(), 1, "log:\n{}", server.log());
    let carol = server.wait_for_mail("carol@example.test", 1, 20);
    assert_eq!(
        carol.len(),
        1,
        "the forward arrives; log:\n{}",
        server.log()
    );
    let forwarded = std::fs::read_to_string(&carol[0]).unwrap();
    assert!(
        forwarded.starts_with("Return-Path: <alice@x.test>\nDelivered-To: carol@example.test\n"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("\nDelivered-To: bob@example.test\n"),
        "{forwarded}"
    );
    let mbox = wait_contains(&domain.join("bob.mbox"), ">From the top", 20);
    assert!(mbox.starts_with("From alice@x.test "), "{mbox}");
    assert!(
        mbox.contains("Subject: lines\n\n>From the top\n\n"),
        "{mbox}"
    );
    let program = wait_contains(&domain.join("bob-program.out"), "Subject", 20);
    assert!(
        program.starts_with("bob@example.test alice@x.test bob\n"),
        "{program}"
    );
    assert!(program.contains("Subject: lines\n"), "{program}");

    // An extension: .qmail-bob-default answers bob-anything.
    send(
        &server,
        "alice@x.test",
        &["bob-rust-announce@example.test"],
        "Subject: list\r\n\r\nhi\r\n",
    );
    let lists = wait_files(&domain.join("bob-lists/Maildir"), 1, 20);
    assert_eq!(lists.len(), 1, "log:\n{}", server.log());
}

#[test]
fn a_forwarding_loop_bounces_to_the_sender() {
    let dir = test_dir("local-loop");
    let domain = dir.join("data/mail/example.test");
    write(&domain.join(".qmail-ping"), "&pong@example.test\n");
    write(&domain.join(".qmail-pong"), "ping\n");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    send(
        &server,
        "alice@example.test",
        &["ping@example.test"],
        "Subject: round and round\r\n\r\nhi\r\n",
    );
    let bounces = server.wait_for_mail("alice@example.test", 1, 30);
    assert_eq!(bounces.len(), 1, "log:\n{}", server.log());
    let bounce = std::fs::read_to_string(&bounces[0]).unwrap();
    assert!(bounce.contains("5.4.6"), "{bounce}");
    assert!(bounce.contains("looping"), "{bounce}");
    server.wait_queue_idle(30);
    assert!(server.new_mail("ping@example.test").is_empty());
    assert!(server.new_mail("pong@example.test").is_empty());
}

#[test]
fn program_exit_100_bounces_with_its_output() {
    let dir = test_dir("local-exit100");
    let domain = dir.join("data/mail/example.test");
    write(
        &domain.join(".qmail-closed"),
        "|echo 'This list is closed. (#5.2.1)'; exit 100\n",
    );
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    send(
        &server,
        "alice@example.test",
        &["closed@example.test"],
        "Subject: x\r\n\r\nhi\r\n",
    );
    let bounces = server.wait_for_mail("alice@example.test", 1, 30);
    assert_eq!(bounces.len(), 1, "log:\n{}", server.log());
    let bounce = std::fs::read_to_string(&bounces[0]).unwrap();
    assert!(bounce.contains("This list is closed."), "{bounce}");
    assert!(bounce.contains("5.2.1"), "{bounce}");
}

#[test]
fn mbox_delivery_waits_for_a_python_fcntl_lock() {
    let dir = test_dir("local-mbox-lock");
    let domain = dir.join("data/mail/example.test");
    let mbox = domain.join("shared.mbox");
    write(&domain.join(".qmail-shared"), "./shared.mbox\n");
    write(&mbox, "");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    // Another writer (as mail readers do) takes the POSIX lock, writes its own entry, and holds
    // the lock until the test tells it to let go.
    let holder = "import fcntl, sys\n\
        f = open(sys.argv[1], 'a')\n\
        fcntl.lockf(f, fcntl.LOCK_EX)\n\
        f.write('From python Thu Jan  1 00:00:00 1970\\nSubject: first\\n\\nheld\\n\\n')\n\
        f.flush()\n\
        print('locked', flush=True)\n\
        sys.stdin.readline()\n\
        fcntl.lockf(f, fcntl.LOCK_UN)\n\
        f.close()\n";
    let mut child = Command::new("python3")
        .args(["-c", holder])
        .arg(&mbox)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    send(
        &server,
        "alice@x.test",
        &["shared@example.test"],
        "Subject: second\r\n\r\nwaited\r\n",
    );
    // The delivery is under way (the message is queued) and must wait for the lock.
    std::thread::sleep(Duration::from_millis(1500));
    let during = std::fs::read_to_string(&mbox).unwrap();
    assert!(
        !during.contains("waited"),
        "written while locked:\n{during}"
    );
    // No outcome yet: not delivered, not deferred (the lock timeout is 30 s).
    assert!(
        !server.log().contains("to shared@example.test:"),
        "{}",
        server.log()
    );
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    let after = wait_contains(&mbox, "waited", 20);
    let first = after.find("Subject: first").expect("python's entry");
    let second = after.find("Subject: second").expect("our entry");
    assert!(first < second, "{after}");
    assert!(after.ends_with("waited\n\n"), "{after}");
}

/// An ordinary (uid ≥ 1000) account made for one test, with a home directory, removed after.
struct MailUser {
    name: String,
    uid: u32,
    home: PathBuf,
}

impl MailUser {
    fn create(name: &str, home: &Path) -> MailUser {
        assert!(
            nix_is_root(),
            "this test creates a user with useradd and needs root"
        );
        let _ = Command::new("userdel").arg(name).output();
        let out = Command::new("useradd")
            .args(["--create-home", "--home-dir"])
            .arg(home)
            .args(["--shell", "/bin/sh", "--user-group", name])
            .output()
            .expect("useradd");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uid = Command::new("id").args(["-u", name]).output().unwrap();
        let uid = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
        MailUser {
            name: name.into(),
            uid,
            home: home.to_path_buf(),
        }
    }

    /// Writes a file in the home directory, owned by the user.
    fn write(&self, name: &str, contents: &str) {
        let path = self.home.join(name);
        std::fs::write(&path, contents).unwrap();
        let status = Command::new("chown")
            .arg(format!("{}:", self.name))
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for MailUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["--remove", &self.name])
            .output();
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn a_system_users_program_runs_as_that_user() {
    let dir = test_dir("local-system-user");
    let user = MailUser::create("rmqltest", &dir.join("home-rmqltest"));
    assert!(user.uid >= 1000, "useradd gave uid {}", user.uid);
    user.write(
        ".qmail",
        "|id -u > \"$HOME/uid.out\"; echo \"$USER $EXT\" >> \"$HOME/uid.out\"\n./Maildir/\n",
    );
    user.write(".qmail-news", "./News/\n");
    let config = base_config(&dir, "", "").replace(
        "[local]\n",
        "[local]\nsystem_users = true\nmin_uid = 1000\n",
    );
    let server = Server::start(&dir, &config);
    send(
        &server,
        "alice@x.test",
        &["rmqltest@example.test", "rmqltest-news@example.test"],
        "Subject: as you\r\n\r\nhi\r\n",
    );
    let inbox = wait_files(&user.home.join("Maildir"), 1, 30);
    assert_eq!(inbox.len(), 1, "log:\n{}", server.log());
    let owner = std::fs::metadata(&inbox[0]).unwrap().uid();
    assert_eq!(owner, user.uid, "the Maildir file belongs to the user");
    let ran = std::fs::read_to_string(user.home.join("uid.out")).unwrap();
    assert_eq!(ran, format!("{}\nrmqltest \n", user.uid));
    let news = wait_files(&user.home.join("News"), 1, 30);
    assert_eq!(news.len(), 1, "log:\n{}", server.log());
    assert_eq!(std::fs::metadata(&news[0]).unwrap().uid(), user.uid);
    // An extension no .qmail answers does not exist.
    send(
        &server,
        "alice@example.test",
        &["rmqltest-nothing@example.test"],
        "Subject: x\r\n\r\nhi\r\n",
    );
    let bounces = server.wait_for_mail("alice@example.test", 1, 30);
    assert_eq!(bounces.len(), 1, "log:\n{}", server.log());
    let bounce = std::fs::read_to_string(&bounces[0]).unwrap();
    assert!(bounce.contains("5.1.1"), "{bounce}");
}

#[test]
fn rcpt_knows_recipients_from_memory() {
    let dir = test_dir("local-rcpt");
    let domain = dir.join("data/mail/example.test");
    write(&domain.join(".qmail-lists-default"), "./lists/Maildir/\n");
    std::fs::create_dir_all(domain.join("bob/Maildir/new")).unwrap();
    let config = base_config(&dir, "", "").replace(
        "[local]\n",
        "[local]\nunknown_users = \"reject\"\nrefresh_secs = 1\n",
    );
    let server = Server::start(&dir, &config);
    let rcpt = |address: &str| {
        let (mut stream, _) = server.raw();
        common::exchange(&mut stream, b"EHLO client.test\r\n");
        common::exchange(&mut stream, b"MAIL FROM:<a@x.test>\r\n");
        common::exchange(&mut stream, format!("RCPT TO:<{address}>\r\n").as_bytes())
    };
    assert!(rcpt("bob@example.test").starts_with("250"));
    assert!(rcpt("lists-rust@example.test").starts_with("250"));
    assert!(rcpt("postmaster@example.test").starts_with("250"));
    assert!(rcpt("carol@example.test").starts_with("550"));
    // A mailbox made while the server runs is known once the table is rebuilt (refresh_secs).
    std::fs::create_dir_all(domain.join("carol/Maildir/new")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rcpt("carol@example.test").starts_with("250") {
        assert!(Instant::now() < deadline, "carol never became known");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn aliases_with_include_program_and_owner() {
    let dir = test_dir("local-aliases");
    let domain = dir.join("data/mail/example.test");
    std::fs::create_dir_all(&domain).unwrap();
    write(
        &dir.join("team.list"),
        "# the team\ndave\nerin@example.test\n",
    );
    let program_out = domain.join("team-program.out");
    write(
        &dir.join("aliases"),
        &format!(
            "# test aliases\n\
             team: :include:{list},\n\
             \t\"|{{ echo \\\"$SENDER\\\"; cat; }} > {out}\"\n\
             team-owner: alice\n\
             archive: {mbox}\n",
            list = dir.join("team.list").display(),
            out = program_out.display(),
            mbox = domain.join("archive.mbox").display(),
        ),
    );
    let config = base_config(&dir, "", "").replace(
        "[local]\n",
        &format!(
            "[local]\nunknown_users = \"reject\"\naliases = \"{}\"\n",
            dir.join("aliases").display()
        ),
    );
    let config_path = dir.join("ringmail.toml");
    std::fs::write(&config_path, &config).unwrap();
    let out = Command::new(common::BIN)
        .args(["newaliases", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "newaliases: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 aliases"));
    let server = Server::start(&dir, &config);
    send(
        &server,
        "bob@x.test",
        &["team@example.test", "archive@example.test"],
        "Subject: to the team\r\n\r\nhello all\r\n",
    );
    for member in ["dave@example.test", "erin@example.test"] {
        let got = server.wait_for_mail(member, 1, 30);
        assert_eq!(got.len(), 1, "{member}; log:\n{}", server.log());
        let text = std::fs::read_to_string(&got[0]).unwrap();
        // The list's mail bounces to its owner, not to the author.
        assert!(
            text.starts_with("Return-Path: <team-owner@example.test>\n"),
            "{text}"
        );
        assert!(text.contains("Delivered-To: team@example.test\n"), "{text}");
    }
    let program = wait_contains(&program_out, "hello all", 20);
    assert!(program.starts_with("bob@x.test\n"), "{program}");
    let archive = wait_contains(&domain.join("archive.mbox"), "hello all", 20);
    assert!(archive.starts_with("From bob@x.test "), "{archive}");
    // Mail for the owner reaches alice through the owner alias.
    let (mut stream, _) = server.raw();
    common::exchange(&mut stream, b"EHLO client.test\r\n");
    common::exchange(&mut stream, b"MAIL FROM:<a@x.test>\r\n");
    let reply = common::exchange(&mut stream, b"RCPT TO:<team-owner@example.test>\r\n");
    assert!(reply.starts_with("250"), "{reply}");
    let reply = common::exchange(&mut stream, b"RCPT TO:<nobody-here@example.test>\r\n");
    assert!(reply.starts_with("550"), "{reply}");
}

#[test]
fn newaliases_names_the_bad_line_and_writes_nothing() {
    let dir = test_dir("local-newaliases-bad");
    write(
        &dir.join("aliases"),
        "ok: bob\nbroken line without a colon\n",
    );
    let config = base_config(&dir, "", "").replace(
        "[local]\n",
        &format!("[local]\naliases = \"{}\"\n", dir.join("aliases").display()),
    );
    let config_path = dir.join("ringmail.toml");
    std::fs::write(&config_path, &config).unwrap();
    let out = Command::new(common::BIN)
        .args(["newaliases", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: expected", dir.join("aliases").display())),
        "{stderr}"
    );
    assert!(!dir.join("data/aliases.idx").exists());
}

#[test]
fn virtualdomains_and_users_assign_deliver_as_the_assigned_account() {
    let dir = test_dir("local-assign");
    let user = MailUser::create("rmqlvirt", &dir.join("home-rmqlvirt"));
    let gid = Command::new("id")
        .args(["-g", "rmqlvirt"])
        .output()
        .unwrap();
    let gid = String::from_utf8_lossy(&gid.stdout).trim().to_string();
    user.write(".qmail-sales", "./Sales/\n");
    user.write(
        ".qmail-default",
        "|{ id -u; echo \"$EXT $DEFAULT\"; } > \"$HOME/default.out\"\n",
    );
    write(&dir.join("virtualdomains"), "virt.test:vhost\n");
    write(
        &dir.join("assign"),
        &format!(
            "+vhost-:rmqlvirt:{uid}:{gid}:{home}:-::\n=boss:rmqlvirt:{uid}:{gid}:{home}:::\n.\n",
            uid = user.uid,
            home = user.home.display()
        ),
    );
    let config = base_config(&dir, "", "").replace(
        "[local]\ndomains = [\"example.test\", \"localhost\"]\n",
        &format!(
            "[local]\ndomains = [\"example.test\", \"localhost\", \"virt.test\"]\n\
                 unknown_users = \"reject\"\nvirtualdomains = \"{}\"\nassign = \"{}\"\n",
            dir.join("virtualdomains").display(),
            dir.join("assign").display()
        ),
    );
    assert!(config.contains("virt.test"), "{config}");
    let server = Server::start(&dir, &config);
    send(
        &server,
        "alice@x.test",
        &["sales@virt.test", "info@virt.test", "boss@example.test"],
        "Subject: virtual\r\n\r\nhi\r\n",
    );
    let sales = wait_files(&user.home.join("Sales"), 1, 30);
    assert_eq!(sales.len(), 1, "log:\n{}", server.log());
    assert_eq!(std::fs::metadata(&sales[0]).unwrap().uid(), user.uid);
    let boss = wait_files(&user.home.join("Maildir"), 1, 30);
    assert_eq!(boss.len(), 1, "log:\n{}", server.log());
    assert_eq!(std::fs::metadata(&boss[0]).unwrap().uid(), user.uid);
    let default = wait_contains(&user.home.join("default.out"), "info", 30);
    assert_eq!(default, format!("{}\ninfo info\n", user.uid));
    // Unknown at the virtual domain: nothing maps it, so RCPT refuses it.
    let (mut stream, _) = server.raw();
    common::exchange(&mut stream, b"EHLO client.test\r\n");
    common::exchange(&mut stream, b"MAIL FROM:<a@x.test>\r\n");
    let reply = common::exchange(&mut stream, b"RCPT TO:<anyone@example.test>\r\n");
    assert!(reply.starts_with("550"), "{reply}");
    let reply = common::exchange(&mut stream, b"RCPT TO:<anything@virt.test>\r\n");
    assert!(
        reply.starts_with("250"),
        "the +vhost- line takes every address: {reply}"
    );
}

#[test]
fn a_crash_mid_list_does_not_repeat_finished_lines() {
    let dir = test_dir("local-crash");
    let domain = dir.join("data/mail/example.test");
    let started = domain.join("slow.started");
    // Line 1 appends to an mbox; line 2 runs long enough for the test to kill the server in
    // the middle of it; line 3 is a Maildir.
    write(
        &domain.join(".qmail-slow"),
        &format!(
            "./slow.mbox\n|touch {}; sleep 4\n./slow/Maildir/\n",
            started.display()
        ),
    );
    let server_config = base_config(&dir, "", "");
    let mut server = Server::start(&dir, &server_config);
    send(
        &server,
        "alice@x.test",
        &["slow@example.test"],
        "Subject: once\r\n\r\nhi\r\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "line 2 never started:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    drop(server);
    let mbox = std::fs::read_to_string(domain.join("slow.mbox")).unwrap();
    assert_eq!(mbox.matches("Subject: once").count(), 1);
    // After the restart the message is delivered again from the first unfinished line: the
    // program (which was running) and the Maildir, but not the mbox.
    let server = Server::start_with(&dir, &dir.join("ringmail.toml"));
    let maildir = wait_files(&domain.join("slow/Maildir"), 1, 60);
    assert_eq!(maildir.len(), 1, "log:\n{}", server.log());
    let mbox = std::fs::read_to_string(domain.join("slow.mbox")).unwrap();
    assert_eq!(
        mbox.matches("Subject: once").count(),
        1,
        "the mbox line was repeated:\n{mbox}"
    );
}
