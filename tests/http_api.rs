//! The HTTP control plane end to end (src/http/, src/metrics/, src/stats/): the real binary on
//! loopback, driven by clients nobody here wrote: curl, Python's urllib and smtplib, and
//! Python's `prometheus_client` text parser for /metrics.

mod common;

use common::{Server, base_config, python, python_with, test_dir};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";

fn config(dir: &Path, http_extra: &str) -> String {
    base_config(
        dir,
        "",
        &format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{http_extra}\n"),
    )
}

/// `curl` with `args`; returns (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "120", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl (scripts/install-test-deps installs it)");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.http.expect("http announced"))
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// 1,000 recipients, each with its own code.
fn personalised_request(prefix: &str, count: usize) -> Value {
    let recipients: Vec<Value> = (0..count)
        .map(|i| json!({"to": format!("{prefix}{i}@example.test"), "vars": {"code": format!("C{prefix}{i}X"), "name": format!("User {i}")}}))
        .collect();
    json!({
        "from": "list@sender.test",
        "recipients": recipients,
        "header_from": "The List <list@sender.test>",
        "subject": "Hello {{name}}",
        "text": "Dear {{name}}, your code is {{code}}.\n",
        "headers": {"X-Code": "{{code}}"},
    })
}

/// Every recipient got a mail carrying its own code (and no other's).
fn assert_delivered(server: &Server, prefix: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..count {
        let address = format!("{prefix}{i}@example.test");
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let files = server.wait_for_mail(&address, 1, left.max(1));
        assert!(
            !files.is_empty(),
            "{address} got nothing; log:\n{}",
            server.log()
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains(&format!("your code is C{prefix}{i}X."))
                && text.contains(&format!("X-Code: C{prefix}{i}X")),
            "{address}: {text}"
        );
        assert!(
            text.contains(&format!("Subject: Hello User {i}\n")),
            "{text}"
        );
        assert!(text.contains("with HTTP"), "no trace header: {text}");
    }
}

#[test]
fn inject_1000_with_curl_survives_sigkill() {
    let dir = test_dir("http-inject-curl");
    let mut server = Server::start(&dir, &config(&dir, ""));
    let body = dir.join("inject.json");
    std::fs::write(&body, personalised_request("c", 1000).to_string()).unwrap();
    let (status, reply) = curl(&[
        "-H",
        &bearer(),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", body.display()),
        &url(&server, "/api/inject"),
    ]);
    // Killed the moment the answer is in: every id it lists was durable before it was sent.
    server.kill9();
    assert_eq!(status, 200, "{reply}");
    let reply = json_of(&reply);
    assert_eq!(reply["accepted"], 1000, "{reply}");
    assert_eq!(reply["refused"], 0);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["to"], format!("c{i}@example.test"));
        assert!(
            result["id"]
                .as_str()
                .is_some_and(|id| id.split('.').count() == 3),
            "{result}"
        );
    }
    let server = Server::start_with(&dir, &server.config_path);
    assert_delivered(&server, "c", 1000);
    server.wait_queue_idle(60);
}

#[test]
fn inject_1000_with_python_urllib() {
    let dir = test_dir("http-inject-urllib");
    let server = Server::start(&dir, &config(&dir, ""));
    let script = r#"
import json, sys, urllib.request
url, token, path = sys.argv[1:4]
body = open(path, 'rb').read()
req = urllib.request.Request(url, data=body, method='POST',
    headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})
with urllib.request.urlopen(req, timeout=120) as resp:
    reply = json.load(resp)
    print(resp.status, reply['accepted'], reply['refused'], len({r['id'] for r in reply['results']}))
