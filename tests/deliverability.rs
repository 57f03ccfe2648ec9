//! Deliverability end to end, with the real binary and verifiers nobody here wrote: DKIM
//! signatures (RSA-SHA256 and Ed25519-SHA256, keys made by `ringmail dkim keygen`, records served
//! by the loopback DNS server) checked by Python's dkimpy on the bytes an aiosmtpd receiver got;
//! one-click unsubscribe headers whose token, POSTed to the endpoint function, suppresses the
//! recipient for that list; the suppression list (CLI on a running server, hard-bounce
//! auto-suppression, the 5.7.1 failure and its bounce); and an RFC 5965 ARF report that
//! suppresses its complaining recipient.

mod common;
#[path = "support/receiver.rs"]
mod receiver;
mod relay;

use common::aiosmtpd::{Sink, SinkMessage};
use common::{BIN, python_with, test_dir};
use receiver::{Receiver, Script};
use relay::{send, start_relay, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `ringmail dkim keygen` and returns the DNS record it printed.
fn keygen(dir: &Path, domain: &str, selector: &str, algorithm: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "dkim",
            "keygen",
            domain,
            selector,
            "--algorithm",
            algorithm,
            "--dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = dir.join(format!("{domain}.{selector}.pem"));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    String::from_utf8(out.stdout).unwrap()
}

/// dkimpy verifies every DKIM-Signature of the message in `file`, fetching the key records from
/// the loopback DNS server at host:port with dnslib. Prints one line per signature:
/// `<a=> <d=> <s=> <True|False> <h=>`.
const VERIFY: &str = r#"
import sys, dkim
from dnslib import DNSRecord, QTYPE
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = open(path, "rb").read()
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    reply = DNSRecord.parse(DNSRecord.question(name, "TXT").send(host, port, timeout=timeout))
    for rr in reply.rr:
        if rr.rtype == QTYPE.TXT:
            return b"".join(rr.rdata.data)
    return None
d = dkim.DKIM(msg)
count = sum(1 for (k, v) in d.headers if k.lower() == b"dkim-signature")
for i in range(count):
    ok = d.verify(idx=i, dnsfunc=dnsfunc)
    f = d.signature_fields
    print(f[b"a"].decode(), f[b"d"].decode(), f[b"s"].decode(), ok, "".join(f[b"h"].decode().split()))
"#;

fn verify(dns: std::net::SocketAddr, dir: &Path, data: &[u8]) -> Vec<String> {
    let file = dir.join("verify.eml");
    std::fs::write(&file, data).unwrap();
    let out = Command::new(python_with("dkim", "python3-dkim"))
        .arg("-c")
        .arg(VERIFY)
        .arg(dns.ip().to_string())
        .arg(dns.port().to_string())
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn header_of(data: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn to_of<'a>(messages: &'a [SinkMessage], rcpt: &str) -> Vec<&'a SinkMessage> {
    messages
        .iter()
        .filter(|m| m.to.iter().any(|t| t == rcpt))
        .collect()
}

#[test]
fn dkim_signatures_verify_and_one_click_unsubscribe_suppresses_for_its_list() {
    let keys = test_dir("dkim-keys");
    let rsa_record = keygen(&keys, "example.test", "s1", "rsa");
    let ed_record = keygen(&keys, "example.test", "ed", "ed25519");
    assert!(
        rsa_record.contains("\" \""),
        "an RSA record is split: {rsa_record}"
    );
    let secret = keys.join("unsubscribe.secret");
    std::fs::write(&secret, "a-test-secret-of-more-than-16-bytes\n").unwrap();

    let sink = Sink::start("127.0.0.2");
    let extra = format!(
        "[[dkim.keys]]\ndomain = \"example.test\"\nselector = \"s1\"\nalgorithm = \"rsa\"\n\
         key_file = \"{k}/example.test.s1.pem\"\n\n\
         [[dkim.keys]]\ndomain = \"example.test\"\nselector = \"ed\"\nalgorithm = \"ed25519\"\n\
         key_file = \"{k}/example.test.ed.pem\"\n\n\
         [unsubscribe]\nsecret_file = \"{s}\"\nbase_url = \"https://mx.test\"\n\
         mailto = \"unsubscribe@example.test\"\n",
        k = keys.display(),
        s = secret.display()
    );
    let zone = format!("{rsa_record}{ed_record}");
    let routes = format!("routes = {{ \"dkim.test\" = \"{}\" }}", sink.addr());
    let relay = start_relay("dkim", 25, &zone, &routes, &extra);
    let server = &relay.server;
    let dns = relay.dns.addr();

    // 1. From the key's domain: signed by both keys; both verify after the receiving server.
    send(
        server,
        "news@example.test",
        &["bob@dkim.test"],
        "From: News <news@example.test>\nTo: bob@dkim.test\nSubject: DKIM test\n\
         Message-ID: <1@example.test>\n\nHello,   with  spaces \n\n\n",
    );
    // 2. From a subdomain: signed with the parent domain's keys. 3. Another domain: unsigned.
    send(
        server,
        "a@sub.example.test",
        &["sub@dkim.test"],
        "From: a@sub.example.test\nSubject: parent\n\nbody\n",
    );
    send(
        server,
        "x@other.test",
        &["other@dkim.test"],
        "From: x@other.test\nSubject: unsigned\n\nbody\n",
    );
    let messages = sink.wait_for(3, Duration::from_secs(30));
    assert_eq!(messages.len(), 3, "log:\n{}", server.log());

    let bob = to_of(&messages, "bob@dkim.test")[0];
    let results = verify(dns, &keys, &bob.data);
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("rsa-sha256 example.test s1 True")),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| r.starts_with("ed25519-sha256 example.test ed True")),
        "{results:?}"
    );
    let sub = to_of(&messages, "sub@dkim.test")[0];
    let results = verify(dns, &keys, &sub.data);
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.contains(" example.test ") && r.contains(" True "))
    );
    let other = to_of(&messages, "other@dkim.test")[0];
    assert!(header_of(&other.data, "DKIM-Signature").is_none());

    // 4. List mail: one transaction per recipient, each with its own token, signed over the
    //    List-Unsubscribe fields; the X-Ringmail-List field does not leave.
    let list_mail = "From: News <news@example.test>\nSubject: weekly\nX-Ringmail-List: weekly\n\n\
                     This week.\n";
    send(
        server,
        "news@example.test",
        &["carol@dkim.test", "dave@dkim.test"],
        list_mail,
    );
    let messages = sink.wait_for(5, Duration::from_secs(30));
    assert_eq!(messages.len(), 5, "log:\n{}", server.log());
    let mut urls = Vec::new();
    for rcpt in ["carol@dkim.test", "dave@dkim.test"] {
        let got = to_of(&messages, rcpt);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].to,
            vec![rcpt.to_string()],
            "one recipient per transaction"
        );
        let data = &got[0].data;
        assert!(header_of(data, "X-Ringmail-List").is_none());
        assert_eq!(
            header_of(data, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let unsubscribe = header_of(data, "List-Unsubscribe").unwrap();
        assert!(
            unsubscribe.starts_with("<mailto:unsubscribe@example.test?"),
            "{unsubscribe}"
        );
        let url = unsubscribe
            .split('<')
            .find_map(|p| p.strip_prefix("https://mx.test")?.strip_suffix('>'))
            .unwrap()
            .to_string();
        let results = verify(dns, &keys, data);
        assert!(results.iter().all(|r| r.contains(" True ")), "{results:?}");
        // h= covers both fields ringmail added.
        assert!(
            results.iter().all(|r| {
                let h: Vec<String> = r
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .split(':')
                    .map(str::to_ascii_lowercase)
                    .collect();
                h.contains(&"list-unsubscribe".into())
                    && h.contains(&"list-unsubscribe-post".into())
            }),
            "{results:?}"
        );
        urls.push(url);
    }
    assert_ne!(urls[0], urls[1]);

    // The endpoint: what the control plane serves at POST /unsubscribe/TOKEN, writing to the
    // running server's suppression file (as the server's process would).
    let suppression =
        ringmail::suppression::SuppressionList::open(&relay.dir.join("data/suppression")).unwrap();
    let key = ringmail::unsubscribe::TokenKey::new(b"a-test-secret-of-more-than-16-bytes").unwrap();
    let unsubscriber = ringmail::unsubscribe::Unsubscriber::new(key, "https://mx.test", "", &[]);
    let forged = urls[0].replace('.', ".A");
    let refused = ringmail::unsubscribe::handle_post(
        &unsubscriber,
        &suppression,
        &forged,
        b"List-Unsubscribe=One-Click",
        1,
    );
    assert_eq!(refused.status, 403);
    let accepted = ringmail::unsubscribe::handle_post(
        &unsubscriber,
        &suppression,
        &urls[0],
        b"List-Unsubscribe=One-Click",
        1,
    );
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let listed = String::from_utf8(server.ctl(&["suppress", "list"]).stdout).unwrap();
    assert!(listed.contains("carol@dkim.test\tweekly\t"), "{listed}");

    // The running server sees it (its watcher replays the file within a second): the next
    // weekly mail to carol is not sent, dave's is; carol still gets mail that is not the list.
    std::thread::sleep(Duration::from_millis(1500));
    send(
        server,
        "news@example.test",
        &["carol@dkim.test", "dave@dkim.test"],
        list_mail,
    );
    send(
        server,
        "news@example.test",
        &["carol@dkim.test"],
        "From: news@example.test\nSubject: not the list\n\nhi\n",
    );
    let messages = sink.wait_for(7, Duration::from_secs(30));
    assert_eq!(messages.len(), 7, "log:\n{}", server.log());
    assert_eq!(to_of(&messages, "dave@dkim.test").len(), 2);
    let carol = to_of(&messages, "carol@dkim.test");
    assert_eq!(carol.len(), 2);
    assert!(header_of(&carol[1].data, "List-Unsubscribe").is_none());
    assert!(
        wait_until(10, || server.log().contains(
            "carol@dkim.test is suppressed (carol@dkim.test for list weekly"
        )),
        "log:\n{}",
        server.log()
    );
}

