//! Signals against the real binary, as a qmail operator sends them: SIGHUP and SIGUSR1 reopen
//! the log file and never stop the server (SIGHUP also reloads the configuration), SIGALRM retries deferred mail at once (qmail-send's
//! ALRM), SIGPIPE (sent, or earned by a client that resets its connection mid-reply) is
//! ignored, and SIGTERM still stops gracefully with status 0.

mod common;
#[path = "support/receiver.rs"]
mod receiver;
mod relay;

use common::{Server, base_config, python, send_signal, test_dir};
use receiver::{Receiver, Script};
use relay::{send, wait_until};
use std::path::Path;

/// `base_config` with extra `[server]` keys.
fn config_with_server_keys(dir: &Path, server_keys: &str, smtp: &str, extra: &str) -> String {
    let config = base_config(dir, smtp, extra);
    config.replacen(
        "log_level = \"info\"\n",
        &format!("log_level = \"info\"\n{server_keys}\n"),
        1,
    )
}

/// A directory the server can create files in after it dropped root (as `/var/log/ringmail`
/// must be): owned by the user the tests' servers run as.
fn server_writable_dir(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    let status = std::process::Command::new("chown")
        .arg(format!("{}:", common::TEST_USER))
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn sighup_and_sigusr1_reopen_the_log_file_and_keep_serving() {
    let dir = test_dir("sig-hup");
    let logs = server_writable_dir(&dir, "logs");
    let log = logs.join("mail.log");
    let config =
        config_with_server_keys(&dir, &format!("log_file = \"{}\"", log.display()), "", "");
    let mut server = Server::start(&dir, &config);
    send(
        &server,
        "a@example.test",
        &["bob@example.test"],
        "Subject: 1\n\none\n",
    );
    assert_eq!(server.wait_for_mail("bob@example.test", 1, 20).len(), 1);
    assert!(
        wait_until(10, || read(&log).contains("end msg")),
        "{}",
        read(&log)
    );

    for (round, signal) in [(1, "HUP"), (2, "USR1")] {
        // What logrotate does: rename the file, then signal.
        let rotated = logs.join(format!("mail.log.{round}"));
        std::fs::rename(&log, &rotated).expect("rotate the log");
        send_signal(server.pid(), signal);
        let reopened = format!("signal {signal}: log file reopened: {}", log.display());
        assert!(
            wait_until(10, || read(&log).contains(&reopened)),
            "no fresh log after SIG{signal}; rotated file:\n{}",
            read(&rotated)
        );
        if signal == "HUP" {
            // SIGHUP also reloads the configuration file (tests/reload.rs has the details).
            assert!(wait_until(10, || read(&log).contains("configuration reloaded from")));
        }
        // Still serving, and its lines go to the fresh file.
        let subject = format!("after {signal}");
        send(
            &server,
            "a@example.test",
            &["bob@example.test"],
            &format!("Subject: {subject}\n\nhi\n"),
        );
        assert_eq!(
            server
                .wait_for_mail("bob@example.test", round + 1, 20)
                .len(),
            round + 1
        );
        assert!(
            wait_until(10, || read(&log).contains("end msg")),
            "{}",
            read(&log)
        );
        assert!(
            !read(&rotated).contains(&reopened),
            "the reopen line belongs in the new file"
        );
    }
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{}", read(&log));
    assert!(read(&log).contains("ringmail stopped"), "{}", read(&log));
}

#[test]
fn sighup_with_the_log_on_stderr_says_so_and_keeps_serving() {
    let dir = test_dir("sig-hup-stderr");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    send_signal(server.pid(), "HUP");
    assert!(
        wait_until(10, || server.log().contains(
            "signal HUP: the log goes to standard error, nothing to reopen"
        )),
        "{}",
        server.log()
    );
    send(
        &server,
        "a@example.test",
        &["bob@example.test"],
        "Subject: 1\n\none\n",
    );
    assert_eq!(server.wait_for_mail("bob@example.test", 1, 20).len(), 1);
    assert_eq!(server.terminate().code(), Some(0), "{}", server.log());
}

#[test]
fn sigalrm_retries_deferred_mail_at_once() {
    let dir = test_dir("sig-alrm");
    // A port nothing listens on yet: the first attempt is refused and deferred; the next
    // scheduled retry is 400 s away (qmail's schedule), so only SIGALRM can bring it sooner.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = base_config(
        &dir,
        "relay_networks = [\"127.0.0.0/8\"]",
        &format!(
            "[relay]\nroutes = {{ \"*\" = \"127.0.0.1:{port}\" }}\nhost_backoff_secs = 1\n\
             connection_idle_secs = 2\n"
        ),
    );
    let mut server = Server::start(&dir, &config);
    send(
        &server,
        "a@example.test",
        &["far@remote.test"],
        "Subject: far\n\nhi\n",
    );
    assert!(
        wait_until(20, || server.log().contains("to far@remote.test: deferral")),
        "{}",
        server.log()
    );
    let receiver = Receiver::start(&format!("127.0.0.1:{port}"), Script::default());
    // The host's backoff (1 s) must pass before the retry may connect; SIGALRM until it does.
    assert!(
        wait_until(20, || {
            send_signal(server.pid(), "ALRM");
            std::thread::sleep(std::time::Duration::from_millis(300));
            receiver.transactions().len() == 1
        }),
        "{}",
        server.log()
    );
    assert_eq!(receiver.transactions()[0].rcpts, vec!["<far@remote.test>"]);
    assert!(
        wait_until(10, || server.log().contains("signal ALRM: flushed")),
        "{}",
        server.log()
    );
    assert_eq!(server.terminate().code(), Some(0), "{}", server.log());
}

/// A client pipelines thousands of commands, reads one line, and resets the connection: the
/// server goes on writing replies to a dead socket, which is where SIGPIPE comes from.
const RESET_MID_REPLY: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.recv(512)
    s.sendall(b"EHLO reset.test\r\n" + b"NOOP\r\n" * 20000)
    s.recv(64)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print("done")
"#;

#[test]
fn sigpipe_and_clients_that_reset_mid_reply_do_not_kill_the_server() {
    let dir = test_dir("sig-pipe");
    let mut server = Server::start(&dir, &base_config(&dir, "", ""));
    send_signal(server.pid(), "PIPE");
    let out = python(RESET_MID_REPLY, &[&server.smtp.port().to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("done"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    send(
        &server,
        "a@example.test",
        &["bob@example.test"],
        "Subject: 1\n\none\n",
    );
    assert_eq!(server.wait_for_mail("bob@example.test", 1, 20).len(), 1);
    assert_eq!(server.terminate().code(), Some(0), "{}", server.log());
}

#[test]
fn serve_help_names_the_signals_and_the_new_keys() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--help"])
        .output()
        .expect("ringmail serve --help");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "SIGALRM",
        "SIGHUP",
        "SIGUSR1",
        "SIGPIPE",
        "log_file",
        "log_format",
        "blocking_threads",
        "blocking_queue",
    ] {
        assert!(
            text.contains(word),
            "{word} missing from serve --help:\n{text}"
        );
    }
}
