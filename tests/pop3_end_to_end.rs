//! POP3 through the real binary: a user added with `ringmail passwd add`, mail sent in over SMTP,
//! fetched with Python's poplib and curl; DELE is applied only at QUIT (not on a dropped
//! connection, not on kill -9), and UIDLs survive a restart.

mod common;

use common::{Server, base_config, python, test_dir};
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const SEND: &str = r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10) as s:
    for i in range(3):
        s.sendmail("alice@localhost", ["bob@example.test"], "Subject: msg %d\r\n\r\nbody %d\r\n.dot\r\n" % (i, i))
"#;

/// poplib: log in, print STAT and UIDL, then run the command named in argv[3].
const POP: &str = r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=10)
p.user("bob@example.test")
p.pass_(sys.argv[2])
print("STAT", p.stat())
print("UIDL", sorted(u.decode().split()[1] for u in p.uidl()[1]))
action = sys.argv[3]
if action == "retr":
    lines = p.retr(1)[1]
    print("RETR", b"\n".join(lines).decode())
    p.quit()
elif action == "dele-quit":
    print(p.dele(1))
    p.quit()
elif action == "dele-drop":
    print(p.dele(1))
    p.sock.close()
elif action == "dele-wait":
    print("DELE", p.dele(1), flush=True)
    import time
    time.sleep(30)  # the test kills the server meanwhile
"#;

