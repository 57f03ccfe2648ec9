//! Socket-free SMTP session transcripts: every case is fed whole (pipelined) and byte by byte,
//! and both must give the same replies and messages.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::envelope::Envelope;

const EHLO: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 2000\r\n250-8BITMIME\r\n\
                    250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
const OK: &str = "250 2.0.0 Ok\r\n";
const SENDER_OK: &str = "250 2.1.0 Ok\r\n";
const RCPT_OK: &str = "250 2.1.5 Ok\r\n";
const GO_AHEAD: &str = "354 End data with <CR><LF>.<CR><LF>\r\n";
const BYE: &str = "221 2.0.0 Bye\r\n";
const DATE: &str = "Wed, 25 Nov 2026 16:31:31 +0000";

/// Accepts everything except `unknown@*`, `*@remote.test`, `busy@*`, `*@bad.test` and
/// `*@[literal]`.
struct TestPolicy;

impl RecipientPolicy for TestPolicy {
    fn check_recipient(&self, _peer: &PeerInfo, address: &str) -> RcptVerdict {
        match address.split_once('@') {
            Some(("unknown", _)) => RcptVerdict::UnknownUser,
            Some((_, "remote.test")) => RcptVerdict::RelayDenied,
            Some(("busy", _)) => RcptVerdict::TempFail("try later\r\n".into()),
            Some((_, "bad.test")) => RcptVerdict::BadAddress,
            Some((_, "[literal]")) => RcptVerdict::BadDestination,
            _ => RcptVerdict::Accept,
        }
    }
}

fn config() -> SmtpConfig {
    SmtpConfig {
        hostname: "mx.test".into(),
        max_message_size: 2000,
        max_recipients: 3,
        long_lines: LongLines::Reject,
        max_hops: 3,
        max_errors: 5,
        max_commands: 20_000,
        // These transcripts pipeline whole conversations; the check has its own test.
        forbid_text_before_354: false,
    }
}

fn peer() -> PeerInfo {
    PeerInfo {
        remote: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
        authenticated: false,
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_624_291)
}

#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    /// Everything the server wrote after its greeting.
    out: String,
    messages: Vec<(Envelope, String)>,
    closed: bool,
}

/// Plays the driver: feeds `chunks`, queues every Commit as `Q<n>` (or fails it when
/// `fail_queue`), stops at Close.
fn play(config: SmtpConfig, chunks: &[&[u8]], fail_queue: bool) -> Transcript {
    let policy = TestPolicy;
    let cx = Context {
        now: now(),
        policy: &policy,
    };
    let mut session = Session::new(Rc::new(config), peer());
    let mut greeting = Vec::new();
    session.greeting(&mut greeting);
    assert_eq!(greeting, b"220 mx.test ESMTP ringmail\r\n");
    let mut out = Vec::new();
    let mut messages = Vec::new();
    let mut closed = false;
    for chunk in chunks {
        let mut progress = session.receive(chunk, &cx, &mut out);
        loop {
            match progress {
                Progress::NeedMore => break,
                Progress::Close => {
                    closed = true;
                    break;
                }
                Progress::Commit(envelope, message) => {
                    assert!(!session.in_data());
                    messages.push((*envelope, String::from_utf8_lossy(&message).into_owned()));
                    let result = match fail_queue {
                        true => Err("disk full".to_string()),
                        false => Ok(format!("Q{}", messages.len())),
                    };
                    progress = session.committed(result, &cx, &mut out);
                }
                Progress::StartTls | Progress::Authenticate(_) => {
                    unreachable!("no TLS or AUTH without SessionOptions")
                }
            }
        }
        if closed {
            break;
        }
    }
    Transcript {
        out: String::from_utf8_lossy(&out).into_owned(),
        messages,
        closed,
    }
}

/// Plays `input` whole, then byte by byte, and checks both agree.
fn transcript_with(config: SmtpConfig, input: &[u8]) -> Transcript {
    let whole = play(config.clone(), &[input], false);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let bytewise = play(config, &bytes, false);
    assert_eq!(bytewise, whole, "byte-by-byte differs");
    whole
}

fn transcript(input: &str) -> Transcript {
    transcript_with(config(), input.as_bytes())
}

