//! Fuzz target: a whole SMTP session fed arbitrary bytes in arbitrary chunks never panics, every
//! reply it writes is a well-formed reply line, and every message it commits is within the size
//! limit. The first byte also picks the session's options: plaintext with STARTTLS, or under
//! TLS with AUTH (and optionally submission rules), so the SASL exchanges get fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmail::auth::CheckOutcome;
use ringmail::smtp::{
    Context, PeerInfo, Progress, RcptVerdict, RecipientPolicy, Session, SessionOptions,
    SmtpConfig, TlsInfo,
};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

struct Policy;

impl RecipientPolicy for Policy {
    fn check_recipient(&self, _peer: &PeerInfo, address: &str) -> RcptVerdict {
        match address.len() % 6 {
            0 => RcptVerdict::Accept,
            1 => RcptVerdict::UnknownUser,
            2 => RcptVerdict::RelayDenied,
            3 => RcptVerdict::BadAddress,
            4 => RcptVerdict::BadDestination,
            _ => RcptVerdict::TempFail("busy".into()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Rc::new(SmtpConfig {
        max_message_size: 4096,
        ..SmtpConfig::default()
    });
    let peer = PeerInfo {
        remote: "192.0.2.1:4000".parse().unwrap(),
        local: "192.0.2.2:25".parse().unwrap(),
        authenticated: false,
    };
    let mode = data.first().map_or(0, |b| b >> 6);
    let under_tls = mode & 1 == 1;
    let options = SessionOptions {
        starttls: true,
        tls: under_tls.then(|| TlsInfo {
            version: "TLS1_3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
        }),
        auth: under_tls,
        auth_after_starttls: !under_tls,
        require_auth: mode & 2 == 2,
        sender_login_match: mode & 2 == 2,
        local_domains: Rc::from(vec!["example.test".to_string()]),
    };
    let mut session = Session::with_options(Rc::clone(&config), peer, options);
    let cx = Context {
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        policy: &Policy,
    };
    let mut out = Vec::new();
    session.greeting(&mut out);
    // The first byte picks the chunk size, so chunk boundaries get fuzzed too.
    let (chunk, input) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first % 64) + 1, rest),
        None => return,
    };
    'feed: for piece in input.chunks(chunk) {
        let mut progress = session.receive(piece, &cx, &mut out);
        loop {
            match progress {
                Progress::NeedMore => break,
                Progress::Close | Progress::StartTls => break 'feed,
                Progress::Authenticate(credentials) => {
                    let outcome = if credentials.user.len() % 2 == 0 {
                        CheckOutcome::Accepted
                    } else {
                        CheckOutcome::Rejected
                    };
                    progress = session.auth_checked(outcome, &cx, &mut out);
                }
                Progress::Commit(_, message) => {
                    // The Received header is added on top of the client's bytes.
                    assert!(message.len() <= config.max_message_size + 1024);
                    progress = session.committed(Ok("id".into()), &cx, &mut out);
                }
            }
        }
    }
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            line.len() >= 4 && line.ends_with(b"\r"),
            "{:?}",
            String::from_utf8_lossy(line)
        );
        assert!(line[..3].iter().all(u8::is_ascii_digit));
    }
});