fn add_user(server: &Server, address: &str, password: &str) {
    let mut child = Command::new(common::BIN)
        .args(["passwd", "add", address, "--config"])
        .arg(&server.config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

fn pop(server: &Server, password: &str, action: &str) -> String {
    let port = server.pop3.unwrap().port().to_string();
    let out = python(POP, &[&port, password, action]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stat_line(output: &str) -> &str {
    output.lines().find(|l| l.starts_with("STAT")).unwrap()
}

fn uidl_line(output: &str) -> String {
    output
        .lines()
        .find(|l| l.starts_with("UIDL"))
        .unwrap()
        .to_string()
}

#[test]
fn smtp_in_pop3_out_with_delete_only_at_quit() {
    let dir = test_dir("pop3e2e");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    add_user(&server, "bob@example.test", "s3cret");
    let out = server.ctl(&["passwd", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "bob@example.test"
    );

    let sent = python(SEND, &[&server.smtp.port().to_string()]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(server.wait_for_mail("bob@example.test", 3, 20).len(), 3);

    // poplib reads what SMTP delivered, dot-stuffing and all.
    let first = pop(&server, "s3cret", "retr");
    assert!(stat_line(&first).starts_with("STAT (3, "), "{first}");
    // The three deliveries may land in any order; whichever is first, it came through whole.
    assert!(first.contains("\nSubject: msg "), "{first}");
    assert!(first.contains("\n.dot"), "{first}");
    let uidls = uidl_line(&first);

    // A wrong password is refused.
    let bad = python(
        POP,
        &[&server.pop3.unwrap().port().to_string(), "wrong", "retr"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("-ERR"));

    // curl is a second client.
    let curl = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--user",
            "bob@example.test:s3cret",
        ])
        .arg(format!("pop3://{}/2", server.pop3.unwrap()))
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(String::from_utf8_lossy(&curl.stdout).contains("Subject: msg "));

    // DELE then a dropped connection deletes nothing.
    pop(&server, "s3cret", "dele-drop");
    // The next session gets in once the dropped one has ended (before, it is refused with
    // [IN-USE]); by then anything the dropped session did to the Maildir is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let port = server.pop3.unwrap().port().to_string();
    let after_drop = loop {
        let out = python(POP, &[&port, "s3cret", "stat"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("[IN-USE]"), "{err}");
        assert!(std::time::Instant::now() < deadline, "mailbox still locked");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        stat_line(&after_drop).starts_with("STAT (3, "),
        "{after_drop}"
    );

    // DELE then kill -9 of the server before QUIT deletes nothing either.
    let port = server.pop3.unwrap().port().to_string();
    let mut held = Command::new("python3")
        .arg("-")
        .args([&port, "s3cret", "dele-wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    held.stdin
        .as_mut()
        .unwrap()
        .write_all(POP.as_bytes())
        .unwrap();
    drop(held.stdin.take());
    let mut reader = std::io::BufReader::new(held.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("DELE") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the POP3 client ended before DELE"
        );
    }
    assert!(line.contains("+OK"), "{line}");
    server.kill9();
    let _ = held.kill();
    let _ = held.wait();
    let mut server = Server::start_with(&dir, &dir.join("ringmail.toml"));
    let after_kill = pop(&server, "s3cret", "stat");
    assert!(
        stat_line(&after_kill).starts_with("STAT (3, "),
        "{after_kill}"
    );
    // UIDLs are the same across sessions and across the restart.
    assert_eq!(uidl_line(&after_kill), uidls);

    // DELE then QUIT removes the message from disk.
    pop(&server, "s3cret", "dele-quit");
    let after_quit = pop(&server, "s3cret", "stat");
    assert!(
        stat_line(&after_quit).starts_with("STAT (2, "),
        "{after_quit}"
    );
    let maildir = server.mail_root().join("example.test/bob/Maildir");
    let on_disk = ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(maildir.join(d))
                .map(|e| e.count())
                .unwrap_or(0)
        })
        .sum::<usize>();
    assert_eq!(on_disk, 2);
    assert!(server.terminate().success());
}

/// Sends one message whose body has four lines that start with a dot, then reports LIST/STAT
/// and what RETR delivered, as poplib sees them (poplib removes the stuffing).
const DOTS: &str = r#"
import poplib, smtplib, sys
smtp_port, pop_port, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if mode == "send":
    body = "Subject: dots\r\n\r\n.one\r\n..two\r\n.three\r\nplain\r\n.\r\n"
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
        s.sendmail("alice@localhost", ["bob@example.test"], body)
    sys.exit(0)
p = poplib.POP3("127.0.0.1", pop_port, timeout=10)
# No APOP secrets file is configured: no timestamp invites an APOP that cannot succeed.
assert b"<" not in p.getwelcome(), p.getwelcome()
p.user("bob@example.test")
p.pass_("s3cret")
count, total = p.stat()
listed = [int(l.split()[1]) for l in p.list()[1]]
single = int(p.list(1).split()[2])
resp, lines, octets = p.retr(1)
# poplib has already un-stuffed; put the CRLF line ends back (RFC 1939 §5's size).
content = b"".join(l + b"\r\n" for l in lines)
# Delivery adds trace headers above ours; the body is what follows the blank line.
assert lines[lines.index(b"") + 1:] == [b".one", b"..two", b".three", b"plain", b"."], lines
assert listed == [len(content)], (listed, len(content))
assert single == len(content) and total == len(content), (single, total)
assert resp.split()[1] == str(len(content)).encode(), resp
p.quit()
print("SIZE", len(content))
"#;

/// RFC 1939 §5: LIST and STAT count the message with CRLF line ends and without byte-stuffing,
/// so the size equals what a client holds after RETR (fetchmail and others compare them).
#[test]
fn list_sizes_equal_retrieved_octets_with_dot_lines() {
    let dir = test_dir("pop3dots");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    add_user(&server, "bob@example.test", "s3cret");
    let smtp = server.smtp.port().to_string();
    let pop_addr = server.pop3.unwrap();
    let pop_port = pop_addr.port().to_string();
    let sent = python(DOTS, &[&smtp, &pop_port, "send"]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(server.wait_for_mail("bob@example.test", 1, 20).len(), 1);

    let out = python(DOTS, &[&smtp, &pop_port, "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size: usize = stdout
        .trim()
        .strip_prefix("SIZE ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));

    // curl: RETR of message 1 (curl removes the stuffing too), and the mailbox URL without a
    // message number, for which curl sends LIST and prints the listing. (`--list-only` with a
    // number sends `LIST 1`, whose one-line answer curl does not print.)
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .arg(format!(
                "pop3://bob%40example.test:s3cret@{pop_addr}/{path}"
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let retrieved = curl("1");
    assert_eq!(
        retrieved.len(),
        size,
        "curl RETR gave {:?}",
        String::from_utf8_lossy(&retrieved)
    );
    assert!(
        retrieved.ends_with(b"\r\n.one\r\n..two\r\n.three\r\nplain\r\n.\r\n"),
        "{:?}",
        String::from_utf8_lossy(&retrieved)
    );
    let listed = String::from_utf8_lossy(&curl("")).into_owned();
    assert_eq!(listed, format!("1 {size}\r\n"), "curl's LIST");
    assert!(server.terminate().success());
}
