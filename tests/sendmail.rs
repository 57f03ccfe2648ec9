//! `ringmail sendmail` end to end: the real binary injects into the real server through the
//! injection socket, from a shell pipeline, from Python's subprocess, under the name `sendmail`,
//! as an SMTP session on stdio (`-bs`), as another user, and with the server stopped (exit 75).

mod common;

use common::{BIN, Server, base_config, test_dir};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn start(name: &str, extra: &str) -> (common::TestDir, Server) {
    let dir = test_dir(name);
    let server = Server::start(&dir, &base_config(&dir, "", extra));
    (dir, server)
}

/// Runs `ringmail sendmail -C <config> ARGS` with `input` on stdin.
fn sendmail(server: &Server, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("sendmail")
        .arg("-C")
        .arg(&server.config_path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn read(path: &Path) -> String {
    String::from_utf8(std::fs::read(path).unwrap()).unwrap()
}

fn header_names(message: &str) -> Vec<String> {
    message
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect()
}

#[test]
fn sendmail_t_from_a_shell_pipeline_adds_headers_and_removes_bcc() {
    let (_dir, server) = start("sendmail-pipeline", "");
    let script = format!(
        "printf 'To: bob@example.test, \"Carol C\" <carol@example.test>\\nBcc: dave@example.test\\n\
         Subject: from the shell\\n\\nhello\\n.\\nnot the end with -oi\\n' \
         | {BIN} sendmail -C {} -t -oi -F 'Root Sender'",
        server.config_path.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{out:?}\n{}", server.log());
    for rcpt in [
        "bob@example.test",
        "carol@example.test",
        "dave@example.test",
    ] {
        let files = server.wait_for_mail(rcpt, 1, 20);
        assert_eq!(files.len(), 1, "{rcpt}: {}", server.log());
        let message = read(&files[0]);
        let names = header_names(&message);
        for name in ["date", "message-id", "from", "received", "to", "subject"] {
            assert!(names.contains(&name.to_string()), "{name} in\n{message}");
        }
        assert!(!names.contains(&"bcc".to_string()), "{message}");
        assert!(
            message.contains("Received: (ringmail invoked by uid 0); "),
            "{message}"
        );
        assert!(
            message.contains("From: \"Root Sender\" <root@mx.test>"),
            "{message}"
        );
        assert!(message.contains("Message-ID: <"), "{message}");
        assert!(message.contains("Return-Path: <root@mx.test>"), "{message}");
        // -oi: the lone dot is content.
        assert!(
            message.ends_with("hello\n.\nnot the end with -oi\n"),
            "{message}"
        );
    }
    assert!(server.log().contains("via local uid 0"), "{}", server.log());
}

#[test]
fn sendmail_from_python_subprocess_and_under_the_name_sendmail() {
    let (dir, server) = start("sendmail-python", "");
    // The same binary, run through a link named sendmail, as /usr/sbin/sendmail is.
    let link = dir.join("sendmail");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let out = common::python(
        r#"
import email, email.policy, subprocess, sys
sendmail, config = sys.argv[1], sys.argv[2]
msg = "To: Bob <bob@example.test>\nSubject: from python\n\nline one\n.\nline after a dot\n"
r = subprocess.run([sendmail, "-C", config, "-t", "-oi", "-f", "alice@example.test"],
                   input=msg.encode(), capture_output=True)
print("exit", r.returncode, r.stderr.decode().strip())
# Without -i a lone dot ends the message; a bare name gets the default host.
r = subprocess.run([sendmail, "-C", config, "carol"], input=b"Subject: dot\n\nbefore\n.\nafter\n",
                   capture_output=True)
print("exit", r.returncode, r.stderr.decode().strip())
"#,
        &[link.to_str().unwrap(), server.config_path.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "exit 0 \nexit 0 \n", "{out:?}\n{}", server.log());
    let bob = server.wait_for_mail("bob@example.test", 1, 20);
    assert_eq!(bob.len(), 1, "{}", server.log());
    // Python's email parser reads what was delivered.
    let check = common::python(
        r#"
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
print(m["Return-Path"], m["Subject"], bool(m["Date"]), bool(m["Message-ID"]),
      m["From"].addresses[0].addr_spec)
print(m.get_content().replace("\n", "|"))
"#,
        &[bob[0].to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "<alice@example.test> from python True True root@mx.test\nline one|.|line after a dot|\n",
        "{check:?}"
    );
    // `carol` became carol@mx.test (inject.default_host defaults to server.hostname).
    let carol = server.wait_for_mail("carol@mx.test", 1, 20);
    assert_eq!(carol.len(), 1, "{}", server.log());
    let message = read(&carol[0]);
    assert!(message.ends_with("\n\nbefore\n"), "{message}");
}

#[test]
fn sendmail_bs_runs_the_smtp_session_on_stdio() {
    let (_dir, server) = start("sendmail-bs", "");
    let dialogue = b"EHLO client.test\r\n\
        MAIL FROM:<\"alice\"@example.test>\r\n\
        RCPT TO:<\"Bob\"@example.test>\r\n\
        RCPT TO:<\"bob@gmail.com\"@example.test>\r\n\
        RCPT TO:<\".hidden\"@example.test>\r\n\
        DATA\r\nSubject: over stdio\r\n\r\nhello\r\n..dot-stuffed\r\n.\r\n\
        QUIT\r\n";
    let out = sendmail(&server, &["-bs"], dialogue);
    assert!(out.status.success(), "{out:?}");
    let replies = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = replies
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        [
            "220", "250", "250", "250", "553", "553", "354", "250", "221"
        ],
        "{replies}"
    );
    assert!(replies.contains("250 2.0.0 Ok: queued as "), "{replies}");
    let files = server.wait_for_mail("bob@example.test", 1, 20);
    assert_eq!(files.len(), 1, "{}", server.log());
    let message = read(&files[0]);
    assert!(message.starts_with("Return-Path: <alice@example.test>\nDelivered-To: Bob@example.test\nReceived: (ringmail invoked by uid 0)"), "{message}");
    assert!(message.ends_with("hello\n.dot-stuffed\n"), "{message}");
}

#[test]
fn sendmail_with_the_server_stopped_exits_75_and_queues_nothing() {
    let (_dir, mut server) = start("sendmail-stopped", "");
    server.terminate();
    let out = sendmail(&server, &["bob@example.test"], b"Subject: x\n\nx\n");
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is the ringmail server running?"),
        "{stderr}"
    );
    // Nothing went anywhere: the caller was told, and keeps the message.
    let restarted = Server::start_with(&server.dir, &server.config_path);
    let list = restarted.ctl(&["queue", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "the queue is empty\n"
    );
    assert!(restarted.new_mail("bob@example.test").is_empty());
}

#[test]
fn refusals_have_their_sysexits_codes() {
    let (_dir, server) = start("sendmail-refusals", "[inject]\nsender_check = \"login\"\n");
    let cases: &[(&[&str], &[u8], i32)] = &[
        // No recipient at all: usage.
        (&[], b"Subject: x\n\nx\n", 64),
        (&["-Z"], b"", 64),
        // Routing characters at a local domain: a bad address, refused whole.
        (&["\"bob@gmail.com\"@example.test"], b"x\n", 65),
        (&["bob@example.test", "a/b@example.test"], b"x\n", 65),
        // Not an address at all.
        (&["bob@exa mple.test"], b"x\n", 65),
    ];
    for (args, input, code) in cases {
        let out = sendmail(&server, args, input);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {out:?}");
    }
    // Root may claim any sender even with sender_check = "login".
    let out = sendmail(
        &server,
        &["-f", "anyone@else.test", "bob@example.test"],
        b"x\n",
    );
    assert!(out.status.success(), "{out:?}");
    // -bp lists the queue as `queue list` does, and so does the binary named mailq: with
    // delivery paused, the message just queued is there.
    assert!(server.ctl(&["queue", "pause"]).status.success());
    let out = sendmail(
        &server,
        &["-v", "carol@example.test"],
        b"Subject: held\n\nx\n",
    );
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("queued as ")
        .expect("-v prints the queue id")
        .to_string();
    let bp = sendmail(&server, &["-bp"], b"");
    let mailq = server.dir.join("mailq");
    std::os::unix::fs::symlink(BIN, &mailq).unwrap();
    let out = Command::new(&mailq)
        .arg("-C")
        .arg(&server.config_path)
        .output()
        .unwrap();
    assert!(out.status.success() && bp.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&format!("msg {id} ")), "{listing}");
    assert!(
        listing.contains("\tpending\tcarol@example.test"),
        "{listing}"
    );
    assert_eq!(bp.stdout, out.stdout);
    assert!(server.ctl(&["queue", "resume"]).status.success());
    // `ringmail sendmail --help` is sendmail's own help.
    let help = Command::new(BIN)
        .args(["sendmail", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("-bs            speak SMTP"),
        "{help:?}"
    );
}

/// Another local user: the kernel names them (the Received: line carries their uid), and with
/// sender_check = "login" they may send only as themselves.
#[test]
fn another_user_injects_as_themselves_only() {
    let dir = test_dir("sendmail-user");
    // The data directory is the server user's (0750), so the socket goes where every user can
    // reach it; the server, started as root, creates that directory for its user.
    let public = dir.join("run");
    let extra = format!(
        "[inject]\nsocket = \"{}\"\nsender_check = \"login\"\n",
        public.join("inject.sock").display()
    );
    let server = Server::start(&dir, &base_config(&dir, "", &extra));
    let meta = std::fs::metadata(&public).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert_eq!(meta.uid(), 65534, "owned by nobody");
    let socket = std::fs::metadata(public.join("inject.sock")).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o666);
    let as_daemon = |args: &[&str]| {
        let mut child = Command::new("setpriv")
            .args([
                "--reuid=daemon",
                "--regid=daemon",
                "--clear-groups",
                BIN,
                "sendmail",
                "-C",
            ])
            .arg(&server.config_path)
            .args(args)
            .env_remove("USER")
            .env_remove("LOGNAME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Subject: from daemon\n\nhi\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = as_daemon(&["bob@example.test"]);
    assert!(out.status.success(), "{out:?}\n{}", server.log());
    let files = server.wait_for_mail("bob@example.test", 1, 20);
    assert_eq!(files.len(), 1);
    let message = read(&files[0]);
    assert!(
        message.contains("Return-Path: <daemon@mx.test>"),
        "{message}"
    );
    assert!(
        message.contains("Received: (ringmail invoked by uid 1);"),
        "{message}"
    );
    // Claiming someone else: refused, EX_NOPERM.
    let out = as_daemon(&["-f", "root@mx.test", "bob@example.test"]);
    assert_eq!(out.status.code(), Some(77), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not send as <root@mx.test>"),
        "{out:?}"
    );
}
