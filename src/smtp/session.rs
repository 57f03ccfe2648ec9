//! The SMTP server session: a state machine from input bytes to replies and complete messages.
//!
//! ```text
//! ExpectHelo --EHLO/HELO--> ExpectMail --MAIL--> ExpectRcpt --RCPT ok--> ExpectRcptOrData
//! ExpectRcptOrData --DATA--> ExpectBody --CRLF.CRLF--> ExpectCommitted
//! ExpectRcptOrData --BDAT--> ExpectChunk --not LAST--> ExpectBdat --BDAT--> ExpectChunk
//!                            ExpectChunk --LAST------> ExpectCommitted
//! ExpectCommitted --committed()--> ExpectMail
//! ```
//!
//! RSET and a new EHLO/HELO go back to ExpectMail from anywhere; QUIT, 421 and the limits go to
//! Closed.
//!
//! ```text
//! ExpectMail --AUTH--> ExpectAuthResponse --credentials--> ExpectAuthChecked --auth_checked()--> ExpectMail
//! ExpectHelo/ExpectMail --STARTTLS--> Closed (Progress::StartTls: the driver starts a new session)
//! ```
//! Input is taken whole on every call; a partial command line (at most 512 octets) and
//! anything pipelined after a completed message stay buffered here.

use std::rc::Rc;

use super::command::{Command, CommandError, MailFrom, RcptTo, parse_command};
use super::data::{DataFindings, DataScanner, has_long_line};
use super::received::{Protocol, TraceDetails, count_hops, received_header_with};
use super::reply::{self, Reply};
use super::sasl::{self, Mechanism, SaslError, Step};
use super::{Context, LongLines, PeerInfo, Progress, RcptVerdict, SessionOptions, SmtpConfig};
use crate::abuse::refusals::Refusal;
use crate::auth::CheckOutcome;
use crate::clock::unix_seconds;
use crate::envelope::Envelope;

/// Longest command line including CRLF (RFC 5321 4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;

/// What the session expects next.
#[derive(Debug)]
enum State {
    /// EHLO or HELO (RFC 5321 4.1.4: MAIL needs a greeting first).
    ExpectHelo,
    /// MAIL FROM.
    ExpectMail,
    /// RCPT TO; no recipient accepted yet.
    ExpectRcpt,
    /// More RCPT TO, or DATA / BDAT.
    ExpectRcptOrData,
    /// DATA body lines up to CRLF.CRLF.
    ExpectBody(DataScanner),
    /// `remaining` raw octets of a BDAT chunk. With `refusal`, the chunk is read and dropped,
    /// then the refusal is sent and the session goes to `resume` (RFC 3030 2: the octets of a
    /// refused chunk must still be consumed, or they would be read as commands).
    ExpectChunk {
        size: u64,
        remaining: u64,
        last: bool,
        refusal: Option<(Reply, Box<State>)>,
    },
    /// The next BDAT after a non-final chunk.
    ExpectBdat,
    /// The driver's answer to a Commit.
    ExpectCommitted,
    /// The client's next line of a SASL exchange (RFC 4954 4).
    ExpectAuthResponse(sasl::Exchange),
    /// The driver's answer to an Authenticate: the password check for `user`.
    ExpectAuthChecked { user: String },
    /// Nothing: the connection is over.
    Closed,
}

/// How the client greeted us.
#[derive(Debug)]
struct Greeting {
    name: String,
    esmtp: bool,
}

/// The mail transaction being built (RFC 5321 3.3).
#[derive(Debug, Default)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
    smtputf8: bool,
    body_8bit: bool,
    /// Our `Received:` header followed by the body received so far.
    message: Vec<u8>,
    /// Length of our header at the start of `message`.
    header_len: usize,
}

/// One SMTP server connection's protocol state. No I/O: see the module docs of `smtp`.
#[derive(Debug)]
pub struct Session {
    config: Rc<SmtpConfig>,
    peer: PeerInfo,
    state: State,
    greeting: Option<Greeting>,
    tx: Transaction,
    /// Input not yet processed: a partial command line, or what came after a message.
    pending: Vec<u8>,
    /// The rest of an overlong command line is being skipped up to its LF.
    skipping_line: bool,
    errors: usize,
    commands: usize,
    /// TLS, AUTH and submission settings for this connection.
    options: SessionOptions,
    /// The login name after a successful AUTH (RFC 4954); `peer.authenticated` is then set.
    user: Option<String>,
    /// Refusals not yet taken by the driver (which logs them: `crate::abuse::refusals`).
    refusals: Vec<Refusal>,
    /// The reply refusing the command line being handled, recorded with its line afterwards.
    refusing: Option<Reply>,
    /// More input follows the command line being handled, in the same buffer.
    line_has_followers: bool,
}

