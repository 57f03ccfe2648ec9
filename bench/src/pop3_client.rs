//! A blocking POP3 client (RFC 1939): USER/PASS, STAT, RETR and QUIT, nothing deleted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::ClientError;
use crate::lines::LineReader;

/// RFC 2449 §4: a status line is at most 512 octets; allow slack.
const MAX_STATUS_LINE: usize = 2048;
/// Message lines should stay under 1000 octets (RFC 5322 §2.1.1) but real mail breaks that.
const MAX_DATA_LINE: usize = 1024 * 1024;

/// Parses a status line: `Ok(text)` for `+OK text`, `Err(Rejected)` for `-ERR text`.
pub fn parse_status(line: &[u8]) -> Result<String, ClientError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    if let Some(rest) = text.strip_prefix("+OK")
        && (rest.is_empty() || rest.starts_with(' '))
    {
        return Ok(rest.trim_start().to_string());
    }
    if text.starts_with("-ERR") {
        return Err(ClientError::Rejected(text.to_string()));
    }
    Err(ClientError::Malformed(text.to_string()))
}

/// Parses the `+OK` text of STAT: `nn mm` (RFC 1939 §5) into (messages, octets).
pub fn parse_stat(text: &str) -> Result<(u64, u64), ClientError> {
    let mut words = text.split_ascii_whitespace();
    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
    match (number(), number()) {
        (Some(count), Some(octets)) => Ok((count, octets)),
        _ => Err(ClientError::Malformed(format!("STAT reply {text:?}"))),
    }
}

/// Reads a multi-line response body up to the lone `.` line (RFC 1939 §3) and returns how many
/// bytes it had, as sent (still dot-stuffed, CRLFs included, terminator excluded).
pub fn read_multiline<R: Read>(reader: &mut LineReader<R>) -> Result<u64, ClientError> {
    let mut bytes = 0u64;
    loop {
        let line = reader.read_line(MAX_DATA_LINE)?;
        if line == b".\r\n" || line == b".\n" {
            return Ok(bytes);
        }
        bytes += line.len() as u64;
    }
}

/// One logged-in-or-not POP3 connection.
pub struct Pop3Connection {
    reader: LineReader<TcpStream>,
}

impl Pop3Connection {
    /// Connects and reads the `+OK` greeting.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut conn = Pop3Connection {
            reader: LineReader::new(stream),
        };
        parse_status(conn.reader.read_line(MAX_STATUS_LINE)?)?;
        Ok(conn)
    }

    /// USER then PASS (RFC 1939 §7).
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.command(&format!("USER {user}\r\n"))?;
        self.command(&format!("PASS {password}\r\n"))?;
        Ok(())
    }

    /// STAT: (messages, octets) in the maildrop.
    pub fn stat(&mut self) -> Result<(u64, u64), ClientError> {
        parse_stat(&self.command("STAT\r\n")?)
    }

    /// RETR one message; returns its size as received.
    pub fn retr(&mut self, number: u64) -> Result<u64, ClientError> {
        self.command(&format!("RETR {number}\r\n"))?;
        read_multiline(&mut self.reader)
    }

    /// QUIT without any DELE, so the maildrop is left as it was.
    pub fn quit(mut self) -> Result<(), ClientError> {
        self.command("QUIT\r\n").map(|_| ())
    }

    fn command(&mut self, line: &str) -> Result<String, ClientError> {
        self.reader.get_mut().write_all(line.as_bytes())?;
        parse_status(self.reader.read_line(MAX_STATUS_LINE)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        let cases: &[(&[u8], Result<&str, &str>)] = &[
            (b"+OK ready\r\n", Ok("ready")),
            (b"+OK\r\n", Ok("")),
            (b"+OK 2 320\n", Ok("2 320")),
            (b"-ERR no such message\r\n", Err("rejected")),
            (b"-ERR\r\n", Err("rejected")),
            (b"+OKAY\r\n", Err("malformed")),
            (b"hello\r\n", Err("malformed")),
        ];
        for (line, want) in cases {
            match (parse_status(line), want) {
                (Ok(text), Ok(w)) => assert_eq!(text, *w),
                (Err(ClientError::Rejected(_)), Err("rejected")) => {}
                (Err(ClientError::Malformed(_)), Err("malformed")) => {}
                (got, _) => panic!("{line:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn parses_stat() {
        assert_eq!(parse_stat("2 320").unwrap(), (2, 320));
        assert_eq!(parse_stat("0 0 extra").unwrap(), (0, 0));
        assert!(parse_stat("2").is_err());
        assert!(parse_stat("x 1").is_err());
    }

    #[test]
    fn reads_multiline_bodies_without_unstuffing() {
        let data = b"Subject: x\r\n\r\n..dot\r\n.\r\n+OK next\r\n";
        let mut reader = LineReader::new(&data[..]);
        assert_eq!(read_multiline(&mut reader).unwrap(), 21);
        assert_eq!(
            parse_status(reader.read_line(MAX_STATUS_LINE).unwrap()).unwrap(),
            "next"
        );
        let truncated = b"line\r\n";
        let mut reader = LineReader::new(&truncated[..]);
        assert!(matches!(
            read_multiline(&mut reader),
            Err(ClientError::Closed)
        ));
    }

    use crate::test_server::{line, send, serve_once};

    #[test]
    fn logs_in_stats_retrieves_and_quits_over_a_socket() {
        let (addr, server) = serve_once(|r, w| {
            send(w, "+OK POP3 ready\r\n");
            for (expect, reply) in [
                ("USER u1@example.test\r\n", "+OK\r\n"),
                ("PASS secret\r\n", "+OK logged in\r\n"),
                ("STAT\r\n", "+OK 2 30\r\n"),
                (
                    "RETR 1\r\n",
                    "+OK 14 octets\r\nSubject: a\r\n\r\n..x\r\n.\r\n",
                ),
                ("RETR 2\r\n", "-ERR no such message\r\n"),
                ("QUIT\r\n", "+OK bye\r\n"),
            ] {
                assert_eq!(line(r), expect);
                send(w, reply);
            }
            assert_eq!(line(r), "", "no DELE, nothing after QUIT");
        });
        let mut conn = Pop3Connection::connect(addr, Duration::from_secs(5)).unwrap();
        conn.login("u1@example.test", "secret").unwrap();
        assert_eq!(conn.stat().unwrap(), (2, 30));
        assert_eq!(conn.retr(1).unwrap(), 19);
        assert!(matches!(conn.retr(2), Err(ClientError::Rejected(_))));
        conn.quit().unwrap();
        server.join().unwrap();
    }
}
