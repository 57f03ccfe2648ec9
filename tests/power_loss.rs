//! Power loss: the real server runs with its data directory on `lazyfs` (a FUSE file system
//! that drops everything not fsynced when told to), under concurrent SMTP and POP3 load, and
//! the power is cut at random moments: the server is SIGKILLed and every unsynced change is
//! dropped, as one event. After each cut the server restarts on what survived, and:
//!
//! - every local message that got a 250 is delivered, whole; nothing is delivered that was
//!   never sent, at most one message per client was delivered without its 250 (the one in
//!   flight at the cut), and no partial file is visible in `new/`;
//! - every remote message that got a 250 (the destination is down, so it stays queued) is
//!   still in the queue;
//! - every POP3 deletion acknowledged by `+OK` after QUIT stays deleted.
//!
//! A SIGKILL alone (`crash_safety`) keeps the page cache and cannot see a missing sync; this
//! test can: `tests/power_loss.md` records, for each sync the code makes, which assertion
//! fails when it is removed.
//!
//! The seed is printed; `RINGMAIL_POWER_LOSS_SEED=<n>` replays a run's choices (the timing of
//! the load itself still varies).

mod common;

use common::{Server, TestDir, base_config, client_script, test_dir};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lazyfs::LazyFs;

/// Power cuts per run; each round is a few seconds of load.
const CUTS: usize = 3;
/// Concurrent SMTP clients sending small local messages, and big remote ones.
const LOCAL_CLIENTS: usize = 6;
const REMOTE_CLIENTS: usize = 2;
/// Lines of 70 characters in a local message's body, and in a remote one's (about 56 KB: a
/// 1 MiB segment fills in a few dozen, so segments are created during every round).
const LOCAL_LINES: usize = 12;
const REMOTE_LINES: usize = 800;
/// Messages in the POP3 mailbox before each round's deletions.
const POP_MESSAGES: usize = 40;
const POP_USER: &str = "pop@example.test";
const POP_PASSWORD: &str = "power-cut-password";

