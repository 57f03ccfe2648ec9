//! The outbound SMTP client on a real glommio executor against real servers: the scriptable
//! test receiver (`support/receiver.rs`) and aiosmtpd, a server nobody here wrote.

mod common;
#[path = "support/receiver.rs"]
mod receiver;

use receiver::{Receiver, Script, TestCa, TlsIdentity};
use ringmail::delivery::report::{DeliveryStatus, StatusCode};
use ringmail::relay::client::{
    ClientErrorKind, ClientSettings, Outgoing, RecipientResult, SmtpClient, Stage, TlsMode, connect,
};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor")
        .run(f());
}

fn settings(command_timeout: Duration, ca: Option<&Path>) -> ClientSettings {
    let five = Duration::from_secs(5);
    ClientSettings::new("client.test", five, five, command_timeout, five, ca).expect("settings")
}

fn default_settings() -> ClientSettings {
    settings(Duration::from_secs(5), None)
}

fn msg<'a>(recipients: &'a [&'a str], body: &'a [u8]) -> Outgoing<'a> {
    Outgoing {
        sender: "sender@example.org",
        recipients,
        body,
        body_8bit: false,
        smtputf8: false,
    }
}

async fn open(addr: SocketAddr, tls: TlsMode) -> SmtpClient {
    connect(addr, "receiver.test", tls, &default_settings())
        .await
        .expect("connect")
}

fn codes(results: &[RecipientResult]) -> Vec<(u16, Stage)> {
    results.iter().map(|r| (r.reply.code, r.stage)).collect()
}

#[test]
fn pipelined_transaction_with_mixed_results() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::Opportunistic).await;
        assert_eq!(client.greeting_name(), "receiver.test");
        assert_eq!(client.tls(), None);
        assert_eq!(client.peer(), ("receiver.test", addr));
        let rcpts = ["a@x.test", "temp-b@x.test", "perm-c@x.test", "d@x.test"];
        let results = client
            .send(&msg(&rcpts, b"Subject: hi\r\n\r\nhello\r\n"))
            .await
            .unwrap();
        assert_eq!(
            codes(&results),
            [
                (250, Stage::Data),
                (451, Stage::Rcpt),
                (550, Stage::Rcpt),
                (250, Stage::Data)
            ]
        );
        let mta = "receiver.test [127.0.0.2]";
        assert_eq!(results[0].detail(mta).0, DeliveryStatus::Delivered);
        let (status, detail) = results[1].detail(mta);
        assert_eq!(status, DeliveryStatus::Deferred { counts: true });
        assert_eq!(detail.code, StatusCode(4, 2, 0));
        assert_eq!(
            detail.diagnostic.as_deref(),
            Some("451 4.2.0 try again later")
        );
        assert_eq!(results[2].detail(mta).0, DeliveryStatus::Failed);
        assert!(client.is_reusable());
        client.quit().await;
    });
    let txs = rx.transactions();
    assert_eq!(txs.len(), 1);
    assert!(txs[0].pipelined);
    assert_eq!(txs[0].rcpts, ["<a@x.test>", "<d@x.test>"]);
    assert_eq!(txs[0].data, b"Subject: hi\r\n\r\nhello\r\n");
}

#[test]
fn one_command_at_a_time_without_pipelining() {
    let rx = Receiver::start("127.0.0.2:0", Script::default());
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::None).await;
        let rcpts = ["a@x.test", "perm-b@x.test"];
        let results = client.send(&msg(&rcpts, b"x\r\n")).await.unwrap();
        assert_eq!(codes(&results), [(250, Stage::Data), (550, Stage::Rcpt)]);
        client.quit().await;
    });
    let txs = rx.transactions();
    assert_eq!(txs.len(), 1);
    assert!(!txs[0].pipelined);
}

