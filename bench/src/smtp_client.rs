//! A blocking SMTP client that speaks just enough ESMTP (RFC 5321, PIPELINING per RFC 2920)
//! to push messages at a server as fast as it will take them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ClientError;
use crate::lines::LineReader;
use crate::tls_client::{Stream, TlsMode};

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; we allow some slack for chatty servers.
const MAX_REPLY_LINE: usize = 2048;
/// A multi-line reply (e.g. EHLO) longer than this is treated as a broken server.
const MAX_REPLY_LINES: usize = 100;

/// One SMTP reply: its code and its text lines (without the code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// `code text` of the first line, for error messages.
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }

    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Parses one reply line into `(code, is_last_line, text)` (RFC 5321 §4.2: `ddd-text` continues,
/// `ddd text` or bare `ddd` ends the reply).
pub fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, String), ClientError> {
    let malformed = || ClientError::Malformed(String::from_utf8_lossy(line).into_owned());
    let line = line.strip_suffix(b"\n").ok_or_else(malformed)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.get(..3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(malformed());
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Reads one complete (possibly multi-line) reply.
pub fn read_reply<R: Read>(reader: &mut LineReader<R>) -> Result<Reply, ClientError> {
    let mut lines = Vec::new();
    loop {
        let (code, last, text) = parse_reply_line(reader.read_line(MAX_REPLY_LINE)?)?;
        lines.push(text);
        if last {
            return Ok(Reply { code, lines });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(ClientError::Malformed(format!(
                "reply longer than {MAX_REPLY_LINES} lines"
            )));
        }
    }
}

/// True if an EHLO reply advertises `keyword` (RFC 5321 §4.1.1.1: one keyword per line after the first).
pub fn advertises(ehlo: &Reply, keyword: &str) -> bool {
    ehlo.lines.iter().skip(1).any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
    })
}

/// `MAIL`, every `RCPT` and `DATA` as one buffer, to be written at once (RFC 2920 §3.1).
pub fn transaction_commands(from: &str, recipients: &[String]) -> Vec<u8> {
    let mut out = format!("MAIL FROM:<{from}>\r\n");
    for rcpt in recipients {
        out.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
    }
    out.push_str("DATA\r\n");
    out.into_bytes()
}

/// What the server did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `250` after the end of data: the only reply counted as accepted.
    Accepted,
    /// Any other reply somewhere in the transaction (its summary).
    Rejected(String),
}

/// One open SMTP connection, past the greeting and EHLO.
pub struct SmtpConnection {
    reader: LineReader<Stream>,
    pipelining: bool,
}

impl SmtpConnection {
    /// Connects, sets TCP_NODELAY (so the last segment of a message is not held back by Nagle
    /// waiting for a delayed ACK), reads the greeting and says EHLO (HELO if EHLO is refused).
    #[cfg(test)]
    pub fn connect(addr: SocketAddr, helo: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::connect_tls(addr, helo, timeout, TlsMode::None, None)
    }

