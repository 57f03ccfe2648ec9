//! A scriptable, fault-injecting SMTP receiver for tests: a plain `std::net::TcpListener` with a
//! thread per connection, recording what it received.
//!
//! Use it from a test with `#[path = "support/receiver.rs"] mod receiver;`, then
//! `Receiver::start("127.0.0.2:0", Script { pipelining: true, ..Script::default() })`.
//! Dropping the `Receiver` stops it and cuts every open connection.
//!
//! Recipients are answered by local part: `temp-...` gets `451 4.2.0`, `perm-...` gets
//! `550 5.1.1`, `close-...` gets `421 4.3.2` and the connection is closed, anything else
//! `250 2.1.5`. Everything else is set in [`Script`]. Each transaction records the client's
//! address and when it was accepted, for the traffic-shaping and source-pool tests.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How the receiver behaves. `Script::default()` is a plain, well-behaved ESMTP server that
/// advertises nothing but ENHANCEDSTATUSCODES.
#[derive(Clone)]
pub struct Script {
    /// The greeting line, e.g. `421 busy` or `554 no service` to refuse.
    pub greeting: String,
    /// EHLO gets `502 5.5.1`, so the client must fall back to HELO.
    pub ehlo_refused: bool,
    pub pipelining: bool,
    /// `SIZE n` (0: SIZE with no fixed limit).
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    /// Advertise STARTTLS and use this certificate.
    pub tls: Option<TlsIdentity>,
    /// The reply to MAIL.
    pub mail_reply: String,
    /// The reply to DATA when a recipient was accepted (no recipient: always 554).
    pub data_reply: String,
    /// The reply to the end of data.
    pub final_reply: String,
    /// Close the connection after the first line of the message.
    pub disconnect_mid_data: bool,
    /// Sleep this long before every reply, the greeting included.
    pub reply_delay: Duration,
    /// Replies to the end of data of the first transactions, in order (e.g. a provider's
    /// `421 4.7.28` throttle); `final_reply` after them.
    pub final_replies_first: Vec<String>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            greeting: "220 receiver.test ESMTP test receiver".into(),
            ehlo_refused: false,
            pipelining: false,
            size: None,
            eightbitmime: false,
            smtputf8: false,
            tls: None,
            mail_reply: "250 2.1.0 sender ok".into(),
            data_reply: "354 go ahead".into(),
            final_reply: "250 2.0.0 queued".into(),
            disconnect_mid_data: false,
            reply_delay: Duration::ZERO,
            final_replies_first: Vec::new(),
        }
    }
}

/// A certificate chain and its key, DER.
#[derive(Clone)]
pub struct TlsIdentity {
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: Vec<u8>,
}

impl TlsIdentity {
    /// A self-signed certificate for `name`.
    pub fn self_signed(name: &str) -> TlsIdentity {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
        TlsIdentity {
            chain: vec![ck.cert.der().to_vec()],
            key_pkcs8: ck.key_pair.serialize_der(),
        }
    }
}

/// A test certificate authority that issues server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringmail test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        TestCa { cert, key }
    }

    /// The CA certificate, PEM (for a client's extra CA file).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `name`, signed by this CA.
    pub fn issue(&self, name: &str) -> TlsIdentity {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        TlsIdentity {
            chain: vec![cert.der().to_vec(), self.cert.der().to_vec()],
            key_pkcs8: key.serialize_der(),
        }
    }
}

/// One message the receiver accepted (final reply sent).
#[derive(Debug, Clone)]
pub struct Transaction {
    /// The name given in EHLO/HELO.
    pub helo: String,
    /// Everything after `MAIL FROM:`, e.g. `<a@b> SIZE=12 BODY=8BITMIME`.
    pub mail_from: String,
    /// Accepted recipients, the text after `RCPT TO:`.
    pub rcpts: Vec<String>,
    /// The data exactly as on the wire, final `.\r\n` included.
    pub raw: Vec<u8>,
    /// The data unstuffed, without the terminator.
    pub data: Vec<u8>,
    /// Sent over TLS.
    pub tls: bool,
    /// RCPT was already waiting when MAIL was read: the client pipelined.
    pub pipelined: bool,
    /// The client's address (the relay's source address).
    pub peer: SocketAddr,
    /// When the end of data was read.
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    transactions: Mutex<Vec<Transaction>>,
    connections: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    tls_handshakes: AtomicUsize,
    sockets: Mutex<Vec<TcpStream>>,
    /// Ends of data answered so far (for `Script::final_replies_first`).
    finals: AtomicUsize,
    /// Every end-of-data reply given, with when (successful or not).
    replies: Mutex<Vec<(Instant, String)>>,
}