#[test]
fn dot_stuffing_and_bare_lf_on_the_wire() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    let addr = rx.addr();
    let stuffed = b".hidden\r\n..two\r\nmiddle\r\n.\r\nend\r\n";
    let bare_lf = b"a\nb\n.c\nno end";
    run(move || async move {
        let mut client = open(addr, TlsMode::None).await;
        let rcpts = ["a@x.test"];
        for body in [&stuffed[..], &bare_lf[..]] {
            let results = client.send(&msg(&rcpts, body)).await.unwrap();
            assert_eq!(codes(&results), [(250, Stage::Data)]);
        }
        client.quit().await;
    });
    let txs = rx.transactions();
    assert_eq!(txs.len(), 2);
    assert_eq!(
        txs[0].raw,
        b"..hidden\r\n...two\r\nmiddle\r\n..\r\nend\r\n.\r\n"
    );
    assert_eq!(txs[0].data, stuffed);
    assert_eq!(txs[1].raw, b"a\r\nb\r\n..c\r\nno end\r\n.\r\n");
    assert_eq!(txs[1].data, b"a\r\nb\r\n.c\r\nno end\r\n");
    // Both messages went over one connection.
    assert_eq!(rx.connections(), 1);
    assert_eq!(rx.max_concurrent(), 1);
}

#[test]
fn size_refusal_sends_nothing_and_keeps_the_connection() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            size: Some(100),
            eightbitmime: true,
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::None).await;
        let rcpts = ["a@x.test", "b@x.test"];
        let big = vec![b'x'; 1000];
        let results = client.send(&msg(&rcpts, &big)).await.unwrap();
        assert_eq!(codes(&results), [(552, Stage::Local), (552, Stage::Local)]);
        let (status, detail) = results[0].detail("receiver.test");
        assert_eq!(
            (status, detail.code),
            (DeliveryStatus::Failed, StatusCode(5, 3, 4))
        );
        assert_eq!(detail.diagnostic, None);
        assert!(client.is_reusable());
        let mut small = msg(&rcpts, "caf\u{e9}\r\n".as_bytes());
        small.body_8bit = true;
        let results = client.send(&small).await.unwrap();
        assert_eq!(codes(&results), [(250, Stage::Data), (250, Stage::Data)]);
        client.quit().await;
    });
    let txs = rx.transactions();
    assert_eq!(txs.len(), 1);
    assert_eq!(
        txs[0].mail_from,
        "<sender@example.org> SIZE=7 BODY=8BITMIME"
    );
}

#[test]
fn helo_when_ehlo_is_refused() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            ehlo_refused: true,
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::Opportunistic).await;
        let results = client.send(&msg(&["a@x.test"], b"x\r\n")).await.unwrap();
        assert_eq!(codes(&results), [(250, Stage::Data)]);
        client.quit().await;
    });
    assert_eq!(rx.transactions()[0].helo, "client.test");
}

#[test]
fn greeting_554_refuses_the_connection() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            greeting: "554 5.7.1 no service".into(),
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let err = connect(addr, "receiver.test", TlsMode::None, &default_settings())
            .await
            .err()
            .expect("refused");
        assert_eq!(err.stage, Stage::Greeting);
        assert!(
            matches!(&err.kind, ClientErrorKind::Rejected(r) if r.code == 554),
            "{err}"
        );
    });
}

#[test]
fn opportunistic_starttls_with_a_self_signed_certificate() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            tls: Some(TlsIdentity::self_signed("receiver.test")),
            pipelining: true,
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::Opportunistic).await;
        let tls = client.tls().expect("TLS");
        assert!(tls.starts_with("TLSv1.3 TLS13_"), "{tls}");
        let results = client
            .send(&msg(&["a@x.test"], b"secret\r\n"))
            .await
            .unwrap();
        assert_eq!(codes(&results), [(250, Stage::Data)]);
        client.quit().await;
    });
    let txs = rx.transactions();
    assert!(txs[0].tls);
    assert_eq!(txs[0].helo, "client.test");
    assert_eq!(rx.tls_handshakes(), 1);
}

