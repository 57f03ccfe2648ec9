//! The SMTP client as a sans-IO state machine: replies in, commands out, one transaction at a
//! time. The driver (`connection.rs`) moves the bytes and runs the clocks.
//!
//! Conversation: greeting, EHLO (HELO when EHLO gets a 5xx, RFC 5321 §3.2), STARTTLS and a new
//! EHLO when the policy says so (RFC 3207 §4.2), then transactions: MAIL, RCPT × n, DATA, body,
//! final reply; with PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write.
//!
//! Choices worth knowing:
//! - No accepted recipient but the server says 354 anyway (pipelined DATA): send just `.`
//!   (RFC 2920 §3.1), ignore the reply, then RSET.
//! - 8-bit body, peer without 8BITMIME: sent as it is, as qmail and Postfix do by default; a
//!   downgrade to 7 bit would mean re-encoding MIME parts and breaking DKIM signatures.
//! - SMTPUTF8 needed, peer without it: no downgrade (RFC 6531 §3.4 allows none); the recipients
//!   that need it fail with 5.6.7, all of them when the sender or the header needs it.
//! - A 421 in a transaction ends the connection: recipients already rejected keep their reply,
//!   every other one gets the 421 (deferred).

use super::capabilities::Capabilities;
use super::checks::{local, local_checks};
use super::outcome::{ClientError, ClientErrorKind, RecipientResult, Stage};
use super::reply::Reply;
use crate::delivery::report::StatusCode;
use std::collections::VecDeque;

/// The STARTTLS policy for one connection; mirrors `config::TlsPolicySetting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate (RFC 7435); plaintext when not offered.
    Opportunistic,
    /// STARTTLS required, and the certificate must verify for the server name.
    Verify,
}

/// One message to send: the envelope and the body as queued (CRLF or bare-LF lines, not
/// dot-stuffed).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub sender: &'a str,
    pub recipients: &'a [&'a str],
    pub body: &'a [u8],
    /// The body has octets above 127 (RFC 6152 BODY=8BITMIME).
    pub body_8bit: bool,
    /// The header section needs SMTPUTF8 (RFC 6531); non-ASCII addresses are detected here.
    pub smtputf8: bool,
}

/// Which clock the driver runs while it waits for the next reply (RFC 5321 §4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Greeting,
    Command,
    /// The reply to DATA (354).
    DataInit,
    /// The reply to the end of data.
    Final,
}

/// What the driver must do next. In every case it first writes what the call put in `out`.
#[derive(Debug)]
pub enum Action {
    /// Read the next reply, waiting at most this clock.
    Read(Wait),
    /// The server said 220 to STARTTLS: run the TLS handshake, then call `tls_established`.
    StartTls,
    /// Write the encoded body, then read the final reply with [`Wait::Final`].
    SendBody,
    /// Ready for a transaction.
    Ready,
    /// The transaction is over; results in recipient order.
    Done(Vec<RecipientResult>),
    /// The connection is over (QUIT answered).
    Closed,
    /// The connection failed; close it.
    Fail(ClientError),
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
}

#[derive(Debug)]
struct Transaction {
    results: Vec<Option<RecipientResult>>,
    /// Written commands whose replies are still due, in order.
    due: VecDeque<Expect>,
    /// Commands not yet written (no PIPELINING: one at a time).
    queued: VecDeque<(Expect, Vec<u8>)>,
    mail_ok: bool,
    accepted: Vec<usize>,
}

#[derive(Debug)]
enum State {
    ExpectGreeting,
    ExpectEhlo {
        after_tls: bool,
    },
    ExpectHelo {
        after_tls: bool,
    },
    ExpectStartTls,
    ExpectTlsHandshake,
    Ready,
    ExpectTransactionReplies(Transaction),
    ExpectFinal(Transaction),
    /// After the lone `.` sent when no recipient was accepted.
    ExpectDiscardedFinal(Transaction),
    ExpectRset(Transaction),
    ExpectQuit,
    Closed,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Session {
    state: State,
    helo_name: String,
    tls: TlsMode,
    tls_active: bool,
    caps: Capabilities,
    greeting_name: String,
    usable: bool,
}

impl Session {
    /// A session waiting for the greeting: the driver's first step is `Action::Read(Greeting)`.
    pub fn new(helo_name: &str, tls: TlsMode) -> Session {
        Session {
            state: State::ExpectGreeting,
            helo_name: helo_name.to_string(),
            tls,
            tls_active: false,
            caps: Capabilities::default(),
            greeting_name: String::new(),
            usable: true,
        }
    }