    /// [`SmtpConnection::connect`] secured as `tls` says, with `config` (needed unless
    /// `TlsMode::None`): STARTTLS after the first EHLO, or the handshake before the greeting.
    pub fn connect_tls(
        addr: SocketAddr,
        helo: &str,
        timeout: Duration,
        tls: TlsMode,
        config: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let needs_config =
            || config.ok_or_else(|| ClientError::Malformed("TLS without a client config".into()));
        let stream = match tls {
            TlsMode::Smtps => Stream::tls(stream, needs_config()?)?,
            TlsMode::None | TlsMode::Starttls => Stream::Plain(stream),
        };
        let mut conn = SmtpConnection {
            reader: LineReader::new(stream),
            pipelining: false,
        };
        let greeting = read_reply(&mut conn.reader)?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected(greeting.summary()));
        }
        if tls == TlsMode::Starttls {
            let ehlo = conn.command(format!("EHLO {helo}\r\n").as_bytes())?;
            if !advertises(&ehlo, "STARTTLS") {
                return Err(ClientError::Rejected("STARTTLS not offered".into()));
            }
            let reply = conn.command(b"STARTTLS\r\n")?;
            if reply.code != 220 {
                return Err(ClientError::Rejected(reply.summary()));
            }
            let Some(Stream::Plain(tcp)) = conn.reader.into_inner() else {
                return Err(ClientError::Malformed(
                    "bytes after the STARTTLS reply".into(),
                ));
            };
            conn = SmtpConnection {
                reader: LineReader::new(Stream::tls(tcp, needs_config()?)?),
                pipelining: false,
            };
        }
        let ehlo = conn.command(format!("EHLO {helo}\r\n").as_bytes())?;
        if ehlo.code == 250 {
            conn.pipelining = advertises(&ehlo, "PIPELINING");
        } else {
            let reply = conn.command(format!("HELO {helo}\r\n").as_bytes())?;
            if reply.code != 250 {
                return Err(ClientError::Rejected(reply.summary()));
            }
        }
        Ok(conn)
    }

    /// Whether the server advertised PIPELINING.
    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// Sends one message. `message` must already be dot-stuffed and end with `.\r\n`; it goes out
    /// in one write together with its terminator. Returns how many recipients were refused too.
    pub fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<(Outcome, usize), ClientError> {
        let (data_reply, refused) = if self.pipelining {
            self.write(&transaction_commands(from, recipients))?;
            let mail = read_reply(&mut self.reader)?;
            let mut refused = 0;
            for _ in recipients {
                if !read_reply(&mut self.reader)?.is_positive() {
                    refused += 1;
                }
            }
            let data = read_reply(&mut self.reader)?;
            if !mail.is_positive() && data.code == 354 {
                // A server that took DATA after refusing MAIL is broken; end the data cleanly.
                self.write(b".\r\n")?;
                read_reply(&mut self.reader)?;
                return Ok((Outcome::Rejected(mail.summary()), refused));
            }
            if !mail.is_positive() {
                return Ok((Outcome::Rejected(mail.summary()), refused));
            }
            (data, refused)
        } else {
            let mail = self.command(format!("MAIL FROM:<{from}>\r\n").as_bytes())?;
            if !mail.is_positive() {
                return Ok((Outcome::Rejected(mail.summary()), 0));
            }
            let mut refused = 0;
            let mut last_refusal = String::new();
            for rcpt in recipients {
                let reply = self.command(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())?;
                if !reply.is_positive() {
                    refused += 1;
                    last_refusal = reply.summary();
                }
            }
            if refused == recipients.len() {
                self.reset()?;
                return Ok((Outcome::Rejected(last_refusal), refused));
            }
            (self.command(b"DATA\r\n")?, refused)
        };
        if data_reply.code != 354 {
            // RFC 2920 §3.1: a refused DATA leaves the session ready for the next MAIL.
            return Ok((Outcome::Rejected(data_reply.summary()), refused));
        }
        self.write(message)?;
        let done = read_reply(&mut self.reader)?;
        if done.code == 250 {
            Ok((Outcome::Accepted, refused))
        } else {
            Ok((Outcome::Rejected(done.summary()), refused))
        }
    }

    /// RSET, to abandon a half-built transaction.
    pub fn reset(&mut self) -> Result<(), ClientError> {
        self.command(b"RSET\r\n").map(|_| ())
    }

    /// QUIT politely; the reply does not matter any more.
    pub fn quit(mut self) {
        let _ = self.command(b"QUIT\r\n");
    }

    fn command(&mut self, line: &[u8]) -> Result<Reply, ClientError> {
        self.write(line)?;
        read_reply(&mut self.reader)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.reader.get_mut().write_all(bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reply_lines() {
        let ok: &[(&[u8], u16, bool, &str)] = &[
            (b"250 OK\r\n", 250, true, "OK"),
            (b"250-PIPELINING\r\n", 250, false, "PIPELINING"),
            (b"354\r\n", 354, true, ""),
            (b"550 5.1.1 no such user\n", 550, true, "5.1.1 no such user"),
        ];
        for (line, code, last, text) in ok {
            let got = parse_reply_line(line).unwrap();
            assert_eq!(got, (*code, *last, text.to_string()), "{line:?}");
        }
        let bad: &[&[u8]] = &[
            b"25\r\n",
            b"abc ok\r\n",
            b"250xok\r\n",
            b"650 ok\r\n",
            b"250 ok",
        ];
        for line in bad {
            assert!(parse_reply_line(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn reads_multiline_replies_and_finds_keywords() {
        let data =
            b"250-mx.test hello\r\n250-SIZE 1000\r\n250-pipelining\r\n250 8BITMIME\r\n250 next\r\n";
        let mut reader = LineReader::new(&data[..]);
        let ehlo = read_reply(&mut reader).unwrap();
        assert_eq!(ehlo.code, 250);
        assert_eq!(ehlo.lines.len(), 4);
        assert!(advertises(&ehlo, "PIPELINING"));
        assert!(advertises(&ehlo, "SIZE"));
        assert!(
            !advertises(&ehlo, "mx.test"),
            "the greeting line is not a keyword"
        );
        assert!(!advertises(&ehlo, "STARTTLS"));
        assert_eq!(read_reply(&mut reader).unwrap().summary(), "250 next");
        assert!(matches!(read_reply(&mut reader), Err(ClientError::Closed)));
    }

    #[test]
    fn caps_reply_length() {
        let data = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        let mut reader = LineReader::new(data.as_bytes());
        assert!(matches!(
            read_reply(&mut reader),
            Err(ClientError::Malformed(_))
        ));
    }

    #[test]
    fn pipelines_a_whole_transaction() {
        let rcpts = vec!["a@x.test".to_string(), "b@x.test".to_string()];
        assert_eq!(
            transaction_commands("s@y.test", &rcpts),
            b"MAIL FROM:<s@y.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
        );
        assert_eq!(transaction_commands("", &[]), b"MAIL FROM:<>\r\nDATA\r\n");
    }

    use crate::test_server::{line, send, serve_once, until};

    #[test]
    fn sends_pipelined_transactions_over_a_socket() {
        let (addr, server) = serve_once(|r, w| {
            send(w, "220 test ESMTP\r\n");
            assert_eq!(line(r), "EHLO client.test\r\n");
            send(w, "250-test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n");
            // First message: accepted.
            let commands = until(r, "DATA\r\n");
            assert_eq!(
                commands,
                "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nDATA\r\n"
            );
            send(w, "250 ok\r\n250 ok\r\n354 go\r\n");
            assert_eq!(until(r, ".\r\n"), "..dot\r\nbody\r\n.\r\n");
            send(w, "250 2.0.0 queued\r\n");
            // Second message: its only recipient is refused, so DATA is too (RFC 2920 §3.1).
            until(r, "DATA\r\n");
            send(
                w,
                "250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n",
            );
            // Third message: refused after the data.
            until(r, "DATA\r\n");
            send(w, "250 ok\r\n250 ok\r\n354 go\r\n");
            until(r, ".\r\n");
            send(w, "452 4.3.1 queue full\r\n");
            assert_eq!(line(r), "QUIT\r\n");
            send(w, "221 bye\r\n");
        });
        let mut conn =
            SmtpConnection::connect(addr, "client.test", Duration::from_secs(5)).unwrap();
        assert!(conn.pipelining());
        let rcpt = vec!["a@y.test".to_string()];
        let data = crate::message::for_data(b".dot\r\nbody\r\n");
        assert_eq!(
            conn.send("s@x.test", &rcpt, &data).unwrap(),
            (Outcome::Accepted, 0)
        );
        assert_eq!(
            conn.send("s@x.test", &rcpt, &data).unwrap(),
            (Outcome::Rejected("554 5.5.1 no valid recipients".into()), 1)
        );
        assert_eq!(
            conn.send("s@x.test", &rcpt, &data).unwrap(),
            (Outcome::Rejected("452 4.3.1 queue full".into()), 0)
        );
        conn.quit();
        server.join().unwrap();
    }

    #[test]
    fn falls_back_to_one_command_at_a_time() {
        let (addr, server) = serve_once(|r, w| {
            send(w, "220 old\r\n");
            assert_eq!(line(r), "EHLO c.test\r\n");
            send(w, "502 what\r\n");
            assert_eq!(line(r), "HELO c.test\r\n");
            send(w, "250 hi\r\n");
            for (expect, reply) in [
                ("MAIL FROM:<s@x.test>\r\n", "250 ok\r\n"),
                ("RCPT TO:<a@y.test>\r\n", "550 no\r\n"),
                ("RCPT TO:<b@y.test>\r\n", "250 ok\r\n"),
                ("DATA\r\n", "354 go\r\n"),
            ] {
                assert_eq!(line(r), expect);
                send(w, reply);
            }
            until(r, ".\r\n");
            send(w, "250 ok\r\n");
        });
        let mut conn = SmtpConnection::connect(addr, "c.test", Duration::from_secs(5)).unwrap();
        assert!(!conn.pipelining());
        let rcpts = vec!["a@y.test".to_string(), "b@y.test".to_string()];
        let data = crate::message::for_data(b"x\r\n");
        assert_eq!(
            conn.send("s@x.test", &rcpts, &data).unwrap(),
            (Outcome::Accepted, 1)
        );
        server.join().unwrap();
    }

    #[test]
    fn refuses_a_server_that_does_not_greet() {
        let (addr, server) = serve_once(|_, w| send(w, "554 go away\r\n"));
        let err = SmtpConnection::connect(addr, "c.test", Duration::from_secs(5)).err();
        assert!(matches!(err, Some(ClientError::Rejected(r)) if r == "554 go away"));
        server.join().unwrap();
    }
}