#[test]
fn verify_needs_a_trusted_certificate_and_starttls() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let self_signed = Receiver::start(
        "127.0.0.2:0",
        Script {
            tls: Some(TlsIdentity::self_signed("mx.test")),
            ..Script::default()
        },
    );
    let signed = Receiver::start(
        "127.0.0.2:0",
        Script {
            tls: Some(ca.issue("mx.test")),
            ..Script::default()
        },
    );
    let plain = Receiver::start("127.0.0.2:0", Script::default());
    let (a, b, c) = (self_signed.addr(), signed.addr(), plain.addr());
    run(move || async move {
        let trusting = settings(Duration::from_secs(5), Some(&ca_file));
        let err = connect(a, "mx.test", TlsMode::Verify, &trusting)
            .await
            .err()
            .expect("self-signed must fail");
        assert!(
            matches!(err.kind, ClientErrorKind::TlsHandshake(_)),
            "{err}"
        );
        assert_eq!(err.detail("mx.test").1.code, StatusCode(4, 7, 5));
        // The test CA is not trusted without the extra CA file.
        let err = connect(b, "mx.test", TlsMode::Verify, &default_settings())
            .await
            .err()
            .expect("unknown CA must fail");
        assert!(
            matches!(err.kind, ClientErrorKind::TlsHandshake(_)),
            "{err}"
        );
        // Nor is a certificate for another name.
        let err = connect(b, "other.test", TlsMode::Verify, &trusting)
            .await
            .err();
        assert!(err.is_some());
        let mut client = connect(b, "mx.test", TlsMode::Verify, &trusting)
            .await
            .expect("verified");
        assert!(client.tls().is_some());
        let results = client.send(&msg(&["a@x.test"], b"x\r\n")).await.unwrap();
        assert_eq!(codes(&results), [(250, Stage::Data)]);
        client.quit().await;
        let err = connect(c, "mx.test", TlsMode::Verify, &trusting)
            .await
            .err()
            .expect("no STARTTLS must fail");
        assert!(matches!(err.kind, ClientErrorKind::TlsRequired), "{err}");
    });
    assert!(signed.transactions()[0].tls);
}

#[test]
fn slow_reply_times_out() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            reply_delay: Duration::from_millis(600),
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let short = settings(Duration::from_millis(150), None);
        let err = connect(addr, "receiver.test", TlsMode::None, &short)
            .await
            .err()
            .expect("timeout");
        assert!(matches!(err.kind, ClientErrorKind::Timeout), "{err}");
        assert_eq!(err.stage, Stage::Helo);
        assert_eq!(err.detail("receiver.test").1.code, StatusCode(4, 4, 2));
    });
}

#[test]
fn disconnect_mid_data_is_an_error() {
    let rx = Receiver::start(
        "127.0.0.2:0",
        Script {
            disconnect_mid_data: true,
            ..Script::default()
        },
    );
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::None).await;
        let body = b"line 1\r\nline 2\r\nline 3\r\n".repeat(1000);
        let err = client
            .send(&msg(&["a@x.test"], &body))
            .await
            .expect_err("error");
        assert!(matches!(err.kind, ClientErrorKind::Io(_)), "{err}");
        assert_eq!(err.stage, Stage::Data);
        assert!(!client.is_reusable());
        assert!(client.send(&msg(&["a@x.test"], b"x")).await.is_err());
        client.quit().await;
    });
    assert!(rx.transactions().is_empty());
}