fn received(rcpt: Option<&str>) -> String {
    let by = "Received: from c.test ([192.0.2.7])\r\n\tby mx.test (ringmail) with ESMTP";
    match rcpt {
        Some(r) => format!("{by}\r\n\tfor <{r}>; {DATE}\r\n"),
        None => format!("{by}; {DATE}\r\n"),
    }
}

fn envelope(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        received_at: 1_795_624_291,
        smtputf8: false,
        body_8bit: false,
    }
}

#[test]
fn replies_to_every_command_and_error() {
    let start = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n";
    let too_long = format!("NOOP {}\r\nNOOP\r\n", "x".repeat(600));
    let longest = format!("NOOP {}\r\n", "x".repeat(505));
    let tail_is_quit = format!("NOOP {}QUIT\r\nNOOP\r\n", "x".repeat(600));
    #[rustfmt::skip]
    let cases: Vec<(String, String)> = vec![
        ("QUIT\r\n".into(), BYE.into()),
        ("EHLO c.test\r\n".into(), EHLO.into()),
        ("HELO c.test\r\n".into(), "250 mx.test\r\n".into()),
        ("ehlo c.test\r\nhelo c.test\r\n".into(), format!("{EHLO}250 mx.test\r\n")),
        ("NOOP\r\nRSET\r\n".into(), format!("{OK}{OK}")),
        ("VRFY bob\r\n".into(),
         "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n".into()),
        ("EXPN list\r\n".into(), "502 5.5.1 Error: EXPN not available\r\n".into()),
        ("HELP\r\n".into(),
         "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY\r\n".into()),
        // Sequence errors.
        ("MAIL FROM:<a@b.test>\r\n".into(), "503 5.5.1 Error: send HELO/EHLO first\r\n".into()),
        ("RCPT TO:<c@d.test>\r\n".into(), "503 5.5.1 Error: send HELO/EHLO first\r\n".into()),
        ("EHLO c.test\r\nRCPT TO:<c@d.test>\r\n".into(),
         format!("{EHLO}503 5.5.1 Error: need MAIL command\r\n")),
        ("EHLO c.test\r\nDATA\r\n".into(), format!("{EHLO}503 5.5.1 Error: need MAIL command\r\n")),
        (format!("{start}DATA\r\n"), format!("{EHLO}{SENDER_OK}503 5.5.1 Error: need RCPT command\r\n")),
        (format!("{start}MAIL FROM:<a@b.test>\r\n"),
         format!("{EHLO}{SENDER_OK}503 5.5.1 Error: nested MAIL command\r\n")),
        (format!("{start}RSET\r\nRCPT TO:<c@d.test>\r\n"),
         format!("{EHLO}{SENDER_OK}{OK}503 5.5.1 Error: need MAIL command\r\n")),
        (format!("{start}EHLO c.test\r\nRCPT TO:<c@d.test>\r\n"),
         format!("{EHLO}{SENDER_OK}{EHLO}503 5.5.1 Error: need MAIL command\r\n")),
        // Syntax errors.
        ("FOO\r\n".into(), "500 5.5.2 Error: command not recognized\r\n".into()),
        ("STARTTLS\r\n".into(), "502 5.5.1 Error: STARTTLS not available\r\n".into()),
        ("EHLO\r\n".into(), "501 5.5.4 Syntax: EHLO hostname\r\n".into()),
        ("EHLO c.test\r\nMAIL FROM:<a b>\r\n".into(),
         format!("{EHLO}501 5.1.7 Error: bad sender address syntax\r\n")),
        (format!("{start}RCPT TO:<c>\r\n"),
         format!("{EHLO}{SENDER_OK}501 5.1.3 Error: bad recipient address syntax\r\n")),
        ("EHLO c.test\r\nMAIL FROM:<a@b.test> FOO=BAR\r\n".into(),
         format!("{EHLO}555 5.5.4 Error: unsupported parameter\r\n")),
        ("HELO c.test\r\nMAIL FROM:<a@b.test> SIZE=10\r\n".into(),
         "250 mx.test\r\n555 5.5.4 Error: unsupported parameter\r\n".into()),
        ("NO\0OP\r\n".into(), "500 5.5.2 Error: NUL character in command\r\n".into()),
        (too_long, format!("500 5.5.2 Error: line too long\r\n{OK}")),
        (longest, OK.into()),
        (tail_is_quit, format!("500 5.5.2 Error: line too long\r\n{OK}")),
        // Bare LF ends a command line (only DATA is strict).
        ("NOOP\nNOOP\r\n".into(), format!("{OK}{OK}")),
        // Parameters and limits on MAIL and RCPT.
        ("EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=2001\r\n".into(),
         format!("{EHLO}552 5.3.4 Error: message size exceeds fixed limit\r\n")),
        ("EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=2000 BODY=8BITMIME\r\n".into(),
         format!("{EHLO}{SENDER_OK}")),
        ("EHLO c.test\r\nMAIL FROM:<jö@b.test>\r\n".into(),
         format!("{EHLO}553 5.6.7 Error: non-ASCII address requires SMTPUTF8 (RFC 6531)\r\n")),
        ("EHLO c.test\r\nMAIL FROM:<jö@b.test> SMTPUTF8\r\nRCPT TO:<ö@d.test>\r\n".into(),
         format!("{EHLO}{SENDER_OK}{RCPT_OK}")),
        (format!("{start}RCPT TO:<ö@d.test>\r\n"),
         format!("{EHLO}{SENDER_OK}553 5.6.7 Error: non-ASCII address requires SMTPUTF8 (RFC 6531)\r\n")),
        (format!("{start}RCPT TO:<unknown@mx.test>\r\nRCPT TO:<x@remote.test>\r\nRCPT TO:<busy@mx.test>\r\n"),
         format!("{EHLO}{SENDER_OK}550 5.1.1 <unknown@mx.test>: Recipient address rejected: User unknown\r\n\
                  554 5.7.1 <x@remote.test>: Relay access denied\r\n451 4.3.0 try later  \r\n")),
        (format!("{start}RCPT TO:<a%b@bad.test>\r\nRCPT TO:<a@[literal]>\r\n"),
         format!("{EHLO}{SENDER_OK}553 5.1.3 <a%b@bad.test>: Recipient address rejected: \
                  routing in the local part is not supported\r\n\
                  553 5.1.2 <a@[literal]>: Recipient address rejected: domain not deliverable\r\n")),
        (format!("{start}RCPT TO:<unknown@mx.test>\r\nDATA\r\n"),
         format!("{EHLO}{SENDER_OK}550 5.1.1 <unknown@mx.test>: Recipient address rejected: User unknown\r\n\
                  503 5.5.1 Error: need RCPT command\r\n")),
        (format!("{start}RCPT TO:<a@d.test>\r\nRCPT TO:<b@d.test>\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<d@d.test>\r\n"),
         format!("{EHLO}{SENDER_OK}{RCPT_OK}{RCPT_OK}{RCPT_OK}452 4.5.3 Error: too many recipients\r\n")),
    ];
    for (input, want) in cases {
        let got = transcript(&input);
        assert_eq!(got.out, want, "input {input:?}");
        assert!(got.messages.is_empty());
        assert_eq!(got.closed, input.starts_with("QUIT"), "input {input:?}");
    }
}

