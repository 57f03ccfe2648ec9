//! SMTP over TLS through the real binary, with Python's smtplib: STARTTLS (RFC 3207) and SMTPS
//! (RFC 8314) with a certificate from the config, the CVE-2011-0411 injection refused, the
//! session forgotten after the handshake, the TLS parameters in the delivered `Received:`, and
//! the self-signed certificate a server without `[tls]` makes on first start and keeps.

mod common;

use common::{Server, TestDir, base_config, exchange, python, test_dir};
use std::io::Write;

/// A server with a certificate for 127.0.0.1 from rcgen, and an SMTPS listener. Returns the
/// server and the certificate file (the client's trust anchor).
fn tls_server(name: &str) -> (Server, std::path::PathBuf, TestDir) {
    let dir = test_dir(name);
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let config = base_config(&dir, "smtps_listen = [\"127.0.0.1:0\"]", "")
        + &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
    let server = Server::start(&dir, &config);
    (server, cert, dir)
}

const STARTTLS_AND_SMTPS: &str = r#"
import smtplib, ssl, sys
port, smtps_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.ehlo("client.test")
assert s.has_extn("starttls"), s.esmtp_features
code, _ = s.starttls(context=ctx)
assert code == 220, code
print("cipher", s.sock.version(), s.sock.cipher()[0])
# RFC 3207 4.2: everything from before is forgotten, so MAIL without a new EHLO is refused.
code, msg = s.docmd("MAIL", "FROM:<a@example.test>")
print("mail before ehlo", code, msg.decode())
s.ehlo("client.test")
assert not s.has_extn("starttls"), s.esmtp_features
code, msg = s.docmd("STARTTLS")
print("second starttls", code)
s.sendmail("a@example.test", ["starttls@example.test"], b"Subject: starttls\r\n\r\nover STARTTLS\r\n")
s.quit()
t = smtplib.SMTP_SSL("127.0.0.1", smtps_port, context=ctx, timeout=20)
t.ehlo("client.test")
assert not t.has_extn("starttls"), t.esmtp_features
t.sendmail("a@example.test", ["smtps@example.test"], b"Subject: smtps\r\n\r\nover SMTPS\r\n")
t.quit()
old = ssl.create_default_context(cafile=cafile)
old.maximum_version = ssl.TLSVersion.TLSv1_2
u = smtplib.SMTP_SSL("127.0.0.1", smtps_port, context=old, timeout=20)
u.sendmail("a@example.test", ["tls12@example.test"], b"Subject: tls12\r\n\r\nover TLS 1.2\r\n")
u.quit()
print("sent")
"#;

