//! One local recipient's delivery, as qmail-local does it: refuse a loop, find the delivery
//! instructions, then carry out each line in order (Maildir, mbox, program; forwards gathered
//! into one new queued message at the end), remembering which lines are done.
//!
//! The shard only decides and waits: Maildir writes go to the batched delivery threads
//! (`delivery::maildir`), file reads, mbox appends, programs and progress records to the
//! local-delivery threads, forwards into this shard's queue.
//!
//! How a list of lines ends, like qmail-local:
//! - every line done (or a program exited 99, which skips the rest): delivered;
//! - a line failed temporarily: deferred; the lines already done are recorded (see
//!   `checkpoint`) and are not repeated by the retry;
//! - a line failed for good (a program exited 100): the recipient bounces;
//! - the `.qmail` file is broken: deferred, naming the file and line, until someone fixes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::blocking::BlockingPool;
use crate::clock::{asctime_date, now_unix};
use crate::delivery::local::{LOOPING, LocalOutcome, delivery_prefix, maildir_outcome};
use crate::delivery::maildir;
use crate::envelope::Envelope;
use crate::local::dotqmail::{self, Instruction, Instructions};
use crate::local::extension::{self, Candidate};
use crate::local::helper::{self, Op, Reply};
use crate::local::instructions::InstructionIndex;
use crate::local::program::{self, PROGRAM_PATH, ProgramJob, ProgramOutcome};
use crate::local::recipients::RecipientTable;
use crate::local::users::{SystemUser, SystemUsers};
use crate::local::{checkpoint, loops, mbox};
use crate::relay::owner::OutboundMessage;

/// What local delivery needs to know, from `[local]` and `[server]`.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub mail_root: PathBuf,
    pub hostname: String,
    /// `[local] extension_separator`.
    pub separator: char,
    pub program_timeout: Duration,
    pub lock_timeout: Duration,
    /// Where per-line progress is kept (`checkpoint`).
    pub progress_dir: PathBuf,
    /// The name of the user the server runs as: `USER` for a virtual mailbox's programs.
    pub service_user: String,
    /// `[local] system_users`: the accounts whose home `.qmail` files are read (`None`: off).
    pub system_users: Option<Arc<SystemUsers>>,
}

/// Puts a new message into the queue (a forward); returns its id, or why it could not.
#[allow(async_fn_in_trait)] // used on one shard, never boxed or sent
pub trait Injector {
    async fn inject(&self, envelope: Envelope, message: Vec<u8>) -> Result<String, String>;
}

/// One shard's local delivery agent.
pub struct LocalAgent<I> {
    pub settings: LocalSettings,
    pub injector: I,
    index: InstructionIndex,
    pool: BlockingPool,
    /// Aliases, virtualdomains and users/assign, kept fresh in memory; `None` when none of
    /// them is configured.
    tables: Option<RecipientTable>,
}

/// The instruction-list step that stands for all the forwards (sent together, at the end).
const FORWARDS_STEP: usize = usize::MAX;

/// Where one recipient's instructions came from and what they say.
struct Found {
    /// The directory relative paths are read from (the mailbox's home).
    home: PathBuf,
    instructions: Instructions,
    /// The checksum of the file (see `checkpoint::stamp`).
    stamp: String,
    /// The qmail environment of the match (`EXT`..., `DEFAULT`).
    env: Vec<(String, String)>,
    /// The system user every line is delivered as; `None` for a virtual mailbox (delivered
    /// as the server's own user).
    user: Option<SystemUser>,
    /// What reasons name as the source of a line (`.qmail-bob`, `alias team`).
    label: Option<String>,
    /// The envelope sender of forwards, when not the message's own (a list's owner).
    sender: Option<String>,
}

/// What happened to one line.
enum LineResult {
    Done(String),
    DoneStop(String),
    Temporary(String),
    Permanent(String),
}

