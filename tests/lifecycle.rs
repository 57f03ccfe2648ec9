//! The server's life as an operator sees it: config errors, the data directory lock, graceful
//! shutdown with 421, restart, and the queue commands.

mod common;

use common::{BIN, Server, base_config, exchange, test_dir};
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

#[test]
fn queue_commands_read_the_data_directory() {
    let dir = test_dir("queuecli");
    let server = Server::start(&dir, &base_config(&dir, "", ""));
    let out = server.ctl(&["queue", "stat"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("messages in queue: 0"), "{text}");
    let out = server.ctl(&["queue", "list"]);
    assert!(out.status.success());
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
