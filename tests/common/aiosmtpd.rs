//! A receiving SMTP server that nobody here wrote, for end-to-end tests of mail leaving
//! ringmail: Python's aiosmtpd running `tests/support/sink.py`, which appends each message it
//! accepts to a file as one JSON line. `scripts/install-test-deps` installs aiosmtpd; this
//! module installs nothing.
//!
//! ```ignore
//! let sink = Sink::start("127.0.0.2");          // any free port on that address
//! // ... route mail to sink.addr() ...
//! let messages = sink.wait_for(1, Duration::from_secs(20));
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;

/// One message the sink accepted: the envelope and the DATA bytes (dot-unstuffed, CRLF line
/// ends as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

/// A running sink; killed, and its file removed, on drop.
pub struct Sink {
    child: Child,
    addr: SocketAddr,
    file: PathBuf,
}

impl Sink {
    /// Starts the sink on `ip` (e.g. `127.0.0.2`, or `::1`) at a free port, and waits until it
    /// accepts connections.
    pub fn start(ip: &str) -> Sink {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let file = std::env::temp_dir().join(format!(
            "ringmail-sink-{}-{}.jsonl",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&file);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sink.py");
        let mut child = Command::new(super::python_with("aiosmtpd", "python3-aiosmtpd"))
            .arg(&script)
            .arg(ip)
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/support/sink.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .and_then(|line| line.trim().strip_prefix("sink listening on ")?.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sink.py did not start on {ip} (its errors are above)");
        };
        let ip: std::net::IpAddr = ip.parse().expect("sink address is an IP");
        Sink {
            child,
            addr: SocketAddr::new(ip, port),
            file,
        }
    }

    /// Where the sink listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<SinkMessage> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        // Only whole lines: the last may still be being written.
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| parse_line(line).unwrap_or_else(|| panic!("bad sink line: {line}")))
            .collect()
    }

    /// Waits (at most `timeout`) until `n` messages have arrived, and returns all of them; the
    /// caller asserts on the count.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The JSON that sink.py writes: an object of strings and arrays of strings, ASCII only
/// (`ensure_ascii`), so this small reader is all the tests need.
#[derive(Debug)]
enum Json {
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
    Null,
}

fn parse_line(line: &str) -> Option<SinkMessage> {
    let mut reader = JsonReader {
        bytes: line.trim().as_bytes(),
        at: 0,
    };
    let Json::Obj(fields) = reader.value()? else {
        return None;
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let text = |value: &Json| match value {
        Json::Str(s) => Some(s.clone()),
        _ => None,
    };
    let from = match field("from")? {
        Json::Null => String::new(),
        other => text(other)?,
    };
    let Json::Arr(to) = field("to")? else {
        return None;
    };
    let to = to.iter().map(text).collect::<Option<Vec<_>>>()?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(text(field("data")?)?)
        .ok()?;
    Some(SinkMessage { from, to, data })
}

struct JsonReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonReader<'_> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        let hit = self.bytes.get(self.at) == Some(&byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn value(&mut self) -> Option<Json> {
        self.skip_space();
        match self.bytes.get(self.at)? {
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    if self.eat(b']') {
                        return Some(Json::Arr(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                if self.eat(b'}') {
                    return Some(Json::Obj(fields));
                }
                loop {
                    self.skip_space();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    fields.push((key, self.value()?));
                    if self.eat(b'}') {
                        return Some(Json::Obj(fields));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'n' if self
                .bytes
                .get(self.at..)
                .is_some_and(|r| r.starts_with(b"null")) =>
            {
                self.at += 4;
                Some(Json::Null)
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = std::str::from_utf8(self.bytes.get(self.at..self.at + 4)?).ok()?;
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    fn string(&mut self) -> Option<String> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut out = String::new();
        loop {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => return Some(out),
                b'\\' => {
                    let escape = *self.bytes.get(self.at)?;
                    self.at += 1;
                    match escape {
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            // A UTF-16 surrogate pair (RFC 8259 §7).
                            if (0xd800..0xdc00).contains(&code)
                                && self.bytes.get(self.at..self.at + 2) == Some(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4()?;
                                code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                            }
                            out.push(char::from_u32(code)?);
                        }
                        other => out.push(char::from(other)),
                    }
                }
                other => out.push(char::from(other)),
            }
        }
    }
}
