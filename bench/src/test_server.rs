//! Scripted one-connection servers on 127.0.0.1:0, for socket-level tests of the clients.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

/// Accepts one connection and runs `script` on it in a thread; join the handle to surface the
/// script's assertion failures.
pub fn serve_once<F>(script: F) -> (SocketAddr, JoinHandle<()>)
where
    F: FnOnce(&mut BufReader<TcpStream>, &mut TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        script(&mut reader, &mut writer);
    });
    (addr, handle)
}

/// Reads one line (with its CRLF) from the client.
pub fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    reader.read_line(&mut s).expect("read line");
    s
}

/// Reads lines until (and including) one equal to `last`; returns them all concatenated.
pub fn until(reader: &mut BufReader<TcpStream>, last: &str) -> String {
    let mut all = String::new();
    loop {
        let l = line(reader);
        assert!(!l.is_empty(), "client closed before {last:?}; got {all:?}");
        all.push_str(&l);
        if l == last {
            return all;
        }
    }
}

pub fn send(writer: &mut TcpStream, text: &str) {
    writer.write_all(text.as_bytes()).expect("write");
}

/// A minimal pipelining SMTP server that accepts every message, one thread per connection,
/// counting connections and messages; it runs until the test process ends.
pub fn accept_all_smtp() -> (SocketAddr, std::sync::Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let counts = std::sync::Arc::new(Counts::default());
    let shared = std::sync::Arc::clone(&counts);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counts = std::sync::Arc::clone(&shared);
            thread::spawn(move || smtp_session(stream, &counts));
        }
    });
    (addr, counts)
}

#[derive(Default)]
pub struct Counts {
    pub connections: std::sync::atomic::AtomicUsize,
    pub messages: std::sync::atomic::AtomicUsize,
}

fn smtp_session(stream: TcpStream, counts: &Counts) {
    use std::sync::atomic::Ordering::Relaxed;
    counts.connections.fetch_add(1, Relaxed);
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    let _ = w.write_all(b"220 fake\r\n");
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        let reply: &[u8] = match l.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
            "EHLO" => b"250-fake\r\n250 PIPELINING\r\n",
            "DATA" => {
                let _ = w.write_all(b"354 go\r\n");
                loop {
                    let mut d = String::new();
                    if r.read_line(&mut d).unwrap_or(0) == 0 {
                        return;
                    }
                    if d == ".\r\n" {
                        break;
                    }
                }
                counts.messages.fetch_add(1, Relaxed);
                b"250 queued\r\n"
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n");
                return;
            }
            _ => b"250 ok\r\n",
        };
        let _ = w.write_all(reply);
    }
}
