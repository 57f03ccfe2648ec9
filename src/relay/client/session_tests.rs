//! Socket-free transcripts of the client session: replies in, commands out.

use super::outcome::{ClientErrorKind, RecipientResult, Stage};
use super::reply::{Reply, ReplyError, parse_reply};
use super::session::{Action, Outgoing, Session, TlsMode, Wait};
use crate::delivery::report::StatusCode;

/// A session and what it has written since the last look.
struct Transcript {
    session: Session,
    out: Vec<u8>,
}

impl Transcript {
    fn new(tls: TlsMode) -> Transcript {
        Transcript {
            session: Session::new("client.test", tls),
            out: Vec::new(),
        }
    }

    /// Feeds the wire form of one reply; returns the action and what the session wrote.
    fn reply(&mut self, wire: &str) -> (Action, String) {
        let (reply, used) = parse_reply(wire.as_bytes()).expect(wire);
        assert_eq!(used, wire.len(), "{wire}");
        let action = self.session.on_reply(reply, &mut self.out);
        (action, self.take())
    }

    fn take(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    /// Greeting and EHLO with these extension lines: ready.
    fn ready(tls: TlsMode, extensions: &[&str]) -> Transcript {
        let mut t = Transcript::new(tls);
        let (action, out) = t.reply("220 mx.test ESMTP\r\n");
        assert!(matches!(action, Action::Read(Wait::Command)));
        assert_eq!(out, "EHLO client.test\r\n");
        let (action, _) = t.reply(&ehlo(extensions));
        assert!(matches!(action, Action::Ready), "{action:?}");
        assert_eq!(t.session.greeting_name(), "mx.test");
        t
    }

    fn begin(&mut self, msg: &Outgoing<'_>) -> (Action, String) {
        let action = self.session.begin(msg, &mut self.out);
        (action, self.take())
    }
}

fn ehlo(extensions: &[&str]) -> String {
    let mut lines = vec!["mx.test".to_string()];
    lines.extend(extensions.iter().map(|s| s.to_string()));
    let n = lines.len();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == n { ' ' } else { '-' }))
        .collect()
}

fn msg<'a>(recipients: &'a [&'a str], body: &'a [u8]) -> Outgoing<'a> {
    Outgoing {
        sender: "from@example.org",
        recipients,
        body,
        body_8bit: false,
        smtputf8: false,
    }
}