/// RFC 5965 Appendix B.1's report, about a message to `rcpt`.
fn arf_report(rcpt: &str) -> String {
    format!(
        "From: <abusedesk@example.com>\nTo: <fbl@example.test>\nSubject: FW: Earn money\n\
MIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=feedback-report;\n\
\tboundary=\"part1_13d.2e68ed54_boundary\"\n\
\n\
--part1_13d.2e68ed54_boundary\n\
Content-Type: text/plain; charset=\"US-ASCII\"\n\
\n\
This is an email abuse report for an email message received from IP 192.0.2.1.\n\
\n\
--part1_13d.2e68ed54_boundary\n\
Content-Type: message/feedback-report\n\
\n\
Feedback-Type: abuse\n\
User-Agent: SomeGenerator/1.0\n\
Version: 1\n\
Original-Mail-From: <news@example.test>\n\
Original-Rcpt-To: <{rcpt}>\n\
Source-IP: 192.0.2.1\n\
Reported-Domain: example.test\n\
\n\
--part1_13d.2e68ed54_boundary\n\
Content-Type: message/rfc822\n\
Content-Disposition: inline\n\
\n\
From: <news@example.test>\n\
To: <{rcpt}>\n\
Subject: Earn money\n\
\n\
Spam Spam Spam\n\
--part1_13d.2e68ed54_boundary--\n"
    )
}

