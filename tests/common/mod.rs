//! Shared by the end-to-end tests: start the real `ringmail` binary on free loopback ports with a
//! config in a temporary directory, stop it (SIGTERM or SIGKILL), and look at what it delivered.
#![allow(dead_code)] // each test binary uses a different part of this

pub mod aiosmtpd;
pub mod dns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ringmail");

/// The unprivileged user test servers started as root run as (see [`base_config`]).
pub const TEST_USER: &str = "nobody";

/// A running ringmail with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub smtp: SocketAddr,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub smtps: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    /// The lines the server printed on stdout while starting.
    pub startup: Vec<String>,
    /// A test directory this server owns (see [`Server::start_owning`]); removed after the
    /// server is stopped, since fields drop after `Drop::drop`.
    owned_dir: Option<TestDir>,
    /// The HTTP control plane's address, when `[http] listen` is set.
    pub http: Option<SocketAddr>,
}

/// A fresh temporary directory for one test: removed when the test passes, kept (with the
/// server's log) when it fails. Dereferences to its path.
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn test_dir(name: &str) -> TestDir {
    let dir = std::env::temp_dir().join(format!("ringmail-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TestDir(dir)
}

/// The config every test starts from; `extra` is appended (it may add keys to `[smtp]` etc. only
/// through whole extra sections, so tests pass full sections they want to change).
///
/// Remote mail must never reach the machine's resolver or a real host: unless `extra` brings its
/// own `[dns]` and `[relay]` sections, the resolver is a dead loopback port and every remote
/// domain is routed to one (so remote recipients and bounces are simply deferred).
///
/// Started as root (the test user here), the server drops to `server.user`: [`TEST_USER`], which
/// every Linux has. [`Server::start_with`] gives it the data directory a test prepared as root.
pub fn base_config(dir: &Path, smtp_extra: &str, extra: &str) -> String {
    let mut config = format!(
        "[server]\nhostname = \"mx.test\"\ndata_dir = \"{data}\"\nshards = 2\nlog_level = \"info\"\n\
         user = \"{TEST_USER}\"\n\n\
         [smtp]\nlisten = [\"127.0.0.1:0\"]\n{smtp_extra}\n\n\
         [local]\ndomains = [\"example.test\", \"localhost\"]\n\n\
         [pop3]\nlisten = [\"127.0.0.1:0\"]\nallow_plaintext_auth = \"loopback\"\n\n{extra}",
        data = dir.join("data").display()
    );
    if !extra.contains("[dns]") {
        config.push_str("\n[dns]\nnameservers = [\"127.0.0.1:9\"]\n");
    }
    if !extra.contains("[relay]") {
        config.push_str("\n[relay]\nroutes = { \"*\" = \"127.0.0.1:9\" }\n");
    }
    config
}

impl Server {
    /// Starts ringmail with `config` (written to `<dir>/ringmail.toml`) and waits until it serves.
    pub fn start(dir: &Path, config: &str) -> Server {
        let config_path = dir.join("ringmail.toml");
        std::fs::write(&config_path, config).unwrap();
        Server::start_with(dir, &config_path)
    }

    /// Like [`Server::start`], for helpers that return only the server: it keeps `dir` alive
    /// (and removes it after stopping) instead of the caller.
    pub fn start_owning(dir: TestDir, config: &str) -> Server {
        let mut server = Server::start(&dir, config);
        server.owned_dir = Some(dir);
        server
    }

    /// Starts ringmail again on the same directory and config file (after a stop or a crash).
    pub fn start_with(dir: &Path, config_path: &Path) -> Server {
        give_data_dir_to_server_user(config_path);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ringmail.log"))
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start ringmail");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut smtp = None;
        let mut pop3 = None;
        let mut pop3s = None;
        let mut smtps = None;
        let mut submission = None;
        let mut startup = Vec::new();
        let mut http = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(dir.join("ringmail.log")).unwrap_or_default();
                    panic!("ringmail did not announce itself; log:\n{log}");
                }
            };
            startup.push(line.clone());
            if let Some(addr) = line.strip_prefix("ringmail: smtp listening on ") {
                smtp = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.strip_prefix("ringmail: pop3 listening on ") {
                pop3 = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.strip_prefix("ringmail: pop3s listening on ") {
                pop3s = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.strip_prefix("ringmail: smtps listening on ") {
                smtps = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.strip_prefix("ringmail: submission listening on ") {
                submission = Some(addr.parse().unwrap());
            } else if let Some(addr) = line.strip_prefix("ringmail: http listening on ") {
                http = Some(addr.parse().unwrap());
            } else if line.starts_with("ringmail: queue in ") {
                break;
            }
        }
        Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            config_path: config_path.to_path_buf(),
            smtp: smtp.expect("smtp address announced"),
            pop3,
            pop3s,
            smtps,
            submission,
            startup,
            owned_dir: None,
            http,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM, then wait (at most 30 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        send_signal(child.id(), "TERM");
        wait_timeout(&mut child, Duration::from_secs(30)).expect("ringmail exits after SIGTERM")
    }

    /// Waits (at most 30 s) for the server to exit on its own, e.g. after a signal the test sent.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_timeout(&mut child, Duration::from_secs(30)).expect("ringmail exits")
    }

    /// The exit status, if the server has already exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL: the crash the queue must survive.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ringmail.log")).unwrap_or_default()
    }

    pub fn mail_root(&self) -> PathBuf {
        self.dir.join("data").join("mail")
    }

    /// Files in `<mail root>/<domain>/<user>/Maildir/new`.
    pub fn new_mail(&self, address: &str) -> Vec<PathBuf> {
        let (user, domain) = address.split_once('@').unwrap();
        let dir = self
            .mail_root()
            .join(domain)
            .join(user)
            .join("Maildir")
            .join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Waits (at most `secs`) until `address` has `count` new messages, and returns them.
    pub fn wait_for_mail(&self, address: &str, count: usize, secs: u64) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let files = self.new_mail(address);
            if files.len() >= count || Instant::now() > deadline {
                return files;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `secs`) until the queue is idle: the running server reports no recipient
    /// pending (`ringmail queue status`) and the queue files hold no unfinished message
    /// (`ringmail queue stat`). "Nothing was delivered" is only known once this holds: before,
    /// a wrongly accepted message could still be on its way to a Maildir. Panics on timeout.
    pub fn wait_queue_idle(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let status =
                String::from_utf8_lossy(&self.ctl(&["queue", "status"]).stdout).into_owned();
            let stat = String::from_utf8_lossy(&self.ctl(&["queue", "stat"]).stdout).into_owned();
            if status.lines().next() == Some("running, 0 recipients pending")
                && stat.contains("messages in queue: 0")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue not idle after {secs} s:\n{status}\n{stat}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `ringmail ARGS --config <this config>` and returns its output.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .output()
            .unwrap()
    }

    /// Adds a user to the built-in password database with `ringmail passwd add`.
    pub fn add_user(&self, address: &str, password: &str) {
        let mut add = Command::new(BIN)
            .args(["passwd", "add", address, "--config"])
            .arg(&self.config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        assert!(add.wait().unwrap().success(), "passwd add {address}");
    }

    /// A raw connection for bad-input tests, past the greeting (which is returned).
    pub fn raw(&self) -> (TcpStream, String) {
        let mut stream = TcpStream::connect(self.smtp).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let greeting = read_reply(&mut stream);
        (stream, greeting)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Reads one complete SMTP reply (all `NNN-` lines and the final `NNN ` line).
pub fn read_reply(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(_) => reply.push(byte[0]),
        }
        if reply.ends_with(b"\r\n") {
            let text = String::from_utf8_lossy(&reply);
            let last = text.trim_end().rsplit("\r\n").next().unwrap_or("");
            if last.len() < 4 || last.as_bytes()[3] == b' ' {
                break;
            }
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// Sends `bytes` and reads one reply.
pub fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).unwrap();
    read_reply(stream)
}

/// Runs a Python 3 script (stdin-fed, so no quoting trouble) with `args`.
pub fn python(script: &str, args: &[&str]) -> Output {
    let mut child = Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-test-deps installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The first interpreter that can import `module`: `$RINGMAIL_TEST_PYTHON`, then `python3`,
/// then `/usr/bin/python3`. Debian's python3-* packages install into the system interpreter,
/// which a pyenv or venv `python3` first on PATH does not see. Panics naming `package` (which
/// scripts/install-test-deps installs) when none can.
pub fn python_with(module: &str, package: &str) -> String {
    let mut tried = Vec::new();
    if let Ok(python) = std::env::var("RINGMAIL_TEST_PYTHON") {
        tried.push(python);
    }
    tried.extend(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for python in &tried {
        let ok = Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python.clone();
        }
    }
    panic!("no python3 with {module} (tried {tried:?}): run scripts/install-test-deps ({package})");
}

/// The path of a helper script under tests/clients.
pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
        .join(name)
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Started as root, the server runs as its `server.user` and refuses a data directory that user
/// cannot write; what a test wrote there as root (Maildirs, passwd, a queue from an earlier run)
/// is handed to that user first, as an operator would `chown -R` it.
fn give_data_dir_to_server_user(config_path: &Path) {
    let Ok(text) = std::fs::read_to_string(config_path) else {
        return;
    };
    let setting = |key: &str| {
        text.lines().find_map(|line| {
            let value = line
                .trim()
                .strip_prefix(key)?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
    };
    let (Some(user), Some(data_dir)) = (setting("user"), setting("data_dir")) else {
        return;
    };
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if root && Path::new(&data_dir).exists() {
        let status = Command::new("chown")
            .args(["-R", &format!("{user}:")])
            .arg(&data_dir)
            .status()
            .unwrap();
        assert!(status.success(), "chown -R {user}: {data_dir}");
    }
}

/// Sends a signal with `kill(1)`, which keeps the tests free of unsafe code.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}
