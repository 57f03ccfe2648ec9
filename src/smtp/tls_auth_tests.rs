//! Socket-free transcripts of STARTTLS (RFC 3207), AUTH (RFC 4954) and submission (RFC 6409):
//! the driver's part (handshake, password check) is played by the test.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use super::sasl::{Credentials, Mechanism};
use super::*;
use crate::auth::CheckOutcome;

struct AcceptAll;

impl RecipientPolicy for AcceptAll {
    fn check_recipient(&self, peer: &PeerInfo, address: &str) -> RcptVerdict {
        // Like the real policy: a remote domain only for an authenticated client.
        if address.ends_with("@remote.test") && !peer.authenticated {
            RcptVerdict::RelayDenied
        } else {
            RcptVerdict::Accept
        }
    }
}

fn tls() -> TlsInfo {
    TlsInfo {
        version: "TLS1_3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

fn options(starttls: bool, tls: Option<TlsInfo>, auth: bool) -> SessionOptions {
    SessionOptions {
        starttls,
        tls,
        auth,
        auth_after_starttls: !auth,
        require_auth: false,
        sender_login_match: false,
        local_domains: Rc::from(vec!["example.test".to_string()]),
    }
}

fn session(options: SessionOptions) -> Session {
    let config = SmtpConfig {
        hostname: "mx.test".into(),
        ..SmtpConfig::default()
    };
    let peer = PeerInfo {
        remote: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
        authenticated: false,
    };
    Session::with_options(Rc::new(config), peer, options)
}

/// What one `receive` gave, with password checks answered by `check`.
struct Turn {
    out: String,
    progress: Progress,
    checked: Vec<Credentials>,
}

fn feed(s: &mut Session, input: &str, check: impl Fn(&Credentials) -> CheckOutcome) -> Turn {
    let policy = AcceptAll;
    let cx = Context {
        now: UNIX_EPOCH + Duration::from_secs(1_795_624_291),
        policy: &policy,
    };
    let mut out = Vec::new();
    let mut checked = Vec::new();
    let mut progress = s.receive(input.as_bytes(), &cx, &mut out);
    loop {
        match progress {
            Progress::Authenticate(credentials) => {
                let outcome = check(&credentials);
                checked.push(credentials);
                progress = s.auth_checked(outcome, &cx, &mut out);
            }
            Progress::Commit(_, message) => {
                out.extend_from_slice(b"[message]");
                out.extend_from_slice(&message);
                progress = s.committed(Ok("Q1".into()), &cx, &mut out);
            }
            other => {
                return Turn {
                    out: String::from_utf8_lossy(&out).into_owned(),
                    progress: other,
                    checked,
                };
            }
        }
    }
}

fn bob(c: &Credentials) -> CheckOutcome {
    if c.user == "bob@example.test" && c.password == "pw" {
        CheckOutcome::Accepted
    } else {
        CheckOutcome::Rejected
    }
}

/// `\0bob@example.test\0pw` in base64.
const PLAIN_BOB: &str = "AGJvYkBleGFtcGxlLnRlc3QAcHc=";

#[test]
fn starttls_is_offered_only_in_plaintext_and_ends_the_session() {
    let mut s = session(options(true, None, false));
    let turn = feed(&mut s, "EHLO c.test\r\n", bob);
    assert!(turn.out.ends_with("250 STARTTLS\r\n"), "{}", turn.out);
    assert!(!turn.out.contains("AUTH"), "{}", turn.out);
    let turn = feed(&mut s, "STARTTLS\r\n", bob);
    assert_eq!(turn.out, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(turn.progress, Progress::StartTls);

    // The session the driver starts under TLS: no STARTTLS, and MAIL needs a new EHLO.
    let mut s = session(options(true, Some(tls()), true));
    let turn = feed(&mut s, "MAIL FROM:<a@b.test>\r\n", bob);
    assert!(turn.out.starts_with("503 5.5.1"), "{}", turn.out);
    let turn = feed(&mut s, "EHLO c.test\r\n", bob);
    assert!(!turn.out.contains("STARTTLS"), "{}", turn.out);
    assert!(
        turn.out.contains("250 AUTH PLAIN LOGIN\r\n"),
        "{}",
        turn.out
    );
    let turn = feed(&mut s, "STARTTLS\r\n", bob);
    assert!(turn.out.starts_with("503 5.5.1"), "{}", turn.out);
}

#[test]
fn starttls_with_pipelined_plaintext_is_refused() {
    // CVE-2011-0411: the RSET must not survive into the TLS session.
    let mut s = session(options(true, None, false));
    feed(&mut s, "EHLO c.test\r\n", bob);
    let turn = feed(&mut s, "STARTTLS\r\nRSET\r\n", bob);
    assert_eq!(
        turn.out,
        "554 5.5.1 Error: STARTTLS must be the last command in a pipeline\r\n250 2.0.0 Ok\r\n"
    );
    assert_eq!(turn.progress, Progress::NeedMore);
    // Split over two reads, the first read holds nothing after STARTTLS: accepted.
    let turn = feed(&mut s, "STARTTLS\r\n", bob);
    assert_eq!(turn.progress, Progress::StartTls);
}

#[test]
fn starttls_refusals() {
    let mut s = session(options(false, None, false));
    feed(&mut s, "EHLO c.test\r\n", bob);
    assert!(
        feed(&mut s, "STARTTLS\r\n", bob)
            .out
            .starts_with("502 5.5.1")
    );
    let mut s = session(options(true, None, false));
    feed(&mut s, "EHLO c.test\r\nMAIL FROM:<a@b.test>\r\n", bob);
    assert!(
        feed(&mut s, "STARTTLS\r\n", bob)
            .out
            .starts_with("503 5.5.1")
    );
    assert!(
        feed(&mut s, "STARTTLS now\r\n", bob)
            .out
            .starts_with("501 5.5.4")
    );
}

#[test]
fn auth_plain_and_login_then_relay_and_trace() {
    let mut s = session(options(false, Some(tls()), true));
    let turn = feed(
        &mut s,
        &format!("EHLO c.test\r\nAUTH PLAIN {PLAIN_BOB}\r\n"),
        bob,
    );
    assert!(
        turn.out
            .ends_with("235 2.7.0 Authentication successful\r\n")
    );
    assert_eq!(turn.checked[0].mechanism, Mechanism::Plain);
    assert_eq!(s.authenticated_user(), Some("bob@example.test"));
    let turn = feed(
        &mut s,
        "MAIL FROM:<bob@example.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\n",
        bob,
    );
    assert!(
        turn.out.contains("250 2.1.5 Ok"),
        "relay after AUTH: {}",
        turn.out
    );
    // The text after the 354 (text before it is refused: smtp.forbid_text_before_354).
    let turn = feed(&mut s, "Hi\r\n.\r\n", bob);
    assert!(
        turn.out.contains(
            "with ESMTPSA\r\n\t(version=TLS1_3 cipher=TLS13_AES_256_GCM_SHA384)\r\n\
             \t(authenticated as bob@example.test)\r\n\tfor <x@remote.test>"
        ),
        "{}",
        turn.out
    );
    assert!(
        feed(&mut s, "AUTH PLAIN\r\n", bob)
            .out
            .starts_with("503 5.5.1")
    );

    // LOGIN, challenge by challenge.
    let mut s = session(options(false, Some(tls()), true));
    feed(&mut s, "EHLO c.test\r\n", bob);
    assert_eq!(
        feed(&mut s, "AUTH LOGIN\r\n", bob).out,
        "334 VXNlcm5hbWU6\r\n"
    );
    assert_eq!(
        feed(&mut s, "Ym9iQGV4YW1wbGUudGVzdA==\r\n", bob).out,
        "334 UGFzc3dvcmQ6\r\n"
    );
    let turn = feed(&mut s, "cHc=\r\n", bob);
    assert_eq!(turn.out, "235 2.7.0 Authentication successful\r\n");
    assert_eq!(turn.checked[0].mechanism, Mechanism::Login);
}

#[test]
fn auth_failures_and_refusals() {
    let mut s = session(options(false, Some(tls()), true));
    feed(&mut s, "EHLO c.test\r\n", bob);
    // Wrong password and unknown user: the same reply.
    let wrong = feed(&mut s, "AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAeA==\r\n", bob);
    let unknown = feed(&mut s, "AUTH PLAIN AGV2ZUBleGFtcGxlLnRlc3QAcHc=\r\n", bob);
    assert_eq!(wrong.out, "535 5.7.8 Error: authentication failed\r\n");
    assert_eq!(wrong.out, unknown.out);
    assert_eq!(s.authenticated_user(), None);
    let temp = feed(&mut s, &format!("AUTH PLAIN {PLAIN_BOB}\r\n"), |_| {
        CheckOutcome::TempFail
    });
    assert!(temp.out.starts_with("454 4.7.0"), "{}", temp.out);
    let cases = [
        ("AUTH CRAM-MD5\r\n", "504 5.5.4"),
        ("AUTH PLAIN !!!\r\n", "501 5.5.2"),
        ("AUTH\r\n", "501 5.5.4"),
    ];
    for (input, want) in cases {
        let turn = feed(&mut s, input, bob);
        assert!(turn.out.starts_with(want), "{input:?}: {}", turn.out);
    }
    assert_eq!(feed(&mut s, "AUTH PLAIN\r\n", bob).out, "334 \r\n");
    assert!(feed(&mut s, "*\r\n", bob).out.starts_with("501 5.0.0"));
    // An overlong response ends the exchange; the next line is a command again.
    assert_eq!(feed(&mut s, "AUTH PLAIN\r\n", bob).out, "334 \r\n");
    let long = format!("{}\r\nNOOP\r\n", "A".repeat(600));
    assert_eq!(
        feed(&mut s, &long, bob).out,
        "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"
    );
    // Not offered: in cleartext where TLS is needed, and before EHLO.
    let mut s = session(options(true, None, false));
    feed(&mut s, "EHLO c.test\r\n", bob);
    assert!(
        feed(&mut s, "AUTH PLAIN x\r\n", bob)
            .out
            .starts_with("538 5.7.11")
    );
    let mut s = session(options(false, Some(tls()), true));
    assert!(
        feed(&mut s, "AUTH PLAIN x\r\n", bob)
            .out
            .starts_with("503 5.5.1")
    );
}

#[test]
fn submission_needs_auth_and_owned_senders() {
    let mut opts = options(false, Some(tls()), true);
    opts.require_auth = true;
    opts.sender_login_match = true;
    let mut s = session(opts.clone());
    let turn = feed(
        &mut s,
        "EHLO c.test\r\nMAIL FROM:<bob@example.test>\r\n",
        bob,
    );
    assert!(
        turn.out
            .ends_with("530 5.7.0 Error: authentication required\r\n"),
        "{}",
        turn.out
    );
    feed(&mut s, &format!("AUTH PLAIN {PLAIN_BOB}\r\n"), bob);
    let turn = feed(&mut s, "MAIL FROM:<alice@example.test>\r\n", bob);
    assert!(turn.out.starts_with("553 5.7.1"), "{}", turn.out);
    for sender in ["BOB@example.test", ""] {
        let turn = feed(&mut s, &format!("MAIL FROM:<{sender}>\r\nRSET\r\n"), bob);
        assert!(turn.out.starts_with("250 2.1.0"), "{sender}: {}", turn.out);
    }

    // A login without a domain owns its local part at the local domains only.
    let mut s = session(opts);
    feed(&mut s, "EHLO c.test\r\n", bob);
    feed(&mut s, "AUTH PLAIN AGNhcm9sAHB3\r\n", |_| {
        CheckOutcome::Accepted
    });
    assert_eq!(s.authenticated_user(), Some("carol"));
    let ok = feed(&mut s, "MAIL FROM:<carol@EXAMPLE.test>\r\nRSET\r\n", bob);
    assert!(ok.out.starts_with("250 2.1.0"), "{}", ok.out);
    let refused = feed(&mut s, "MAIL FROM:<carol@elsewhere.test>\r\n", bob);
    assert!(refused.out.starts_with("553 5.7.1"), "{}", refused.out);
}

#[test]
fn refusal_log_never_holds_credentials() {
    // In the clear where TLS is needed: 538, and the refusal recorded for the log keeps the
    // mechanism but not the initial response (base64 of user and password).
    let mut s = session(options(true, None, false));
    feed(&mut s, "EHLO c.test\r\n", bob);
    let turn = feed(&mut s, &format!("AUTH PLAIN {PLAIN_BOB}\r\n"), bob);
    assert!(turn.out.starts_with("538 5.7.11"), "{}", turn.out);
    let refusals = s.take_refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].command, "AUTH PLAIN");
    // A failed SASL response line is never recorded either.
    let mut s = session(options(false, Some(tls()), true));
    feed(&mut s, "EHLO c.test\r\nAUTH PLAIN\r\n", bob);
    feed(&mut s, "bm90IGJhc2U2NCE=!\r\n", bob);
    assert!(
        s.take_refusals()
            .iter()
            .all(|r| !r.command.contains("bm90")),
        "SASL responses stay out of the log"
    );
}