impl<I: Injector> LocalAgent<I> {
    pub fn new(settings: LocalSettings, injector: I, pool: BlockingPool) -> Self {
        LocalAgent {
            settings,
            injector,
            index: InstructionIndex::default(),
            pool,
            tables: None,
        }
    }

    /// Looks every recipient up in the aliases of `table` first (see `aliases`), then maps it
    /// through its virtualdomains and users/assign (see `assign`).
    pub fn with_tables(mut self, table: RecipientTable) -> Self {
        self.tables = Some(table);
        self
    }

    /// The instructions of the alias `local` names, if any, with its list owner as the
    /// envelope sender of what it forwards (sendmail's `owner-list`).
    fn find_alias(&self, local: &str, domain: &str) -> Option<Found> {
        let table = self.tables.as_ref()?.get();
        let name = table.alias_for(local)?;
        let targets = table.aliases.get(name)?.clone();
        let text: String = targets.iter().map(|t| format!("{t}\n")).collect();
        Some(Found {
            home: self.settings.mail_root.join(domain),
            label: Some(format!("alias {name}")),
            instructions: Instructions {
                lines: targets
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (i + 1, t))
                    .collect(),
            },
            stamp: checkpoint::stamp(text.as_bytes()),
            env: Vec::new(),
            user: None,
            sender: table
                .aliases
                .owner_of(name)
                .map(|owner| format!("{owner}@{domain}")),
        })
    }

    /// Delivers recipient `index` (`recipient`) of `message`.
    pub async fn deliver(
        &self,
        message: &Arc<OutboundMessage>,
        index: usize,
        recipient: &str,
    ) -> LocalOutcome {
        let (local, domain) = match mailbox_parts(recipient) {
            Ok(parts) => parts,
            Err(reason) => return LocalOutcome::Permanent(reason),
        };
        if loops::has_delivered_to(&message.body, recipient) {
            return LocalOutcome::Permanent(LOOPING.to_string());
        }
        // virtualdomains maps the address to a local one; users/assign, then the system users,
        // say whose it is. Anything else is a virtual mailbox under the mail root.
        let tables = self.tables.as_ref().map(RecipientTable::get);
        let mapped = tables
            .as_ref()
            .map_or_else(|| local.clone(), |t| t.mapped_local(&local, &domain));
        let assigned = tables
            .as_ref()
            .and_then(|t| t.assign.find(&mapped))
            .map(|a| {
                let user = SystemUser {
                    name: a.user,
                    uid: a.uid,
                    gid: a.gid,
                    home: a.home,
                };
                (user, a.ext)
            });
        // The tables' copy of /etc/passwd is the fresh one; the settings' is read at start.
        let system = assigned.or_else(|| {
            let users = match tables.as_ref().and_then(|t| t.system.as_ref()) {
                Some(fresh) => Some(fresh),
                None => self.settings.system_users.as_deref(),
            };
            users
                .and_then(|users| users.find(&mapped, self.settings.separator))
                .map(|(user, ext)| (user.clone(), ext))
        });
        let found = match (self.find_alias(&local, &domain), system) {
            (Some(alias), _) => alias,
            (None, Some((user, ext))) => match self.find_system(user, ext).await {
                Ok(found) => found,
                Err(outcome) => return outcome,
            },
            (None, None) => match self.find(&local, &domain).await {
                Ok(found) => found,
                Err(reason) => return LocalOutcome::Temporary(reason),
            },
        };
        self.run_lines(message, index, recipient, &local, &domain, found)
            .await
    }

    /// The instructions for `local@domain` of a virtual domain (see `instructions`).
    async fn find(&self, local: &str, domain: &str) -> Result<Found, String> {
        let home = self.settings.mail_root.join(domain);
        let files = self.index.files(&self.pool, &home).await;
        let candidates = extension::candidates(Some(local), self.settings.separator);
        let matched: Option<Candidate> = candidates.into_iter().find(|c| files.contains(&c.file));
        let mut env = extension::ext_variables(local, self.settings.separator)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>();
        let default_delivery = |home: &Path| default_found(home, local);
        let Some(candidate) = matched else {
            return Ok(default_delivery(&home));
        };
        if let Some(default) = &candidate.default {
            env.push(("DEFAULT".into(), default.clone()));
        }
        let path = home.join(&candidate.file);
        let read_path = path.clone();
        let read = self
            .pool
            .run(move || read_capped(&read_path))
            .await
            .map_err(|e| format!("Unable to read delivery instructions: {e}. (#4.3.0)"))?;
        let contents = match read {
            Ok(contents) => contents,
            // Removed since the directory was listed: as if it had never been there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(default_delivery(&home));
            }
            Err(e) => {
                log::warn!("cannot read {}: {e}", path.display());
                return Err(format!(
                    "Unable to read the delivery instructions {}. (#4.2.1)",
                    candidate.file
                ));
            }
        };
        let instructions = dotqmail::parse(&contents)
            .map_err(|e| format!("Uh-oh: {} is broken: {e}. (#4.7.0)", candidate.file))?;
        if instructions.is_empty() {
            return Ok(default_delivery(&home));
        }
        Ok(Found {
            home,
            instructions,
            stamp: checkpoint::stamp(&contents),
            env,
            user: None,
            label: Some(candidate.file.clone()),
            sender: None,
        })
    }

    /// A system user's instructions: `~/.qmail` for the plain address, qmail's extension
    /// search for `user-ext` (read as the user); no `.qmail` means `./Maildir/`, and an
    /// extension no file answers does not exist (qmail's #5.1.1).
    async fn find_system(
        &self,
        user: SystemUser,
        ext: Option<String>,
    ) -> Result<Found, LocalOutcome> {
        let candidates = extension::candidates(ext.as_deref(), self.settings.separator);
        let mut env: Vec<(String, String)> = match &ext {
            Some(ext) => extension::ext_variables(ext, self.settings.separator)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            None => vec![("EXT".into(), String::new())],
        };
        for candidate in candidates {
            let path = user.home.join(&candidate.file);
            let op = Op::Read { path: path.clone() };
            let reply = self.as_user(&user, op).await;
            match reply.code {
                0 => {
                    let contents = reply.text;
                    let instructions = dotqmail::parse(&contents).map_err(|e| {
                        LocalOutcome::Temporary(format!(
                            "Uh-oh: {} is broken: {e}. (#4.7.0)",
                            candidate.file
                        ))
                    })?;
                    if let Some(default) = candidate.default {
                        env.push(("DEFAULT".into(), default));
                    }
                    let instructions = if instructions.is_empty() {
                        default_instructions("./Maildir/")
                    } else {
                        instructions
                    };
                    return Ok(Found {
                        home: user.home.clone(),
                        instructions,
                        stamp: checkpoint::stamp(&contents),
                        env,
                        user: Some(user),
                        label: Some(candidate.file),
                        sender: None,
                    });
                }
                1 => continue,
                255 => {
                    return Err(LocalOutcome::Temporary(format!(
                        "Unable to deliver as user {}: {}. (#4.3.0)",
                        user.name,
                        String::from_utf8_lossy(&reply.text)
                    )));
                }
                _ => {
                    log::warn!(
                        "cannot read {} as {}: {}",
                        path.display(),
                        user.name,
                        String::from_utf8_lossy(&reply.text)
                    );
                    return Err(LocalOutcome::Temporary(format!(
                        "Unable to read the delivery instructions {}. (#4.2.1)",
                        candidate.file
                    )));
                }
            }
        }
        if ext.is_some() {
            return Err(LocalOutcome::Permanent(
                "Sorry, no mailbox here by that name. (#5.1.1)".into(),
            ));
        }
        Ok(Found {
            home: user.home.clone(),
            instructions: default_instructions("./Maildir/"),
            stamp: String::new(),
            env,
            user: Some(user),
            label: None,
            sender: None,
        })
    }

    /// Does `op` as `user`: through the privileged helper, or directly when we already are
    /// that user. A code 255 reply says it could not be done at all (temporary).
    async fn as_user(&self, user: &SystemUser, op: Op) -> Reply {
        let (uid, gid) = (user.uid, user.gid);
        let done = self
            .pool
            .run(move || {
                if let Some(client) = helper::client() {
                    return client.call(uid, gid, &op).unwrap_or_else(|e| Reply {
                        code: 255,
                        errno: 0,
                        text: format!("local-delivery helper: {e}").into_bytes(),
                    });
                }
                if nix::unistd::geteuid().as_raw() == uid {
                    return helper::run_op(op);
                }
                Reply {
                    code: 255,
                    errno: 0,
                    text: b"delivery as a system user needs ringmail started as root".to_vec(),
                }
            })
            .await;
        done.unwrap_or_else(|e| Reply {
            code: 255,
            errno: 0,
            text: e.to_string().into_bytes(),
        })
    }

    /// One line for a system user, done as that user.
    /// `(local, domain)` are the recipient's parts.
    async fn run_line_as(
        &self,
        user: &SystemUser,
        message: &Arc<OutboundMessage>,
        recipient: &str,
        (local, domain): (&str, &str),
        found: &Found,
        instruction: &Instruction,
    ) -> LineResult {
        let sender = &message.envelope.sender;
        let prefix = delivery_prefix(sender, recipient);
        let failed = |reply: &Reply| String::from_utf8_lossy(&reply.text).into_owned();
        match instruction {
            Instruction::Maildir(path) => {
                let dir = resolve(&found.home, path);
                let op = Op::Maildir {
                    dir,
                    hostname: self.settings.hostname.clone(),
                    contents: maildir::file_contents(prefix.as_bytes(), &message.body),
                };
                let reply = self.as_user(user, op).await;
                match reply.code {
                    0 => LineResult::Done(failed(&reply)),
                    1 => {
                        log::warn!(
                            "delivery to {recipient} as {}: {}",
                            user.name,
                            failed(&reply)
                        );
                        LineResult::Permanent(
                            "Sorry, this mailbox is misconfigured and cannot accept mail. (#5.2.1)"
                                .into(),
                        )
                    }
                    _ => {
                        log::warn!(
                            "delivery to {recipient} as {}: {}",
                            user.name,
                            failed(&reply)
                        );
                        LineResult::Temporary(errno_reason(
                            reply.errno as i32,
                            "Unable to write to the mailbox. (#4.3.0)",
                        ))
                    }
                }
            }
            Instruction::Mbox(path) => {
                let file = resolve(&found.home, path);
                let op = Op::Mbox {
                    path: file.clone(),
                    entry: mbox::entry(
                        sender,
                        &asctime_date(now_unix()),
                        prefix.as_bytes(),
                        &message.body,
                    ),
                    lock_timeout: self.settings.lock_timeout,
                };
                let reply = self.as_user(user, op).await;
                match reply.code {
                    0 => LineResult::Done(format!("mbox {}", file.display())),
                    1 => LineResult::Temporary(mbox_reason(&mbox::MboxError::LockTimeout)),
                    _ => {
                        log::warn!(
                            "mbox delivery to {} as {}: {}",
                            file.display(),
                            user.name,
                            failed(&reply)
                        );
                        LineResult::Temporary(errno_reason(
                            reply.errno as i32,
                            "Unable to write to the mailbox file. (#4.2.1)",
                        ))
                    }
                }
            }
            Instruction::Program(command) => {
                let op = Op::Program {
                    command: command.clone(),
                    cwd: found.home.clone(),
                    env: self.program_env(message, recipient, local, domain, found),
                    stdin: maildir::file_contents(b"", &message.body),
                    timeout: self.settings.program_timeout,
                };
                let reply = self.as_user(user, op).await;
                match reply.code {
                    0 => LineResult::Done("program".into()),
                    1 => LineResult::DoneStop("program (exit 99: stop)".into()),
                    2 => LineResult::Permanent(failed(&reply)),
                    3 => LineResult::Temporary(failed(&reply)),
                    _ => LineResult::Temporary(format!("{}. (#4.3.0)", failed(&reply))),
                }
            }
            Instruction::Forward(_) => LineResult::Done(String::new()),
        }
    }

    /// Carries out every line of `found`, skipping those a previous attempt finished.
    async fn run_lines(
        &self,
        message: &Arc<OutboundMessage>,
        index: usize,
        recipient: &str,
        local: &str,
        domain: &str,
        found: Found,
    ) -> LocalOutcome {
        let lines = &found.instructions.lines;
        let checkpointed = lines.len() > 1;
        // Only a list of several lines has progress to keep (and a key to checksum).
        let key = match checkpointed {
            true => checkpoint::key(&message.envelope, index, &message.body),
            false => String::new(),
        };
        let dir = self.settings.progress_dir.clone();
        let done = if checkpointed {
            let (dir, key, stamp) = (dir.clone(), key.clone(), found.stamp.clone());
            self.pool
                .run(move || checkpoint::load(&dir, &key, &stamp))
                .await
                .unwrap_or_default()
        } else {
            Default::default()
        };
        let file_name = found.label.clone();
        let mut forwards = Vec::new();
        let mut summary = Vec::new();
        for (step, (line, instruction)) in lines.iter().enumerate() {
            if let Instruction::Forward(address) = instruction {
                forwards.push(qualify(address, domain));
                continue;
            }
            if done.contains(&step) {
                summary.push(format!("{} (done before)", instruction.kind()));
                continue;
            }
            let result = self
                .run_line(message, recipient, local, domain, &found, instruction)
                .await;
            let at = |reason: String| match &file_name {
                Some(file) => format!("{file} line {line}: {reason}"),
                None => reason,
            };
            let (text, stop) = match result {
                LineResult::Done(text) => (text, false),
                LineResult::DoneStop(text) => (text, true),
                LineResult::Temporary(reason) => return LocalOutcome::Temporary(at(reason)),
                LineResult::Permanent(reason) => return LocalOutcome::Permanent(at(reason)),
            };
            summary.push(text);
            if checkpointed {
                self.record(&key, &found.stamp, step).await;
            }
            if stop {
                break;
            }
        }
        if !forwards.is_empty() {
            if done.contains(&FORWARDS_STEP) {
                summary.push("forward (done before)".into());
            } else {
                match self
                    .forward(message, recipient, forwards, found.sender.clone())
                    .await
                {
                    Ok(text) => summary.push(text),
                    Err(reason) => return LocalOutcome::Temporary(reason),
                }
                if checkpointed {
                    self.record(&key, &found.stamp, FORWARDS_STEP).await;
                }
            }
        }
        if checkpointed {
            let _ = self.pool.run(move || checkpoint::clear(&dir, &key)).await;
        }
        LocalOutcome::Delivered(summary.join("; "))
    }

    /// Records that `step` is done. A failure is logged: the line is then repeated by a retry,
    /// which is what qmail always does.
    async fn record(&self, key: &str, stamp: &str, step: usize) {
        let (dir, key, stamp) = (
            self.settings.progress_dir.clone(),
            key.to_string(),
            stamp.to_string(),
        );
        match self
            .pool
            .run(move || checkpoint::record(&dir, &key, &stamp, step))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("cannot record delivery progress: {e}"),
            Err(e) => log::warn!("cannot record delivery progress: {e}"),
        }
    }

    async fn run_line(
        &self,
        message: &Arc<OutboundMessage>,
        recipient: &str,
        local: &str,
        domain: &str,
        found: &Found,
        instruction: &Instruction,
    ) -> LineResult {
        if let Some(user) = &found.user {
            return self
                .run_line_as(
                    user,
                    message,
                    recipient,
                    (local, domain),
                    found,
                    instruction,
                )
                .await;
        }
        let sender = &message.envelope.sender;
        match instruction {
            Instruction::Maildir(path) => {
                let dir = resolve(&found.home, path);
                let prefix = delivery_prefix(sender, recipient);
                match maildir::deliver(
                    &dir,
                    &self.settings.hostname,
                    prefix.as_bytes(),
                    &message.body,
                )
                .await
                {
                    Ok(path) => LineResult::Done(path.display().to_string()),
                    Err(e) => {
                        log::warn!("local delivery to {recipient} failed: {e}");
                        match maildir_outcome(&e) {
                            LocalOutcome::Permanent(r) => LineResult::Permanent(r),
                            LocalOutcome::Temporary(r) | LocalOutcome::Delivered(r) => {
                                LineResult::Temporary(r)
                            }
                        }
                    }
                }
            }
            Instruction::Mbox(path) => {
                let file = resolve(&found.home, path);
                let prefix = delivery_prefix(sender, recipient);
                let entry = mbox::entry(
                    sender,
                    &asctime_date(now_unix()),
                    prefix.as_bytes(),
                    &message.body,
                );
                let timeout = self.settings.lock_timeout;
                let target = file.clone();
                let appended = self
                    .pool
                    .run(move || mbox::append(&target, &entry, timeout))
                    .await;
                match appended {
                    Ok(Ok(())) => LineResult::Done(format!("mbox {}", file.display())),
                    Ok(Err(e)) => {
                        log::warn!("mbox delivery to {} failed: {e}", file.display());
                        LineResult::Temporary(mbox_reason(&e))
                    }
                    Err(e) => LineResult::Temporary(format!("{e}. (#4.3.0)")),
                }
            }
            Instruction::Program(command) => {
                let job = ProgramJob {
                    command: command.clone(),
                    cwd: found.home.clone(),
                    env: self.program_env(message, recipient, local, domain, found),
                    stdin: maildir::file_contents(b"", &message.body),
                    timeout: self.settings.program_timeout,
                    ids: None,
                };
                match self.pool.run(move || program::run(&job)).await {
                    Ok(ProgramOutcome::Delivered) => LineResult::Done("program".into()),
                    Ok(ProgramOutcome::DeliveredStop) => {
                        LineResult::DoneStop("program (exit 99: stop)".into())
                    }
                    Ok(ProgramOutcome::Permanent(r)) => LineResult::Permanent(r),
                    Ok(ProgramOutcome::Temporary(r)) => LineResult::Temporary(r),
                    Err(e) => LineResult::Temporary(format!("{e}. (#4.3.0)")),
                }
            }
            // Gathered by the caller and sent together.
            Instruction::Forward(_) => LineResult::Done(String::new()),
        }
    }

    /// qmail-local's environment for a program.
    fn program_env(
        &self,
        message: &Arc<OutboundMessage>,
        recipient: &str,
        local: &str,
        domain: &str,
        found: &Found,
    ) -> Vec<(String, String)> {
        let sender = &message.envelope.sender;
        let prefix = delivery_prefix(sender, recipient);
        let (rpline, dtline) = prefix.split_at(prefix.find('\n').map_or(0, |i| i + 1));
        let mut env = vec![
            ("PATH".to_string(), PROGRAM_PATH.to_string()),
            ("HOME".into(), found.home.display().to_string()),
            (
                "USER".into(),
                found
                    .user
                    .as_ref()
                    .map_or_else(|| self.settings.service_user.clone(), |u| u.name.clone()),
            ),
            ("SENDER".into(), sender.clone()),
            ("NEWSENDER".into(), sender.clone()),
            ("RECIPIENT".into(), recipient.to_string()),
            ("LOCAL".into(), local.to_string()),
            ("HOST".into(), domain.to_string()),
            ("RPLINE".into(), rpline.to_string()),
            ("DTLINE".into(), dtline.to_string()),
            (
                "UFLINE".into(),
                format!(
                    "From {} {}\n",
                    if sender.is_empty() {
                        "MAILER-DAEMON"
                    } else {
                        sender
                    },
                    asctime_date(now_unix())
                ),
            ),
        ];
        env.extend(found.env.iter().cloned());
        env
    }

    /// Queues one copy of the message, with our `Delivered-To:` on top, for every forwarding
    /// address, keeping the envelope sender (as qmail does, so bounces go to the author).
    async fn forward(
        &self,
        message: &Arc<OutboundMessage>,
        recipient: &str,
        to: Vec<String>,
        sender: Option<String>,
    ) -> Result<String, String> {
        let clean = recipient.replace(['\r', '\n'], "");
        let mut bytes = format!("Delivered-To: {clean}\r\n").into_bytes();
        bytes.extend_from_slice(&message.body);
        let envelope = Envelope {
            sender: sender.unwrap_or_else(|| message.envelope.sender.clone()),
            recipients: to.clone(),
            received_at: now_unix(),
            smtputf8: message.envelope.smtputf8,
            body_8bit: message.envelope.body_8bit,
        };
        match self.injector.inject(envelope, bytes).await {
            Ok(id) => Ok(format!("forwarded as msg {id} to {}", to.join(", "))),
            Err(e) => {
                log::error!("cannot queue a forward for {recipient}: {e}");
                Err("Unable to forward the message: the queue refused it. (#4.3.0)".into())
            }
        }
    }
}

