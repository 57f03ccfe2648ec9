use super::*;
use std::time::{Duration, UNIX_EPOCH};

/// Accepts everyone at example.test, refuses the rest as a relay.
struct OnlyExampleTest;

impl RecipientPolicy for OnlyExampleTest {
    fn check_recipient(&self, _peer: &PeerInfo, address: &str) -> RcptVerdict {
        if address.ends_with("@example.test") {
            RcptVerdict::Accept
        } else {
            RcptVerdict::RelayDenied
        }
    }
}

fn rules(policy: &OnlyExampleTest) -> InjectRules<'_> {
    InjectRules {
        hostname: "mx.test",
        max_message_size: 10_000,
        max_recipients: 3,
        max_total_bytes: 1000,
        policy,
        peer: PeerInfo {
            remote: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:2580".parse().unwrap(),
            authenticated: true,
        },
        now: UNIX_EPOCH + Duration::from_secs(1_764_000_000),
    }
}

fn request(json: &str) -> InjectRequest {
    serde_json::from_str(json).expect("test request parses")
}

fn text(prepared: &Prepared) -> String {
    String::from_utf8(prepared.as_ref().expect("accepted").1.clone()).unwrap()
}

#[test]
fn substitutes_per_recipient_in_a_built_message() {
    let policy = OnlyExampleTest;
    let req = request(
        r#"{"from":"news@example.com","recipients":[
            {"to":"ann@example.test","vars":{"name":"Ann","code":"A1"}},
            {"to":"bob@example.test","vars":{"name":"Bob","code":"B2"}}],
           "subject":"Hi {{name}}","text":"Dear {{ name }}, your code is {{code}} ({{to}}).",
           "headers":{"X-Code":"{{code}}"}}"#,
    );
    let out = prepare(&req, &rules(&policy)).unwrap();
    assert_eq!(out.len(), 2);
    let ann = text(&out[0]);
    assert!(ann.starts_with("Received: from [127.0.0.1]\r\n\tby mx.test (ringmail) with HTTP\r\n\tfor <ann@example.test>; "), "{ann}");
    assert!(ann.contains("Subject: Hi Ann\r\n"), "{ann}");
    assert!(ann.contains("X-Code: A1\r\n"), "{ann}");
    assert!(
        ann.contains("Dear Ann, your code is A1 (ann@example.test)."),
        "{ann}"
    );
    assert!(
        ann.contains("Message-ID: <") && ann.contains("@mx.test>"),
        "{ann}"
    );
    assert!(ann.contains("Date: "), "{ann}");
    let bob = text(&out[1]);
    assert!(bob.contains("Dear Bob, your code is B2"), "{bob}");
    let (envelope, _) = out[1].as_ref().unwrap();
    assert_eq!(envelope.sender, "news@example.com");
    assert_eq!(envelope.recipients, vec!["bob@example.test".to_string()]);
    assert_eq!(envelope.received_at, 1_764_000_000);
}

#[test]
fn raw_messages_get_crlf_message_id_and_date() {
    let policy = OnlyExampleTest;
    let req = request(
        r#"{"from":"","recipients":[{"to":"ann@example.test","vars":{"n":"1"}}],
           "message":"From: a@example.com\nSubject: n={{n}}\n\nbody {{n}}\n"}"#,
    );
    let out = prepare(&req, &rules(&policy)).unwrap();
    let msg = text(&out[0]);
    let body_start = msg.find("\r\n\r\n").unwrap();
    let headers = &msg[..body_start];
    assert!(headers.contains("\r\nMessage-ID: <"), "{msg}");
    assert!(headers.contains("\r\nDate: "), "{msg}");
    assert!(headers.contains("Subject: n=1"), "{msg}");
    assert!(msg.ends_with("\r\n\r\nbody 1\r\n"), "{msg:?}");
    assert!(!msg.contains("\n\n") && !msg.replace("\r\n", "").contains('\n'));

    // Present ones are kept, not doubled.
    let req = request(
        r#"{"from":"a@example.com","recipients":[{"to":"ann@example.test"}],
           "message":"Date: Mon, 1 Dec 2026 00:00:00 +0000\r\nmessage-id: <x@y>\r\n\r\nhi\r\n"}"#,
    );
    let msg = text(&prepare(&req, &rules(&policy)).unwrap()[0]);
    assert_eq!(msg.matches("Date:").count(), 1, "{msg}");
    assert_eq!(msg.to_ascii_lowercase().matches("message-id:").count(), 1);
}

