//! The POP3 session as a sans-IO state machine (RFC 1939 §3-§7, RFC 2449, RFC 2595, RFC 5034).
//!
//! The driver hands it lines and the results of the work it asked for; it returns [`Action`]s.
//! States are named after what they expect next:
//!
//! | state | AUTHORIZATION/TRANSACTION/UPDATE (RFC 1939 §3) | leaves on |
//! |---|---|---|
//! | `ExpectUser` | AUTHORIZATION | USER, APOP, AUTH |
//! | `ExpectPass` | AUTHORIZATION | PASS (anything else returns to `ExpectUser`) |
//! | `ExpectSaslResponse` | AUTHORIZATION | the RFC 5034 continuation line |
//! | `ExpectAuthResult` | AUTHORIZATION | [`Session::auth_result`] from the driver |
//! | `ExpectMailbox` | AUTHORIZATION | [`Session::mailbox_opened`] from the driver |
//! | `Transaction` | TRANSACTION | QUIT |
//! | `ExpectCommit` | UPDATE | [`Session::committed`] from the driver |
//! | `Closed` | - | - |
//!
//! DELE only marks; deletions reach the store only through [`Action::Commit`] after QUIT, so a
//! dropped connection deletes nothing (RFC 1939 §6).

use base64::Engine;

use super::command::{self, Command, ParseError};
use super::reply::{self, Reply};

/// What the driver must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Check a user's password (USER/PASS or AUTH PLAIN), then call [`Session::auth_result`].
    CheckPassword { user: String, secret: String },
    /// Check an APOP digest against this session's timestamp (RFC 1939 §7), then call
    /// [`Session::auth_result`].
    CheckApop {
        user: String,
        timestamp: String,
        digest: String,
    },
    /// Lock and list the user's mailbox, then call [`Session::mailbox_opened`].
    OpenMailbox { user: String },
    /// Check no input is buffered behind STLS (else send [`reply::STLS_PIPELINED`] and close),
    /// send [`reply::STLS_OK`], run the TLS handshake, then start a fresh session with TLS on.
    StartTls,
    /// Send `status` then message `index` (0-based) encoded by `pop3::wire`, then `.CRLF`; if
    /// the message cannot be read, send [`reply::MESSAGE_UNAVAILABLE`] instead.
    SendMessage {
        index: usize,
        top_lines: Option<usize>,
        status: Vec<u8>,
    },
    /// UPDATE state: apply these (0-based, sorted) deletions, mark retrieved messages seen,
    /// release the lock, then call [`Session::committed`].
    Commit {
        deleted: Vec<usize>,
        retrieved: Vec<usize>,
    },
    /// Close the connection (after writing everything before it).
    Close,
}

/// One message as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// RFC 1939 §7 unique-id: 1-70 octets in 0x21..=0x7E.
    pub uid: String,
    /// Octets RETR sends (see `pop3::wire`).
    pub size: u64,
}

/// The outcome of a password or APOP check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    /// Wrong password, unknown user, or rate-limited: one reply for all (no user enumeration).
    Rejected,
    /// The checker could not decide (checkpassword exit 111, I/O error).
    TempFail,
}

/// Why a mailbox could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Another session holds the lock (RFC 2449 §8.1.2 `[IN-USE]`).
    InUse,
    /// Anything else (I/O).
    Unavailable,
}

/// Per-connection settings, decided by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// May USER/PASS and AUTH PLAIN run without TLS (the embedded default: loopback only).
    pub allow_plaintext_auth: bool,
    /// A TLS server config exists, so STLS can be offered.
    pub tls_available: bool,
    /// This connection is already encrypted (after STLS, or POP3S).
    pub tls_active: bool,
    /// Advertised as RFC 2449 LOGIN-DELAY, if set.
    pub login_delay: Option<u32>,
}

/// Protocol errors before the connection is dropped (cap on misbehaving clients).
const MAX_ERRORS: u32 = 20;
/// Failed logins on one connection before it is dropped.
const MAX_AUTH_FAILURES: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    ExpectUser,
    ExpectPass { user: String },
    ExpectSaslResponse,
    ExpectAuthResult { user: String },
    ExpectMailbox,
    Transaction,
    ExpectCommit,
    Closed,
}

#[derive(Debug, Clone)]
struct Message {
    info: MessageInfo,
    deleted: bool,
    retrieved: bool,
}

