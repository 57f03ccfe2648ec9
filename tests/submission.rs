//! Message submission (RFC 6409) and SMTP AUTH (RFC 4954) through the real binary, with clients
//! nobody here wrote: Python's smtplib and curl. AUTH PLAIN and LOGIN under STARTTLS, refused in
//! the clear where TLS is required, relaying to a remote domain only after AUTH, a wrong password
//! answered 535 after the failure delay, the sender-login check, the shared failed-login limit
//! (SMTP failures block POP3 too, on every shard), and the log line of every login.

mod common;
#[path = "support/receiver.rs"]
mod receiver;

use common::{Server, TestDir, base_config, python, test_dir};
use receiver::{Receiver, Script};
use std::process::Command;
use std::time::{Duration, Instant};

const USER: &str = "sub@example.test";
const PASSWORD: &str = "s3cret pass";

/// A server with submission and STARTTLS (an rcgen certificate), AUTH only under TLS, remote
/// mail for `remote.test` routed to `receiver`, and `auth` as its `[auth]` keys.
fn submission_server(name: &str, receiver: &Receiver, auth: &str) -> (Server, TestDir) {
    let dir = test_dir(name);
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let extra = format!(
        "[submission]\nlisten = [\"127.0.0.1:0\"]\nallow_plaintext_auth = \"never\"\n\
         sender_login_match = true\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [auth]\n{auth}\n\n\
         [relay]\nroutes = {{ \"remote.test\" = \"{}\" }}\n",
        cert.display(),
        key.display(),
        receiver.addr()
    );
    let server = Server::start(&dir, &base_config(&dir, "", &extra));
    server.add_user(USER, PASSWORD);
    (server, dir)
}

fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys, time
sub, port25, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl._create_unverified_context()
msg = b"Subject: submitted\r\n\r\nhello\r\n"

# In the clear: no AUTH offered, AUTH refused with 538, MAIL needs AUTH (530).
s = smtplib.SMTP("127.0.0.1", sub, timeout=20)
s.ehlo("client.test")
print("plain auth offered", s.has_extn("auth"))
print("plain auth", s.docmd("AUTH", "PLAIN AHN1YkBleGFtcGxlLnRlc3QAeA==")[0])
print("plain mail", s.docmd("MAIL", "FROM:<%s>" % user)[0])
s.quit()

# STARTTLS, then AUTH PLAIN (smtplib's choice among PLAIN LOGIN), relay to a remote domain.
s = smtplib.SMTP("127.0.0.1", sub, timeout=20)
s.starttls(context=ctx)
s.ehlo("client.test")
print("tls auth offered", s.esmtp_features.get("auth").strip())
print("tls mail before auth", s.docmd("MAIL", "FROM:<%s>" % user)[0])
s.rset()
print("login plain", s.login(user, password)[0])
print("relayed", s.sendmail(user, ["far@remote.test"], msg))
try:
    s.sendmail("someone.else@example.test", ["x@example.test"], msg)
    print("mismatch accepted")
except smtplib.SMTPSenderRefused as e:
    print("mismatch", e.smtp_code, e.smtp_error.decode())
s.quit()

# AUTH LOGIN, forced, to a local user.
s = smtplib.SMTP("127.0.0.1", sub, timeout=20)
s.starttls(context=ctx)
s.ehlo("client.test")
s.user, s.password = user, password
print("login login", s.auth("LOGIN", s.auth_login)[0])
s.sendmail(user, ["local@example.test"], msg)
s.quit()

# Wrong password and unknown user: the same 535, each after the failure delay.
for who, pw in [(user, "wrong"), ("nobody-here@example.test", password)]:
    s = smtplib.SMTP("127.0.0.1", sub, timeout=20)
    s.starttls(context=ctx)
    s.ehlo("client.test")
    start = time.monotonic()
    try:
        s.login(who, pw)
        print("bad login accepted")
    except smtplib.SMTPAuthenticationError as e:
        print("bad login", e.smtp_code, e.smtp_error.decode(), "%.2f" % (time.monotonic() - start))
    s.quit()

# Port 25: no relay without AUTH; after AUTH under STARTTLS the client relays.
s = smtplib.SMTP("127.0.0.1", port25, timeout=20)
s.ehlo("client.test")
s.mail(user)
print("port25 unauthenticated rcpt", s.rcpt("far2@remote.test")[0])
s.rset()
s.starttls(context=ctx)
s.ehlo("client.test")
s.login(user, password)
print("port25 relayed", s.sendmail(user, ["far2@remote.test"], msg))
s.quit()
"#;

