//! Socket-free transcripts for the POP3 session.

use super::*;

const TS: &str = "<1896.697170952@dbc.mtview.ca.us>";

fn config(plain: bool, tls_available: bool, tls_active: bool) -> SessionConfig {
    SessionConfig {
        allow_plaintext_auth: plain,
        tls_available,
        tls_active,
        login_delay: None,
    }
}

/// Renders actions as one string: sent bytes verbatim, other actions as `<...>` lines.
fn render(actions: &[Action]) -> String {
    let mut s = String::new();
    for a in actions {
        match a {
            Action::Send(b) => s.push_str(&String::from_utf8_lossy(b)),
            Action::SendMessage {
                index,
                top_lines,
                status,
            } => s.push_str(&format!(
                "{}<message {index} {top_lines:?}>\n",
                String::from_utf8_lossy(status)
            )),
            other => s.push_str(&format!("<{other:?}>\n")),
        }
    }
    s
}

fn mailbox() -> Vec<MessageInfo> {
    vec![
        MessageInfo {
            uid: "u1".into(),
            size: 120,
        },
        MessageInfo {
            uid: "u2".into(),
            size: 200,
        },
    ]
}

/// A session logged in as bob with two messages.
fn logged_in() -> Session {
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    s.handle_line(b"USER bob", false);
    s.handle_line(b"PASS pw", false);
    s.auth_result(AuthOutcome::Accepted);
    s.mailbox_opened(Ok(mailbox()));
    s
}

fn run(s: &mut Session, script: &[(&str, &str)]) {
    for (line, want) in script {
        let got = render(&s.handle_line(line.as_bytes(), false));
        assert_eq!(got, *want, "after {line:?}");
    }
}

#[test]
fn no_apop_timestamp_without_secrets() {
    let mut s = Session::new(config(true, false, false), None);
    assert_eq!(s.greeting(), b"+OK ringmail POP3 server ready\r\n".to_vec());
    run(
        &mut s,
        &[(
            "APOP bob c4c9334bac560ecc979e58001b3e22fb",
            "-ERR APOP not available\r\n",
        )],
    );
    // Still in AUTHORIZATION: USER/PASS works.
    run(&mut s, &[("USER bob", "+OK send PASS\r\n")]);
}

#[test]
fn greeting_carries_apop_timestamp() {
    let s = Session::new(config(true, false, false), Some(TS.into()));
    assert_eq!(
        s.greeting(),
        format!("+OK ringmail POP3 server ready {TS}\r\n").into_bytes()
    );
}

#[test]
fn user_pass_login() {
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    run(
        &mut s,
        &[
            ("PASS x", "-ERR USER first\r\n"),
            ("STAT", "-ERR command not valid in this state\r\n"),
            ("NOOP", "-ERR command not valid in this state\r\n"),
            ("USER bob@x.test", "+OK send PASS\r\n"),
            (
                "PASS pass word",
                "<CheckPassword { user: \"bob@x.test\", secret: \"pass word\" }>\n",
            ),
            ("STAT", ""),
        ],
    );
    assert_eq!(s.pending_user(), Some("bob@x.test"));
    assert_eq!(
        render(&s.auth_result(AuthOutcome::Accepted)),
        "<OpenMailbox { user: \"bob@x.test\" }>\n"
    );
    assert_eq!(
        render(&s.mailbox_opened(Ok(mailbox()))),
        "+OK maildrop has 2 messages (320 octets)\r\n"
    );
    assert!(s.in_transaction());
}

#[test]
fn failed_logins_share_one_reply_and_are_capped() {
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    for i in 0..3 {
        s.handle_line(b"USER nobody", false);
        s.handle_line(b"PASS x", false);
        let want = if i < 2 {
            "-ERR [AUTH] authentication failed\r\n"
        } else {
            "-ERR [AUTH] authentication failed\r\n<Close>\n"
        };
        assert_eq!(render(&s.auth_result(AuthOutcome::Rejected)), want);
    }
    assert!(s.is_closed());
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    s.handle_line(b"USER bob", false);
    s.handle_line(b"PASS x", false);
    assert_eq!(
        render(&s.auth_result(AuthOutcome::TempFail)),
        "-ERR [SYS/TEMP] authentication temporarily unavailable\r\n"
    );
}

#[test]
fn user_then_other_command_starts_over() {
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    run(
        &mut s,
        &[
            ("USER bob", "+OK send PASS\r\n"),
            ("STAT", "-ERR command not valid in this state\r\n"),
            ("PASS x", "-ERR USER first\r\n"),
        ],
    );
}