/// A running receiver; dropping it stops it.
pub struct Receiver {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Binds `addr` (any 127.x address works on Linux; port 0 picks one) and starts serving.
    pub fn start(addr: &str, script: Script) -> Receiver {
        Receiver::try_start(addr, script).expect("bind receiver")
    }

    /// Like [`Receiver::start`], but a failed bind is returned (a fixed port may have been taken
    /// since it was found free).
    pub fn try_start(addr: &str, script: Script) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let tls = script.tls.as_ref().map(server_config);
        let script = Arc::new(script);
        let accept = {
            let (stop, shared) = (stop.clone(), shared.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (shared, script, tls) =
                                (shared.clone(), script.clone(), tls.clone());
                            if let Ok(clone) = stream.try_clone() {
                                shared.sockets.lock().unwrap().push(clone);
                            }
                            thread::spawn(move || serve(stream, &script, tls, &shared));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Receiver {
            addr,
            stop,
            shared,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every accepted message so far, in order.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.shared.transactions.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most connections open at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_open.load(Ordering::SeqCst)
    }

    /// Successful TLS handshakes so far.
    pub fn tls_handshakes(&self) -> usize {
        self.shared.tls_handshakes.load(Ordering::SeqCst)
    }

    /// Every reply given to an end of data so far, with when.
    pub fn final_replies(&self) -> Vec<(Instant, String)> {
        self.shared.replies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for socket in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn server_config(id: &TlsIdentity) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = id
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_pkcs8.clone()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server cert");
    Arc::new(config)
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// One connection's reading side: a line buffer over the stream.
struct Lines {
    conn: Conn,
    buf: Vec<u8>,
}

impl Lines {
    /// The next line with its line ending, or `None` at EOF.
    fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Some(self.buf.drain(..=i).collect());
            }
            let mut chunk = [0u8; 8192];
            match self.conn.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn reply(&mut self, script: &Script, text: &str) -> bool {
        if !script.reply_delay.is_zero() {
            thread::sleep(script.reply_delay);
        }
        self.conn
            .write_all(format!("{text}\r\n").as_bytes())
            .is_ok()
            && self.conn.flush().is_ok()
    }
}

/// Counts an open connection, and closes it for good when `serve` returns (the clone kept for
/// `Drop for Receiver` would otherwise keep it open).
struct OpenGuard<'a>(&'a Shared, Option<TcpStream>);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if let Some(socket) = &self.1 {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(
    stream: TcpStream,
    script: &Script,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Shared,
) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_open.fetch_max(open, Ordering::SeqCst);
    let _guard = OpenGuard(shared, stream.try_clone().ok());
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let mut lines = Lines {
        conn: Conn::Plain(stream),
        buf: Vec::new(),
    };
    if !lines.reply(script, &script.greeting) || !script.greeting.starts_with('2') {
        return;
    }
    let mut helo = String::new();
    let mut in_tls = false;
    let mut tx: Option<Transaction> = None;
    while let Some(line) = lines.next() {
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or_default().to_string();
        let reply = match verb.as_str() {
            "EHLO" if script.ehlo_refused => "502 5.5.1 EHLO not implemented".to_string(),
            "EHLO" => {
                helo = text[4..].trim().to_string();
                tx = None;
                ehlo_reply(script, in_tls)
            }
            "HELO" => {
                helo = text[4..].trim().to_string();
                tx = None;
                "250 receiver.test".to_string()
            }
            "STARTTLS" if script.tls.is_some() && !in_tls => {
                if !lines.reply(script, "220 2.0.0 ready to start TLS") {
                    return;
                }
                // Plaintext pipelined after STARTTLS is an injection attempt (CVE-2011-0411).
                if !lines.buf.is_empty() {
                    return;
                }
                let Conn::Plain(tcp) = lines.conn else { return };
                let Some(config) = tls.clone() else { return };
                let Ok(server) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(server, tcp);
                while stream.conn.is_handshaking() {
                    if stream.conn.complete_io(&mut stream.sock).is_err() {
                        return;
                    }
                }
                shared.tls_handshakes.fetch_add(1, Ordering::SeqCst);
                lines.conn = Conn::Tls(Box::new(stream));
                in_tls = true;
                helo.clear();
                tx = None;
                continue;
            }
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                if script.mail_reply.starts_with('2') {
                    tx = Some(Transaction {
                        helo: helo.clone(),
                        mail_from: text[10..].to_string(),
                        rcpts: Vec::new(),
                        raw: Vec::new(),
                        data: Vec::new(),
                        tls: in_tls,
                        pipelined: !lines.buf.is_empty(),
                        peer,
                        at: Instant::now(),
                    });
                }
                script.mail_reply.clone()
            }
            "RCPT" if upper.starts_with("RCPT TO:") => match tx.as_mut() {
                None => "503 5.5.1 MAIL first".to_string(),
                Some(t) => {
                    let rcpt = text[8..].trim().to_string();
                    let local = rcpt.trim_start_matches('<').to_ascii_lowercase();
                    if local.starts_with("close-") {
                        lines.reply(script, "421 4.3.2 shutting down");
                        return;
                    }
                    if local.starts_with("temp-") {
                        "451 4.2.0 try again later".to_string()
                    } else if local.starts_with("perm-") {
                        "550 5.1.1 no such user".to_string()
                    } else {
                        t.rcpts.push(rcpt);
                        "250 2.1.5 recipient ok".to_string()
                    }
                }
            },
            "DATA" => match tx.take() {
                Some(mut t) if !t.rcpts.is_empty() => {
                    if !lines.reply(script, &script.data_reply) {
                        return;
                    }
                    if !script.data_reply.starts_with('3') {
                        continue;
                    }
                    loop {
                        let Some(line) = lines.next() else { return };
                        t.raw.extend_from_slice(&line);
                        if line == b".\r\n" {
                            break;
                        }
                        if script.disconnect_mid_data {
                            return;
                        }
                        t.data
                            .extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                    }
                    let n = shared.finals.fetch_add(1, Ordering::SeqCst);
                    let reply = script
                        .final_replies_first
                        .get(n)
                        .unwrap_or(&script.final_reply)
                        .clone();
                    t.at = Instant::now();
                    shared.replies.lock().unwrap().push((t.at, reply.clone()));
                    if reply.starts_with('2') {
                        shared.transactions.lock().unwrap().push(t);
                    }
                    reply
                }
                _ => "554 5.5.1 no valid recipients".to_string(),
            },
            "RSET" => {
                tx = None;
                "250 2.0.0 reset".to_string()
            }
            "NOOP" => "250 2.0.0 ok".to_string(),
            "QUIT" => {
                lines.reply(script, "221 2.0.0 bye");
                return;
            }
            _ => "500 5.5.2 unrecognised command".to_string(),
        };
        if !lines.reply(script, &reply) {
            return;
        }
    }
}

fn ehlo_reply(script: &Script, in_tls: bool) -> String {
    let mut lines = vec!["receiver.test hello".to_string()];
    if script.pipelining {
        lines.push("PIPELINING".into());
    }
    if let Some(n) = script.size {
        lines.push(format!("SIZE {n}"));
    }
    if script.eightbitmime {
        lines.push("8BITMIME".into());
    }
    if script.smtputf8 {
        lines.push("SMTPUTF8".into());
    }
    if script.tls.is_some() && !in_tls {
        lines.push("STARTTLS".into());
    }
    lines.push("ENHANCEDSTATUSCODES".into());
    let n = lines.len();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }))
        .collect::<Vec<_>>()
        .join("\r\n")
}
