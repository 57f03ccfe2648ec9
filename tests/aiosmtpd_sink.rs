//! The test sink itself (tests/common/aiosmtpd.rs, tests/support/sink.py): Python's smtplib
//! sends to it, and what it recorded comes back byte for byte, envelope included.

mod common;

use common::aiosmtpd::{Sink, SinkMessage};
use common::python;
use std::time::Duration;

const SEND: &str = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, timeout=10) as s:
    s.ehlo("client.test")
    refused = s.sendmail("alice@client.test", ["bob@sink.test", "carol@sink.test"],
                         b"Subject: one\r\n\r\n.dot first\r\nline \"two\"\r\n")
    assert refused == {}, refused
    # An internationalized envelope (RFC 6531) exercises the JSON escapes.
    refused = s.sendmail("", ["j\u00f6rg@b\u00fccher.test"], b"Subject: two\r\n\r\nzwei\r\n",
                         mail_options=["SMTPUTF8"])
    assert refused == {}, refused
print("sent")
"#;

#[test]
fn sink_records_what_smtplib_sends() {
    let sink = Sink::start("127.0.0.2");
    assert_eq!(sink.addr().ip().to_string(), "127.0.0.2");
    assert_ne!(sink.addr().port(), 0);
    let out = python(SEND, &["127.0.0.2", &sink.addr().port().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages = sink.wait_for(2, Duration::from_secs(20));
    assert_eq!(
        messages,
        vec![
            SinkMessage {
                from: "alice@client.test".into(),
                to: vec!["bob@sink.test".into(), "carol@sink.test".into()],
                data: b"Subject: one\r\n\r\n.dot first\r\nline \"two\"\r\n".to_vec(),
            },
            SinkMessage {
                from: String::new(),
                to: vec!["j\u{f6}rg@b\u{fc}cher.test".into()],
                data: b"Subject: two\r\n\r\nzwei\r\n".to_vec(),
            },
        ]
    );
}

#[test]
fn two_sinks_do_not_share_ports_or_files() {
    let a = Sink::start("127.0.0.1");
    let b = Sink::start("127.0.0.1");
    assert_ne!(a.addr(), b.addr());
    assert!(a.messages().is_empty() && b.messages().is_empty());
}