#[test]
fn plaintext_refused_without_tls() {
    let mut s = Session::new(config(false, true, false), Some(TS.into()));
    run(
        &mut s,
        &[
            (
                "USER bob",
                "-ERR [AUTH] plaintext authentication disallowed on this connection without TLS (use STLS)\r\n",
            ),
            (
                "AUTH PLAIN",
                "-ERR [AUTH] plaintext authentication disallowed on this connection without TLS (use STLS)\r\n",
            ),
            (
                "CAPA",
                "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nIMPLEMENTATION ringmail\r\n.\r\n",
            ),
        ],
    );
    // Over TLS the same settings allow it.
    let mut s = Session::new(config(false, true, true), Some(TS.into()));
    run(
        &mut s,
        &[
            ("USER bob", "+OK send PASS\r\n"),
            ("STLS", "-ERR TLS already active\r\n"),
            (
                "CAPA",
                "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION ringmail\r\n.\r\n",
            ),
        ],
    );
}

#[test]
fn capa_with_login_delay_and_in_transaction() {
    let mut cfg = config(true, true, false);
    cfg.login_delay = Some(30);
    let mut s = Session::new(cfg, Some(TS.into()));
    run(
        &mut s,
        &[(
            "CAPA",
            "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nLOGIN-DELAY 30\r\nSTLS\r\nIMPLEMENTATION ringmail\r\n.\r\n",
        )],
    );
    let mut s = logged_in();
    let capa = render(&s.handle_line(b"CAPA", false));
    assert!(!capa.contains("STLS"));
    assert!(capa.contains("PIPELINING\r\n"));
}

#[test]
fn stls_rules() {
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    run(&mut s, &[("STLS", "-ERR STLS not available\r\n")]);
    let mut s = Session::new(config(true, true, false), Some(TS.into()));
    assert_eq!(render(&s.handle_line(b"STLS", false)), "<StartTls>\n");
    let mut s = Session::new(config(true, true, false), Some(TS.into()));
    assert_eq!(
        render(&s.handle_line(b"STLS", true)),
        "-ERR [SYS/PERM] STLS must be the last command in a pipeline\r\n<Close>\n"
    );
    assert!(s.is_closed());
    let mut s = logged_in();
    run(
        &mut s,
        &[("STLS", "-ERR command not valid in this state\r\n")],
    );
}

#[test]
fn apop_uses_session_timestamp() {
    let mut s = Session::new(config(false, false, false), Some(TS.into()));
    run(
        &mut s,
        &[(
            "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
            "<CheckApop { user: \"mrose\", timestamp: \"<1896.697170952@dbc.mtview.ca.us>\", digest: \"c4c9334bac560ecc979e58001b3e22fb\" }>\n",
        )],
    );
    // And the RFC 1939 §7 vector verifies with the auth module.
    assert!(crate::auth::apop::verify_apop(
        TS,
        "tanstaaf",
        "c4c9334bac560ecc979e58001b3e22fb"
    ));
}

#[test]
fn auth_plain() {
    // "\0bob\0pw", "bob\0bob\0pw", "alice\0bob\0pw"
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    run(
        &mut s,
        &[
            ("AUTH", "+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"),
            ("AUTH CRAM-MD5", "-ERR unsupported SASL mechanism\r\n"),
            (
                "AUTH PLAIN AGJvYgBwdw==",
                "<CheckPassword { user: \"bob\", secret: \"pw\" }>\n",
            ),
        ],
    );
    s.auth_result(AuthOutcome::Rejected);
    run(
        &mut s,
        &[
            ("AUTH PLAIN", "+ \r\n"),
            (
                "Ym9iAGJvYgBwdw==",
                "<CheckPassword { user: \"bob\", secret: \"pw\" }>\n",
            ),
        ],
    );
    s.auth_result(AuthOutcome::Rejected);
    run(
        &mut s,
        &[
            ("AUTH PLAIN", "+ \r\n"),
            ("*", "-ERR authentication cancelled\r\n"),
            ("AUTH PLAIN", "+ \r\n"),
            ("not base64!", "-ERR malformed SASL response\r\n"),
            ("AUTH PLAIN =", "-ERR malformed SASL response\r\n"),
            (
                "AUTH PLAIN YWxpY2UAYm9iAHB3",
                "-ERR [AUTH] authentication failed\r\n",
            ),
        ],
    );
}

