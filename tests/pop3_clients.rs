//! End-to-end POP3: a glommio executor runs `ringmail::pop3::connection::serve` on 127.0.0.1
//! port 0, and real clients (Python's poplib, curl, raw sockets) fetch from a seeded Maildir,
//! over plaintext, STLS and POP3S.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use ringmail::auth::PasswordChecker;
use ringmail::blocking::BlockingPool;
use ringmail::pop3::connection::{PlaintextPolicy, Pop3Settings, Pop3Shard, serve};

const MSG1: &[u8] = b"From: a@example.test\nSubject: first\n\nhello\n.dotted line\nbye\n";
const MSG2: &[u8] = b"From: c@example.test\r\nSubject: second\r\n\r\nbody two\r\n";

struct Server {
    port: u16,
    pop3s_port: u16,
    dir: tempfile::TempDir,
    cert: PathBuf,
}

impl Server {
    fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/example.test/bob/Maildir")
    }
}

fn start(policy: PlaintextPolicy) -> Server {
    start_with(policy, Duration::from_secs(600))
}

fn start_with(policy: PlaintextPolicy, idle_timeout: Duration) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    ringmail::auth::passwd::add(&passwd, "bob@example.test", "secret").unwrap();
    let md = dir.path().join("mail/example.test/bob/Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(md.join("new/1000.A1.host"), MSG1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(md.join("new/1001.A2.host"), MSG2).unwrap();

    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let tls = ringmail::tls::load_server_config(&cert, &key).unwrap();

    let mut settings = Pop3Settings::new("test.example", dir.path().join("mail"));
    settings.plaintext_auth = policy;
    settings.failed_login_delay = Duration::from_millis(100);
    settings.idle_timeout = idle_timeout;
    let apop = dir.path().join("apop");
    std::fs::write(&apop, "bob@example.test:apop-secret\n").unwrap();
    settings.apop_secrets = Some(apop);
    let checker = PasswordChecker::Builtin { passwd };
    let (tx, rx) = std::sync::mpsc::channel();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let pool = BlockingPool::new("test-blocking", 2, 64);
            let shard = Rc::new(Pop3Shard::new(settings, Some(tls), checker, pool));
            let plain = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let secure = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send((
                plain.local_addr().unwrap().port(),
                secure.local_addr().unwrap().port(),
            ))
            .unwrap();
            for (listener, implicit_tls) in [(plain, false), (secure, true)] {
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    while let Ok(stream) = listener.accept().await {
                        glommio::spawn_local(serve(stream, shard.clone(), implicit_tls)).detach();
                    }
                })
                .detach();
            }
            futures_lite::future::pending::<()>().await;
        })
        .unwrap();
    let (port, pop3s_port) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Server {
        port,
        pop3s_port,
        dir,
        cert,
    }
}

fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "python failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PY_SESSION: &str = r#"
import poplib, sys
port = int(sys.argv[1])
def wire(b):
    # RFC 1939 §5 size: CRLF line ends, no byte-stuffing (RETR's extra dots are not counted).
    return b''.join(line + b'\r\n' for line in b.replace(b'\r\n', b'\n').split(b'\n')[:-1])
m1 = b"From: a@example.test\nSubject: first\n\nhello\n.dotted line\nbye\n"
m2 = b"From: c@example.test\r\nSubject: second\r\n\r\nbody two\r\n"
p = poplib.POP3('127.0.0.1', port, timeout=10)
assert p.getwelcome().startswith(b'+OK') and b'@test.example>' in p.getwelcome(), p.getwelcome()
caps = p.capa()
for c in ['TOP', 'UIDL', 'USER', 'SASL', 'RESP-CODES', 'PIPELINING', 'STLS', 'AUTH-RESP-CODE', 'IMPLEMENTATION']:
    assert c in caps, (c, caps)
