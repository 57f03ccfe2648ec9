//! A real DNS server on loopback for tests: `tests/support/dns_server.py` (dnslib does the
//! wire format) serving a zone the test writes, on UDP and TCP of one free port of 127.0.0.1.
//! Tests point ringmail's resolver at it; nothing ever asks the system's resolver.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dns_server.py");

/// A running loopback DNS server; killed when dropped.
pub struct DnsServer {
    child: Child,
    addr: SocketAddr,
    _dir: super::TestDir,
}

impl DnsServer {
    /// Serves `zone_text` (master-file syntax, plus `$SERVFAIL name.` lines: see the script).
    /// Panics if python3 with dnslib is missing (`scripts/install-test-deps` installs it).
    pub fn start(zone_text: &str) -> DnsServer {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = super::test_dir(&format!("dns-{n}"));
        let zone = dir.join("test.zone");
        std::fs::write(&zone, zone_text).unwrap();
        let python = super::python_with("dnslib", "python3-dnslib");
        let mut child = Command::new(&python)
            .arg(SCRIPT)
            .arg(&zone)
            // The server exits when its stdin closes, so it cannot outlive the test process.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} {SCRIPT}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("dns_server.py did not start within 10 s");
            }
        };
        let port: u16 = match line.trim().strip_prefix("READY ").map(str::parse) {
            Some(Ok(port)) => port,
            _ => {
                let _ = child.kill();
                panic!("dns_server.py said {line:?}, not `READY <port>`");
            }
        };
        let server = DnsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        server.wait_until_answering();
        server
    }

    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a hand-made query (the root's SOA) until an answer with its ID comes back.
    fn wait_until_answering(&self) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // RFC 1035 §4.1: header (ID 0x5a5a, RD, one question), then `.` SOA IN.
        let query = [
            0x5a, 0x5a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1,
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut reply = [0u8; 512];
        while Instant::now() < deadline {
            let _ = socket.send_to(&query, self.addr);
            if let Ok((n, _)) = socket.recv_from(&mut reply)
                && n >= 2
                && reply[..2] == [0x5a, 0x5a]
            {
                return;
            }
        }
        panic!("the loopback DNS server at {} never answered", self.addr);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
