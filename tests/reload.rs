//! SIGHUP reloads the configuration file (issue 12 item 7), against the real binary: a new
//! certificate is what new POP3S sessions see while an open one goes on; new SMTP settings
//! (an access rule) apply to new sessions while an open SMTP session finishes its message; a
//! broken file is refused with its error in the log and the server keeps running on the old one.

mod common;

use common::{Server, base_config, read_reply, send_signal, test_dir};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_until(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Writes a fresh self-signed certificate and key to `cert`/`key`; returns the certificate PEM.
fn write_cert(cert: &Path, key: &Path) -> String {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(cert, certified.cert.pem()).unwrap();
    std::fs::write(key, certified.key_pair.serialize_pem()).unwrap();
    certified.cert.pem()
}

/// The test's config: POP3S with the certificate at `cert`/`key`, and `smtp` extra keys.
fn config(dir: &Path, smtp: &str, cert: &Path, key: &Path) -> String {
    base_config(dir, smtp, "").replace(
        "allow_plaintext_auth = \"loopback\"",
        "allow_plaintext_auth = \"loopback\"\npop3s_listen = [\"127.0.0.1:0\"]",
    ) + &format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// Opens a POP3S session and prints which certificate it got; on a line from stdin, opens a
/// second one and prints its certificate, then uses the first session again (CAPA) and QUITs.
const POP3S_CLIENT: &str = r#"
import hashlib, poplib, ssl, sys
port, old_pem, new_pem = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def which(conn):
    der = conn.sock.getpeercert(binary_form=True)
    for name, path in (("old", old_pem), ("new", new_pem)):
        if ssl.PEM_cert_to_DER_cert(open(path).read()) == der:
            return name
    return "unknown " + hashlib.sha256(der).hexdigest()
first = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=10)
print("first", which(first), flush=True)
sys.stdin.readline()
second = poplib.POP3_SSL("127.0.0.1", port, context=ctx, timeout=10)
print("second", which(second), flush=True)
second.quit()
caps = first.capa()
print("first still open", "USER" in caps, flush=True)
first.quit()
print("done", flush=True)
"#;

#[test]
fn sighup_loads_a_new_certificate_and_settings_for_new_sessions_only() {
    let dir = test_dir("reload-cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let old_pem = write_cert(&cert, &key);
    std::fs::write(dir.join("old.pem"), &old_pem).unwrap();
    let server = Server::start(&dir, &config(&dir, "", &cert, &key));

    let python = common::python_with("ssl", "python3");
    let mut client = Command::new(&python)
        .arg("-c")
        .arg(POP3S_CLIENT)
        .arg(server.pop3s.unwrap().port().to_string())
        .arg(dir.join("old.pem"))
        .arg(dir.join("new.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next_line(), "first old");

    // An SMTP session open across the reload.
    let (mut smtp, greeting) = server.raw();
    assert!(greeting.starts_with("220 "), "{greeting}");
    let say = |stream: &mut std::net::TcpStream, line: &str| {
        stream.write_all(line.as_bytes()).unwrap();
        read_reply(stream)
    };
    assert!(say(&mut smtp, "EHLO before.example\r\n").starts_with("250"));

    // The new certificate, and a rule that turns every new SMTP client away.
    let new_pem = write_cert(&cert, &key);
    std::fs::write(dir.join("new.pem"), &new_pem).unwrap();
    let deny = "[[smtp.access]]\nfrom = [\"127.0.0.0/8\"]\naction = \"deny\"\n\
                reply = \"closed for maintenance\"\n";
    std::fs::write(&server.config_path, config(&dir, deny, &cert, &key)).unwrap();
    send_signal(server.pid(), "HUP");
    assert!(
        wait_until(10, || server
            .log()
            .contains("signal HUP: configuration reloaded from")),
        "{}",
        server.log()
    );
    assert!(
        !server.log().contains("takes effect only after a restart"),
        "{}",
        server.log()
    );

    client.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(next_line(), "second new");
    assert_eq!(next_line(), "first still open True");
    assert_eq!(next_line(), "done");
    let status = client.wait().unwrap();
    assert!(status.success());

    // New SMTP sessions meet the new rule; the open one finishes its message.
    let (_, refused) = server.raw();
    assert_eq!(refused, "554 5.7.1 closed for maintenance\r\n");
    assert!(say(&mut smtp, "MAIL FROM:<a@example.test>\r\n").starts_with("250"));
    assert!(say(&mut smtp, "RCPT TO:<bob@example.test>\r\n").starts_with("250"));
    assert!(say(&mut smtp, "DATA\r\n").starts_with("354"));
    let queued = say(&mut smtp, "Subject: across the reload\r\n\r\nhi\r\n.\r\n");
    assert!(queued.starts_with("250 2.0.0 Ok: queued"), "{queued}");
    assert_eq!(server.wait_for_mail("bob@example.test", 1, 20).len(), 1);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_and_logs_why() {
    let dir = test_dir("reload-broken");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    write_cert(&cert, &key);
    let mut server = Server::start(&dir, &config(&dir, "max_errors = 2\n", &cert, &key));

    // A bad value, then a certificate that is not there: both refused, the old config runs.
    let bad_value = config(&dir, "max_errors = 0\n", &cert, &key);
    let line = bad_value
        .lines()
        .position(|l| l == "max_errors = 0")
        .unwrap()
        + 1;
    std::fs::write(&server.config_path, &bad_value).unwrap();
    send_signal(server.pid(), "HUP");
    let expected = format!(
        "signal HUP: configuration not reloaded, the old one stays: {}:{line}: smtp.max_errors: \
         must be greater than 0",
        server.config_path.display()
    );
    assert!(
        wait_until(10, || server.log().contains(&expected)),
        "{expected}\n{}",
        server.log()
    );
    let missing = dir.join("gone.pem");
    std::fs::write(
        &server.config_path,
        config(&dir, "max_errors = 2\n", &missing, &key),
    )
    .unwrap();
    send_signal(server.pid(), "HUP");
    assert!(
        wait_until(10, || server
            .log()
            .matches("configuration not reloaded")
            .count()
            == 2),
        "{}",
        server.log()
    );
    assert!(server.log().contains("gone.pem"), "{}", server.log());

    // Still serving, with the old max_errors = 2.
    let (mut s, greeting) = server.raw();
    assert!(greeting.starts_with("220 "), "{greeting}");
    s.write_all(b"BOGUS\r\nBOGUS\r\n").unwrap();
    let mut replies = String::new();
    while !replies.contains("421 ") {
        let reply = read_reply(&mut s);
        assert!(!reply.is_empty(), "closed without 421: {replies}");
        replies.push_str(&reply);
    }
    assert!(replies.contains("too many errors"), "{replies}");
    assert_eq!(server.terminate().code(), Some(0), "{}", server.log());
}