    /// The first word of the greeting (the server's name for itself).
    pub fn greeting_name(&self) -> &str {
        &self.greeting_name
    }

    /// What the last EHLO advertised (empty after HELO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Ready for another transaction, and nothing has gone wrong (no 421, protocol error...).
    pub fn is_reusable(&self) -> bool {
        self.usable && matches!(self.state, State::Ready)
    }

    /// Where the conversation is, for errors the driver detects.
    pub fn stage(&self) -> Stage {
        stage_of(&self.state)
    }

    /// The driver gave up (timeout, I/O error): nothing more will happen on this connection.
    pub fn abort(&mut self) {
        self.usable = false;
        self.state = State::Closed;
    }

    /// Feeds one reply; commands to send go to `out`.
    pub fn on_reply(&mut self, reply: Reply, out: &mut Vec<u8>) -> Action {
        let state = std::mem::replace(&mut self.state, State::Closed);
        if reply.code == 421 {
            // RFC 5321 §3.8: the server is closing the channel; no QUIT.
            self.usable = false;
            return match state {
                State::ExpectQuit => Action::Closed,
                State::ExpectTransactionReplies(tx)
                | State::ExpectFinal(tx)
                | State::ExpectDiscardedFinal(tx)
                | State::ExpectRset(tx) => {
                    let stage = tx.current_stage();
                    Action::Done(tx.finish(&reply, stage))
                }
                other => Action::Fail(ClientError::new(
                    stage_of(&other),
                    ClientErrorKind::Rejected(reply),
                )),
            };
        }
        match state {
            State::ExpectGreeting => {
                if reply.code / 100 != 2 {
                    // RFC 5321 §3.1: after a 554 greeting the client should send QUIT.
                    return self.fail(Stage::Greeting, reply, out);
                }
                self.greeting_name = reply
                    .lines
                    .first()
                    .and_then(|l| l.split_whitespace().next())
                    .unwrap_or_default()
                    .to_string();
                self.send_ehlo(false, out)
            }
            State::ExpectEhlo { after_tls } => {
                if reply.code / 100 == 2 {
                    self.caps = Capabilities::from_ehlo(&reply);
                    self.after_hello(after_tls, out)
                } else if reply.code / 100 == 5 {
                    // RFC 5321 §4.1.1.1: an old server that does not know EHLO gets HELO.
                    push_line(out, &["HELO ", &self.helo_name]);
                    self.state = State::ExpectHelo { after_tls };
                    Action::Read(Wait::Command)
                } else {
                    self.fail(Stage::Helo, reply, out)
                }
            }
            State::ExpectHelo { after_tls } => {
                if reply.code / 100 != 2 {
                    return self.fail(Stage::Helo, reply, out);
                }
                self.caps = Capabilities::default();
                self.after_hello(after_tls, out)
            }
            State::ExpectStartTls => {
                if reply.code == 220 {
                    self.state = State::ExpectTlsHandshake;
                    Action::StartTls
                } else if self.tls == TlsMode::Verify {
                    self.fail_with(Stage::StartTls, ClientErrorKind::TlsRequired, out)
                } else {
                    // RFC 3207 §4: the client may go on without TLS.
                    self.state = State::Ready;
                    Action::Ready
                }
            }
            State::ExpectTransactionReplies(tx) => self.transaction_reply(tx, reply, out),
            State::ExpectFinal(mut tx) => {
                for i in std::mem::take(&mut tx.accepted) {
                    tx.set(i, &reply, Stage::Data);
                }
                self.state = State::Ready;
                Action::Done(tx.finish(&reply, Stage::Data))
            }
            State::ExpectDiscardedFinal(tx) => self.rset(tx, out),
            State::ExpectRset(tx) => {
                // A refused RSET leaves the server's state unknown: do not reuse it.
                self.usable &= reply.code / 100 == 2;
                self.state = State::Ready;
                Action::Done(tx.finish(&reply, Stage::Data))
            }
            State::ExpectQuit => Action::Closed,
            other @ (State::Ready | State::ExpectTlsHandshake | State::Closed) => {
                self.usable = false;
                Action::Fail(ClientError::new(
                    stage_of(&other),
                    ClientErrorKind::Protocol(format!("unexpected reply: {reply}")),
                ))
            }
        }
    }