/// The default delivery, with no file behind it: the Maildir `<home>/<local>/Maildir`.
fn default_found(home: &Path, local: &str) -> Found {
    Found {
        home: home.to_path_buf(),
        instructions: default_instructions(&format!("./{local}/Maildir/")),
        stamp: String::new(),
        env: Vec::new(),
        user: None,
        label: None,
        sender: None,
    }
}

/// One Maildir line.
fn default_instructions(maildir: &str) -> Instructions {
    Instructions {
        lines: vec![(0, Instruction::Maildir(maildir.to_string()))],
    }
}

/// The reason for a temporary write failure with this errno.
fn errno_reason(errno: i32, otherwise: &str) -> String {
    match errno {
        libc::EDQUOT => "Recipient's mailbox is over quota. (#4.2.2)".into(),
        libc::ENOSPC => "Mail system is out of disk space. (#4.3.1)".into(),
        _ => otherwise.into(),
    }
}

/// The largest instruction file read (one byte more than allowed, so the parser sees it is
/// too long). Blocking.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut contents = Vec::new();
    std::fs::File::open(path)?
        .take(dotqmail::MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut contents)?;
    Ok(contents)
}

/// `local@domain` as lowercase parts that are safe as file names; a reason (permanent) if not.
fn mailbox_parts(recipient: &str) -> Result<(String, String), String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!("Sorry, that is not a valid local mailbox ({e}). (#5.1.3)")
    };
    let (local, domain) = crate::mailbox::split_address(recipient).map_err(|e| bad(&e))?;
    for part in [&local, &domain] {
        if part.starts_with('.') || part.contains(['/', '\0']) || part.chars().any(char::is_control)
        {
            return Err(bad(&crate::mailbox::MailboxError::UnsafeName));
        }
    }
    Ok((local, domain))
}

/// A path from an instruction, relative to `home` unless absolute.
fn resolve(home: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        home.join(path)
    }
}

/// A forward without a domain goes to that local part at the recipient's domain.
fn qualify(address: &str, domain: &str) -> String {
    if address.contains('@') {
        address.to_string()
    } else {
        format!("{address}@{domain}")
    }
}

fn mbox_reason(e: &mbox::MboxError) -> String {
    match e {
        mbox::MboxError::LockTimeout => {
            "Timeout while waiting for the mailbox lock. (#4.2.0)".into()
        }
        _ => errno_reason(
            e.errno().unwrap_or(0),
            "Unable to write to the mailbox file. (#4.2.1)",
        ),
    }
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