p.user('bob@example.test'); p.pass_('secret')
assert p.stat() == (2, len(wire(m1)) + len(wire(m2))), p.stat()
resp, listing, _ = p.list()
assert listing == [b'1 %d' % len(wire(m1)), b'2 %d' % len(wire(m2))], listing
resp, uids, _ = p.uidl()
assert uids == [b'1 1000.A1.host', b'2 1001.A2.host'], uids
resp, lines, octets = p.retr(1)
assert lines == [b'From: a@example.test', b'Subject: first', b'', b'hello', b'.dotted line', b'bye'], lines
resp, lines, octets = p.top(2, 0)
assert lines == [b'From: c@example.test', b'Subject: second', b''], lines
resp, lines, octets = p.retr(2)
assert lines[-1] == b'body two'
assert p.dele(1).startswith(b'+OK')
try:
    p.retr(1); assert False
except poplib.error_proto as e:
    assert 'deleted' in str(e)
print(p.quit().decode())
# Second session: one message left, same UIDL, and a dropped session deletes nothing.
p = poplib.POP3('127.0.0.1', port, timeout=10)
p.user('bob@example.test'); p.pass_('secret')
assert p.stat() == (1, len(wire(m2))), p.stat()
assert p.uidl(1) == b'+OK 1 1001.A2.host', p.uidl(1)
p.dele(1)
p2 = poplib.POP3('127.0.0.1', port, timeout=10)
p2.user('bob@example.test')
try:
    p2.pass_('secret'); assert False
except poplib.error_proto as e:
    assert '[IN-USE]' in str(e), e
p.sock.close()
"#;

#[test]
fn poplib_session_dele_uidl_and_maildir_moves() {
    let server = start(PlaintextPolicy::LoopbackOnly);
    let out = python(PY_SESSION, &[server.port.to_string()]);
    assert!(out.contains("signing off (1 messages left)"), "{out}");
    let md = server.maildir();
    assert!(!md.join("new/1000.A1.host").exists());
    assert!(!md.join("new/1001.A2.host").exists());
    assert!(
        md.join("cur/1001.A2.host:2,S").exists(),
        "retrieved mail moves to cur/"
    );
    // The dropped second session deleted nothing: once its lock is released (a new session
    // logs in without [IN-USE]), anything it was going to do to the Maildir is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = raw(
            server.port,
            b"USER bob@example.test\r\nPASS secret\r\nQUIT\r\n",
        );
        if out.contains("+OK maildrop") {
            break;
        }
        assert!(out.contains("[IN-USE]"), "{out}");
        assert!(std::time::Instant::now() < deadline, "mailbox still locked");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(md.join("cur/1001.A2.host:2,S").exists());
}

const PY_BAD_LOGINS: &str = r#"
import poplib, sys, time
port = int(sys.argv[1])
def attempt(user, pw):
    p = poplib.POP3('127.0.0.1', port, timeout=10)
    p.user(user)
    t = time.monotonic()
    try:
        p.pass_(pw)
        return 'ok'
    except poplib.error_proto as e:
        took = time.monotonic() - t
        assert took >= 0.09, took
        return str(e)
    finally:
        p.sock.close()
a = attempt('bob@example.test', 'wrong')
b = attempt('nobody@example.test', 'secret')
assert a == b, (a, b)
assert '[AUTH]' in a, a
print(a)
"#;

#[test]
fn wrong_user_and_wrong_password_look_the_same() {
    let server = start(PlaintextPolicy::LoopbackOnly);
    let out = python(PY_BAD_LOGINS, &[server.port.to_string()]);
    assert!(out.contains("-ERR [AUTH] authentication failed"), "{out}");
}

#[test]
fn curl_fetches_a_message() {
    let server = start(PlaintextPolicy::LoopbackOnly);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-u", "bob@example.test:secret"])
        .arg(format!("pop3://127.0.0.1:{}/1", server.port))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        body.contains("Subject: first") && body.contains(".dotted line"),
        "{body}"
    );
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-u", "bob@example.test:secret"])
        .arg(format!("pop3://127.0.0.1:{}/", server.port))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.starts_with("1 ") && list.contains("\n2 "), "{list}");
}

