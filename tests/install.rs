//! The bare-metal install: `scripts/install --root <scratch>` lays out the binary, the commented
//! config, the data directory owned by the system user it creates, and the systemd unit, with
//! the right modes and owners; a second install keeps an edited config; `scripts/uninstall`
//! removes the program but keeps the queue and mail, and `--purge` removes only the config.
//!
//! The script creates a system user and chowns files, so this test needs root (this project's
//! test user is root); run as anyone else it fails and says why.

mod common;

use common::{BIN, test_dir};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Deletes the user (and its group) the install created, passed or failed.
struct UserGuard(String);

impl Drop for UserGuard {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).output();
        let _ = Command::new("groupdel").arg(&self.0).output();
    }
}

fn script(name: &str, args: &[&str]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let out = Command::new(&path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn id(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn install_into_a_scratch_root_then_uninstall_keeps_the_mail() {
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(
        uid, 0,
        "the install test must run as root (scripts/install creates a system user and chowns \
         files); run `cargo test` as root"
    );
    let user = format!("ringmail-inst-{}", std::process::id());
    let _ = Command::new("userdel").arg(&user).output();
    let _guard = UserGuard(user.clone());
    let dir = test_dir("install");
    let root: PathBuf = dir.join("root");
    let root_arg = root.to_str().unwrap();
    script(
        "install",
        &["--root", root_arg, "--bin", BIN, "--user", &user],
    );
    let (user_uid, user_gid) = (id("-u", &user), id("-g", &user));

    // The tree, and nothing else.
    let want = [
        "etc",
        "etc/ringmail",
        "etc/ringmail/ringmail.toml",
        "usr",
        "usr/bin",
        "usr/bin/mailq",
        "usr/lib",
        "usr/lib/systemd",
        "usr/lib/systemd/system",
        "usr/lib/systemd/system/ringmail.service",
        "usr/sbin",
        "usr/sbin/ringmail",
        "usr/sbin/sendmail",
        "var",
        "var/lib",
        "var/lib/ringmail",
    ];
    assert_eq!(tree(&root), want);
    for (path, mode, owner) in [
        ("usr/sbin/ringmail", 0o755, (0, 0)),
        ("etc/ringmail", 0o755, (0, 0)),
        ("etc/ringmail/ringmail.toml", 0o644, (0, 0)),
        ("usr/lib/systemd/system/ringmail.service", 0o644, (0, 0)),
        ("var/lib/ringmail", 0o750, (user_uid, user_gid)),
    ] {
        let meta = std::fs::metadata(root.join(path)).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "{path}");
        assert_eq!((meta.uid(), meta.gid()), owner, "{path}");
    }
    assert_eq!(
        std::fs::read(root.join("usr/sbin/ringmail")).unwrap(),
        std::fs::read(BIN).unwrap()
    );
    // sendmail and mailq are the binary under other names (relative links, valid in the tree).
    for (link, target) in [
        ("usr/sbin/sendmail", "ringmail"),
        ("usr/bin/mailq", "../sbin/ringmail"),
    ] {
        assert_eq!(
            std::fs::read_link(root.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
        assert_eq!(
            std::fs::read(root.join(link)).unwrap(),
            std::fs::read(BIN).unwrap()
        );
    }
    let help = Command::new(root.join("usr/sbin/sendmail"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).starts_with("Usage: ringmail sendmail"),
        "{help:?}"
    );

    // The system user: no login shell, the data directory as its home.
    let passwd = Command::new("getent")
        .args(["passwd", &user])
        .output()
        .unwrap();
    let passwd = String::from_utf8_lossy(&passwd.stdout);
    assert!(passwd.contains(":/var/lib/ringmail:"), "{passwd}");
    assert!(passwd.trim_end().ends_with("nologin"), "{passwd}");

    // The config: production-shaped, valid for the installed binary, runs as the new user.
    let config_path = root.join("etc/ringmail/ringmail.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    for line in [
        "data_dir = \"/var/lib/ringmail\"",
        &format!("user = \"{user}\""),
        "# listen = [\"0.0.0.0:25\", \"[::]:25\"]",
        "listen = [\"127.0.0.1:25\"]",
        "socket = \"/run/ringmail/inject.sock\"",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "no {line:?} in:\n{config}"
        );
    }
    let check = Command::new(root.join("usr/sbin/ringmail"))
        .arg("check-config")
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The unit: starts as root (no User=, no ambient capability), the installed paths, memlock.
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/ringmail.service")).unwrap();
    for line in [
        "ExecStart=/usr/sbin/ringmail serve --config /etc/ringmail/ringmail.toml",
        "LimitMEMLOCK=infinity",
        "ReadWritePaths=/var/lib/ringmail",
        "RuntimeDirectory=ringmail",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line:?} in:\n{unit}");
    }
    for key in ["User=", "AmbientCapabilities="] {
        assert!(
            !unit.lines().any(|l| l.starts_with(key)),
            "{key} in:\n{unit}"
        );
    }

    // A second install keeps the operator's edits and ships the new config beside them.
    std::fs::write(
        &config_path,
        format!("{config}\n# edited by the operator\n"),
    )
    .unwrap();
    let queued = root.join("var/lib/ringmail/queue/shard-0");
    std::fs::create_dir_all(&queued).unwrap();
    std::fs::write(queued.join("seg-1.log"), b"a queued message").unwrap();
    script(
        "install",
        &["--root", root_arg, "--bin", BIN, "--user", &user],
    );
    assert!(
        std::fs::read_to_string(&config_path)
            .unwrap()
            .ends_with("# edited by the operator\n")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/ringmail/ringmail.toml.new")).unwrap(),
        config
    );

    // Remove: program, links and unit gone; config, queue and mail kept.
    script("uninstall", &["--root", root_arg]);
    assert!(!root.join("usr/sbin/ringmail").exists());
    assert!(std::fs::symlink_metadata(root.join("usr/sbin/sendmail")).is_err());
    assert!(std::fs::symlink_metadata(root.join("usr/bin/mailq")).is_err());
    assert!(
        !root
            .join("usr/lib/systemd/system/ringmail.service")
            .exists()
    );
    assert!(config_path.exists());
    assert_eq!(
        std::fs::read(queued.join("seg-1.log")).unwrap(),
        b"a queued message"
    );
    // Purge: the config goes too; the queue and mail still stay.
    script("uninstall", &["--root", root_arg, "--purge"]);
    assert!(!root.join("etc/ringmail").exists());
    assert_eq!(
        std::fs::read(queued.join("seg-1.log")).unwrap(),
        b"a queued message"
    );
    let data = std::fs::metadata(root.join("var/lib/ringmail")).unwrap();
    assert_eq!(data.uid(), user_uid);

    // Another MTA's sendmail is kept, or with --replace-sendmail moved aside and put back by
    // the uninstall.
    let other = root.join("usr/sbin/sendmail");
    std::fs::write(&other, b"#!/bin/sh\n# another MTA\n").unwrap();
    let out = script(
        "install",
        &["--root", root_arg, "--bin", BIN, "--user", &user],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept the existing"));
    assert_eq!(
        std::fs::read(&other).unwrap(),
        b"#!/bin/sh\n# another MTA\n"
    );
    script(
        "install",
        &[
            "--root",
            root_arg,
            "--bin",
            BIN,
            "--user",
            &user,
            "--replace-sendmail",
        ],
    );
    assert_eq!(std::fs::read_link(&other).unwrap(), Path::new("ringmail"));
    script("uninstall", &["--root", root_arg, "--purge"]);
    assert_eq!(
        std::fs::read(&other).unwrap(),
        b"#!/bin/sh\n# another MTA\n"
    );
}