/// aiosmtpd (`scripts/install-test-deps` installs it; without it this test fails, it does not
/// skip): one pipelined message, 3 recipients.
#[test]
fn against_aiosmtpd() {
    let python = common::python_with("aiosmtpd", "python3-aiosmtpd");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/aiosmtpd_sink.py");
    let mut child = std::process::Command::new(python)
        .arg(&script)
        .args(["127.0.0.1", &port.to_string()])
        .arg(out.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start aiosmtpd");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let body = b"Subject: test\r\n\r\n.leading dot\r\nbare\nend\r\n";
    run(move || async move {
        let mut client = connect(
            addr,
            "localhost",
            TlsMode::Opportunistic,
            &default_settings(),
        )
        .await
        .expect("connect");
        let rcpts = ["one@x.test", "perm-two@x.test", "three@x.test"];
        let results = client.send(&msg(&rcpts, body)).await.unwrap();
        assert_eq!(
            codes(&results),
            [(250, Stage::Data), (550, Stage::Rcpt), (250, Stage::Data)]
        );
        client.quit().await;
    });
    drop(child.stdin.take());
    let _ = child.wait();
    let eml = std::fs::read(out.path().join("1.eml")).expect("message received");
    assert_eq!(eml, b"Subject: test\r\n\r\n.leading dot\r\nbare\r\nend\r\n");
    let envelope = std::fs::read_to_string(out.path().join("1.json")).unwrap();
    assert!(
        envelope.contains("\"one@x.test\", \"three@x.test\""),
        "{envelope}"
    );
    assert!(envelope.contains("sender@example.org"), "{envelope}");
}

#[test]
fn reply_421_mid_transaction_defers_and_ends_the_connection() {
    let rx = Receiver::start("127.0.0.2:0", Script::default());
    let addr = rx.addr();
    run(move || async move {
        let mut client = open(addr, TlsMode::None).await;
        let rcpts = ["perm-a@x.test", "b@x.test", "close-c@x.test", "d@x.test"];
        let results = client.send(&msg(&rcpts, b"x\r\n")).await.unwrap();
        assert_eq!(
            codes(&results),
            [
                (550, Stage::Rcpt),
                (421, Stage::Rcpt),
                (421, Stage::Rcpt),
                (421, Stage::Rcpt)
            ]
        );
        let (status, _) = results[1].detail("receiver.test");
        assert_eq!(status, DeliveryStatus::Deferred { counts: true });
        assert!(!client.is_reusable());
        client.quit().await;
    });
    assert!(rx.transactions().is_empty());
}

#[test]
fn refused_connection_keeps_its_error_kind() {
    // Bind then drop: nothing listens on this port any more.
    let addr = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    run(move || async move {
        let err = connect(addr, "receiver.test", TlsMode::None, &default_settings())
            .await
            .err()
            .expect("refused");
        assert_eq!(err.stage, Stage::Connect);
        assert!(
            matches!(&err.kind, ClientErrorKind::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err}"
        );
        assert_eq!(err.detail("x").1.code, StatusCode(4, 4, 1));
    });
}

#[test]
fn binds_the_source_address_and_says_its_own_helo() {
    use ringmail::relay::client::{Bind, connect_from};
    let rx = Receiver::start("127.0.0.2:0", Script::default());
    let addr = rx.addr();
    // Nothing listens here: the bound connect must report the refusal, not hang.
    let closed = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    run(move || async move {
        let from = Bind {
            address: Some("127.0.0.7".parse().unwrap()),
            helo: Some("seven.example.test".into()),
        };
        let mut client = connect_from(
            addr,
            "receiver.test",
            TlsMode::None,
            &default_settings(),
            &from,
        )
        .await
        .expect("connect from 127.0.0.7");
        client
            .send(&msg(&["a@b.test"], b"hi\r\n"))
            .await
            .expect("send");
        client.quit().await;
        let err = connect_from(closed, "x", TlsMode::None, &default_settings(), &from)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.stage, Stage::Connect);
        assert!(
            matches!(&err.kind, ClientErrorKind::Connect(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err}"
        );
        // An address this host does not have cannot be bound: our problem, said so.
        let foreign = Bind {
            address: Some("192.0.2.1".parse().unwrap()),
            helo: None,
        };
        let err = connect_from(addr, "x", TlsMode::None, &default_settings(), &foreign)
            .await
            .err()
            .expect("cannot bind");
        assert!(
            matches!(&err.kind, ClientErrorKind::Connect(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable),
            "{err}"
        );
        assert!(err.to_string().contains("cannot bind 192.0.2.1"), "{err}");
    });
    let t = &rx.transactions()[0];
    assert_eq!(t.peer.ip().to_string(), "127.0.0.7");
    assert_eq!(t.helo, "seven.example.test");
}

#[test]
fn binds_an_ipv6_source_and_refuses_a_family_mismatch() {
    use ringmail::relay::client::{Bind, connect_from};
    let rx = Receiver::start("[::1]:0", Script::default());
    let addr = rx.addr();
    run(move || async move {
        let v6 = Bind {
            address: Some("::1".parse().unwrap()),
            helo: Some("six.example.test".into()),
        };
        let mut client = connect_from(
            addr,
            "receiver.test",
            TlsMode::None,
            &default_settings(),
            &v6,
        )
        .await
        .expect("connect from ::1");
        client
            .send(&msg(&["a@b.test"], b"hi\r\n"))
            .await
            .expect("send");
        client.quit().await;
        let v4 = Bind {
            address: Some("127.0.0.1".parse().unwrap()),
            helo: None,
        };
        let err = connect_from(addr, "x", TlsMode::None, &default_settings(), &v4)
            .await
            .err()
            .expect("an IPv4 source cannot reach an IPv6 host");
        assert!(
            matches!(&err.kind, ClientErrorKind::Connect(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable),
            "{err}"
        );
    });
    let t = &rx.transactions()[0];
    assert_eq!(t.peer.ip().to_string(), "::1");
    assert_eq!(t.helo, "six.example.test");
}
