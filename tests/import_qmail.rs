//! `ringmail import-qmail` on a sample qmail control directory (tests/support/qmail-control):
//! the printed configuration passes `ringmail check-config` with the expected values, and
//! every file it cannot translate is named, in the output and on stderr.

mod common;

use common::{BIN, test_dir};
use std::path::Path;
use std::process::Command;

fn sample() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/qmail-control"
    ))
}

#[test]
fn sample_control_directory_becomes_a_valid_config() {
    let dir = test_dir("import-qmail");
    let out = Command::new(BIN)
        .args(["import-qmail"])
        .arg(sample())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let config = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    for line in [
        "hostname = \"mx.example.com\"  # me",
        "domains = [\"example.com\", \"mx.example.com\", \"lists.example.net\"]",
        "rcpthosts = [\"backup.example.org\", \".lists.example.org\"]",
        "max_message_size = 10485760  # databytes",
        "command_timeout_secs = 1200  # timeoutsmtpd",
        "queue_lifetime_secs = 345600  # queuelifetime",
        "max_connections = 40  # concurrencyremote",
        "helo_name = \"mx.example.com\"  # helohost",
        "data_timeout_secs = 600  # timeoutremote",
        "routes = { \"*\" = \"smarthost.example.net:587\", \"example.org\" = \"192.0.2.25:25\" }",
        "default_host = \"example.com\"  # defaulthost",
        "default_domain = \"example.com\"  # defaultdomain",
        "plus_domain = \"example.com\"  # plusdomain",
    ] {
        assert!(config.contains(line), "missing {line:?} in\n{config}");
    }
    // What has no equivalent is named twice: in the config and on stderr.
    for file in [
        "badmailfrom:",
        "percenthack:",
        "concurrencylocal:",
        "smtproutes: \"nomx.example.com:\"",
        "virtualdomains: lists.example.net -> lists",
    ] {
        assert!(
            config.contains(&format!("#   {file}")),
            "{file} in\n{config}"
        );
        assert!(
            stderr.contains(&format!("not translated: {file}")),
            "{file} in\n{stderr}"
        );
    }

    let path = dir.join("imported.toml");
    std::fs::write(&path, &config).unwrap();
    let check = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}\n{config}");
    for line in [
        "hostname      mx.example.com",
        "local domains example.com, mx.example.com, lists.example.net",
        "rcpthosts     backup.example.org, .lists.example.org",
        "routes        * -> smarthost.example.net:587, example.org -> 192.0.2.25:25",
    ] {
        assert!(summary.contains(line), "{line:?} in\n{summary}");
    }
}

#[test]
fn empty_or_missing_directories_are_errors() {
    let dir = test_dir("import-qmail-empty");
    for target in [dir.to_path_buf(), dir.join("missing")] {
        let out = Command::new(BIN)
            .arg("import-qmail")
            .arg(&target)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&target.display().to_string()),
            "{out:?}"
        );
    }
}
