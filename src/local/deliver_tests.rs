//! One recipient's delivery through real files and programs in a temporary mail root.

use super::*;
use crate::queue::MessageId;
use glommio::LocalExecutorBuilder;
use std::cell::RefCell;
use std::fs;

/// Keeps what would have been queued.
#[derive(Default)]
struct Collect(RefCell<Vec<(Envelope, Vec<u8>)>>);

impl Injector for Collect {
    async fn inject(&self, envelope: Envelope, message: Vec<u8>) -> Result<String, String> {
        self.0.borrow_mut().push((envelope, message));
        Ok("1.2.3".into())
    }
}

struct Rig {
    root: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn mail_root(&self) -> PathBuf {
        self.root.path().join("mail")
    }

    /// Writes `<mail_root>/example.test/<name>`.
    fn dot_qmail(&self, name: &str, contents: &str) {
        let dir = self.mail_root().join("example.test");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), contents).unwrap();
    }

    fn settings(&self, separator: char) -> LocalSettings {
        LocalSettings {
            mail_root: self.mail_root(),
            hostname: "mx.test".into(),
            separator,
            program_timeout: Duration::from_secs(20),
            lock_timeout: Duration::from_secs(2),
            progress_dir: self.root.path().join("progress"),
            service_user: "ringmail".into(),
            system_users: None,
        }
    }

    /// Delivers `message` from `sender` to each of `rcpts` in turn (one attempt each); returns
    /// the outcomes and the forwards queued.
    fn deliver(
        &self,
        separator: char,
        sender: &str,
        rcpts: &[&str],
        message: &[u8],
    ) -> (Vec<LocalOutcome>, Vec<(Envelope, Vec<u8>)>) {
        let settings = self.settings(separator);
        let envelope = Envelope {
            sender: sender.into(),
            recipients: rcpts.iter().map(|r| r.to_string()).collect(),
            received_at: 1_700_000_000,
            smtputf8: false,
            body_8bit: false,
        };
        let message = Arc::new(OutboundMessage {
            id: "0.0.1".parse::<MessageId>().unwrap(),
            envelope,
            body: message.to_vec(),
        });
        LocalExecutorBuilder::default()
            .make()
            .expect("executor")
            .run(async move {
                let agent = LocalAgent::new(
                    settings,
                    Collect::default(),
                    BlockingPool::new("test-local", 2, 16),
                );
                let mut outcomes = Vec::new();
                for (index, rcpt) in message.envelope.recipients.iter().enumerate() {
                    outcomes.push(agent.deliver(&message, index, rcpt).await);
                }
                (outcomes, agent.injector.0.take())
            })
    }

    fn one(&self, rcpt: &str, message: &[u8]) -> (LocalOutcome, Vec<(Envelope, Vec<u8>)>) {
        let (mut outcomes, forwards) = self.deliver('-', "alice@x.test", &[rcpt], message);
        (outcomes.remove(0), forwards)
    }

    fn maildir_messages(&self, maildir: &str) -> Vec<String> {
        let new = self
            .mail_root()
            .join("example.test")
            .join(maildir)
            .join("new");
        let Ok(entries) = fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.mail_root().join("example.test").join(name)).unwrap_or_default()
    }
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nFrom the start\r\nbody\r\n";

