//! TLS through the real binary: the `[tls]` certificate from the config file serves STLS on the
//! POP3 port and implicit TLS on the POP3S port; with `allow_plaintext_auth = "never"` a password
//! is refused until the connection is encrypted.

mod common;

use common::{Server, base_config, python, test_dir};

const CLIENT: &str = r#"
import poplib, ssl, sys
port, pop3s_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3("127.0.0.1", port, timeout=10)
try:
    p.user("tls@example.test")
    print("plaintext USER accepted")
except poplib.error_proto as e:
    print("plaintext refused", e)
p.stls(ctx)
p.user("tls@example.test"); p.pass_("pw")
print("stls stat", p.stat())
p.quit()
s = poplib.POP3_SSL("127.0.0.1", pop3s_port, context=ctx, timeout=10)
s.user("tls@example.test"); s.pass_("pw")
print("pop3s stat", s.stat())
s.quit()
"#;

#[test]
fn stls_and_pop3s_use_the_configured_certificate() {
    let dir = test_dir("pop3tls");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let config = base_config(&dir, "", "").replace(
        "allow_plaintext_auth = \"loopback\"",
        "allow_plaintext_auth = \"never\"\npop3s_listen = [\"127.0.0.1:0\"]",
    ) + &format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let server = Server::start(&dir, &config);
    let mut add = std::process::Command::new(common::BIN)
        .args(["passwd", "add", "tls@example.test", "--config"])
        .arg(&server.config_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"pw\n").unwrap();
    assert!(add.wait().unwrap().success());

    let out = python(
        CLIENT,
        &[
            &server.pop3.unwrap().port().to_string(),
            &server.pop3s.expect("pop3s announced").port().to_string(),
            &cert.display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("plaintext refused b'-ERR [AUTH]"), "{text}");
    assert!(text.contains("stls stat (0, 0)"), "{text}");
    assert!(text.contains("pop3s stat (0, 0)"), "{text}");
}

#[test]
fn unusable_certificate_stops_startup_with_a_clear_error() {
    let dir = test_dir("badcert");
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let config = base_config(&dir, "", "")
        + &format!("[tls]\ncert = \"{0}\"\nkey = \"{0}\"\n", cert.display());
    std::fs::write(dir.join("ringmail.toml"), config).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--config"])
        .arg(dir.join("ringmail.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls:") && err.contains(&cert.display().to_string()),
        "{err}"
    );
}