#[test]
fn suppression_list_cli_hard_bounces_and_arf_complaints() {
    let receiver = Receiver::start("127.0.0.7:0", Script::default());
    let routes = format!("routes = {{ \"rcv.test\" = \"{}\" }}", receiver.addr());
    let relay = start_relay(
        "suppression",
        25,
        "",
        &routes,
        "[feedback]\naddress = \"fbl@example.test\"\n",
    );
    let server = &relay.server;
    let ctl = |args: &[&str]| {
        let out = server.ctl(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // The CLI on a running server: a whole domain and one address.
    let (code, out, err) = ctl(&[
        "suppress",
        "add",
        "Blocked@RCV.test",
        "--reason",
        "asked us",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out, "blocked@rcv.test: suppressed\n");
    assert_eq!(ctl(&["suppress", "add", "banned.test"]).0, Some(0));
    assert_eq!(ctl(&["suppress", "add", "not an address"]).0, Some(2));
    let (_, listed, _) = ctl(&["suppress", "list"]);
    assert!(
        listed.contains("blocked@rcv.test\t-\t") && listed.contains("\tasked us\n"),
        "{listed}"
    );
    assert!(listed.contains("banned.test\t-\t"), "{listed}");
    std::thread::sleep(Duration::from_millis(1500)); // the server's watcher replays the file

    send(
        server,
        "me@example.test",
        &["blocked@rcv.test", "ok@rcv.test"],
        "Subject: one\n\nhi\n",
    );
    assert!(
        wait_until(20, || receiver.transactions().len() == 1),
        "log:\n{}",
        server.log()
    );
    assert_eq!(receiver.transactions()[0].rcpts, vec!["<ok@rcv.test>"]);
    // The sender's bounce says why, with 5.7.1, and nothing was attempted for blocked@.
    let bounces = server.wait_for_mail("me@example.test", 1, 20);
    assert_eq!(bounces.len(), 1, "log:\n{}", server.log());
    let bounce = std::fs::read_to_string(&bounces[0]).unwrap();
    assert!(bounce.contains("Status: 5.7.1"), "{bounce}");
    assert!(bounce.contains("suppression list"), "{bounce}");
    assert!(server.log().contains("blocked@rcv.test is suppressed"));

    // A hard bounce (550 5.1.1 from the receiver) suppresses the address automatically.
    send(
        server,
        "me@example.test",
        &["perm-gone@rcv.test"],
        "Subject: two\n\nhi\n",
    );
    assert!(
        wait_until(20, || ctl(&["suppress", "list"])
            .1
            .contains("perm-gone@rcv.test\t-\t")),
        "log:\n{}",
        server.log()
    );
    let (_, listed, _) = ctl(&["suppress", "list"]);
    assert!(listed.contains("hard bounce: "), "{listed}");
    assert!(listed.contains("550 5.1.1"), "{listed}");
    send(
        server,
        "me@example.test",
        &["perm-gone@rcv.test"],
        "Subject: three\n\nhi\n",
    );
    assert!(
        wait_until(20, || server
            .log()
            .contains("perm-gone@rcv.test is suppressed")),
        "log:\n{}",
        server.log()
    );

    // Lifting a suppression on the running server.
    assert_eq!(ctl(&["suppress", "del", "blocked@rcv.test"]).0, Some(0));
    assert_eq!(ctl(&["suppress", "del", "blocked@rcv.test"]).0, Some(1));
    std::thread::sleep(Duration::from_millis(1500));
    send(
        server,
        "me@example.test",
        &["blocked@rcv.test"],
        "Subject: four\n\nhi\n",
    );
    assert!(
        wait_until(20, || receiver.transactions().len() == 2),
        "log:\n{}",
        server.log()
    );
    assert_eq!(receiver.transactions()[1].rcpts, vec!["<blocked@rcv.test>"]);

    // An ARF report to the feedback address suppresses the complaining recipient; the report
    // itself is still delivered to the (local) feedback mailbox.
    send(
        server,
        "abusedesk@example.com",
        &["fbl@example.test"],
        &arf_report("erin@rcv.test"),
    );
    assert!(
        wait_until(20, || ctl(&["suppress", "list"])
            .1
            .contains("erin@rcv.test\t-\t")),
        "log:\n{}",
        server.log()
    );
    assert!(
        ctl(&["suppress", "list"])
            .1
            .contains("abuse complaint (ARF) about example.test")
    );
    assert_eq!(server.wait_for_mail("fbl@example.test", 1, 20).len(), 1);
    assert!(
        server
            .log()
            .contains("feedback: abuse complaint from erin@rcv.test about mail from example.test")
    );
    send(
        server,
        "me@example.test",
        &["erin@rcv.test"],
        "Subject: five\n\nhi\n",
    );
    assert!(
        wait_until(20, || server.log().contains("erin@rcv.test is suppressed")),
        "log:\n{}",
        server.log()
    );
    assert_eq!(receiver.transactions().len(), 2);
}

#[test]
fn a_bad_dkim_key_stops_startup_naming_its_file() {
    let dir = test_dir("dkim-bad-key");
    let key = dir.join("broken.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = common::base_config(
        &dir,
        "",
        &format!(
            "[[dkim.keys]]\ndomain = \"example.test\"\nselector = \"s1\"\nkey_file = \"{}\"\n",
            key.display()
        ),
    );
    let path = dir.join("ringmail.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("dkim.keys") && err.contains(&key.display().to_string()),
        "{err}"
    );
    // file:line: key, the line being the [[dkim.keys]] entry's.
    let line_of_keys = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l == "[[dkim.keys]]")
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("ringmail.toml:{line_of_keys}: dkim.keys: ")),
        "{err}"
    );
}