#[test]
fn per_recipient_refusals() {
    let policy = OnlyExampleTest;
    let req = request(
        r#"{"from":"a@example.com","recipients":[
            {"to":"ann@example.test","vars":{}},
            {"to":"eve@elsewhere.org"},
            {"to":"not an address"}],
           "subject":"Hi {{name}}","text":"x"}"#,
    );
    let out = prepare(&req, &rules(&policy)).unwrap();
    assert_eq!(out[0].as_ref().unwrap_err(), "no value for {{name}}");
    assert_eq!(
        out[1].as_ref().unwrap_err(),
        "554 5.7.1 <eve@elsewhere.org>: relaying denied"
    );
    assert_eq!(
        out[2].as_ref().unwrap_err(),
        "`not an address` is not a valid recipient address"
    );
    let req = request(
        r#"{"from":"a@example.com","recipients":[{"to":"ann@example.test","vars":{"v":"a\r\nBcc: x@y"}}],
           "subject":"{{v}}","text":"x"}"#,
    );
    let out = prepare(&req, &rules(&policy)).unwrap();
    assert_eq!(
        out[0].as_ref().unwrap_err(),
        "vars.v: values may not contain line breaks"
    );
    let big = "x".repeat(20_000);
    let req = request(&format!(
        r#"{{"from":"a@example.com","recipients":[{{"to":"ann@example.test"}}],"subject":"s","text":"{big}"}}"#
    ));
    let out = prepare(&req, &rules(&policy)).unwrap();
    assert!(
        out[0]
            .as_ref()
            .unwrap_err()
            .starts_with("message too big: ")
    );
}

#[test]
fn whole_request_errors() {
    let policy = OnlyExampleTest;
    let cases = [
        (
            r#"{"from":"a@example.com","recipients":[],"subject":"s","text":"t"}"#,
            "recipients is empty",
        ),
        (
            r#"{"from":"a@example.com","recipients":[{"to":"a@example.test"},{"to":"b@example.test"},{"to":"c@example.test"},{"to":"d@example.test"}],"subject":"s"}"#,
            "too many recipients (limit 3 per request)",
        ),
        (
            r#"{"from":"a@example.com","recipients":[{"to":"a@example.test"}]}"#,
            "no content: give message (a whole RFC 5322 message) or subject with text and/or html",
        ),
        (
            r#"{"from":"a@example.com","recipients":[{"to":"a@example.test"}],"message":"A: b\r\n\r\n","text":"t"}"#,
            "give either message or subject/text/html, not both",
        ),
        (
            r#"{"from":"a b@example.com","recipients":[{"to":"a@example.test"}],"text":"t"}"#,
            "from: `a b@example.com` is not a valid sender",
        ),
        (
            r#"{"from":"a@example.com","recipients":[{"to":"a@example.test"}],"text":"t","headers":{"Subject":"x"}}"#,
            "headers: Subject is set from the request's own fields, not headers",
        ),
        (
            r#"{"from":"a@example.com","recipients":[{"to":"a@example.test"}],"text":"t","headers":{"Bad Name":"x"}}"#,
            "headers: `Bad Name` is not a header field name",
        ),
    ];
    for (json, want) in cases {
        let err = prepare(&request(json), &rules(&policy)).unwrap_err();
        assert_eq!(err.to_string(), want, "{json}");
    }
}

#[test]
fn substitution_edge_cases() {
    let values: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
    let vars = Vars {
        values: &values,
        to: "x@y",
    };
    let cases = [
        ("{{a}}{{a}}", Ok("11")),
        ("{{ a }}", Ok("1")),
        ("{{to}}", Ok("x@y")),
        ("{{}} and {{ }}", Ok("{{}} and {{ }}")),
        ("css {{a b}}", Ok("css {{a b}}")),
        ("open {{a", Ok("open {{a")),
        ("{{b}}", Err("no value for {{b}}")),
    ];
    for (template, want) in cases {
        assert_eq!(
            substitute(template, &vars).as_deref(),
            want.map_err(str::to_string).as_deref(),
            "{template}"
        );
    }
}

#[test]
fn one_call_builds_a_bounded_amount() {
    let policy = OnlyExampleTest;
    let text = "y".repeat(400);
    let req = request(&format!(
        r#"{{"from":"a@example.com","recipients":[{{"to":"a@example.test"}},{{"to":"b@example.test"}},{{"to":"c@example.test"}}],"subject":"s","text":"{text}"}}"#
    ));
    let out = prepare(&req, &rules(&policy)).unwrap();
    // Each is ~700 bytes: the second passes the 1,000-byte cap, so the third is refused.
    assert!(out[0].is_ok() && out[1].is_ok());
    assert_eq!(
        out[2].as_ref().unwrap_err(),
        "452 4.5.3 this call's messages pass 1000 bytes in all; send the rest in another call"
    );
}