#[test]
fn without_instructions_delivers_to_the_users_maildir() {
    let rig = Rig::new();
    let (outcome, _) = rig.one("Bob@Example.TEST", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(
        rig.maildir_messages("bob/Maildir"),
        [
            "Return-Path: <alice@x.test>\nDelivered-To: Bob@Example.TEST\nSubject: hi\n\nFrom the start\nbody\n"
        ]
    );
    // A file with only comments is the same as none.
    rig.dot_qmail(".qmail-carol", "# nothing here yet\n");
    let (outcome, _) = rig.one("carol@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(rig.maildir_messages("carol/Maildir").len(), 1);
}

#[test]
fn loops_and_bad_addresses_fail_for_good() {
    let rig = Rig::new();
    let looping = b"Delivered-To:\r\n bob@example.test\r\nSubject: x\r\n\r\nhi\r\n";
    let (outcome, _) = rig.one("bob@example.test", looping);
    assert_eq!(outcome, LocalOutcome::Permanent(LOOPING.to_string()));
    let (outcome, _) = rig.one("carol@example.test", looping);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    for rcpt in [
        "no-at-sign",
        "../etc@example.test",
        "@example.test",
        "a/b@example.test",
    ] {
        let (outcome, _) = rig.one(rcpt, MESSAGE);
        assert!(
            matches!(&outcome, LocalOutcome::Permanent(r) if r.contains("#5.1.3")),
            "{rcpt}: {outcome:?}"
        );
    }
    // A Maildir that is a file is an operator's mistake that a retry does not fix.
    fs::create_dir_all(rig.mail_root().join("example.test/file")).unwrap();
    fs::write(rig.mail_root().join("example.test/file/Maildir"), b"").unwrap();
    let (outcome, _) = rig.one("file@example.test", MESSAGE);
    assert!(
        matches!(&outcome, LocalOutcome::Permanent(r) if r.contains("#5.2.1")),
        "{outcome:?}"
    );
}

#[test]
fn every_kind_of_line_in_order() {
    let rig = Rig::new();
    let out = rig.mail_root().join("example.test/program-out");
    rig.dot_qmail(
        ".qmail-bob",
        &format!(
            "# bob's mail\n./bob/Maildir/\n./bob.mbox\n&carol@example.org\ndave\n\
             |{{ env | sort; echo ---; cat; }} > {}\n",
            out.display()
        ),
    );
    let (outcome, forwards) = rig.one("bob@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(rig.maildir_messages("bob/Maildir").len(), 1);
    let mbox = rig.read("bob.mbox");
    assert!(
        mbox.starts_with("From alice@x.test ") && mbox.ends_with("\n>From the start\nbody\n\n"),
        "{mbox}"
    );
    assert!(
        mbox.contains(
            "\nReturn-Path: <alice@x.test>\nDelivered-To: bob@example.test\nSubject: hi\n"
        )
    );
    // Both forwards go out as one message, from the original sender, with our Delivered-To.
    assert_eq!(forwards.len(), 1);
    let (envelope, bytes) = &forwards[0];
    assert_eq!(envelope.sender, "alice@x.test");
    assert_eq!(
        envelope.recipients,
        ["carol@example.org", "dave@example.test"]
    );
    assert!(bytes.starts_with(b"Delivered-To: bob@example.test\r\nSubject: hi\r\n"));
    let program = fs::read_to_string(&out).unwrap();
    let (env, stdin) = program.split_once("---\n").unwrap();
    for line in [
        "SENDER=alice@x.test",
        "RECIPIENT=bob@example.test",
        "LOCAL=bob",
        "HOST=example.test",
        "EXT=bob",
        "USER=ringmail",
        "RPLINE=Return-Path: <alice@x.test>",
        "DTLINE=Delivered-To: bob@example.test",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in\n{env}");
    }
    assert!(env.contains("UFLINE=From alice@x.test "), "{env}");
    assert!(env.contains(&format!(
        "HOME={}",
        rig.mail_root().join("example.test").display()
    )));
    assert_eq!(stdin, "Subject: hi\n\nFrom the start\nbody\n");
}

#[test]
fn extensions_search_like_qmail() {
    let rig = Rig::new();
    rig.dot_qmail(".qmail-bob-lists-rust", "./exact/Maildir/\n");
    rig.dot_qmail(
        ".qmail-bob-lists-default",
        "|echo \"$DEFAULT $EXT2 $EXT3\" > lists-default.out\n",
    );
    rig.dot_qmail(".qmail-default", "./catchall/Maildir/\n");
    let (outcome, _) = rig.one("bob-lists-rust@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(rig.maildir_messages("exact/Maildir").len(), 1);
    let (outcome, _) = rig.one("bob-lists-go-dev@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(
        rig.read("lists-default.out"),
        "go-dev lists-go-dev go-dev\n"
    );
    let (outcome, _) = rig.one("anyone@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(rig.maildir_messages("catchall/Maildir").len(), 1);
    // With `+`, the wildcard splits on `+` only.
    rig.dot_qmail(".qmail-carol+default", "./carol-plus/Maildir/\n");
    let (outcomes, _) = rig.deliver('+', "a@x.test", &["carol+news@example.test"], MESSAGE);
    assert!(
        matches!(outcomes[0], LocalOutcome::Delivered(_)),
        "{outcomes:?}"
    );
    assert_eq!(rig.maildir_messages("carol-plus/Maildir").len(), 1);
}

#[test]
fn program_exit_codes_decide_the_outcome() {
    let rig = Rig::new();
    rig.dot_qmail(".qmail-stop", "|exit 99\n./stop/Maildir/\n");
    rig.dot_qmail(
        ".qmail-refuse",
        "|echo 'No such list. (#5.1.1)'; exit 100\n",
    );
    rig.dot_qmail(".qmail-busy", "|echo 'Try later.'; exit 111\n");
    rig.dot_qmail(".qmail-crash", "|kill -KILL $$\n");
    let (outcome, _) = rig.one("stop@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert!(
        rig.maildir_messages("stop/Maildir").is_empty(),
        "99 skips the rest"
    );
    let (outcome, _) = rig.one("refuse@example.test", MESSAGE);
    assert_eq!(
        outcome,
        LocalOutcome::Permanent(".qmail-refuse line 1: No such list. (#5.1.1)".into())
    );
    let (outcome, _) = rig.one("busy@example.test", MESSAGE);
    assert_eq!(
        outcome,
        LocalOutcome::Temporary(".qmail-busy line 1: Try later.".into())
    );
    let (outcome, _) = rig.one("crash@example.test", MESSAGE);
    assert!(
        matches!(&outcome, LocalOutcome::Temporary(r) if r.contains("crashed (signal 9)")),
        "{outcome:?}"
    );
}

#[test]
fn a_broken_file_defers_naming_the_line() {
    let rig = Rig::new();
    rig.dot_qmail(".qmail-bob", "./Maildir/\n&\n");
    let (outcome, _) = rig.one("bob@example.test", MESSAGE);
    assert_eq!(
        outcome,
        LocalOutcome::Temporary(
            "Uh-oh: .qmail-bob is broken: line 2: `` is not a forwarding address. (#4.7.0)".into()
        )
    );
    assert!(rig.maildir_messages("Maildir").is_empty());
}

#[test]
fn a_retry_does_not_repeat_finished_lines() {
    let rig = Rig::new();
    let flag = rig.mail_root().join("example.test/second-try");
    // Line 1 appends to an mbox; line 2 fails the first time only; line 3 is a Maildir.
    rig.dot_qmail(
        ".qmail-bob",
        &format!(
            "./bob.mbox\n|if [ -e {f} ]; then exit 0; fi; touch {f}; echo not yet; exit 111\n./bob/Maildir/\n",
            f = flag.display()
        ),
    );
    let (outcome, _) = rig.one("bob@example.test", MESSAGE);
    assert_eq!(
        outcome,
        LocalOutcome::Temporary(".qmail-bob line 2: not yet".into())
    );
    assert_eq!(rig.read("bob.mbox").matches("From alice@x.test").count(), 1);
    let progress: Vec<_> = fs::read_dir(rig.root.path().join("progress"))
        .unwrap()
        .collect();
    assert_eq!(progress.len(), 1, "the finished line is recorded");
    let (outcome, _) = rig.one("bob@example.test", MESSAGE);
    assert!(matches!(outcome, LocalOutcome::Delivered(_)), "{outcome:?}");
    assert_eq!(
        rig.read("bob.mbox").matches("From alice@x.test").count(),
        1,
        "the mbox line is not repeated"
    );
    assert_eq!(rig.maildir_messages("bob/Maildir").len(), 1);
    let progress = fs::read_dir(rig.root.path().join("progress"))
        .unwrap()
        .count();
    assert_eq!(progress, 0, "progress is forgotten once every line is done");
}