#[test]
fn transaction_commands() {
    let mut s = logged_in();
    run(
        &mut s,
        &[
            ("STAT", "+OK 2 320\r\n"),
            (
                "LIST",
                "+OK scan listing follows\r\n1 120\r\n2 200\r\n.\r\n",
            ),
            ("LIST 2", "+OK 2 200\r\n"),
            ("LIST 3", "-ERR no such message\r\n"),
            ("LIST 0", "-ERR no such message\r\n"),
            (
                "UIDL",
                "+OK unique-id listing follows\r\n1 u1\r\n2 u2\r\n.\r\n",
            ),
            ("UIDL 1", "+OK 1 u1\r\n"),
            ("RETR 1", "+OK 120 octets\r\n<message 0 None>\n"),
            (
                "TOP 2 5",
                "+OK top of message follows\r\n<message 1 Some(5)>\n",
            ),
            ("TOP 3 0", "-ERR no such message\r\n"),
            ("NOOP", "+OK\r\n"),
            ("USER bob", "-ERR command not valid in this state\r\n"),
            ("PASS x", "-ERR command not valid in this state\r\n"),
            ("DELE 1", "+OK message 1 deleted\r\n"),
            ("DELE 1", "-ERR message already deleted\r\n"),
            ("RETR 1", "-ERR message already deleted\r\n"),
            ("LIST", "+OK scan listing follows\r\n2 200\r\n.\r\n"),
            ("STAT", "+OK 1 200\r\n"),
            ("RSET", "+OK maildrop has 2 messages (320 octets)\r\n"),
            ("STAT", "+OK 2 320\r\n"),
            ("DELE 2", "+OK message 2 deleted\r\n"),
            ("QUIT", "<Commit { deleted: [1], retrieved: [0] }>\n"),
            ("NOOP", ""),
        ],
    );
    assert_eq!(
        render(&s.committed(true)),
        "+OK ringmail POP3 server signing off (1 messages left)\r\n<Close>\n"
    );
    assert!(s.is_closed());
}

#[test]
fn commit_failure_and_quit_in_authorization() {
    let mut s = logged_in();
    run(
        &mut s,
        &[("QUIT", "<Commit { deleted: [], retrieved: [] }>\n")],
    );
    assert_eq!(
        render(&s.committed(false)),
        "-ERR [SYS/TEMP] some deleted messages were not removed\r\n<Close>\n"
    );
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    run(
        &mut s,
        &[("QUIT", "+OK ringmail POP3 server signing off\r\n<Close>\n")],
    );
}

#[test]
fn dropped_connection_commits_nothing() {
    // A session that never sees QUIT never emits Commit: DELE marks only.
    let mut s = logged_in();
    let actions = s.handle_line(b"DELE 1", false);
    assert!(!actions.iter().any(|a| matches!(a, Action::Commit { .. })));
    assert_eq!(
        render(&s.timed_out()),
        "-ERR autologout: idle for too long\r\n<Close>\n"
    );
}

#[test]
fn mailbox_open_errors() {
    for (err, want) in [
        (
            OpenError::InUse,
            "-ERR [IN-USE] mailbox is locked by another POP3 session\r\n",
        ),
        (
            OpenError::Unavailable,
            "-ERR [SYS/TEMP] mailbox temporarily unavailable\r\n",
        ),
    ] {
        let mut s = Session::new(config(true, false, false), Some(TS.into()));
        s.handle_line(b"USER bob", false);
        s.handle_line(b"PASS x", false);
        s.auth_result(AuthOutcome::Accepted);
        assert_eq!(render(&s.mailbox_opened(Err(err))), want);
        run(&mut s, &[("USER bob", "+OK send PASS\r\n")]);
    }
}

#[test]
fn errors_are_capped_and_long_lines_refused() {
    let mut s = Session::new(config(true, false, false), Some(TS.into()));
    let long = format!("USER {}", "a".repeat(260));
    run(
        &mut s,
        &[
            (long.as_str(), "-ERR line too long\r\n"),
            ("FOO", "-ERR unknown command\r\n"),
        ],
    );
    assert_eq!(render(&s.line_too_long()), "-ERR line too long\r\n");
    let mut last = String::new();
    while !s.is_closed() {
        last = render(&s.handle_line(b"FOO", false));
    }
    assert_eq!(
        last,
        "-ERR too many errors, closing connection\r\n<Close>\n"
    );
    assert_eq!(render(&s.handle_line(b"FOO", false)), "");
    assert!(s.is_closed());
}