    /// The TLS handshake succeeded: forget everything learnt in plaintext and EHLO again
    /// (RFC 3207 §4.2).
    pub fn tls_established(&mut self, out: &mut Vec<u8>) -> Action {
        self.tls_active = true;
        self.caps = Capabilities::default();
        self.send_ehlo(true, out)
    }

    /// Starts a transaction for `msg`. Recipients refused here get [`Stage::Local`] results.
    pub fn begin(&mut self, msg: &Outgoing<'_>, out: &mut Vec<u8>) -> Action {
        if !matches!(self.state, State::Ready) {
            self.usable = false;
            return Action::Fail(ClientError::new(
                Stage::Mail,
                ClientErrorKind::Protocol("transaction started on a busy connection".into()),
            ));
        }
        let mut tx = Transaction {
            results: vec![None; msg.recipients.len()],
            due: VecDeque::new(),
            queued: VecDeque::new(),
            mail_ok: false,
            accepted: Vec::new(),
        };
        let utf8 = local_checks(&self.caps, msg, &mut tx.results);
        let to_send: Vec<usize> = (0..msg.recipients.len())
            .filter(|&i| tx.results.get(i).is_some_and(Option::is_none))
            .collect();
        if to_send.is_empty() {
            self.state = State::Ready;
            let unused = local(451, StatusCode(4, 3, 0), "no recipient");
            return Action::Done(tx.finish(&unused, Stage::Local));
        }
        let mut mail = format!("MAIL FROM:<{}>", msg.sender);
        if self.caps.size.is_some() {
            // RFC 1870 §6: an estimate of the message size.
            mail.push_str(&format!(" SIZE={}", msg.body.len()));
        }
        if msg.body_8bit && self.caps.eightbitmime {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let mut commands = vec![(Expect::Mail, mail)];
        for &i in &to_send {
            let rcpt = msg.recipients.get(i).copied().unwrap_or_default();
            commands.push((Expect::Rcpt(i), format!("RCPT TO:<{rcpt}>")));
        }
        commands.push((Expect::Data, "DATA".to_string()));
        for (expect, line) in commands {
            let line = [line.as_str(), "\r\n"].concat().into_bytes();
            // RFC 2920 §3.1: with PIPELINING the whole group goes in one write.
            if self.caps.pipelining || tx.due.is_empty() {
                out.extend_from_slice(&line);
                tx.due.push_back(expect);
            } else {
                tx.queued.push_back((expect, line));
            }
        }
        self.state = State::ExpectTransactionReplies(tx);
        Action::Read(Wait::Command)
    }

    /// Ends the session politely.
    pub fn quit(&mut self, out: &mut Vec<u8>) -> Action {
        self.usable = false;
        out.extend_from_slice(b"QUIT\r\n");
        self.state = State::ExpectQuit;
        Action::Read(Wait::Command)
    }

    fn transaction_reply(
        &mut self,
        mut tx: Transaction,
        reply: Reply,
        out: &mut Vec<u8>,
    ) -> Action {
        let Some(expect) = tx.due.pop_front() else {
            self.usable = false;
            return Action::Fail(ClientError::new(
                Stage::Data,
                ClientErrorKind::Protocol(format!("unexpected reply: {reply}")),
            ));
        };
        let ok = reply.code / 100 == 2;
        match expect {
            Expect::Mail if ok => tx.mail_ok = true,
            Expect::Mail => {
                // Every recipient shares the MAIL refusal; unsent commands are dropped.
                for i in 0..tx.results.len() {
                    tx.set(i, &reply, Stage::Mail);
                }
                tx.queued.clear();
            }
            Expect::Rcpt(i) if tx.mail_ok && ok => tx.accepted.push(i),
            Expect::Rcpt(i) => tx.set(i, &reply, Stage::Rcpt),
            Expect::Data => {
                let go = reply.code == 354;
                if go && tx.mail_ok && !tx.accepted.is_empty() {
                    self.state = State::ExpectFinal(tx);
                    return Action::SendBody;
                }
                if go {
                    out.extend_from_slice(b".\r\n");
                    self.state = State::ExpectDiscardedFinal(tx);
                    return Action::Read(Wait::Final);
                }
                for i in std::mem::take(&mut tx.accepted) {
                    tx.set(i, &reply, Stage::Data);
                }
                return self.rset(tx, out);
            }
        }
        if !tx.due.is_empty() {
            return self.wait_in(tx);
        }
        // Without PIPELINING: do not send DATA when nobody was accepted (RFC 5321 §3.3).
        let nobody = !tx.mail_ok
            || (tx.accepted.is_empty() && matches!(tx.queued.front(), Some((Expect::Data, _))));
        match tx.queued.pop_front() {
            Some((expect, line)) if !nobody => {
                out.extend_from_slice(&line);
                tx.due.push_back(expect);
                self.wait_in(tx)
            }
            _ => self.rset(tx, out),
        }
    }

    fn wait_in(&mut self, tx: Transaction) -> Action {
        let wait = match tx.due.front() {
            Some(Expect::Data) => Wait::DataInit,
            _ => Wait::Command,
        };
        self.state = State::ExpectTransactionReplies(tx);
        Action::Read(wait)
    }

    fn rset(&mut self, tx: Transaction, out: &mut Vec<u8>) -> Action {
        out.extend_from_slice(b"RSET\r\n");
        self.state = State::ExpectRset(tx);
        Action::Read(Wait::Command)
    }

    fn send_ehlo(&mut self, after_tls: bool, out: &mut Vec<u8>) -> Action {
        push_line(out, &["EHLO ", &self.helo_name]);
        self.state = State::ExpectEhlo { after_tls };
        Action::Read(Wait::Command)
    }

    fn after_hello(&mut self, after_tls: bool, out: &mut Vec<u8>) -> Action {
        if !after_tls && self.tls != TlsMode::None && self.caps.starttls {
            out.extend_from_slice(b"STARTTLS\r\n");
            self.state = State::ExpectStartTls;
            return Action::Read(Wait::Command);
        }
        if self.tls == TlsMode::Verify && !self.tls_active {
            return self.fail_with(Stage::StartTls, ClientErrorKind::TlsRequired, out);
        }
        self.state = State::Ready;
        Action::Ready
    }

    fn fail(&mut self, stage: Stage, reply: Reply, out: &mut Vec<u8>) -> Action {
        self.fail_with(stage, ClientErrorKind::Rejected(reply), out)
    }

    fn fail_with(&mut self, stage: Stage, kind: ClientErrorKind, out: &mut Vec<u8>) -> Action {
        out.extend_from_slice(b"QUIT\r\n");
        self.usable = false;
        self.state = State::Closed;
        Action::Fail(ClientError::new(stage, kind))
    }
}

impl Transaction {
    /// Sets recipient `i`'s result unless something already decided it.
    fn set(&mut self, i: usize, reply: &Reply, stage: Stage) {
        if let Some(slot) = self.results.get_mut(i) {
            slot.get_or_insert_with(|| RecipientResult {
                reply: reply.clone(),
                stage,
            });
        }
    }

    fn current_stage(&self) -> Stage {
        match self.due.front() {
            Some(Expect::Mail) => Stage::Mail,
            Some(Expect::Rcpt(_)) => Stage::Rcpt,
            _ => Stage::Data,
        }
    }

    /// Every recipient still undecided gets `reply`.
    fn finish(self, reply: &Reply, stage: Stage) -> Vec<RecipientResult> {
        self.results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| RecipientResult {
                    reply: reply.clone(),
                    stage,
                })
            })
            .collect()
    }
}

fn stage_of(state: &State) -> Stage {
    match state {
        State::ExpectGreeting => Stage::Greeting,
        State::ExpectEhlo { .. } | State::ExpectHelo { .. } => Stage::Helo,
        State::ExpectStartTls | State::ExpectTlsHandshake => Stage::StartTls,
        State::ExpectTransactionReplies(tx) => tx.current_stage(),
        _ => Stage::Data,
    }
}

fn push_line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}