/// One POP3 conversation.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    /// `None` when APOP is off (no secrets file): no timestamp in the greeting, APOP refused.
    timestamp: Option<String>,
    state: State,
    messages: Vec<Message>,
    errors: u32,
    auth_failures: u32,
}

impl Session {
    /// A session in AUTHORIZATION. `timestamp` is the RFC 1939 §7 `<pid.clock@host>` string,
    /// or `None` when APOP is not offered.
    pub fn new(config: SessionConfig, timestamp: Option<String>) -> Self {
        Session {
            config,
            timestamp,
            state: State::ExpectUser,
            messages: Vec::new(),
            errors: 0,
            auth_failures: 0,
        }
    }

    /// The greeting, sent once on connect (not again after STLS, RFC 2595 §4).
    pub fn greeting(&self) -> Vec<u8> {
        reply::greeting(self.timestamp.as_deref()).to_bytes()
    }

    /// True once the session wants no more input.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True in TRANSACTION (the mailbox is open and locked).
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction)
    }

    /// The user whose password or APOP digest is being checked (for rate limiting).
    pub fn pending_user(&self) -> Option<&str> {
        match &self.state {
            State::ExpectAuthResult { user } => Some(user),
            _ => None,
        }
    }

    fn send(reply: Reply) -> Action {
        Action::Send(reply.to_bytes())
    }

    fn error(&mut self, reply: Reply) -> Vec<Action> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::Closed;
            return vec![Self::send(reply::TOO_MANY_ERRORS), Action::Close];
        }
        vec![Self::send(reply)]
    }

    fn plaintext_ok(&self) -> bool {
        self.config.allow_plaintext_auth || self.config.tls_active
    }

    /// The RFC 1939 §3 autologout timer fired: close without entering UPDATE.
    pub fn timed_out(&mut self) -> Vec<Action> {
        self.state = State::Closed;
        vec![Self::send(reply::IDLE_TIMEOUT), Action::Close]
    }

    /// A line longer than the framing cap arrived.
    pub fn line_too_long(&mut self) -> Vec<Action> {
        if self.state == State::ExpectSaslResponse {
            self.state = State::ExpectUser;
        }
        self.error(reply::LINE_TOO_LONG)
    }

    /// Handles one input line (without CRLF). `input_pending` is true when more client bytes
    /// are already buffered behind this line (matters only for STLS, CVE-2011-0411).
    pub fn handle_line(&mut self, line: &[u8], input_pending: bool) -> Vec<Action> {
        match self.state {
            State::ExpectSaslResponse => return self.sasl_response(line),
            State::Closed
            | State::ExpectAuthResult { .. }
            | State::ExpectMailbox
            | State::ExpectCommit => return Vec::new(),
            _ => {}
        }
        match command::parse(line) {
            Ok(cmd) => self.command(cmd, input_pending),
            Err(ParseError::TooLong) => self.error(reply::LINE_TOO_LONG),
            Err(ParseError::Unknown) => self.error(reply::UNKNOWN_COMMAND),
            Err(ParseError::Syntax) => self.error(reply::SYNTAX),
        }
    }

    fn command(&mut self, cmd: Command, input_pending: bool) -> Vec<Action> {
        // Commands valid in every state come first; then the per-state table.
        match cmd {
            Command::Capa => return self.capa(),
            Command::Noop if self.state == State::Transaction => {
                return vec![Self::send(reply::NOOP)];
            }
            Command::Quit => return self.quit(),
            _ => {}
        }
        if self.state == State::Transaction {
            return self.transaction(cmd);
        }
        // AUTHORIZATION: anything but PASS after USER starts over (RFC 1939 §7).
        let after_user = std::mem::replace(&mut self.state, State::ExpectUser);
        match cmd {
            Command::User(user) => {
                if !self.plaintext_ok() {
                    return self.error(reply::PLAINTEXT_REFUSED);
                }
                self.state = State::ExpectPass { user };
                vec![Self::send(reply::USER_OK)]
            }
            Command::Pass(secret) => match after_user {
                State::ExpectPass { user } => {
                    self.state = State::ExpectAuthResult { user: user.clone() };
                    vec![Action::CheckPassword { user, secret }]
                }
                _ => self.error(reply::PASS_WITHOUT_USER),
            },
            Command::Apop { user, digest } => {
                let Some(timestamp) = self.timestamp.clone() else {
                    return self.error(reply::APOP_UNAVAILABLE);
                };
                self.state = State::ExpectAuthResult { user: user.clone() };
                vec![Action::CheckApop {
                    user,
                    timestamp,
                    digest,
                }]
            }
            Command::Auth {
                mechanism: None, ..
            } => vec![
                Self::send(reply::AUTH_LIST),
                Action::Send(b"PLAIN\r\n.\r\n".to_vec()),
            ],
            Command::Auth {
                mechanism: Some(mech),
                initial,
            } => {
                if !mech.eq_ignore_ascii_case("PLAIN") {
                    return self.error(reply::AUTH_MECHANISM);
                }
                if !self.plaintext_ok() {
                    return self.error(reply::PLAINTEXT_REFUSED);
                }
                match initial {
                    Some(initial) => self.sasl_response(initial.as_bytes()),
                    None => {
                        self.state = State::ExpectSaslResponse;
                        // RFC 5034 §4: an empty server challenge.
                        vec![Action::Send(b"+ \r\n".to_vec())]
                    }
                }
            }
            Command::Stls => {
                if self.config.tls_active {
                    return self.error(reply::TLS_ACTIVE);
                }
                if !self.config.tls_available {
                    return self.error(reply::STLS_UNAVAILABLE);
                }
                if input_pending {
                    // CVE-2011-0411: bytes behind STLS were sent in plaintext but would be
                    // read after the handshake as if protected. Refuse and hang up.
                    self.state = State::Closed;
                    return vec![Self::send(reply::STLS_PIPELINED), Action::Close];
                }
                self.state = State::Closed;
                vec![Action::StartTls]
            }
            _ => self.error(reply::BAD_STATE),
        }
    }

    /// RFC 5034 §4: the client's response to the empty challenge; `*` cancels; `=` is empty.
    fn sasl_response(&mut self, line: &[u8]) -> Vec<Action> {
        self.state = State::ExpectUser;
        if line == b"*" {
            return self.error(reply::AUTH_CANCELLED);
        }
        let decoded = if line == b"=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(line)
        };
        let Ok(decoded) = decoded else {
            return self.error(reply::AUTH_BAD_RESPONSE);
        };
        // RFC 4616 §2: authzid NUL authcid NUL passwd.
        let mut parts = decoded.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(passwd), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(reply::AUTH_BAD_RESPONSE);
        };
        let (Ok(authzid), Ok(user), Ok(secret)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(authcid),
            std::str::from_utf8(passwd),
        ) else {
            return self.error(reply::AUTH_BAD_RESPONSE);
        };
        if user.is_empty() || (!authzid.is_empty() && authzid != user) {
            // Acting as someone else is not supported: a plain failure.
            return self.error(reply::AUTH_FAILED);
        }
        self.state = State::ExpectAuthResult {
            user: user.to_string(),
        };
        vec![Action::CheckPassword {
            user: user.to_string(),
            secret: secret.to_string(),
        }]
    }

    /// The driver's answer to `CheckPassword` / `CheckApop` (after any failure delay).
    pub fn auth_result(&mut self, outcome: AuthOutcome) -> Vec<Action> {
        let State::ExpectAuthResult { user } =
            std::mem::replace(&mut self.state, State::ExpectUser)
        else {
            return Vec::new();
        };
        match outcome {
            AuthOutcome::Accepted => {
                self.state = State::ExpectMailbox;
                vec![Action::OpenMailbox { user }]
            }
            AuthOutcome::TempFail => vec![Self::send(reply::AUTH_TEMP)],
            AuthOutcome::Rejected => {
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.state = State::Closed;
                    return vec![Self::send(reply::AUTH_FAILED), Action::Close];
                }
                vec![Self::send(reply::AUTH_FAILED)]
            }
        }
    }

    /// The driver's answer to `OpenMailbox`: the listing in message-number order.
    pub fn mailbox_opened(&mut self, result: Result<Vec<MessageInfo>, OpenError>) -> Vec<Action> {
        if self.state != State::ExpectMailbox {
            return Vec::new();
        }
        match result {
            Ok(list) => {
                self.messages = list
                    .into_iter()
                    .map(|info| Message {
                        info,
                        deleted: false,
                        retrieved: false,
                    })
                    .collect();
                self.state = State::Transaction;
                let (count, octets) = self.totals();
                vec![Self::send(reply::maildrop(count, octets))]
            }
            Err(e) => {
                self.state = State::ExpectUser;
                vec![Self::send(match e {
                    OpenError::InUse => reply::IN_USE,
                    OpenError::Unavailable => reply::MAILBOX_UNAVAILABLE,
                })]
            }
        }
    }

    /// The driver's answer to `Commit`.
    pub fn committed(&mut self, ok: bool) -> Vec<Action> {
        if self.state != State::ExpectCommit {
            return Vec::new();
        }
        self.state = State::Closed;
        let reply = if ok {
            reply::signing_off(self.messages.iter().filter(|m| !m.deleted).count())
        } else {
            reply::COMMIT_FAILED
        };
        vec![Self::send(reply), Action::Close]
    }

    fn totals(&self) -> (usize, u64) {
        self.messages
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(n, o), m| (n + 1, o + m.info.size))
    }

    fn capa(&self) -> Vec<Action> {
        let authorization = self.state != State::Transaction;
        let offer_stls = authorization && self.config.tls_available && !self.config.tls_active;
        let mut out = reply::CAPA.to_bytes();
        for line in reply::capa_lines(self.plaintext_ok(), offer_stls, self.config.login_delay) {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        vec![Action::Send(out)]
    }

    fn quit(&mut self) -> Vec<Action> {
        if self.state == State::Transaction {
            // RFC 1939 §6: QUIT from TRANSACTION enters UPDATE.
            self.state = State::ExpectCommit;
            let pick = |f: fn(&Message) -> bool| -> Vec<usize> {
                self.messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| f(m))
                    .map(|(i, _)| i)
                    .collect()
            };
            let deleted = pick(|m| m.deleted);
            let retrieved = pick(|m| m.retrieved && !m.deleted);
            return vec![Action::Commit { deleted, retrieved }];
        }
        self.state = State::Closed;
        vec![Self::send(reply::BYE), Action::Close]
    }

    /// A live (not deleted) message by its 1-based number.
    fn live(&self, n: u32) -> Result<usize, Reply> {
        let index = (n as usize).checked_sub(1).ok_or(reply::NO_SUCH_MESSAGE)?;
        match self.messages.get(index) {
            Some(m) if m.deleted => Err(reply::ALREADY_DELETED),
            Some(_) => Ok(index),
            None => Err(reply::NO_SUCH_MESSAGE),
        }
    }

    fn listing(&self, n: Option<u32>, field: fn(&Message) -> String) -> Result<Vec<u8>, Reply> {
        if let Some(n) = n {
            let i = self.live(n)?;
            let mut r = reply::OK;
            r.text = format!("{n} {}", field(&self.messages[i])).into();
            return Ok(r.to_bytes());
        }
        let mut out = Vec::new();
        for (i, m) in self.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
            out.extend_from_slice(format!("{} {}\r\n", i + 1, field(m)).as_bytes());
        }
        out.extend_from_slice(b".\r\n");
        Ok(out)
    }

    fn transaction(&mut self, cmd: Command) -> Vec<Action> {
        let result: Result<Vec<Action>, Reply> = match cmd {
            Command::Stat => {
                let (count, octets) = self.totals();
                Ok(vec![Self::send(reply::stat(count, octets))])
            }
            Command::List(n) => self.listing(n, |m| m.info.size.to_string()).map(|body| {
                let mut v = Vec::new();
                if n.is_none() {
                    v.push(Self::send(reply::LIST_FOLLOWS));
                }
                v.push(Action::Send(body));
                v
            }),
            Command::Uidl(n) => self.listing(n, |m| m.info.uid.clone()).map(|body| {
                let mut v = Vec::new();
                if n.is_none() {
                    v.push(Self::send(reply::UIDL_FOLLOWS));
                }
                v.push(Action::Send(body));
                v
            }),
            Command::Retr(n) => self.live(n).map(|index| {
                let m = &mut self.messages[index];
                m.retrieved = true;
                vec![Action::SendMessage {
                    index,
                    top_lines: None,
                    status: reply::retr(m.info.size).to_bytes(),
                }]
            }),
            Command::Top { msg, lines } => self.live(msg).map(|index| {
                vec![Action::SendMessage {
                    index,
                    top_lines: Some(lines as usize),
                    status: reply::TOP_FOLLOWS.to_bytes(),
                }]
            }),
            Command::Dele(n) => self.live(n).map(|index| {
                self.messages[index].deleted = true;
                vec![Self::send(reply::deleted(n as usize))]
            }),
            Command::Rset => {
                for m in &mut self.messages {
                    m.deleted = false;
                }
                let (count, octets) = self.totals();
                Ok(vec![Self::send(reply::maildrop(count, octets))])
            }
            _ => Err(reply::BAD_STATE),
        };
        result.unwrap_or_else(|r| self.error(r))
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