impl Session {
    pub fn new(config: Rc<SmtpConfig>, peer: PeerInfo) -> Session {
        Session::with_options(config, peer, SessionOptions::default())
    }

    /// A session with STARTTLS, AUTH or submission rules (see [`SessionOptions`]).
    pub fn with_options(
        config: Rc<SmtpConfig>,
        peer: PeerInfo,
        options: SessionOptions,
    ) -> Session {
        Session {
            options,
            user: None,
            config,
            peer,
            state: State::ExpectHelo,
            greeting: None,
            tx: Transaction::default(),
            pending: Vec::new(),
            skipping_line: false,
            errors: 0,
            commands: 0,
            refusals: Vec::new(),
            refusing: None,
            line_has_followers: false,
        }
    }

    /// The 220 banner the server sends first (RFC 5321 4.3.1).
    pub fn greeting(&self, out: &mut Vec<u8>) {
        reply::greeting(&self.config.hostname).write_to(out);
    }

    /// Takes all of `input`, appends every reply to `out`, and says what the driver does next.
    /// After `Commit`, call [`Session::committed`] before `receive` again; input given meanwhile
    /// is only buffered.
    pub fn receive(&mut self, input: &[u8], cx: &Context, out: &mut Vec<u8>) -> Progress {
        if self.pending.is_empty() {
            // Common case: work straight from the caller's buffer and keep only the leftover.
            let (used, progress) = self.run(input, cx, out);
            if !matches!(self.state, State::Closed) {
                self.pending.extend_from_slice(&input[used..]);
            }
            progress
        } else {
            self.pending.extend_from_slice(input);
            self.resume(cx, out)
        }
    }

    /// The driver's outcome for the message of the last `Commit`: `Ok(queue id)` or
    /// `Err(reason)`. Replies, then carries on with buffered pipelined input.
    pub fn committed(
        &mut self,
        result: Result<String, String>,
        cx: &Context,
        out: &mut Vec<u8>,
    ) -> Progress {
        if !matches!(self.state, State::ExpectCommitted) {
            return self.resume(cx, out);
        }
        match result {
            Ok(id) => reply::queued(&id),
            Err(reason) => reply::queue_failed(&reason),
        }
        .write_to(out);
        self.reset_transaction();
        self.resume(cx, out)
    }

    /// Like [`Session::committed`] for a message refused for good after the end of data (by an
    /// injection server that checks again, for `ringmail sendmail -bs`): `reply` is sent instead
    /// of 250 or 451, and the session carries on.
    pub fn commit_refused(&mut self, reply: Reply, cx: &Context, out: &mut Vec<u8>) -> Progress {
        if !matches!(self.state, State::ExpectCommitted) {
            return self.resume(cx, out);
        }
        reply.write_to(out);
        self.reset_transaction();
        self.resume(cx, out)
    }

    /// The client was idle too long: 421 4.4.2 (RFC 5321 4.5.3.2), then close.
    pub fn timeout(&mut self, out: &mut Vec<u8>) {
        self.close_with(reply::timeout(&self.config.hostname), out);
    }

    /// The server is stopping: 421 4.3.2, then close.
    pub fn shutting_down(&mut self, out: &mut Vec<u8>) {
        self.close_with(reply::shutting_down(&self.config.hostname), out);
    }

    /// The password check of the last `Authenticate` is done: 235 and the client may relay, or
    /// 535/454. Then carries on with buffered input.
    pub fn auth_checked(
        &mut self,
        outcome: CheckOutcome,
        cx: &Context,
        out: &mut Vec<u8>,
    ) -> Progress {
        let State::ExpectAuthChecked { user } =
            std::mem::replace(&mut self.state, State::ExpectMail)
        else {
            return self.resume(cx, out);
        };
        match outcome {
            CheckOutcome::Accepted => {
                reply::AUTH_OK.write_to(out);
                self.peer.authenticated = true;
                self.user = Some(user);
            }
            CheckOutcome::Rejected => {
                if let Some(progress) = self.error(reply::AUTH_FAILED, out) {
                    return progress;
                }
            }
            CheckOutcome::TempFail => reply::AUTH_TEMP_FAILED.write_to(out),
        }
        self.resume(cx, out)
    }