#[test]
fn closes_after_too_many_errors() {
    let got = transcript("FOO\r\nMAIL FROM:<a@b.test>\r\nNOOP\r\nBAR\r\n\0\r\nEHLO\r\nNOOP\r\n");
    let unknown = "500 5.5.2 Error: command not recognized\r\n";
    let want = format!(
        "{unknown}503 5.5.1 Error: send HELO/EHLO first\r\n{OK}{unknown}\
         500 5.5.2 Error: NUL character in command\r\n501 5.5.4 Syntax: EHLO hostname\r\n\
         421 4.7.0 mx.test Error: too many errors\r\n"
    );
    assert_eq!(got.out, want);
    assert!(got.closed);
}

#[test]
fn closes_after_too_many_commands() {
    let config = SmtpConfig {
        max_commands: 3,
        ..config()
    };
    let got = transcript_with(config, b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(
        got.out,
        format!("{OK}{OK}{OK}421 4.7.0 mx.test Error: too many commands\r\n")
    );
    assert!(got.closed);
}

#[test]
fn answers_ten_thousand_pipelined_noops() {
    let input = "NOOP\r\n".repeat(10_000);
    let got = play(config(), &[input.as_bytes()], false);
    assert_eq!(got.out, OK.repeat(10_000));
}

#[test]
fn accepts_a_pipelined_message_with_exact_bytes() {
    let input = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n\
                 Subject: hi\r\n\r\n..dot\r\n.x\r\nbody\r\n.\r\nQUIT\r\n";
    let got = transcript(input);
    assert_eq!(
        got.out,
        format!("{EHLO}{SENDER_OK}{RCPT_OK}{GO_AHEAD}250 2.0.0 Ok: queued as Q1\r\n{BYE}")
    );
    assert!(got.closed);
    let message = format!(
        "{}Subject: hi\r\n\r\n.dot\r\nx\r\nbody\r\n",
        received(Some("r@mx.test"))
    );
    assert_eq!(
        got.messages,
        vec![(envelope("a@b.test", &["r@mx.test"]), message)]
    );
}

/// qmail's VERP request `prefix-@domain-@[]` is a valid reverse path (MAIL FROM only); the
/// double-bounce sender `#@[]` and any other `@[]` address are not, from a client.
#[test]
fn accepts_a_verp_sender_only_in_mail_from() {
    let input = "EHLO c.test\r\nMAIL FROM:<#@[]>\r\nMAIL FROM:<a@[]>\r\n\
                 MAIL FROM:<list-@example.com-@[]>\r\nRCPT TO:<list-@example.com-@[]>\r\n\
                 RCPT TO:<#@[]>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let got = transcript(input);
    let bad_sender = "501 5.1.7 Error: bad sender address syntax\r\n";
    let bad_rcpt = "501 5.1.3 Error: bad recipient address syntax\r\n";
    assert_eq!(
        got.out,
        format!(
            "{EHLO}{bad_sender}{bad_sender}{SENDER_OK}{bad_rcpt}{bad_rcpt}{RCPT_OK}{GO_AHEAD}\
             250 2.0.0 Ok: queued as Q1\r\n{BYE}"
        )
    );
    assert_eq!(
        got.messages,
        vec![(
            envelope("list-@example.com-@[]", &["r@mx.test"]),
            format!("{}hi\r\n", received(Some("r@mx.test")))
        )]
    );
}

#[test]
fn sends_several_messages_on_one_connection() {
    let input = "HELO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<unknown@mx.test>\r\n\
                 RCPT TO:<@hop.test:x@d.test>\r\nDATA\r\n.\r\n\
                 MAIL FROM:<a@b.test> \r\nRCPT TO:<y@d.test>\r\nDATA\r\nb\r\n.\r\nQUIT\r\n";
    let got = transcript(input);
    assert_eq!(
        got.out,
        format!(
            "250 mx.test\r\n{SENDER_OK}{RCPT_OK}\
             550 5.1.1 <unknown@mx.test>: Recipient address rejected: User unknown\r\n\
             {RCPT_OK}{GO_AHEAD}250 2.0.0 Ok: queued as Q1\r\n\
             {SENDER_OK}{RCPT_OK}{GO_AHEAD}250 2.0.0 Ok: queued as Q2\r\n{BYE}"
        )
    );
    let smtp = |rcpt: Option<&str>| received(rcpt).replace("with ESMTP", "with SMTP");
    assert_eq!(
        got.messages,
        vec![
            (
                envelope("", &["postmaster@mx.test", "x@d.test"]),
                smtp(None)
            ),
            (
                envelope("a@b.test", &["y@d.test"]),
                format!("{}b\r\n", smtp(Some("y@d.test")))
            ),
        ]
    );
}

#[test]
fn records_smtputf8_and_8bitmime() {
    let input = "EHLO c.test\r\nMAIL FROM:<jö@b.test> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<r@mx.test>\r\n\
                 DATA\r\nhi\r\n.\r\n";
    let got = transcript(input);
    let (envelope, message) = &got.messages[0];
    assert!(envelope.smtputf8 && envelope.body_8bit);
    assert_eq!(envelope.sender, "jö@b.test");
    assert!(message.contains("with UTF8SMTP\r\n"), "{message}");
}

/// What follows a refused message must be read as commands again.
fn refused(body: &[u8], config: SmtpConfig) -> String {
    let mut input =
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let got = transcript_with(config, &input);
    assert!(got.messages.is_empty(), "{:?}", got.messages);
    let prefix = format!("{EHLO}{SENDER_OK}{RCPT_OK}{GO_AHEAD}");
    let rest = got
        .out
        .strip_prefix(&prefix)
        .expect("replies before the body");
    let reply = rest.strip_suffix(OK).expect("NOOP answered after the body");
    reply.to_string()
}

#[test]
fn refuses_smuggling_variants() {
    let bare = "554 5.6.11 Error: bare CR or LF in message (SMTP smuggling protection)\r\n";
    let smuggled: [&[u8]; 6] = [
        b"a\n.\nMAIL FROM:<x@evil.test>",
        b"a\r.\rMAIL FROM:<x@evil.test>",
        b"a\n.\r\nMAIL FROM:<x@evil.test>",
        b"a\r\n.\nMAIL FROM:<x@evil.test>",
        b"a\r\n.\rMAIL FROM:<x@evil.test>",
        b"bare\nlf",
    ];
    for body in smuggled {
        assert_eq!(
            refused(body, config()),
            bare,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn applies_message_limits() {
    let too_big = "552 5.3.4 Error: message size exceeds fixed limit\r\n";
    assert_eq!(refused(&[b'x'; 990].repeat(3), config()), too_big);
    let long = vec![b'x'; 999];
    assert_eq!(
        refused(&long, config()),
        "550 5.6.0 Error: message contains a line longer than 998 characters\r\n"
    );
    let hops = b"Received: a\r\nDelivered-To: b\r\nReceived: c\r\nReceived: d\r\n\r\nbody";
    assert_eq!(
        refused(hops, config()),
        "554 5.4.6 Error: too many hops\r\n"
    );

    // Kept intact when long lines are allowed; three hops are fine.
    let keep = SmtpConfig {
        long_lines: LongLines::Keep,
        ..config()
    };
    let mut input = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n\
                      Received: a\r\nReceived: b\r\nReceived: c\r\n\r\n"
        .to_vec();
    input.extend_from_slice(&long);
    input.extend_from_slice(b"\r\n.\r\n");
    let got = transcript_with(keep, &input);
    assert_eq!(got.messages.len(), 1);
    assert!(
        got.messages[0]
            .1
            .ends_with(&format!("{}\r\n", "x".repeat(999)))
    );
}

#[test]
fn reports_queue_failure_and_resets() {
    let input = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\nx\r\n.\r\n\
                  RCPT TO:<r@mx.test>\r\n";
    let got = play(config(), &[input], true);
    assert_eq!(
        got.out,
        format!(
            "{EHLO}{SENDER_OK}{RCPT_OK}{GO_AHEAD}\
             451 4.3.0 Error: queue file write error: disk full\r\n\
             503 5.5.1 Error: need MAIL command\r\n"
        )
    );
}

#[test]
fn receives_bdat_chunks() {
    let start = "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\n";
    let head = format!("{EHLO}{SENDER_OK}{RCPT_OK}");
    let queued = "250 2.0.0 Ok: queued as Q1\r\n";
    #[rustfmt::skip]
    let cases: Vec<(String, String, Option<&str>)> = vec![
        // Pipelined chunks, raw content (no dot handling, bare LF is fine in BDAT).
        (format!("{start}BDAT 6\r\nhello\nBDAT 10 LAST\r\n.\r\nworld\r\nNOOP\r\n"),
         format!("{head}250 2.0.0 6 octets received\r\n{queued}{OK}"),
         Some("hello\n.\r\nworld\r\n")),
        (format!("{start}BDAT 0 LAST\r\n"), format!("{head}{queued}"), Some("")),
        // Refused chunks are still read, so their content is not taken as commands.
        ("EHLO c.test\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n".into(),
         format!("{EHLO}503 5.5.1 Error: need MAIL command\r\n{OK}"), None),
        ("EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n".into(),
         format!("{EHLO}{SENDER_OK}503 5.5.1 Error: need RCPT command\r\n{OK}"), None),
        (format!("{start}BDAT 2\r\nhiDATA\r\nRCPT TO:<s@mx.test>\r\nBDAT 1 LAST\r\n!"),
         format!("{head}250 2.0.0 2 octets received\r\n\
                  503 5.5.1 Error: DATA and BDAT cannot be mixed in one transaction\r\n\
                  503 5.5.1 Error: RCPT not allowed after BDAT\r\n{queued}"),
         Some("hi!")),
        (format!("{start}BDAT 1200\r\n{}BDAT 1200 LAST\r\n{}NOOP\r\n", "x".repeat(1200), "y".repeat(1200)),
         format!("{head}250 2.0.0 1200 octets received\r\n\
                  552 5.3.4 Error: message size exceeds fixed limit\r\n{OK}"), None),
        (format!("{start}DATA\r\n.\r\nBDAT 1 LAST\r\nx"),
         format!("{head}{GO_AHEAD}{queued}503 5.5.1 Error: need MAIL command\r\n"), Some("")),
    ];
    for (input, want, body) in cases {
        let got = transcript(&input);
        assert_eq!(got.out, want, "input {input:?}");
        let bodies: Vec<String> = got.messages.iter().map(|(_, m)| m.clone()).collect();
        let want_bodies: Vec<String> = body
            .map(|b| format!("{}{b}", received(Some("r@mx.test"))))
            .into_iter()
            .collect();
        assert_eq!(bodies, want_bodies, "input {input:?}");
    }
}

#[test]
fn times_out_and_shuts_down() {
    let policy = TestPolicy;
    let cx = Context {
        now: now(),
        policy: &policy,
    };
    let mut session = Session::new(Rc::new(config()), peer());
    let mut out = Vec::new();
    let input = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\npartial";
    assert_eq!(session.receive(input, &cx, &mut out), Progress::NeedMore);
    assert!(session.in_data());
    out.clear();
    session.timeout(&mut out);
    assert_eq!(out, b"421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert!(!session.in_data());
    assert_eq!(session.receive(b"NOOP\r\n", &cx, &mut out), Progress::Close);

    let mut session = Session::new(Rc::new(config()), peer());
    out.clear();
    session.shutting_down(&mut out);
    assert_eq!(out, b"421 4.3.2 mx.test Service shutting down\r\n");
    out.clear();
    assert_eq!(session.receive(b"NOOP\r\n", &cx, &mut out), Progress::Close);
    assert!(out.is_empty());
}

#[test]
fn keeps_pipelined_input_while_a_commit_is_pending() {
    let policy = TestPolicy;
    let cx = Context {
        now: now(),
        policy: &policy,
    };
    let mut session = Session::new(Rc::new(config()), peer());
    let mut out = Vec::new();
    let input = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nQU";
    let Progress::Commit(_, message) = session.receive(input, &cx, &mut out) else {
        panic!("expected a commit");
    };
    assert_eq!(
        message,
        format!("{}x\r\n", received(Some("r@mx.test"))).as_bytes()
    );
    out.clear();
    assert_eq!(
        session.committed(Ok("A1".into()), &cx, &mut out),
        Progress::NeedMore
    );
    assert_eq!(
        out,
        format!("250 2.0.0 Ok: queued as A1\r\n{OK}").as_bytes()
    );
    out.clear();
    assert_eq!(session.receive(b"IT\r\n", &cx, &mut out), Progress::Close);
    assert_eq!(out, BYE.as_bytes());
}

#[test]
fn gives_the_same_result_for_every_split_point() {
    let input = b"EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=20\r\nRCPT TO:<r@mx.test>\r\nDATA\r\n\
                  ..x\r\ny\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<r@mx.test>\r\n\
                  BDAT 3\r\nabcBDAT 2 LAST\r\nde\r\nNOOP\r\nQUIT\r\n";
    let whole = play(config(), &[input], false);
    assert_eq!(whole.messages.len(), 2);
    assert!(whole.closed);
    for split in 1..input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(play(config(), &[a, b], false), whole, "split at {split}");
    }
}

#[test]
fn survives_random_input() {
    // A small fuzz run: random sequences of protocol-ish tokens must never panic, and every
    // reply must be well-formed.
    const TOKENS: [&[u8]; 24] = [
        b"EHLO c\r\n",
        b"HELO c\r\n",
        b"MAIL FROM:<a@b.test>",
        b" SIZE=10",
        b"RCPT TO:<r@mx.test>",
        b"RCPT TO:<postmaster>",
        b"DATA\r\n",
        b"BDAT 3",
        b"BDAT 0 LAST",
        b" LAST",
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"..",
        b"x",
        b"\0",
        b"<",
        b">",
        b"@",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"\xff",
        b" ",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..(next() % 200) {
            input.extend_from_slice(TOKENS[(next() % TOKENS.len() as u64) as usize]);
        }
        let split = (next() as usize) % (input.len() + 1);
        let (a, b) = input.split_at(split);
        let got = play(config(), &[a, b], false);
        for line in got.out.split_terminator("\r\n") {
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .expect("reply code");
            assert!((200..600).contains(&code), "{line:?}");
        }
    }
}

/// RFC 2920 §3.1: message text in the same write as DATA (sent before the 354) is refused and
/// the session closed, with a refusal for the log; DATA as the last pipelined command, and
/// BDAT with its chunk, are fine.
#[test]
fn refuses_text_sent_before_the_354() {
    let strict = SmtpConfig {
        forbid_text_before_354: true,
        ..config()
    };
    let policy = TestPolicy;
    let cx = Context {
        now: now(),
        policy: &policy,
    };
    let mut session = Session::new(Rc::new(strict.clone()), peer());
    let mut out = Vec::new();
    let progress = session.receive(
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\nSubject: hi\r\n",
        &cx,
        &mut out,
    );
    assert_eq!(progress, Progress::Close);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.ends_with(
            "554 5.5.0 Error: SMTP protocol synchronization: message text sent before the 354 \
             reply\r\n"
        ),
        "{text}"
    );
    let refusals = session.take_refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].command, "DATA");
    assert_eq!(refusals[0].reply.code, 554);

    // Legitimate pipelining: DATA last, then the body after the 354.
    let mut session = Session::new(Rc::new(strict.clone()), peer());
    let mut out = Vec::new();
    let first = session.receive(
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nDATA\r\n",
        &cx,
        &mut out,
    );
    assert_eq!(first, Progress::NeedMore);
    assert!(String::from_utf8_lossy(&out).ends_with(GO_AHEAD));
    let body = session.receive(b"Subject: hi\r\n\r\nhello\r\n.\r\n", &cx, &mut out);
    assert!(matches!(body, Progress::Commit(..)), "{body:?}");

    // BDAT carries its chunk in the same write by design (RFC 3030).
    let mut session = Session::new(Rc::new(strict), peer());
    let mut out = Vec::new();
    let bdat = session.receive(
        b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nBDAT 5 LAST\r\nhello",
        &cx,
        &mut out,
    );
    assert!(matches!(bdat, Progress::Commit(..)), "{bdat:?}");
}

/// Every refusal the session makes is recorded with the command line that earned it.
#[test]
fn records_each_refusal_with_its_command() {
    let policy = TestPolicy;
    let cx = Context {
        now: now(),
        policy: &policy,
    };
    let mut session = Session::new(Rc::new(config()), peer());
    let mut out = Vec::new();
    session.receive(
        b"EHLO c.test\r\nMAIL FROM:<a@b.test> SIZE=999999\r\nMAIL FROM:<a@b.test>\r\n\
          RCPT TO:<x@remote.test>\r\nRCPT TO:<unknown@y.test>\r\nRCPT TO:<ok@y.test>\r\n\
          DATA\r\nbare\nline\r\n.\r\n",
        &cx,
        &mut out,
    );
    let got: Vec<(String, u16)> = session
        .take_refusals()
        .into_iter()
        .map(|r| (r.command, r.reply.code))
        .collect();
    assert_eq!(
        got,
        vec![
            ("MAIL FROM:<a@b.test> SIZE=999999".to_string(), 552),
            ("RCPT TO:<x@remote.test>".to_string(), 554),
            ("RCPT TO:<unknown@y.test>".to_string(), 550),
            ("DATA".to_string(), 554),
        ]
    );
    assert!(session.take_refusals().is_empty());
}