"#;
    let body = dir.join("inject.json");
    std::fs::write(&body, personalised_request("p", 1000).to_string()).unwrap();
    let out = python(
        script,
        &[&url(&server, "/api/inject"), TOKEN, body.to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200 1000 0 1000",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_delivered(&server, "p", 1000);
}

#[test]
fn refusals_are_clear_json_errors() {
    let dir = test_dir("http-errors");
    let server = Server::start(&dir, &config(&dir, "max_body_size = 4096"));
    let inject = url(&server, "/api/inject");
    let small = r#"{"from":"a@sender.test","recipients":[{"to":"u@example.test"}],"subject":"s","text":"t"}"#;
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (
            vec!["-d".into(), small.into(), inject.clone()],
            401,
            "missing bearer token",
        ),
        (
            vec![
                "-H".into(),
                "Authorization: Bearer wrong-token-0123456789".into(),
                "-d".into(),
                small.into(),
                inject.clone(),
            ],
            401,
            "wrong bearer token",
        ),
        (
            vec![
                "-H".into(),
                bearer(),
                "--data-binary".into(),
                format!("{{\"pad\":\"{}\"}}", "x".repeat(5000)),
                inject.clone(),
            ],
            413,
            "request body too large (limit 4096 bytes)",
        ),
        (
            vec![
                "-H".into(),
                bearer(),
                "-d".into(),
                "{\"from\": \"a@b\", ".into(),
                inject.clone(),
            ],
            400,
            "malformed JSON: EOF while parsing",
        ),
        (
            vec![
                "-H".into(),
                bearer(),
                "-d".into(),
                r#"{"from":"a@b","recipients":[],"text":"x","color":1}"#.into(),
                inject.clone(),
            ],
            400,
            "malformed JSON: unknown field `color`",
        ),
        (
            vec!["-H".into(), bearer(), url(&server, "/api/nothing")],
            404,
            "no such endpoint /api/nothing",
        ),
        (
            vec!["-H".into(), bearer(), url(&server, "/api/queue/zz")],
            400,
            "bad message id `zz`",
        ),
    ];
    for (args, want_status, want_error) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body) = curl(&args);
        assert_eq!(status, want_status, "{args:?}: {body}");
        let error = json_of(&body)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.starts_with(want_error), "{args:?}: {error}");
    }
    // A declared length over the cap is refused before the body is read.
    let big = dir.join("big.json");
    std::fs::write(&big, vec![b' '; 1 << 20]).unwrap();
    let (status, _) = curl(&[
        "-H",
        &bearer(),
        "--data-binary",
        &format!("@{}", big.display()),
        &inject,
    ]);
    assert_eq!(status, 413);
    // Nothing reached the queue.
    assert!(server.new_mail("u@example.test").is_empty());

    // /metrics and /healthz need no token.
    assert_eq!(curl(&[&url(&server, "/healthz")]).0, 200);
    assert_eq!(curl(&[&url(&server, "/metrics")]).0, 200);

    // Without a configured token the API is off.
    let dir2 = test_dir("http-no-token");
    let open = Server::start(
        &dir2,
        &base_config(&dir2, "", "[http]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let (status, body) = curl(&["-H", &bearer(), &url(&open, "/api/status")]);
    assert_eq!(status, 403, "{body}");
    assert!(
        json_of(&body)["error"]
            .as_str()
            .unwrap()
            .contains("no http.token")
    );
}

#[test]
fn rate_cap_answers_429() {
    let dir = test_dir("http-rate");
    let server = Server::start(&dir, &config(&dir, "max_requests_per_sec = 2"));
    let statuses: Vec<u16> = (0..10)
        .map(|_| curl(&["-H", &bearer(), &url(&server, "/api/status")]).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 2,
        "{statuses:?}"
    );
    // Monitoring is not capped.
    for _ in 0..10 {
        assert_eq!(curl(&[&url(&server, "/healthz")]).0, 200);
    }
}

#[test]
fn queue_api_lists_shows_and_controls() {
    let dir = test_dir("http-queue");
    let server = Server::start(&dir, &config(&dir, ""));
    // Remote recipients go to a dead port (base_config): they stay queued, deferred.
    let request = json!({"from": "a@sender.test",
        "recipients": [{"to": "x@far.test"}, {"to": "y@other.test"}],
        "subject": "s", "text": "t"});
    let (status, body) = curl(&[
        "-H",
        &bearer(),
        "-d",
        &request.to_string(),
        &url(&server, "/api/inject"),
    ]);
    assert_eq!(status, 200, "{body}");
    let reply = json_of(&body);
    let far = reply["results"][0]["id"].as_str().unwrap().to_string();
    let other = reply["results"][1]["id"].as_str().unwrap().to_string();

    // Wait for the first attempt to defer one (the other may then wait out the host's backoff
    // without an attempt of its own, and stay `pending` rather than `deferred`).
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let (status, body) = curl(&["-H", &bearer(), &url(&server, "/api/queue?state=deferred")]);
        assert_eq!(status, 200, "{body}");
        let list = json_of(&body);
        if list["count"] != 0 || Instant::now() > deadline {
            break list;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(list["count"], 0, "{list}");
    let received = list["messages"][0]["received_at"].as_str().unwrap();
    assert!(
        received.len() == 20 && received.ends_with('Z'),
        "{received}"
    );
    let (_, body) = curl(&["-H", &bearer(), &url(&server, "/api/queue?state=pending")]);
    assert_eq!(json_of(&body)["count"], 2, "{body}");
    let (_, body) = curl(&["-H", &bearer(), &url(&server, "/api/queue?state=delivered")]);
    assert_eq!(json_of(&body)["count"], 0, "{body}");
    let (_, body) = curl(&["-H", &bearer(), &url(&server, "/api/queue?domain=FAR.test")]);
    let by_domain = json_of(&body);
    assert_eq!(by_domain["count"], 1);
    assert_eq!(by_domain["messages"][0]["id"], far.as_str());
    let (_, body) = curl(&["-H", &bearer(), &url(&server, "/api/queue?min_age=3600")]);
    assert_eq!(json_of(&body)["count"], 0);

    let (status, body) = curl(&["-H", &bearer(), &url(&server, &format!("/api/queue/{far}"))]);
    assert_eq!(status, 200, "{body}");
    let shown = json_of(&body);
    assert_eq!(shown["sender"], "a@sender.test");
    assert_eq!(shown["recipients"][0]["address"], "x@far.test");
    let state = shown["recipients"][0]["state"].as_str().unwrap();
    assert!(state == "deferred" || state == "pending", "{shown}");

    // The deferrals show in /metrics: per destination (the static route's host), per
    // transport, and as queue depth.
    let (_, metrics) = curl(&[&url(&server, "/metrics")]);
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} missing in\n{metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    let deferred = value("ringmail_destination_deferrals_total{destination=\"127.0.0.1:9\"}");
    assert!(deferred >= 1.0, "{deferred}");
    assert!(value("ringmail_deliveries_total{transport=\"remote\",outcome=\"deferral\"}") >= 1.0);
    assert_eq!(
        value("ringmail_queue_messages{shard=\"0\"}")
            + value("ringmail_queue_messages{shard=\"1\"}"),
        2.0
    );
    assert_eq!(
        value("ringmail_queue_recipients{shard=\"0\"}")
            + value("ringmail_queue_recipients{shard=\"1\"}"),
        2.0
    );
    assert!(value("ringmail_queue_oldest_age_seconds") < 120.0);
    assert_eq!(
        value("ringmail_messages_accepted_total{source=\"http\",shard=\"0\"}")
            + value("ringmail_messages_accepted_total{source=\"http\",shard=\"1\"}"),
        2.0
    );

    let post = |path: &str| curl(&["-X", "POST", "-H", &bearer(), &url(&server, path)]);
    let (status, body) = post("/api/queue/pause");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["result"], "delivery paused on 2 shards");
    let (_, body) = curl(&["-H", &bearer(), &url(&server, "/api/status")]);
    assert!(
        json_of(&body)["result"]
            .as_str()
            .unwrap()
            .starts_with("paused"),
        "{body}"
    );
    assert_eq!(post("/api/queue/resume").0, 200);
    let (status, body) = post("/api/queue/flush");
    assert_eq!(status, 200, "{body}");
    assert!(
        json_of(&body)["result"]
            .as_str()
            .unwrap()
            .starts_with("flushed"),
        "{body}"
    );

    let (status, body) = post(&format!("/api/queue/{far}/delete"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body)["result"],
        format!("deleted {far}: 1 recipient dropped")
    );
    let (status, body) = post(&format!("/api/queue/{other}/bounce"));
    assert_eq!(status, 200, "{body}");
    assert!(
        json_of(&body)["result"]
            .as_str()
            .unwrap()
            .starts_with(&format!("bounced {other}"))
    );
    let (status, body) = post(&format!("/api/queue/{far}/delete"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(json_of(&body)["error"], format!("no such message {far}"));
}

#[test]
fn metrics_after_a_known_smtp_load() {
    let dir = test_dir("http-metrics");
    let server = Server::start(&dir, &config(&dir, ""));
    // 20 messages over 5 SMTP sessions, each to a local user; every session also sends one
    // unknown command and tries one relay, both refused.
    let smtp = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
for session in range(5):
    with smtplib.SMTP(host, port, timeout=30) as s:
        s.ehlo('client.test')
        code, _ = s.docmd('FROB')
        assert code == 500, code
        code, _ = s.docmd('MAIL FROM:<a@sender.test>')
        assert code == 250, code
        code, _ = s.docmd('RCPT TO:<victim@elsewhere.test>')
        assert code == 554, code
        s.rset()
        for i in range(4):
            s.sendmail('a@sender.test', ['m%d.%d@example.test' % (session, i)],
                       'Subject: load\r\n\r\n' + ('x' * 70 + '\r\n') * 14)
print('sent')
"#;
    let out = python(
        smtp,
        &[
            &server.smtp.ip().to_string(),
            &server.smtp.port().to_string(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sent",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for session in 0..5 {
        for i in 0..4 {
            assert_eq!(
                server
                    .wait_for_mail(&format!("m{session}.{i}@example.test"), 1, 30)
                    .len(),
                1
            );
        }
    }
    server.wait_queue_idle(30);

    // The scrape, parsed by prometheus_client's own text parser.
    let parser = python_with("prometheus_client", "python3-prometheus-client");
    let script = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1], timeout=30).read().decode()
samples = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        key = s.name + '{' + ','.join('%s=%s' % kv for kv in sorted(s.labels.items())) + '}'
        samples[key] = s.value
print(json.dumps(samples))
"#;
    let out = Command::new(&parser)
        .args(["-c", script, &url(&server, "/metrics")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: std::collections::HashMap<String, f64> =
        serde_json::from_slice(&out.stdout).unwrap();
    let get = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing in {samples:?}"))
    };
    let sum_over_shards = |name: &str, source: &str| -> f64 {
        samples
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&format!("{name}{{")) && k.contains(&format!("source={source}"))
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        sum_over_shards("ringmail_messages_accepted_total", "smtp"),
        20.0
    );
    assert_eq!(
        sum_over_shards("ringmail_messages_accepted_total", "http"),
        0.0
    );
    assert_eq!(get("ringmail_connections_total{listener=smtp}"), 5.0);
    assert_eq!(get("ringmail_sessions_open{listener=smtp}"), 0.0);
    assert_eq!(get("ringmail_refused_total{reason=relay_denied}"), 5.0);
    assert_eq!(get("ringmail_refused_total{reason=unknown_user}"), 0.0);
    assert_eq!(get("ringmail_refused_total{reason=syntax}"), 5.0);
    assert_eq!(get("ringmail_refused_total{reason=message_too_big}"), 0.0);
    assert_eq!(
        get("ringmail_deliveries_total{outcome=success,transport=local}"),
        20.0
    );
    assert_eq!(
        get("ringmail_deliveries_total{outcome=failure,transport=local}"),
        0.0
    );
    assert_eq!(
        get("ringmail_deliveries_total{outcome=deferral,transport=remote}"),
        0.0
    );
    assert_eq!(get("ringmail_delivery_latency_seconds_count{}"), 20.0);
    assert_eq!(
        get("ringmail_queue_messages{shard=0}") + get("ringmail_queue_messages{shard=1}"),
        0.0
    );
    assert_eq!(get("ringmail_queue_oldest_age_seconds{}"), 0.0);
    assert_eq!(get("ringmail_shard_ready{shard=0}"), 1.0);
    let bytes = get("ringmail_message_bytes_accepted_total{source=smtp}");
    assert!(bytes > 20.0 * 1000.0, "{bytes}");
    // Every message and every delivery state went through a group commit.
    assert!(get("ringmail_commit_batch_records_count{}") >= 1.0);
    assert_eq!(
        get("ringmail_commit_batch_records_count{}"),
        get("ringmail_fsync_duration_seconds_count{}")
    );
    assert!(get("ringmail_commit_batch_records_sum{}") >= 40.0);
}

#[test]
fn stats_on_a_known_log() {
    let dir = test_dir("http-stats");
    let log = dir.join("known.log");
    std::fs::write(
        &log,
        "\
2026-11-25 10:00:01.000 ringmail-shard-0 info: new msg 1.0.0: from <a@x.test> via 127.0.0.1:5000, 1000 bytes, 2 recipients
2026-11-25 10:00:01.500 ringmail-shard-0 info: delivery 1.0.0 to u@example.test: success: /m/new/1
2026-11-25 10:00:03.000 ringmail-shard-0 warn: delivery 1.0.0 to v@far.test: deferral: 421 4.4.2 timeout (attempt 1, next x)
{\"ts\":\"2026-11-25T10:00:04.000Z\",\"level\":\"info\",\"thread\":\"ringmail-shard-1\",\"msg\":\"new msg 1.1.0: from <> via http 127.0.0.1:6000, 500 bytes, 1 recipients\"}
{\"ts\":\"2026-11-25T10:00:10.000Z\",\"level\":\"warn\",\"thread\":\"ringmail-shard-1\",\"msg\":\"delivery 1.1.0 to w@far.test: failure: 550 5.1.1 no such user\"}
2026-11-25 10:03:03.000 ringmail-shard-0 info: delivery 1.0.0 to v@far.test: success: 250 ok
2026-11-26 00:00:00.000 ringmail-shard-0 info: new msg 9.0.0: from <late@x.test> via 127.0.0.1:5000, 7 bytes, 1 recipients
",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(common::BIN)
            .arg("stats")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let report = json_of(&run(&[
        "--json",
        "--until",
        "2026-11-26",
        log.to_str().unwrap(),
    ]));
    assert_eq!(report["messages"], 2);
    assert_eq!(report["bytes"], 1500);
    assert_eq!(report["recipients"], 3);
    assert_eq!(report["successes"], 2);
    assert_eq!(report["deferrals"], 1);
    assert_eq!(report["failures"], 1);
    assert_eq!(report["delivery_time"]["count"], 3);
    assert_eq!(report["top_destinations"][0]["domain"], "far.test");
    assert_eq!(
        report["top_failure_reasons"][0]["reason"],
        "550 5.1.1 no such user"
    );
    // Standard input, text output, the whole file.
    let out = Command::new(common::BIN)
        .arg("stats")
        .stdin(std::fs::File::open(&log).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("messages queued:        3\n"), "{text}");
    assert!(text.contains("bytes in messages:      1507\n"), "{text}");
    // A bad time is a usage error.
    let out = Command::new(common::BIN)
        .args(["stats", "--since", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`soon` is not a time"));
}

#[test]
fn inject_a_whole_message_template() {
    let dir = test_dir("http-inject-raw");
    // Only ann and bob exist here.
    let config = config(&dir, "").replace(
        "[local]\n",
        "[local]\nunknown_users = \"reject\"\nusers = [\"ann@example.test\", \"bob@example.test\"]\n",
    );
    let server = Server::start(&dir, &config);
    let request = json!({
        "from": "list@sender.test",
        "recipients": [
            {"to": "ann@example.test", "vars": {"n": "Ann"}},
            {"to": "bob@example.test", "vars": {"n": "Bob"}},
            {"to": "nobody-here@example.test", "vars": {"n": "X"}},
            {"to": "ann%elsewhere.test@example.test", "vars": {"n": "X"}},
            {"to": "carol@example.test"},
        ],
        "message": "From: List <list@sender.test>\nSubject: For {{n}}\n\nHello {{n}}, this is {{to}}.\n",
    });
    let (status, body) = curl(&[
        "-H",
        &bearer(),
        "-d",
        &request.to_string(),
        &url(&server, "/api/inject"),
    ]);
    assert_eq!(status, 200, "{body}");
    let reply = json_of(&body);
    assert_eq!(reply["accepted"], 2, "{reply}");
    assert_eq!(reply["refused"], 3);
    let errors: Vec<&str> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .skip(2)
        .map(|r| r["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        vec![
            "550 5.1.1 <nobody-here@example.test>: no such user here",
            "553 5.1.3 <ann%elsewhere.test@example.test>: routing characters in the address are not accepted",
            "550 5.1.1 <carol@example.test>: no such user here",
        ]
    );
    for name in ["ann", "bob"] {
        let address = format!("{name}@example.test");
        let files = server.wait_for_mail(&address, 1, 30);
        assert_eq!(files.len(), 1, "{address}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let cap = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
        assert!(text.contains(&format!("Subject: For {cap}\n")), "{text}");
        assert!(
            text.contains(&format!("Hello {cap}, this is {address}.")),
            "{text}"
        );
        assert!(
            text.contains("Message-ID: <") && text.contains("Date: "),
            "{text}"
        );
    }
}