#[test]
fn starttls_and_smtps_with_smtplib() {
    let (server, cert, _dir) = tls_server("smtptls");
    let out = python(
        STARTTLS_AND_SMTPS,
        &[
            &server.smtp.port().to_string(),
            &server.smtps.expect("smtps announced").port().to_string(),
            &cert.display().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mail before ehlo 503"), "{text}");
    assert!(text.contains("second starttls 503"), "{text}");
    assert!(text.contains("sent"), "{text}");
    // smtplib prefers TLS 1.3; its cipher's IANA name goes into the header.
    assert!(text.contains("cipher TLSv1.3 TLS_"), "{text}");
    let tls12 = server.wait_for_mail("tls12@example.test", 1, 10);
    assert_eq!(tls12.len(), 1, "{}", server.log());
    let message = std::fs::read_to_string(&tls12[0]).unwrap();
    assert!(
        message.contains("with ESMTPS\n\t(version=TLS1_2 cipher=TLS_ECDHE_ECDSA_WITH_"),
        "{message}"
    );
    for (user, subject) in [("starttls", "starttls"), ("smtps", "smtps")] {
        let files = server.wait_for_mail(&format!("{user}@example.test"), 1, 10);
        assert_eq!(files.len(), 1, "{user}: {}", server.log());
        let message = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            message.contains(&format!("Subject: {subject}")),
            "{message}"
        );
        assert!(
            // Maildir files have LF line ends.
            message.contains("with ESMTPS\n\t(version=TLS1_3 cipher=TLS13_"),
            "{message}"
        );
    }
}

#[test]
fn starttls_with_pipelined_plaintext_is_refused() {
    let (server, _cert, _dir) = tls_server("smtptlsinject");
    let (mut s, _) = server.raw();
    assert!(exchange(&mut s, b"EHLO c.test\r\n").contains("STARTTLS\r\n"));
    // CVE-2011-0411: a man in the middle appends a command to the client's STARTTLS.
    s.write_all(b"STARTTLS\r\nRSET\r\n").unwrap();
    let refusal = common::read_reply(&mut s);
    assert_eq!(
        refusal,
        "554 5.5.1 Error: STARTTLS must be the last command in a pipeline\r\n"
    );
    assert_eq!(common::read_reply(&mut s), "250 2.0.0 Ok\r\n");
    // Still plaintext and usable; a STARTTLS on its own is then accepted.
    assert_eq!(exchange(&mut s, b"NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(
        exchange(&mut s, b"STARTTLS\r\n"),
        "220 2.0.0 Ready to start TLS\r\n"
    );
}

const UNVERIFIED: &str = r#"
import hashlib, smtplib, ssl, sys
port, smtps_port = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl._create_unverified_context()
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.starttls(context=ctx)
print("starttls", hashlib.sha256(s.sock.getpeercert(binary_form=True)).hexdigest())
s.ehlo("client.test")
s.sendmail("a@example.test", ["snakeoil@example.test"], b"Subject: snakeoil\r\n\r\nhi\r\n")
s.quit()
t = smtplib.SMTP_SSL("127.0.0.1", smtps_port, context=ctx, timeout=20)
print("smtps", hashlib.sha256(t.sock.getpeercert(binary_form=True)).hexdigest())
t.quit()
"#;

/// The fingerprints the client saw over STARTTLS and over SMTPS.
fn fingerprints(server: &Server) -> (String, String) {
    let out = python(
        UNVERIFIED,
        &[
            &server.smtp.port().to_string(),
            &server.smtps.expect("smtps announced").port().to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    (field("starttls"), field("smtps"))
}

#[test]
fn self_signed_certificate_out_of_the_box_and_reused() {
    let dir = test_dir("snakeoil");
    // No [tls] section: the server makes its own certificate.
    let config = base_config(&dir, "smtps_listen = [\"127.0.0.1:0\"]", "");
    let mut server = Server::start(&dir, &config);
    let cert = dir.join("data").join("tls").join("cert.pem");
    let line = server
        .startup
        .iter()
        .find(|l| l.starts_with("ringmail: tls certificate"))
        .cloned()
        .unwrap_or_default();
    assert!(
        line.contains(&cert.display().to_string())
            && line.contains("self-signed for mx.test, created now"),
        "{:?}",
        server.startup
    );
    let key = dir.join("data").join("tls").join("key.pem");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let nobody = nix::unistd::User::from_name(common::TEST_USER)
        .unwrap()
        .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        nobody.uid.as_raw(),
        "the key belongs to the user the server runs as"
    );
    let (first_starttls, first_smtps) = fingerprints(&server);
    assert_eq!(first_starttls, first_smtps);
    assert_eq!(
        server.wait_for_mail("snakeoil@example.test", 1, 10).len(),
        1
    );
    let pem = std::fs::read(&cert).unwrap();

    server.terminate();
    let server = Server::start_with(&dir, &server.config_path.clone());
    assert!(
        server
            .startup
            .iter()
            .any(|l| l.contains("self-signed for mx.test, reused")),
        "{:?}",
        server.startup
    );
    assert_eq!(std::fs::read(&cert).unwrap(), pem, "kept across restarts");
    let (again, _) = fingerprints(&server);
    assert_eq!(
        again, first_starttls,
        "the same certificate after a restart"
    );
}

#[test]
fn self_signed_false_means_no_tls() {
    let dir = test_dir("notls");
    let config = base_config(&dir, "", "[tls]\nself_signed = false\n");
    let server = Server::start(&dir, &config);
    assert!(
        server
            .startup
            .iter()
            .any(|l| l.starts_with("ringmail: tls off")),
        "{:?}",
        server.startup
    );
    let (mut s, _) = server.raw();
    assert!(!exchange(&mut s, b"EHLO c.test\r\n").contains("STARTTLS"));
    assert!(exchange(&mut s, b"STARTTLS\r\n").starts_with("502 5.5.1"));
    assert!(!dir.join("data").join("tls").exists());
}