fn done(action: Action) -> Vec<RecipientResult> {
    match action {
        Action::Done(results) => results,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn codes(results: &[RecipientResult]) -> Vec<(u16, Stage)> {
    results.iter().map(|r| (r.reply.code, r.stage)).collect()
}

#[test]
fn pipelined_transaction_with_mixed_recipients() {
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING", "8BITMIME"]);
    let rcpts = ["a@x.test", "temp-b@x.test", "perm-c@x.test"];
    let mut m = msg(&rcpts, b"hi\n");
    m.body_8bit = true;
    let (action, out) = t.begin(&m);
    assert!(matches!(action, Action::Read(Wait::Command)));
    assert_eq!(
        out,
        "MAIL FROM:<from@example.org> BODY=8BITMIME\r\nRCPT TO:<a@x.test>\r\n\
         RCPT TO:<temp-b@x.test>\r\nRCPT TO:<perm-c@x.test>\r\nDATA\r\n"
    );
    assert!(matches!(
        t.reply("250 ok\r\n").0,
        Action::Read(Wait::Command)
    ));
    assert!(matches!(
        t.reply("250 ok\r\n").0,
        Action::Read(Wait::Command)
    ));
    assert!(matches!(
        t.reply("451 4.2.0 later\r\n").0,
        Action::Read(Wait::Command)
    ));
    assert!(matches!(
        t.reply("550 5.1.1 no\r\n").0,
        Action::Read(Wait::DataInit)
    ));
    assert!(matches!(t.reply("354 go\r\n").0, Action::SendBody));
    let (action, out) = t.reply("250 2.0.0 queued\r\n");
    assert_eq!(out, "");
    let results = done(action);
    assert_eq!(
        codes(&results),
        [(250, Stage::Data), (451, Stage::Rcpt), (550, Stage::Rcpt)]
    );
    assert_eq!(results[1].reply.enhanced, Some(StatusCode(4, 2, 0)));
    assert!(t.session.is_reusable());
}

#[test]
fn one_command_at_a_time_without_pipelining() {
    let mut t = Transcript::ready(TlsMode::None, &["8BITMIME"]);
    let rcpts = ["a@x.test", "perm-b@x.test"];
    let (_, out) = t.begin(&msg(&rcpts, b"hi\r\n"));
    assert_eq!(out, "MAIL FROM:<from@example.org>\r\n");
    assert_eq!(t.reply("250 ok\r\n").1, "RCPT TO:<a@x.test>\r\n");
    assert_eq!(t.reply("250 ok\r\n").1, "RCPT TO:<perm-b@x.test>\r\n");
    let (action, out) = t.reply("550 5.1.1 no\r\n");
    assert!(matches!(action, Action::Read(Wait::DataInit)));
    assert_eq!(out, "DATA\r\n");
    assert!(matches!(t.reply("354 go\r\n").0, Action::SendBody));
    let results = done(t.reply("250 ok\r\n").0);
    assert_eq!(codes(&results), [(250, Stage::Data), (550, Stage::Rcpt)]);
}

#[test]
fn helo_when_ehlo_is_refused() {
    let mut t = Transcript::new(TlsMode::Opportunistic);
    t.reply("220 old.test\r\n");
    let (action, out) = t.reply("502 5.5.1 what?\r\n");
    assert!(matches!(action, Action::Read(Wait::Command)));
    assert_eq!(out, "HELO client.test\r\n");
    assert!(matches!(t.reply("250 old.test\r\n").0, Action::Ready));
    assert!(!t.session.capabilities().pipelining);
    // HELO refused as well: the connection is refused.
    let mut t = Transcript::new(TlsMode::None);
    t.reply("220 old.test\r\n");
    t.reply("500 no\r\n");
    let (action, out) = t.reply("550 go away\r\n");
    assert!(matches!(
        action,
        Action::Fail(e) if e.stage == Stage::Helo && matches!(e.kind, ClientErrorKind::Rejected(_))
    ));
    assert_eq!(out, "QUIT\r\n");
}

#[test]
fn greeting_554_is_a_refusal() {
    let mut t = Transcript::new(TlsMode::None);
    let (action, out) = t.reply("554 5.7.1 no service here\r\n");
    let Action::Fail(e) = action else {
        panic!("{action:?}")
    };
    assert_eq!(e.stage, Stage::Greeting);
    assert!(matches!(e.kind, ClientErrorKind::Rejected(r) if r.code == 554));
    assert_eq!(out, "QUIT\r\n");
    assert!(!t.session.is_reusable());
}

#[test]
fn mail_rejected_applies_to_all_and_resets() {
    // Pipelined: the RCPT and DATA replies still come and are read.
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING"]);
    let rcpts = ["a@x.test", "b@x.test"];
    t.begin(&msg(&rcpts, b"x\r\n"));
    t.reply("550 5.7.1 sender refused\r\n");
    t.reply("503 5.5.1 MAIL first\r\n");
    t.reply("503 5.5.1 MAIL first\r\n");
    let (action, out) = t.reply("503 5.5.1 no valid recipients\r\n");
    assert!(matches!(action, Action::Read(Wait::Command)));
    assert_eq!(out, "RSET\r\n");
    let results = done(t.reply("250 ok\r\n").0);
    assert_eq!(codes(&results), [(550, Stage::Mail), (550, Stage::Mail)]);
    assert!(t.session.is_reusable());
    // One at a time: nothing more than RSET after the refusal.
    let mut t = Transcript::ready(TlsMode::None, &[]);
    t.begin(&msg(&rcpts, b"x\r\n"));
    assert_eq!(t.reply("451 4.3.0 try later\r\n").1, "RSET\r\n");
    let results = done(t.reply("250 ok\r\n").0);
    assert_eq!(codes(&results), [(451, Stage::Mail), (451, Stage::Mail)]);
}

#[test]
fn no_body_when_every_recipient_is_refused() {
    // Pipelined, and the server says 354 anyway: a lone dot, then RSET (RFC 2920 §3.1).
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING"]);
    let rcpts = ["perm-a@x.test"];
    t.begin(&msg(&rcpts, b"secret\r\n"));
    t.reply("250 ok\r\n");
    t.reply("550 5.1.1 no\r\n");
    let (action, out) = t.reply("354 go\r\n");
    assert!(matches!(action, Action::Read(Wait::Final)));
    assert_eq!(out, ".\r\n");
    assert_eq!(t.reply("554 5.5.1 no recipients\r\n").1, "RSET\r\n");
    let results = done(t.reply("250 ok\r\n").0);
    assert_eq!(codes(&results), [(550, Stage::Rcpt)]);
    // One at a time: DATA is never sent.
    let mut t = Transcript::ready(TlsMode::None, &[]);
    t.begin(&msg(&rcpts, b"secret\r\n"));
    t.reply("250 ok\r\n");
    assert_eq!(t.reply("550 5.1.1 no\r\n").1, "RSET\r\n");
    assert_eq!(codes(&done(t.reply("250 ok\r\n").0)), [(550, Stage::Rcpt)]);
}

#[test]
fn too_big_for_size_fails_without_sending() {
    let mut t = Transcript::ready(TlsMode::None, &["SIZE 10"]);
    let rcpts = ["a@x.test", "b@x.test"];
    let (action, out) = t.begin(&msg(&rcpts, b"more than ten bytes\r\n"));
    assert_eq!(out, "");
    let results = done(action);
    assert_eq!(codes(&results), [(552, Stage::Local), (552, Stage::Local)]);
    assert_eq!(results[0].reply.enhanced, Some(StatusCode(5, 3, 4)));
    // Small enough: SIZE= is declared.
    let (_, out) = t.begin(&msg(&rcpts, b"tiny\r\n"));
    assert!(
        out.starts_with("MAIL FROM:<from@example.org> SIZE=6\r\n"),
        "{out}"
    );
}

#[test]
fn starttls_when_advertised() {
    let mut t = Transcript::new(TlsMode::Opportunistic);
    t.reply("220 mx.test\r\n");
    let (action, out) = t.reply(&ehlo(&["STARTTLS", "PIPELINING"]));
    assert!(matches!(action, Action::Read(Wait::Command)));
    assert_eq!(out, "STARTTLS\r\n");
    assert!(matches!(t.reply("220 go ahead\r\n").0, Action::StartTls));
    let action = t.session.tls_established(&mut t.out);
    assert!(matches!(action, Action::Read(Wait::Command)));
    assert_eq!(t.take(), "EHLO client.test\r\n");
    // Capabilities from before TLS are forgotten (RFC 3207 §4.2).
    assert!(!t.session.capabilities().pipelining);
    assert!(matches!(t.reply(&ehlo(&["SIZE 100"])).0, Action::Ready));
    assert_eq!(t.session.capabilities().size, Some(100));

    // Not advertised: opportunistic goes on in plaintext, verify refuses.
    let t = Transcript::ready(TlsMode::Opportunistic, &["PIPELINING"]);
    assert!(t.session.is_reusable());
    let mut t = Transcript::new(TlsMode::Verify);
    t.reply("220 mx.test\r\n");
    let (action, out) = t.reply(&ehlo(&["PIPELINING"]));
    assert!(matches!(action, Action::Fail(e) if matches!(e.kind, ClientErrorKind::TlsRequired)));
    assert_eq!(out, "QUIT\r\n");
    // Policy none: advertised STARTTLS is ignored.
    let t = Transcript::ready(TlsMode::None, &["STARTTLS"]);
    assert!(t.session.is_reusable());
    // STARTTLS refused: opportunistic goes on, verify fails.
    let mut t = Transcript::new(TlsMode::Opportunistic);
    t.reply("220 mx.test\r\n");
    t.reply(&ehlo(&["STARTTLS"]));
    assert!(matches!(t.reply("454 4.7.0 not now\r\n").0, Action::Ready));
}

#[test]
fn reply_421_mid_transaction_defers_the_undecided() {
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING"]);
    let rcpts = ["perm-a@x.test", "b@x.test", "c@x.test"];
    t.begin(&msg(&rcpts, b"x\r\n"));
    t.reply("250 ok\r\n");
    t.reply("550 5.1.1 no\r\n");
    let (action, out) = t.reply("421 4.3.2 shutting down\r\n");
    assert_eq!(out, "");
    let results = done(action);
    assert_eq!(
        codes(&results),
        [(550, Stage::Rcpt), (421, Stage::Rcpt), (421, Stage::Rcpt)]
    );
    assert!(!t.session.is_reusable());
    // 421 instead of the EHLO reply: the connection fails.
    let mut t = Transcript::new(TlsMode::None);
    t.reply("220 mx.test\r\n");
    let (action, _) = t.reply("421 busy\r\n");
    assert!(matches!(action, Action::Fail(e) if e.stage == Stage::Helo));
}

#[test]
fn smtputf8_is_sent_only_when_needed_and_offered() {
    let rcpts = ["a@x.test", "jösé@x.test"];
    let mut t = Transcript::ready(TlsMode::None, &["SMTPUTF8", "PIPELINING"]);
    let (_, out) = t.begin(&msg(&rcpts, b"x\r\n"));
    assert!(
        out.starts_with("MAIL FROM:<from@example.org> SMTPUTF8\r\n"),
        "{out}"
    );
    let mut t = Transcript::ready(TlsMode::None, &["SMTPUTF8"]);
    let (_, out) = t.begin(&msg(&rcpts[..1], b"x\r\n"));
    assert_eq!(out, "MAIL FROM:<from@example.org>\r\n");
    // Not offered: the non-ASCII recipient fails with 5.6.7, the other goes.
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING"]);
    let (_, out) = t.begin(&msg(&rcpts, b"x\r\n"));
    assert!(!out.contains("SMTPUTF8") && !out.contains("jös"), "{out}");
    t.reply("250 ok\r\n");
    t.reply("250 ok\r\n");
    t.reply("354 go\r\n");
    let results = done(t.reply("250 ok\r\n").0);
    assert_eq!(codes(&results), [(250, Stage::Data), (553, Stage::Local)]);
    assert_eq!(results[1].reply.enhanced, Some(StatusCode(5, 6, 7)));
    // A UTF-8 header section: everybody fails.
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING"]);
    let mut m = msg(&rcpts[..1], b"x\r\n");
    m.smtputf8 = true;
    let (action, out) = t.begin(&m);
    assert_eq!(out, "");
    assert_eq!(codes(&done(action)), [(553, Stage::Local)]);
}

#[test]
fn control_characters_in_addresses_are_refused_here() {
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING"]);
    let rcpts = ["a@x.test\r\nRSET", "b@x.test"];
    let (_, out) = t.begin(&msg(&rcpts, b"x\r\n"));
    assert!(!out.contains("a@x.test"), "{out}");
    t.reply("250 ok\r\n");
    t.reply("250 ok\r\n");
    t.reply("354 go\r\n");
    let results = done(t.reply("250 ok\r\n").0);
    assert_eq!(codes(&results), [(553, Stage::Local), (250, Stage::Data)]);
    let mut bad = msg(&rcpts[1..], b"x\r\n");
    bad.sender = "evil\n@x";
    let (action, out) = t.begin(&bad);
    assert_eq!(out, "");
    assert_eq!(codes(&done(action)), [(553, Stage::Local)]);
}

#[test]
fn multiline_reply_split_byte_by_byte() {
    let wire = b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 5\r\n";
    let mut buf = Vec::new();
    for (i, &b) in wire.iter().enumerate() {
        buf.push(b);
        match parse_reply(&buf) {
            Err(ReplyError::NeedMore) => assert!(i + 1 < wire.len()),
            Ok((reply, used)) => {
                assert_eq!(used, wire.len());
                assert_eq!(reply.lines, ["mx.test", "PIPELINING", "SIZE 5"]);
                let mut t = Transcript::new(TlsMode::None);
                t.reply("220 mx.test\r\n");
                assert!(matches!(
                    t.session.on_reply(reply, &mut t.out),
                    Action::Ready
                ));
                assert!(t.session.capabilities().pipelining);
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("never complete");
}

#[test]
fn quit_and_unexpected_replies() {
    let mut t = Transcript::ready(TlsMode::None, &[]);
    let mut out = Vec::new();
    assert!(matches!(
        t.session.quit(&mut out),
        Action::Read(Wait::Command)
    ));
    assert_eq!(out, b"QUIT\r\n");
    assert!(matches!(t.reply("221 bye\r\n").0, Action::Closed));
    let mut t = Transcript::ready(TlsMode::None, &[]);
    let stray = Reply::new(250, None, "stray");
    assert!(matches!(
        t.session.on_reply(stray, &mut t.out),
        Action::Fail(_)
    ));
    assert!(!t.session.is_reusable());
}

#[test]
fn null_sender_for_bounces() {
    let mut t = Transcript::ready(TlsMode::None, &["PIPELINING", "SIZE 0"]);
    let rcpts = ["a@x.test"];
    let mut bounce = msg(&rcpts, b"x\r\n");
    bounce.sender = "";
    let (_, out) = t.begin(&bounce);
    // SIZE 0 is "no fixed limit": declared, never refused.
    assert!(out.starts_with("MAIL FROM:<> SIZE=3\r\n"), "{out}");
}