/// A client process whose stdout lines are collected as they come.
struct Client {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Client {
    /// Starts `command`; its stderr goes to `clients.log` in the server's directory.
    fn spawn(mut command: Command, server: &Server) -> Client {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.dir.join("clients.log"))
            .expect("clients.log");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("python3 (scripts/install-test-deps installs it)");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Client {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits up to `grace` for the client to end, kills it if it has not, and returns the
    /// words after `prefix` on its lines. (After a cut its connections fail at once; a
    /// client still retrying a connection has nothing more to report.)
    fn finish(mut self, prefix: &str, grace: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + grace;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// smtp_blast.py: `clients` connections sending `count` messages to `recipient` (or until the
/// server goes away).
fn blaster(
    server: &Server,
    recipient: &str,
    count: usize,
    clients: usize,
    options: &[String],
) -> Client {
    let mut command = Command::new("python3");
    command
        .arg(client_script("smtp_blast.py"))
        .args(["127.0.0.1", &server.smtp.port().to_string()])
        .args([&count.to_string(), &clients.to_string(), recipient, "60"])
        .arg("retry=5")
        .args(options);
    Client::spawn(command, server)
}

/// pop3_delete.py: one session after another, each deleting a message.
fn deleter(server: &Server) -> Client {
    let pop3 = server.pop3.expect("pop3 listening");
    let mut command = Command::new("python3");
    command
        .arg(client_script("pop3_delete.py"))
        .args(["127.0.0.1", &pop3.port().to_string()])
        .args([POP_USER, POP_PASSWORD, "60"]);
    Client::spawn(command, server)
}

/// A mailbox's Maildir: under the data directory, which is on the mount (`Server::mail_root`
/// assumes it beside the config).
fn maildir(server: &Server, address: &str) -> PathBuf {
    let (user, domain) = address.split_once('@').expect("address");
    let mail_root = server.dir.join("mnt").join("data").join("mail");
    mail_root.join(domain).join(user).join("Maildir")
}

/// The files in a Maildir subdirectory (`new` or `cur`), by name.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What a delivered file of a `lines`-line test message must end with (smtp_blast.py ends
/// the body with an empty line).
fn body_of(lines: usize) -> String {
    format!("{}\n", "x".repeat(70)).repeat(lines) + "\n"
}

/// Every token delivered to `address` (in `new/`), with how often; panics on any file that is
/// not a whole message (empty, cut short, or not the size its name says).
fn delivered(server: &Server, address: &str, lines: usize) -> HashMap<String, usize> {
    let body = body_of(lines);
    let mut seen = HashMap::new();
    for (name, path) in files(&maildir(server, address).join("new")) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let size = name
            .rsplit_once(",S=")
            .and_then(|(_, s)| s.split(':').next())
            .and_then(|s| s.parse::<usize>().ok());
        assert!(
            size == Some(bytes.len()) && text.ends_with(&body),
            "partial file visible in {}/new: {name} has {} bytes: {:?}",
            address,
            bytes.len(),
            &text[..text.len().min(200)]
        );
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_else(|| panic!("{name} has no Subject"));
        *seen.entry(token.to_string()).or_insert(0) += 1;
    }
    seen
}

/// The envelope senders of every queued message (`ringmail queue list`), read from the files.
fn queued_senders(server: &Server) -> HashSet<String> {
    let out = server.ctl(&["queue", "list"]);
    assert!(
        out.status.success(),
        "queue list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" from <"))
        .filter_map(|(_, rest)| rest.strip_suffix('>'))
        .map(str::to_string)
        .collect()
}

/// The number in a token (`tag-000123` -> 123).
fn serial(token: &str) -> usize {
    token
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Adds the POP3 user with a deliberately cheap argon2id hash (8 KiB, one pass): the test
/// binary is unoptimized, where the default cost takes seconds per login and the deleter
/// would manage one session per round. Written as `ringmail passwd add` writes: temp file,
/// fsync, rename, directory fsync, so the user survives the cuts.
fn add_pop_user(server: &Server) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(8, 1, 1, None).expect("argon2 params");
    let salt = SaltString::encode_b64(b"power-loss-salt!").expect("salt");
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(POP_PASSWORD.as_bytes(), &salt)
        .expect("hash")
        .to_string();
    let data = server.dir.join("mnt").join("data");
    let tmp = data.join("passwd.tmp");
    let mut file = std::fs::File::create(&tmp).expect("passwd.tmp");
    writeln!(file, "{POP_USER}:{hash}").expect("write passwd");
    file.sync_all().expect("fsync passwd");
    std::fs::rename(&tmp, data.join("passwd")).expect("rename passwd");
    std::fs::File::open(&data)
        .and_then(|d| d.sync_all())
        .expect("fsync data dir");
}

/// Fills the POP3 mailbox with `POP_MESSAGES` messages and waits until they are delivered
/// (durable: delivery syncs the file and `new/`); afterwards nothing but POP3 touches it.
fn fill_pop_mailbox(server: &Server, round: usize) {
    let tag = format!("pop{round}");
    let sent = blaster(server, POP_USER, POP_MESSAGES, 4, &[format!("tag={tag}")]);
    let acked = sent.finish("OK ", Duration::from_secs(60));
    assert_eq!(acked.len(), POP_MESSAGES, "POP3 mailbox fill");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !acked
        .iter()
        .all(|t| delivered(server, POP_USER, LOCAL_LINES).contains_key(t))
    {
        assert!(Instant::now() < deadline, "POP3 mailbox not filled");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one round acknowledged.
struct Round {
    local_recipient: String,
    local_acked: BTreeSet<String>,
    remote_acked: BTreeSet<String>,
}

/// The checks after a cut and restart, over every round so far (a later cut must not lose
/// what an earlier round delivered either).
fn check_after_cut(fs: &LazyFs, server: &Server, rounds: &[Round], pop_deleted: &BTreeSet<String>) {
    // Every acknowledged local message arrives (redelivery after restart takes a moment).
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in rounds {
        let mut got = delivered(server, &round.local_recipient, LOCAL_LINES);
        while !round.local_acked.iter().all(|t| got.contains_key(t)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            got = delivered(server, &round.local_recipient, LOCAL_LINES);
        }
        let lost: Vec<&String> = round
            .local_acked
            .iter()
            .filter(|t| !got.contains_key(*t))
            .collect();
        assert!(
            lost.is_empty(),
            "acknowledged local message lost: {} of {} to {}, e.g. {:?}; on disk:\n{}",
            lost.len(),
            round.local_acked.len(),
            round.local_recipient,
            &lost[..lost.len().min(5)],
            fs.dump(4)
        );
        // Delivered without a 250: only what was in flight at the cut, one per client, and
        // only messages the clients really sent (their serials are dealt out in order).
        let unacked: Vec<&String> = got
            .keys()
            .filter(|t| !round.local_acked.contains(*t))
            .collect();
        let highest = round
            .local_acked
            .iter()
            .map(|t| serial(t))
            .max()
            .unwrap_or(0);
        assert!(
            unacked.len() <= LOCAL_CLIENTS
                && unacked.iter().all(|t| serial(t) <= highest + LOCAL_CLIENTS),
            "delivered without a 250 beyond what was in flight at the cut: {unacked:?}"
        );
    }
    // Every acknowledged remote message is still queued (its destination never answers).
    let queued = queued_senders(server);
    for round in rounds {
        let missing: Vec<&String> = round
            .remote_acked
            .iter()
            .filter(|t| !queued.contains(&format!("{t}@localhost")))
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged remote message no longer queued: {} of {}, e.g. {:?}",
            missing.len(),
            round.remote_acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
    // Every deletion acknowledged at QUIT stays deleted.
    let pop = maildir(server, POP_USER);
    let present: HashSet<String> = ["new", "cur"]
        .iter()
        .flat_map(|sub| files(&pop.join(sub)))
        .map(|(name, _)| name.split(':').next().unwrap_or("").to_string())
        .collect();
    let back: Vec<&String> = pop_deleted
        .iter()
        .filter(|u| present.contains(*u))
        .collect();
    assert!(
        back.is_empty(),
        "POP3 deletion acknowledged after QUIT came back: {} of {}, e.g. {:?}",
        back.len(),
        pop_deleted.len(),
        &back[..back.len().min(5)]
    );
}

/// The power cut, as one event: from its instant nothing more reaches the disk, the server
/// dies, and what was not durable is gone.
fn cut_power(fs: &LazyFs, server: &mut Server) {
    if let Some(status) = server.exited() {
        panic!(
            "the server died before the cut ({status}); log:\n{}",
            server.log()
        );
    }
    fs.freeze();
    server.kill9();
    fs.power_cut();
}

fn mount(dir: &TestDir) -> LazyFs {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mountpoint");
    LazyFs::mount(&mnt).unwrap_or_else(|e| {
        panic!(
            "cannot mount lazyfs on {} ({e}): the power-loss test needs /dev/fuse and root \
             (or fusermount3 from scripts/install-test-deps)",
            mnt.display()
        )
    })
}

#[test]
fn acknowledged_mail_and_deletions_survive_power_cuts() {
    let started = Instant::now();
    let seed = std::env::var("RINGMAIL_POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("power-loss seed {seed} (RINGMAIL_POWER_LOSS_SEED={seed} to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let dir = test_dir("power-loss");
    let fs = mount(&dir);
    // The data directory on the lazy file system; the config and the log stay outside it.
    // Loopback may relay (the remote load); small segments, so they are created and
    // recycled all the time.
    let config = base_config(
        fs.mountpoint(),
        "relay_networks = [\"127.0.0.0/8\"]",
        "[queue]\nsegment_size_mib = 1\n",
    );
    let mut server = Server::start(&dir, &config);
    let config_path = server.config_path.clone();
    add_pop_user(&server);

    let mut rounds: Vec<Round> = Vec::new();
    let mut pop_deleted = BTreeSet::new();
    for round in 0..CUTS {
        fill_pop_mailbox(&server, round);
        let local_recipient = format!("round{round}@example.test");
        let local = blaster(
            &server,
            &local_recipient,
            1_000_000,
            LOCAL_CLIENTS,
            &[format!("tag=r{round}")],
        );
        let remote = blaster(
            &server,
            &format!("far{round}@remote.test"),
            1_000_000,
            REMOTE_CLIENTS,
            &[
                format!("tag=far{round}"),
                format!("lines={REMOTE_LINES}"),
                "sender=token".to_string(),
            ],
        );
        let pop = deleter(&server);
        let load_ms = rng.u64(800..3000);
        std::thread::sleep(Duration::from_millis(load_ms));
        cut_power(&fs, &mut server);
        let grace = Duration::from_millis(500);
        let local_acked = local.finish("OK ", grace);
        let remote_acked = remote.finish("OK ", grace);
        let deleted = pop.finish("DELETED ", grace);
        eprintln!(
            "cut {round} after {load_ms} ms: {} local and {} remote messages acknowledged, \
             {} POP3 deletions acknowledged",
            local_acked.len(),
            remote_acked.len(),
            deleted.len()
        );
        pop_deleted.extend(deleted);
        rounds.push(Round {
            local_recipient,
            local_acked,
            remote_acked,
        });
        server = Server::start_with(&dir, &config_path);
        check_after_cut(&fs, &server, &rounds, &pop_deleted);
    }
    let stats = fs.stats();
    eprintln!(
        "power-loss: {CUTS} cuts in {:.1} s; {} file syncs, {} directory syncs, {} changes \
         refused after a cut's instant",
        started.elapsed().as_secs_f64(),
        stats.file_syncs,
        stats.dir_syncs,
        stats.refused_frozen
    );
    assert!(
        rounds
            .iter()
            .all(|r| !r.local_acked.is_empty() && !r.remote_acked.is_empty())
            && !pop_deleted.is_empty(),
        "every round must have load of each kind acknowledged before its cut; log:\n{}",
        server.log()
    );
    drop(server);
}