    /// The login name, once AUTH succeeded.
    pub fn authenticated_user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether message content is being read (the driver uses the longer data timeout).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::ExpectBody(_) | State::ExpectChunk { .. })
    }

    /// Whether part of a command line is buffered, waiting for its end (the driver's command
    /// deadline runs from its first byte: `crate::abuse::pace`).
    pub fn partial_command(&self) -> bool {
        !self.in_data()
            && !matches!(self.state, State::Closed | State::ExpectCommitted)
            && (!self.pending.is_empty() || self.skipping_line)
    }

    /// The refusals made since the last call, oldest first, for the log.
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    /// Records the pending refusal (if any) as made in answer to `command`.
    fn record_refusal(&mut self, command: &[u8]) {
        if let Some(reply) = self.refusing.take() {
            self.refusals.push(Refusal::new(command, reply));
        }
    }

    fn resume(&mut self, cx: &Context, out: &mut Vec<u8>) -> Progress {
        let mut buf = std::mem::take(&mut self.pending);
        let (used, progress) = self.run(&buf, cx, out);
        if !matches!(self.state, State::Closed) {
            buf.drain(..used);
            self.pending = buf;
        }
        progress
    }

    /// Processes `buf` until it is used up or a Commit/Close pauses; returns octets used.
    fn run(&mut self, buf: &[u8], cx: &Context, out: &mut Vec<u8>) -> (usize, Progress) {
        let mut pos = 0;
        loop {
            match &mut self.state {
                State::Closed => return (buf.len(), Progress::Close),
                State::ExpectCommitted | State::ExpectAuthChecked { .. } => {
                    return (pos, Progress::NeedMore);
                }
                State::ExpectBody(scanner) => {
                    let (used, done) = scanner.scan(&buf[pos..], &mut self.tx.message);
                    pos += used;
                    if !done {
                        return (pos, Progress::NeedMore);
                    }
                    let findings = scanner.findings();
                    let progress = self.finish_message(findings, cx, out);
                    self.record_refusal(b"DATA");
                    if let Some(progress) = progress {
                        return (pos, progress);
                    }
                }
                State::ExpectChunk {
                    remaining, refusal, ..
                } => {
                    let available = (buf.len() - pos) as u64;
                    let take = (*remaining).min(available) as usize;
                    if refusal.is_none() {
                        self.tx.message.extend_from_slice(&buf[pos..pos + take]);
                    }
                    pos += take;
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return (pos, Progress::NeedMore);
                    }
                    let progress = self.finish_chunk(cx, out);
                    self.record_refusal(b"BDAT");
                    if let Some(progress) = progress {
                        return (pos, progress);
                    }
                }
                _ => {
                    let rest = &buf[pos..];
                    if self.skipping_line {
                        match rest.iter().position(|&b| b == b'\n') {
                            Some(i) => {
                                pos += i + 1;
                                self.skipping_line = false;
                                continue;
                            }
                            None => return (buf.len(), Progress::NeedMore),
                        }
                    }
                    let window = &rest[..rest.len().min(MAX_COMMAND_LINE)];
                    let lf = window.iter().position(|&b| b == b'\n');
                    let progress = match lf {
                        Some(i) => {
                            pos += i + 1;
                            self.line_has_followers = pos < buf.len();
                            let line = &rest[..i];
                            let line = line.strip_suffix(b"\r").unwrap_or(line);
                            if matches!(self.state, State::ExpectAuthResponse(_)) {
                                // A SASL response: never recorded, it holds the password.
                                self.auth_response(line, out)
                            } else {
                                let progress = self.command(line, cx, out);
                                self.record_refusal(without_credentials(line));
                                progress
                            }
                        }
                        None if rest.len() >= MAX_COMMAND_LINE => {
                            // RFC 5321 4.5.3.1.4; the tail of the line is not a command.
                            self.skipping_line = true;
                            if matches!(self.state, State::ExpectAuthResponse(_)) {
                                // An overlong SASL response ends the exchange.
                                self.state = State::ExpectMail;
                            }
                            self.error(reply::LINE_TOO_LONG, out)
                        }
                        None => return (pos, Progress::NeedMore),
                    };
                    if let Some(progress) = progress {
                        return (pos, progress);
                    }
                }
            }
        }
    }

    /// Handles one command line (CRLF removed). `Some` pauses processing.
    fn command(&mut self, line: &[u8], cx: &Context, out: &mut Vec<u8>) -> Option<Progress> {
        self.commands += 1;
        if self.commands > self.config.max_commands {
            let refusal = reply::too_many_commands(&self.config.hostname);
            self.refusing = Some(refusal.clone());
            return Some(self.close_with(refusal, out));
        }
        if line.contains(&0) {
            return self.error(reply::NUL_IN_COMMAND, out);
        }
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(e) => return self.error(command_error_reply(e), out),
        };
        match command {
            Command::Ehlo(name) => self.helo(name, true, out),
            Command::Helo(name) => self.helo(name, false, out),
            Command::Mail(mail) => self.mail(mail, cx, out),
            Command::Rcpt(rcpt) => self.rcpt(rcpt, cx, out),
            Command::Data => self.data(cx, out),
            Command::Bdat { size, last } => self.bdat(size, last, cx),
            Command::Rset => {
                self.reset_transaction();
                reply::OK.write_to(out);
                None
            }
            Command::Noop => {
                reply::OK.write_to(out);
                None
            }
            Command::Quit => Some(self.close_with(reply::BYE, out)),
            Command::Vrfy => {
                reply::VRFY.write_to(out);
                None
            }
            Command::Expn => {
                reply::EXPN.write_to(out);
                None
            }
            Command::Help => {
                reply::HELP.write_to(out);
                None
            }
            Command::StartTls => self.starttls(out),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref(), out),
        }
    }

    /// RFC 3207 4: 220, then the driver runs the handshake and starts a new session.
    fn starttls(&mut self, out: &mut Vec<u8>) -> Option<Progress> {
        if self.options.tls.is_some() {
            return self.error(reply::TLS_ALREADY_ACTIVE, out);
        }
        if !self.options.starttls {
            return self.error(reply::TLS_NOT_OFFERED, out);
        }
        if !matches!(self.state, State::ExpectHelo | State::ExpectMail) {
            return self.error(reply::TRANSACTION_IN_PROGRESS, out);
        }
        if self.line_has_followers {
            // CVE-2011-0411: whatever came with STARTTLS was sent in the clear and must never be
            // taken as if it arrived under TLS. Refused; the session stays plaintext.
            return self.error(reply::PIPELINED_STARTTLS, out);
        }
        reply::READY_FOR_TLS.write_to(out);
        self.state = State::Closed;
        self.pending = Vec::new();
        Some(Progress::StartTls)
    }

    /// RFC 4954 4: AUTH starts a SASL exchange; only after EHLO, outside a transaction, once.
    fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Option<Progress> {
        if !self.options.auth {
            let reply = if self.options.auth_after_starttls {
                reply::AUTH_NEEDS_TLS
            } else {
                reply::AUTH_NOT_OFFERED
            };
            // Logged as a refusal (without the initial response: see `without_credentials`).
            self.refusing = Some(reply.clone());
            return self.error(reply, out);
        }
        match self.state {
            State::ExpectMail if self.greeting.as_ref().is_some_and(|g| g.esmtp) => {}
            State::ExpectHelo | State::ExpectMail => return self.error(reply::NEED_HELO, out),
            _ => return self.error(reply::TRANSACTION_IN_PROGRESS, out),
        }
        if self.peer.authenticated {
            return self.error(reply::ALREADY_AUTHENTICATED, out);
        }
        let Some(mechanism) = Mechanism::parse(mechanism) else {
            return self.error(reply::UNKNOWN_MECHANISM, out);
        };
        let (exchange, step) = sasl::Exchange::start(mechanism, initial);
        self.state = State::ExpectAuthResponse(exchange);
        self.auth_step(step, out)
    }

    /// One client line of a SASL exchange.
    fn auth_response(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Progress> {
        let State::ExpectAuthResponse(exchange) = &mut self.state else {
            return None;
        };
        let step = exchange.step(line);
        self.auth_step(step, out)
    }

    fn auth_step(&mut self, step: Step, out: &mut Vec<u8>) -> Option<Progress> {
        match step {
            Step::Challenge(challenge) => {
                reply::auth_challenge(challenge).write_to(out);
                None
            }
            Step::Done(credentials) => {
                self.state = State::ExpectAuthChecked {
                    user: credentials.user.clone(),
                };
                Some(Progress::Authenticate(credentials))
            }
            Step::Failed(e) => {
                self.state = State::ExpectMail;
                let reply = match e {
                    SaslError::Cancelled => reply::AUTH_CANCELLED,
                    SaslError::BadBase64 => reply::AUTH_BAD_BASE64,
                    SaslError::Malformed => reply::AUTH_MALFORMED,
                };
                self.error(reply, out)
            }
        }
    }

    /// Whether the logged-in user may use `sender` (see [`SessionOptions::sender_login_match`]).
    fn owns_sender(&self, sender: &str) -> bool {
        let Some(user) = &self.user else {
            return true;
        };
        if sender.is_empty() || sender.eq_ignore_ascii_case(user) {
            return true;
        }
        if user.contains('@') {
            return false;
        }
        match sender.rsplit_once('@') {
            Some((local, domain)) => {
                local.eq_ignore_ascii_case(user)
                    && self
                        .options
                        .local_domains
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(domain))
            }
            None => false,
        }
    }

    /// RFC 5321 4.1.4: EHLO/HELO may come again at any time and resets the transaction.
    fn helo(&mut self, name: String, esmtp: bool, out: &mut Vec<u8>) -> Option<Progress> {
        self.tx = Transaction::default();
        self.state = State::ExpectMail;
        self.greeting = Some(Greeting { name, esmtp });
        let host = &self.config.hostname;
        if esmtp {
            let starttls = self.options.starttls && self.options.tls.is_none();
            let auth = self.options.auth.then_some(sasl::OFFERED);
            reply::ehlo_with(host, self.config.max_message_size, starttls, auth)
        } else {
            reply::helo(host)
        }
        .write_to(out);
        None
    }

    fn mail(&mut self, mail: MailFrom, cx: &Context, out: &mut Vec<u8>) -> Option<Progress> {
        match self.state {
            State::ExpectMail => {}
            State::ExpectHelo => return self.error(reply::NEED_HELO, out),
            _ => return self.error(reply::NESTED_MAIL, out),
        }
        if self.options.require_auth && !self.peer.authenticated {
            return self.error(reply::AUTH_REQUIRED, out);
        }
        if self.options.sender_login_match && !self.owns_sender(&mail.address) {
            let user = self.user.as_deref().unwrap_or_default();
            reply::sender_not_owned(&mail.address, user).write_to(out);
            return None;
        }
        let esmtp = self.greeting.as_ref().is_some_and(|g| g.esmtp);
        if mail.has_params && !esmtp {
            return self.error(reply::UNSUPPORTED_PARAMETER, out);
        }
        if !mail.smtputf8 && !mail.address.is_ascii() {
            return self.error(reply::NEEDS_SMTPUTF8, out);
        }
        // RFC 1870 6.1: refuse a declared size over the limit at once.
        if mail
            .size
            .is_some_and(|s| s > self.config.max_message_size as u64)
        {
            self.refusing = Some(reply::MESSAGE_TOO_BIG);
            reply::MESSAGE_TOO_BIG.write_to(out);
            return None;
        }
        // The client's message rate and the like (crate::abuse::client_policy).
        if let Some(refusal) = cx.policy.check_sender(&self.peer, cx.now) {
            self.refusing = Some(refusal.clone());
            if refusal.code == 421 {
                return Some(self.close_with(refusal, out));
            }
            refusal.write_to(out);
            return None;
        }
        self.tx = Transaction {
            sender: crate::address::canonical_address(&mail.address),
            smtputf8: mail.smtputf8,
            body_8bit: mail.body_8bit,
            ..Transaction::default()
        };
        self.state = State::ExpectRcpt;
        reply::SENDER_OK.write_to(out);
        None
    }

    fn rcpt(&mut self, rcpt: RcptTo, cx: &Context, out: &mut Vec<u8>) -> Option<Progress> {
        match self.state {
            State::ExpectRcpt | State::ExpectRcptOrData => {}
            State::ExpectHelo => return self.error(reply::NEED_HELO, out),
            State::ExpectBdat => return self.error(reply::RCPT_AFTER_BDAT, out),
            _ => return self.error(reply::NEED_MAIL, out),
        }
        let address = if rcpt.address == "postmaster" {
            // RFC 5321 4.5.1: <postmaster> without a domain is our postmaster.
            format!("postmaster@{}", self.config.hostname)
        } else {
            // RFC 5321 4.1.2: `"bob"@x` is `bob@x`; the queue keeps the canonical form.
            crate::address::canonical_address(&rcpt.address)
        };
        if !self.tx.smtputf8 && !address.is_ascii() {
            return self.error(reply::NEEDS_SMTPUTF8, out);
        }
        if self.tx.recipients.len() >= self.config.max_recipients {
            // RFC 5321 4.5.3.1.10: 452 so the client retries the rest in another transaction.
            reply::TOO_MANY_RECIPIENTS.write_to(out);
            return None;
        }
        let refusal = match cx.policy.check_recipient(&self.peer, &address) {
            RcptVerdict::Accept => {
                self.tx.recipients.push(address);
                self.state = State::ExpectRcptOrData;
                reply::RECIPIENT_OK.write_to(out);
                return None;
            }
            RcptVerdict::UnknownUser => reply::unknown_user(&address),
            RcptVerdict::RelayDenied => reply::relay_denied(&address),
            RcptVerdict::BadAddress => reply::unroutable_address(&address),
            RcptVerdict::BadDestination => reply::unroutable_destination(&address),
            RcptVerdict::TempFail(reason) => reply::temp_fail(&reason),
        };
        refusal.write_to(out);
        self.refusing = Some(refusal);
        None
    }

    fn data(&mut self, cx: &Context, out: &mut Vec<u8>) -> Option<Progress> {
        match self.state {
            State::ExpectRcptOrData => {}
            State::ExpectHelo => return self.error(reply::NEED_HELO, out),
            State::ExpectMail => return self.error(reply::NEED_MAIL, out),
            State::ExpectRcpt => return self.error(reply::NEED_RCPT, out),
            _ => return self.error(reply::DATA_AFTER_BDAT, out),
        }
        if self.line_has_followers && self.config.forbid_text_before_354 {
            // RFC 2920 §3.1: DATA ends a pipelined group; whatever came with it was sent
            // without waiting for the 354. Refused for every client, as Postfix's
            // smtpd_forbid_unauth_pipelining does for unauthenticated ones.
            self.refusing = Some(reply::TEXT_BEFORE_354);
            return Some(self.close_with(reply::TEXT_BEFORE_354, out));
        }
        self.start_message(cx);
        self.state = State::ExpectBody(DataScanner::new(self.config.max_message_size));
        reply::START_DATA.write_to(out);
        None
    }

    fn bdat(&mut self, size: u64, last: bool, cx: &Context) -> Option<Progress> {
        let refusal = match self.state {
            State::ExpectRcptOrData => {
                self.start_message(cx);
                None
            }
            State::ExpectBdat => None,
            State::ExpectHelo => Some(reply::NEED_HELO),
            State::ExpectMail => Some(reply::NEED_MAIL),
            _ => Some(reply::NEED_RCPT),
        };
        let body_len = (self.tx.message.len() - self.tx.header_len) as u64;
        let refusal = match refusal {
            Some(reply) => {
                // A sequence error: the state stays as it was once the chunk is skipped.
                self.count_error();
                let resume = std::mem::replace(&mut self.state, State::ExpectHelo);
                Some((reply, Box::new(resume)))
            }
            None if body_len.saturating_add(size) > self.config.max_message_size as u64 => {
                // RFC 3030 2 + RFC 1870: the transaction fails; skip the chunk.
                self.tx = Transaction::default();
                Some((reply::MESSAGE_TOO_BIG, Box::new(State::ExpectMail)))
            }
            None => None,
        };
        self.state = State::ExpectChunk {
            size,
            remaining: size,
            last,
            refusal,
        };
        None
    }

    /// A BDAT chunk has been read in full.
    fn finish_chunk(&mut self, cx: &Context, out: &mut Vec<u8>) -> Option<Progress> {
        let State::ExpectChunk {
            size,
            last,
            refusal,
            ..
        } = std::mem::replace(&mut self.state, State::ExpectBdat)
        else {
            return None;
        };
        if let Some((reply, resume)) = refusal {
            reply.write_to(out);
            if reply.code == reply::MESSAGE_TOO_BIG.code {
                self.refusing = Some(reply);
            }
            self.state = *resume;
            return self.check_errors(out);
        }
        if !last {
            reply::chunk_received(size).write_to(out);
            return None;
        }
        let body = &self.tx.message[self.tx.header_len..];
        let findings = DataFindings {
            long_line: self.config.long_lines == LongLines::Reject && has_long_line(body),
            ..DataFindings::default()
        };
        self.finish_message(findings, cx, out)
    }

    /// Begins the message buffer with our trace header (RFC 5321 4.4).
    fn start_message(&mut self, cx: &Context) {
        let (helo, esmtp) = match &self.greeting {
            Some(g) => (g.name.as_str(), g.esmtp),
            None => ("unknown", false),
        };
        let protocol = Protocol::for_session(
            esmtp,
            self.tx.smtputf8,
            self.options.tls.is_some(),
            self.peer.authenticated,
        );
        let single = match self.tx.recipients.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        let details = TraceDetails {
            tls: self.options.tls.as_ref(),
            user: self.user.as_deref(),
        };
        let header = received_header_with(
            helo,
            self.peer.remote.ip(),
            &self.config.hostname,
            protocol,
            details,
            single,
            cx.now,
        );
        self.tx.message = header.into_bytes();
        self.tx.header_len = self.tx.message.len();
    }

    /// The end of the message content: refuse it, or hand it to the driver.
    fn finish_message(
        &mut self,
        findings: DataFindings,
        cx: &Context,
        out: &mut Vec<u8>,
    ) -> Option<Progress> {
        let body = &self.tx.message[self.tx.header_len..];
        let refusal = if findings.oversized {
            Some(reply::MESSAGE_TOO_BIG)
        } else if findings.bare_line_ending {
            Some(reply::BARE_LINE_ENDING)
        } else if findings.long_line && self.config.long_lines == LongLines::Reject {
            Some(reply::LONG_LINE)
        } else if count_hops(body) > self.config.max_hops {
            Some(reply::TOO_MANY_HOPS)
        } else {
            None
        };
        if let Some(reply) = refusal {
            reply.write_to(out);
            self.refusing = Some(reply);
            self.reset_transaction();
            return None;
        }
        let tx = std::mem::take(&mut self.tx);
        let envelope = Envelope {
            sender: tx.sender,
            recipients: tx.recipients,
            received_at: unix_seconds(cx.now),
            smtputf8: tx.smtputf8,
            body_8bit: tx.body_8bit,
        };
        self.state = State::ExpectCommitted;
        Some(Progress::Commit(Box::new(envelope), tx.message))
    }

    /// RSET semantics: drop the transaction, keep the greeting.
    fn reset_transaction(&mut self) {
        self.tx = Transaction::default();
        self.state = match self.greeting {
            Some(_) => State::ExpectMail,
            None => State::ExpectHelo,
        };
    }

    /// Sends a protocol-error reply and closes once there were too many.
    fn error(&mut self, reply: Reply, out: &mut Vec<u8>) -> Option<Progress> {
        reply.write_to(out);
        self.count_error();
        self.check_errors(out)
    }

    fn count_error(&mut self) {
        self.errors += 1;
    }

    fn check_errors(&mut self, out: &mut Vec<u8>) -> Option<Progress> {
        if self.errors < self.config.max_errors {
            return None;
        }
        let refusal = reply::too_many_errors(&self.config.hostname);
        self.refusing = Some(refusal.clone());
        Some(self.close_with(refusal, out))
    }

    fn close_with(&mut self, reply: Reply, out: &mut Vec<u8>) -> Progress {
        reply.write_to(out);
        self.state = State::Closed;
        self.pending = Vec::new();
        self.tx = Transaction::default();
        Progress::Close
    }
}

/// An AUTH command line as it may be logged: its initial response (credentials) cut off.
fn without_credentials(line: &[u8]) -> &[u8] {
    let is_auth = line
        .get(..5)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"AUTH "));
    if !is_auth {
        return line;
    }
    let after_verb = &line[5..];
    let mechanism_end = after_verb
        .iter()
        .position(|&b| b == b' ')
        .map_or(line.len(), |i| 5 + i);
    &line[..mechanism_end]
}

fn command_error_reply(error: CommandError) -> Reply {
    match error {
        CommandError::Unknown => reply::UNKNOWN_COMMAND,
        CommandError::Syntax(usage) => reply::syntax(usage),
        CommandError::BadSender => reply::BAD_SENDER,
        CommandError::BadRecipient => reply::BAD_RECIPIENT,
        CommandError::UnsupportedParameter => reply::UNSUPPORTED_PARAMETER,
    }
}