#[test]
fn auth_plain_and_login_over_starttls_relay_and_refusals_with_smtplib() {
    let receiver = Receiver::start("127.0.0.1:0", Script::default());
    let (server, _dir) = submission_server("submission", &receiver, "failure_delay_ms = 1000");
    let sub = server.submission.expect("submission announced");
    let out = python(
        SMTPLIB,
        &[
            &sub.port().to_string(),
            &server.smtp.port().to_string(),
            USER,
            PASSWORD,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    for want in [
        "plain auth offered False",
        "plain auth 538",
        "plain mail 530",
        "tls auth offered PLAIN LOGIN",
        "tls mail before auth 530",
        "login plain 235",
        "relayed {}",
        "mismatch 553 5.7.1 <someone.else@example.test>: Sender address rejected: not owned by user sub@example.test",
        "login login 235",
        "port25 unauthenticated rcpt 554",
        "port25 relayed {}",
    ] {
        assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
    }
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bad login"))
        .collect();
    assert_eq!(bad.len(), 2, "{text}");
    for line in &bad {
        assert!(
            line.starts_with("bad login 535 5.7.8 Error: authentication failed "),
            "{line}"
        );
        let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(secs >= 0.9, "the failure delay: {line}");
    }

    // The relayed messages reached the receiver; the local one carries the login.
    let relayed = wait_for(20, || {
        let t = receiver.transactions();
        (t.len() >= 2).then_some(t)
    })
    .unwrap_or_else(|| panic!("relayed mail; log:\n{}", server.log()));
    let mut rcpts: Vec<String> = relayed.iter().flat_map(|t| t.rcpts.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["<far2@remote.test>", "<far@remote.test>"]);
    let data = String::from_utf8_lossy(&relayed[0].data).into_owned();
    assert!(
        data.contains("(authenticated as sub@example.test)"),
        "{data}"
    );
    let local = server.wait_for_mail("local@example.test", 1, 10);
    assert_eq!(local.len(), 1);
    let message = std::fs::read_to_string(&local[0]).unwrap();
    assert!(
        message.contains("with ESMTPSA\n\t(version=TLS1_3 cipher=TLS13_")
            && message.contains("\t(authenticated as sub@example.test)\n"),
        "{message}"
    );

    // One log line per login, with the client IP, in the documented shape (README, fail2ban).
    let log = server.log();
    let ok_plain = "login ok: service=smtp ip=127.0.0.1 method=PLAIN user=\"sub@example.test\"";
    let ok_login = "login ok: service=smtp ip=127.0.0.1 method=LOGIN user=\"sub@example.test\"";
    let failed = "login failed: service=smtp ip=127.0.0.1 method=PLAIN reason=bad-credentials";
    assert_eq!(log.matches(ok_plain).count(), 2, "{log}");
    assert_eq!(log.matches(ok_login).count(), 1, "{log}");
    assert_eq!(log.matches(failed).count(), 2, "{log}");
    assert!(log.contains("user=\"nobody-here@example.test\""), "{log}");
    assert!(
        log.contains(", user \"sub@example.test\""),
        "the accepted message's log line names the login: {log}"
    );
}

/// curl with `--ssl-reqd` (STARTTLS) and each mechanism; prints curl's exit status.
fn curl(
    sub: std::net::SocketAddr,
    mechanism: &str,
    password: &str,
    rcpt: &str,
    dir: &TestDir,
) -> Option<i32> {
    let body = dir.join("mail.txt");
    std::fs::write(&body, "Subject: from curl\r\n\r\nsent by curl\r\n").unwrap();
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg("--url")
        .arg(format!("smtp://127.0.0.1:{}", sub.port()))
        .args(["--ssl-reqd", "-k"])
        .arg("--user")
        .arg(format!("{USER}:{password}"))
        .arg("--login-options")
        .arg(format!("AUTH={mechanism}"))
        .args(["--mail-from", USER, "--mail-rcpt", rcpt, "--upload-file"])
        .arg(&body)
        .status()
        .unwrap()
        .code()
}

#[test]
fn curl_submits_with_auth_plain_and_login() {
    let receiver = Receiver::start("127.0.0.1:0", Script::default());
    let (server, dir) = submission_server("subcurl", &receiver, "failure_delay_ms = 100");
    let sub = server.submission.expect("submission announced");
    assert_eq!(
        curl(sub, "PLAIN", PASSWORD, "c1@example.test", &dir),
        Some(0)
    );
    assert_eq!(
        curl(sub, "LOGIN", PASSWORD, "far@remote.test", &dir),
        Some(0)
    );
    // curl's exit status 67: "the user name, password, or similar was not accepted".
    assert_eq!(
        curl(sub, "PLAIN", "wrong", "c1@example.test", &dir),
        Some(67)
    );
    assert_eq!(server.wait_for_mail("c1@example.test", 1, 10).len(), 1);
    assert!(
        wait_for(20, || (receiver.transactions().len() == 1).then_some(())).is_some(),
        "relayed after AUTH LOGIN; log:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("login ok: service=smtp ip=127.0.0.1 method=PLAIN"),
        "{log}"
    );
    assert!(
        log.contains("login ok: service=smtp ip=127.0.0.1 method=LOGIN"),
        "{log}"
    );
    assert!(
        log.contains("login failed: service=smtp ip=127.0.0.1 method=PLAIN reason=bad-credentials"),
        "{log}"
    );
}

const LIMIT: &str = r#"
import poplib, smtplib, ssl, sys
sub, pop3, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl._create_unverified_context()
def smtp_login(pw):
    s = smtplib.SMTP("127.0.0.1", sub, timeout=20)
    s.starttls(context=ctx)
    s.ehlo("client.test")
    try:
        return s.login(user, pw)[0]
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code
    finally:
        s.close()
print("right before", smtp_login(password))
print("wrong", [smtp_login("wrong") for _ in range(3)])
# New connections land on either shard; the failures were counted for the whole server.
print("right after", [smtp_login(password) for _ in range(6)])
p = poplib.POP3("127.0.0.1", pop3, timeout=20)
p.user(user)
try:
    p.pass_(password)
    print("pop3 accepted")
except poplib.error_proto as e:
    print("pop3 refused", e)
"#;

#[test]
fn failed_logins_are_limited_for_the_whole_server() {
    let receiver = Receiver::start("127.0.0.1:0", Script::default());
    let (server, _dir) = submission_server(
        "sublimit",
        &receiver,
        "failure_delay_ms = 50\nmax_failures_per_ip = 3",
    );
    let out = python(
        LIMIT,
        &[
            &server.submission.unwrap().port().to_string(),
            &server.pop3.unwrap().port().to_string(),
            USER,
            PASSWORD,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("right before 235"), "{text}");
    assert!(text.contains("wrong [535, 535, 535]"), "{text}");
    assert!(
        text.contains("right after [535, 535, 535, 535, 535, 535]"),
        "{text}"
    );
    assert!(
        text.contains("pop3 refused"),
        "SMTP failures count for POP3: {text}"
    );
    let log = server.log();
    assert!(
        log.contains("login failed: service=smtp ip=127.0.0.1 method=PLAIN reason=rate-limited"),
        "{log}"
    );
    assert!(
        log.contains("login failed: service=pop3 ip=127.0.0.1 method=USER reason=rate-limited"),
        "{log}"
    );
}

const POP3_LOGINS: &str = r#"
import poplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for pw in [password, "wrong"]:
    p = poplib.POP3("127.0.0.1", port, timeout=20)
    p.user(user)
    try:
        p.pass_(pw)
        print("pop3 ok")
        p.quit()
    except poplib.error_proto as e:
        print("pop3 refused", e)
"#;

#[test]
fn pop3_logins_are_logged() {
    let receiver = Receiver::start("127.0.0.1:0", Script::default());
    let (server, _dir) = submission_server("pop3log", &receiver, "failure_delay_ms = 50");
    let out = python(
        POP3_LOGINS,
        &[&server.pop3.unwrap().port().to_string(), USER, PASSWORD],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("pop3 ok") && text.contains("pop3 refused"),
        "{text}"
    );
    let log = server.log();
    assert!(
        log.contains("login ok: service=pop3 ip=127.0.0.1 method=USER user=\"sub@example.test\""),
        "{log}"
    );
    assert!(
        log.contains("login failed: service=pop3 ip=127.0.0.1 method=USER reason=bad-credentials user=\"sub@example.test\""),
        "{log}"
    );
}