const PY_TLS: &str = r#"
import poplib, ssl, sys
port, pop3s_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3('127.0.0.1', port, timeout=10)
assert 'STLS' in p.capa() and 'USER' not in p.capa()
try:
    p.user('bob@example.test'); assert False
except poplib.error_proto as e:
    assert '[AUTH]' in str(e), e
p.stls(ctx)
caps = p.capa()
assert 'STLS' not in caps and 'USER' in caps, caps
p.user('bob@example.test'); p.pass_('secret')
assert p.stat()[0] == 2
p.quit()
s = poplib.POP3_SSL('127.0.0.1', pop3s_port, context=ctx, timeout=10)
assert s.getwelcome().startswith(b'+OK')
s.user('bob@example.test'); s.pass_('secret')
assert s.stat()[0] == 2
s.quit()
print('tls ok')
"#;

#[test]
fn stls_and_pop3s_with_poplib() {
    let server = start(PlaintextPolicy::Never);
    let out = python(
        PY_TLS,
        &[
            server.port.to_string(),
            server.pop3s_port.to_string(),
            server.cert.display().to_string(),
        ],
    );
    assert!(out.contains("tls ok"), "{out}");
}

/// Reads until the server closes (or 10 s pass).
fn read_all(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

fn raw(port: u16, input: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(input).unwrap();
    read_all(&mut s)
}

#[test]
fn stls_with_pipelined_plaintext_is_refused() {
    let server = start(PlaintextPolicy::Never);
    let out = raw(server.port, b"STLS\r\nUSER x\r\n");
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(lines[0].starts_with("+OK ringmail"), "{out}");
    assert_eq!(
        lines[1], "-ERR [SYS/PERM] STLS must be the last command in a pipeline",
        "{out}"
    );
    assert_eq!(lines.len(), 3, "connection closed right after: {out}");
}

#[test]
fn pipelined_commands_and_long_lines() {
    let server = start(PlaintextPolicy::LoopbackOnly);
    let long = format!("NOOP {}\r\n", "x".repeat(5000));
    let mut input = long.into_bytes();
    input.extend_from_slice(b"USER bob@example.test\r\nPASS secret\r\nSTAT\r\nLIST 2\r\nQUIT\r\n");
    let out = raw(server.port, &input);
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(lines[1], "-ERR line too long", "{out}");
    assert_eq!(lines[2], "+OK send PASS", "{out}");
    assert!(lines[3].starts_with("+OK maildrop has 2 messages"), "{out}");
    assert!(lines[4].starts_with("+OK 2 "), "{out}");
    assert!(lines[5].starts_with("+OK 2 "), "{out}");
    assert!(
        lines[6].starts_with("+OK ringmail POP3 server signing off"),
        "{out}"
    );
    // Nothing retrieved or deleted: the Maildir is as it was.
    assert!(server.maildir().join("new/1000.A1.host").exists());
}

#[test]
fn idle_session_is_logged_out_without_update() {
    let server = start_with(PlaintextPolicy::LoopbackOnly, Duration::from_millis(300));
    let out = raw(
        server.port,
        b"USER bob@example.test\r\nPASS secret\r\nDELE 1\r\n",
    );
    assert!(
        out.contains("+OK message 1 deleted\r\n-ERR autologout"),
        "{out}"
    );
    assert!(
        server.maildir().join("new/1000.A1.host").exists(),
        "no UPDATE on autologout"
    );
}

const PY_APOP: &str = r#"
import poplib, sys
port = int(sys.argv[1])
p = poplib.POP3('127.0.0.1', port, timeout=10)
try:
    p.apop('bob@example.test', 'wrong'); assert False
except poplib.error_proto as e:
    assert '[AUTH]' in str(e), e
assert p.apop('bob@example.test', 'apop-secret').startswith(b'+OK maildrop has 2')
p.quit()
print('apop ok')
"#;

#[test]
fn apop_login_with_poplib() {
    // Plaintext refused: APOP sends no password, so it is allowed without TLS.
    let server = start(PlaintextPolicy::Never);
    let out = python(PY_APOP, &[server.port.to_string()]);
    assert!(out.contains("apop ok"), "{out}");
}
