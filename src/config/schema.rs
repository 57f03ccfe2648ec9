//! The configuration's shape and defaults. Every section and key is optional in the file; what is
//! left out takes the default shown here (and documented in the README's configuration reference).

use serde::Deserialize;
use std::path::PathBuf;

/// The whole configuration, after validation (see `load`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub smtp: SmtpSection,
    pub local: LocalSection,
    pub queue: QueueSection,
    pub pop3: Pop3Section,
    pub tls: TlsSection,
    pub dns: DnsSection,
    pub relay: RelaySection,
    pub redis: RedisSection,
    pub submission: SubmissionSection,
    pub auth: AuthSection,
    pub http: HttpSection,
    pub inject: InjectSection,
    pub dkim: super::deliverability::DkimSection,
    pub suppression: super::deliverability::SuppressionSection,
    pub unsubscribe: super::deliverability::UnsubscribeSection,
    pub feedback: super::deliverability::FeedbackSection,
}

/// `[server]`: identity, storage and threads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Name used in the SMTP greeting, `Received:` headers, bounces and Maildir file names.
    pub hostname: String,
    /// Holds `queue/`, the default `mail/` root, the `passwd` database and the instance `lock`.
    /// A relative path is relative to the working directory.
    pub data_dir: PathBuf,
    /// Number of shards (threads, one per CPU); 0 means one per online CPU.
    pub shards: usize,
    /// error, warn, info, debug or trace.
    pub log_level: String,
    /// The account a server started as root runs as, once its ports are bound (see
    /// `server::privileges`); ignored when started as any other user. Must not be root.
    pub user: String,
    /// The group it runs as; empty (the default): `user`'s primary group.
    pub group: String,
    /// Where log lines go: empty (the default) for standard error, or a file that is appended
    /// to and reopened on SIGHUP or SIGUSR1 (for logrotate). A relative path is relative to the
    /// working directory.
    pub log_file: PathBuf,
    pub log_format: LogFormatSetting,
    /// Threads for work that must not run on a shard: password checks, checkpassword programs,
    /// POP3 mailbox listings and commits.
    pub blocking_threads: usize,
    /// Jobs that may wait for a blocking thread. Beyond it, a POP3 login is answered with a
    /// temporary failure at once; mailbox work waits (off the shard) for room.
    pub blocking_queue: usize,
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatSetting {
    /// `2026-11-25 16:31:31.123 ringmail-shard-0 info: new msg ...` (qmail style).
    Text,
    /// One JSON object per line: `ts`, `level`, `thread`, `msg`.
    Json,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            hostname: "localhost".into(),
            data_dir: "ringmail-data".into(),
            shards: 0,
            log_level: "info".into(),
            user: "ringmail".into(),
            group: String::new(),
            log_file: PathBuf::new(),
            log_format: LogFormatSetting::Text,
            blocking_threads: 4,
            blocking_queue: 1024,
        }
    }
}

/// What to do with a DATA line longer than RFC 5321's 1000 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongLinesSetting {
    /// Refuse the message with 550 5.6.0 after its end.
    Reject,
    /// Store the line intact (never truncated).
    Keep,
}

/// `[smtp]`: the SMTP listener and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSection {
    /// Addresses to listen on, `ip:port`; every shard listens on each (SO_REUSEPORT).
    pub listen: Vec<String>,
    /// Largest message accepted, in octets; advertised in EHLO's SIZE (RFC 1870).
    pub max_message_size: usize,
    /// Most recipients in one message (RFC 5321 requires at least 100 be accepted).
    pub max_recipients: usize,
    pub long_lines: LongLinesSetting,
    /// More `Received:` plus `Delivered-To:` headers than this is a loop: 554 5.4.6.
    pub max_hops: usize,
    /// Seconds to wait for a command (RFC 5321 §4.5.3.2 suggests 5 minutes).
    pub command_timeout_secs: u64,
    /// Seconds to wait for each piece of DATA (RFC 5321 §4.5.3.2: 3 minutes per block).
    pub data_timeout_secs: u64,
    /// Concurrent SMTP sessions per shard; more get `421 4.7.0`.
    pub max_sessions_per_shard: usize,
    /// Concurrent SMTP sessions from one client IP (an IPv6 client: its /64), counted across
    /// all shards; more get `421 4.7.0`. An `[[smtp.access]]` rule may set its own.
    pub max_sessions_per_ip: usize,
    /// Bad commands in one session before it is closed with 421.
    pub max_errors: usize,
    /// Client networks (CIDR, IPv4 or IPv6) allowed to relay to any domain (qmail's
    /// RELAYCLIENT). Empty (the default): nobody relays; clients may only send to local domains
    /// and `rcpthosts`.
    pub relay_networks: Vec<String>,
    /// Domains accepted from any client besides the local ones, and delivered onward by the
    /// routes (qmail's rcpthosts minus locals: domains this host is a backup MX or gateway for).
    pub rcpthosts: Vec<String>,
    /// SMTPS listeners: SMTP with implicit TLS from the first byte (RFC 8314), the same rules
    /// as `listen` otherwise. Needs a certificate (`[tls]`, or the self-signed one).
    pub smtps_listen: Vec<String>,
    /// Milliseconds the 220 greeting is held back; a client that sends anything before it is an
    /// early talker (postscreen's pregreet test) and gets `554 5.5.1` and the close. 0 (the
    /// default): no delay, and no early-talker test.
    pub greeting_delay_ms: u64,
    /// DNS blocklists (RFC 5782) asked about every client at connect; a listed client gets
    /// `554 5.7.1 ... blocked using ZONE` instead of the greeting. Lookup failures let it in.
    pub dnsbl_zones: Vec<String>,
    /// Messages (MAIL commands) one client IP may start per minute, across all shards; more
    /// get `421 4.7.0`. 0 (the default): no limit.
    pub max_messages_per_ip_per_minute: u32,
    /// Slowest DATA/BDAT content accepted, in octets per second, averaged since the content
    /// began, once `min_data_rate_grace_secs` have passed; slower gets `421 4.4.2`. 0: no minimum.
    pub min_data_rate: u64,
    /// Seconds of content before `min_data_rate` is enforced.
    pub min_data_rate_grace_secs: u64,
    /// Access rules (qmail's tcprules), tried in order; the first whose `from` holds the client
    /// applies.
    pub access: Vec<AccessRuleSection>,
}

/// What an access rule does with a client that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessAction {
    /// Serve the client, with this rule's settings.
    Allow,
    /// Answer `554 5.7.1 <reply>` instead of the greeting, and close.
    Deny,
}

/// `[[smtp.access]]`: one access rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleSection {
    /// Client addresses or CIDR ranges, IPv4 or IPv6 (IPv4-mapped IPv6 clients match IPv4).
    pub from: Vec<String>,
    #[serde(default = "default_access_action")]
    pub action: AccessAction,
    /// The text after `554 5.7.1` for `deny`.
    #[serde(default)]
    pub reply: Option<String>,
    /// The client may relay to any domain (as `smtp.relay_networks`).
    #[serde(default)]
    pub relay: bool,
    /// Replaces `smtp.max_sessions_per_ip` for these clients.
    #[serde(default)]
    pub max_sessions: Option<usize>,
    /// Replaces `smtp.max_messages_per_ip_per_minute` (0: no limit).
    #[serde(default)]
    pub messages_per_minute: Option<u32>,
    /// Replaces `smtp.max_message_size`.
    #[serde(default)]
    pub max_message_size: Option<usize>,
    /// `false`: never ask the DNSBL zones about these clients; `true`: always ask, even for
    /// loopback and relay clients (which are skipped by default).
    #[serde(default)]
    pub dnsbl: Option<bool>,
}

fn default_access_action() -> AccessAction {
    AccessAction::Allow
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            listen: vec!["127.0.0.1:2525".into()],
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            long_lines: LongLinesSetting::Reject,
            max_hops: 100,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            max_sessions_per_shard: 1000,
            max_sessions_per_ip: 100,
            max_errors: 20,
            relay_networks: Vec::new(),
            rcpthosts: Vec::new(),
            smtps_listen: Vec::new(),
            greeting_delay_ms: 0,
            dnsbl_zones: Vec::new(),
            max_messages_per_ip_per_minute: 0,
            min_data_rate: 1024,
            min_data_rate_grace_secs: 30,
            access: Vec::new(),
        }
    }
}

/// Whether a recipient at a local domain must be a known user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownUsers {
    /// Any local part is accepted; its Maildir is created on first delivery.
    Accept,
    /// Only addresses listed in `users`, in the passwd database, or with an existing Maildir;
    /// others get `550 5.1.1` at RCPT.
    Reject,
}

/// `[local]`: which domains are delivered here and where their mail goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSection {
    /// Domains whose mail is delivered into local Maildirs (qmail's `locals`).
    pub domains: Vec<String>,
    /// Root of the mail store: `<mail_root>/<domain>/<user>/Maildir`. Relative paths are
    /// relative to `data_dir`.
    pub mail_root: PathBuf,
    pub unknown_users: UnknownUsers,
    /// Extra known users (full addresses), for `unknown_users = "reject"`.
    pub users: Vec<String>,
    /// What separates a user from an address extension (`bob-news` with `-`, qmail's; or
    /// `bob+news` with `+`): `.qmail-news`, `.qmail-default` and `EXT` follow it.
    pub extension_separator: String,
    /// Seconds a `|program` delivery may run before it is killed (a temporary failure).
    pub program_timeout_secs: u64,
    /// Seconds an mbox delivery waits for another process's lock before it defers.
    pub mbox_lock_timeout_secs: u64,
    /// Threads (shared by all shards) for local work that blocks: `.qmail` files, mbox
    /// appends, programs.
    pub delivery_threads: usize,
    /// Deliver to the accounts of /etc/passwd (uid >= `min_uid`) at every local domain by their
    /// home `.qmail` files, as those users (needs the server started as root: a small helper
    /// keeps root to switch to them). Other local parts stay virtual mailboxes.
    pub system_users: bool,
    /// The lowest uid that receives mail as a system user (root never does).
    pub min_uid: u32,
    /// Seconds the in-memory list of known recipients (for `unknown_users = "reject"`) is
    /// used before it is rebuilt in the background from the files it comes from.
    pub refresh_secs: u64,
    /// An /etc/aliases-style file, compiled by `ringmail newaliases` into
    /// `<data_dir>/aliases.idx`; aliases apply to every local domain. `None`: no aliases.
    pub aliases: Option<PathBuf>,
    /// qmail's `control/virtualdomains` (`domain:prefix` lines): mail for `u@domain` is
    /// delivered as local address `prefix-u` (through `assign` or the system users). The
    /// domains must also be in `domains`.
    pub virtualdomains: Option<PathBuf>,
    /// qmail's `users/assign` (`=local:user:uid:gid:home:dash:ext:` and `+prefix:...` lines):
    /// local addresses delivered as an account without /etc/passwd.
    pub assign: Option<PathBuf>,
}

impl Default for LocalSection {
    fn default() -> Self {
        LocalSection {
            domains: vec!["localhost".into()],
            mail_root: "mail".into(),
            unknown_users: UnknownUsers::Accept,
            users: Vec::new(),
            extension_separator: "-".into(),
            program_timeout_secs: 3600,
            mbox_lock_timeout_secs: 30,
            delivery_threads: 8,
            system_users: false,
            min_uid: 1000,
            refresh_secs: 5,
            aliases: None,
            virtualdomains: None,
            assign: None,
        }
    }
}

/// `[queue]`: the durable queue and the retry schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSection {
    /// Size each segment file is preallocated to, in MiB.
    pub segment_size_mib: u64,
    /// Seconds a message may stay queued before undeliverable recipients bounce (qmail's
    /// `queuelifetime`, 7 days).
    pub queue_lifetime_secs: u64,
    /// Deliveries in flight per shard.
    pub delivery_concurrency: usize,
    /// Message bytes a shard keeps in memory for deliveries waiting to start, in MiB; beyond it,
    /// accepted messages are read back from the queue when their turn comes.
    pub memory_budget_mib: u64,
    /// A waiting message in a segment sealed this long ago is moved forward into the active
    /// segment (if that frees most of the old one), so disk use follows the live mail.
    pub compact_after_secs: u64,
    /// Send the sender a delay notice (RFC 3464 `Action: delayed`) once a recipient has been
    /// deferred this many seconds; 0 (the default) sends none.
    pub delay_notice_secs: u64,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            segment_size_mib: 64,
            queue_lifetime_secs: 604_800,
            delivery_concurrency: 64,
            memory_budget_mib: 256,
            compact_after_secs: 3600,
            delay_notice_secs: 0,
        }
    }
}

/// When POP3 accepts a password sent in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaintextAuth {
    /// Only over TLS (STLS or POP3S).
    Never,
    /// Over TLS, and in the clear from loopback clients.
    Loopback,
    /// Always (for test rigs and trusted networks).
    Always,
}

/// `[pop3]`: the POP3 service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Section {
    /// Plain POP3 listeners (STLS offered when `[tls]` is set).
    pub listen: Vec<String>,
    /// POP3S listeners: implicit TLS (RFC 8314); needs `[tls]`.
    pub pop3s_listen: Vec<String>,
    pub allow_plaintext_auth: PlaintextAuth,
    /// Seconds of silence before the session is closed (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout_secs: u64,
    /// If set, passwords are checked by this checkpassword program (argv) instead of the
    /// built-in database.
    pub checkpassword: Vec<String>,
    /// A file of `address:secret` lines for APOP (RFC 1939 §7), which needs the clear secret;
    /// users not listed there cannot use APOP.
    pub apop_secrets: Option<PathBuf>,
}

impl Default for Pop3Section {
    fn default() -> Self {
        Pop3Section {
            listen: Vec::new(),
            pop3s_listen: Vec::new(),
            allow_plaintext_auth: PlaintextAuth::Never,
            idle_timeout_secs: 600,
            checkpassword: Vec::new(),
            apop_secrets: None,
        }
    }
}

/// `[tls]`: the certificate for STARTTLS, SMTPS, STLS and POP3S.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Without `cert`/`key`: create a self-signed certificate for `server.hostname` in
    /// `<data_dir>/tls/` on first start and use it (like Debian's snakeoil certificate), so
    /// TLS works with no setup. `false`: no TLS without `cert`/`key`.
    pub self_signed: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert: None,
            key: None,
            self_signed: true,
        }
    }
}

/// `[dns]`: the resolver used for MX, A and AAAA lookups (on its own thread).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// `ip:port` of the nameservers to ask, in order. Empty (the default): those of
    /// /etc/resolv.conf.
    pub nameservers: Vec<String>,
    /// Seconds to wait for one answer.
    pub timeout_secs: u64,
    /// Tries per nameserver before a lookup fails temporarily.
    pub attempts: usize,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            nameservers: Vec::new(),
            timeout_secs: 5,
            attempts: 2,
        }
    }
}

/// How hard the SMTP client insists on TLS with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicySetting {
    /// Never STARTTLS.
    None,
    /// STARTTLS when the server offers it, without checking its certificate; plaintext
    /// otherwise (RFC 3207 as most MTAs use it).
    Opportunistic,
    /// STARTTLS is required and the certificate must verify for the host name; otherwise the
    /// delivery is deferred.
    Verify,
}

/// `[relay]`: remote delivery: routes, the SMTP client, per-destination limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySection {
    /// Static routes (qmail's smtproutes): domain -> `host[:port]`, `[ip]:port`, or `local`.
    /// `*` matches every domain without a route of its own (a smarthost); a `.example.com`
    /// key matches every subdomain. Domains without a route go by MX.
    pub routes: std::collections::BTreeMap<String, String>,
    /// Port for MX and A deliveries.
    pub port: u16,
    /// Name sent in EHLO/HELO; empty (the default): `server.hostname`.
    pub helo_name: String,
    /// TLS policy for every destination not in `tls_policy`.
    pub tls: TlsPolicySetting,
    /// Per-domain TLS policy overrides.
    pub tls_policy: std::collections::BTreeMap<String, TlsPolicySetting>,
    /// Extra PEM CA certificates trusted for `verify` (beside the built-in web PKI roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Seconds to wait for a TCP connection.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for the greeting (RFC 5321 §4.5.3.2.1: 5 minutes).
    pub greeting_timeout_secs: u64,
    /// Seconds to wait for the reply to MAIL, RCPT, and other commands (§4.5.3.2.2-3: 5 minutes).
    pub command_timeout_secs: u64,
    /// Seconds to wait for the reply to the end of data (§4.5.3.2.6: 10 minutes).
    pub data_timeout_secs: u64,
    /// Connections open at once to one destination, across all shards.
    pub max_connections_per_destination: usize,
    /// Outbound connections open at once, across all shards (each shard owns an equal share).
    pub max_connections: usize,
    /// Messages sent over one connection before it is closed and a new one opened.
    pub max_messages_per_connection: usize,
    /// Recipients in one transaction; more are sent in further transactions.
    pub max_recipients_per_transaction: usize,
    /// Seconds an idle connection is kept for the next message to the same destination.
    pub connection_idle_secs: u64,
    /// Seconds a host that refused a connection or timed out is skipped; its mail waits for it
    /// without using up retries.
    pub host_backoff_secs: u64,
    /// MX rollup: provider name -> MX host suffixes (`google = [".google.com"]`). Domains whose
    /// MX hosts end in one of a provider's suffixes share its shaping limits. Adds to and
    /// overrides the built-in providers (an empty list turns a built-in provider off).
    pub providers: std::collections::BTreeMap<String, Vec<String>>,
    /// Traffic shaping: a destination domain, a provider name, or `*` (every other domain, each
    /// on its own) -> its limits. Merged key by key over the built-in provider defaults.
    pub shaping: std::collections::BTreeMap<String, ShapingSetting>,
    /// The longest a message waits at its destination's owner for a rate limit or a suspension;
    /// one that would wait longer is deferred without using up a retry.
    pub shaping_max_wait_secs: u64,
    /// Source-IP pools: name -> the local addresses outbound connections bind to.
    pub pools: std::collections::BTreeMap<String, PoolSetting>,
    /// The pool for senders not in `pool_by_sender_domain`; empty (the default): no pool, the
    /// kernel picks the source address and `helo_name` is sent.
    pub default_pool: String,
    /// Sender (envelope MAIL FROM) domain -> pool name.
    pub pool_by_sender_domain: std::collections::BTreeMap<String, String>,
    /// A header field by which a message names its own pool (e.g. `X-Ringmail-Pool`), ahead of
    /// `pool_by_sender_domain`; removed before the message is sent. Empty (the default): off.
    pub pool_header: String,
    /// Reply-pattern backoff rules: name -> a pattern on remote replies and what it does.
    pub backoff: std::collections::BTreeMap<String, BackoffSetting>,
}

/// `[relay.shaping."KEY"]`: limits for one destination domain or provider. Every key is
/// optional; 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShapingSetting {
    /// Connections open at once, per source address.
    pub max_connections: Option<usize>,
    /// Messages over one connection before it is closed.
    pub max_messages_per_connection: Option<usize>,
    /// Pacing: the strictest of these sets the spacing between messages, per source address.
    pub messages_per_second: Option<u32>,
    pub messages_per_minute: Option<u32>,
    pub messages_per_hour: Option<u32>,
    /// Messages that may go back to back after a quiet spell (1: evenly spaced).
    pub burst: Option<u32>,
}

/// One source address of a pool.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSource {
    /// A local IPv4 or IPv6 address to bind() before connecting.
    pub address: String,
    /// The EHLO name for connections from this address (should match its PTR record); empty:
    /// `relay.helo_name`.
    #[serde(default)]
    pub helo: String,
    /// Share of the pool's new connections (smooth weighted round-robin).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// `[relay.pools.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSetting {
    pub sources: Vec<PoolSource>,
}

/// What a backoff rule does when its pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffAction {
    /// Send nothing for `seconds`.
    Suspend,
    /// Pace messages at the rule's rate for `seconds`.
    Slow,
}

/// What a backoff rule suspends or slows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffScope {
    /// The destination (its provider or domain), from every source address.
    Destination,
    /// Only the source address that got the reply, at that destination.
    Source,
}

/// `[relay.backoff.NAME]`: a pattern on remote replies (`421 4.7.28 ...`) and its action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSetting {
    /// The reply starts with this text (code, enhanced code, text; case-insensitive).
    #[serde(default)]
    pub prefix: String,
    /// Or: the reply matches this regular expression.
    #[serde(default)]
    pub regex: String,
    pub action: BackoffAction,
    #[serde(default = "destination_scope")]
    pub scope: BackoffScope,
    /// How long the suspension or slowdown lasts.
    pub seconds: u64,
    /// For `slow`: the rate meanwhile (the strictest applies).
    #[serde(default)]
    pub messages_per_second: Option<u32>,
    #[serde(default)]
    pub messages_per_minute: Option<u32>,
    #[serde(default)]
    pub messages_per_hour: Option<u32>,
}

fn destination_scope() -> BackoffScope {
    BackoffScope::Destination
}

/// `[redis]`: shared state for several ringmail nodes (the shaping rate limits).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port/db`; empty (the default): no Redis, every limit is local.
    pub url: String,
    /// How long one Redis request may take before this node falls back to its local limits.
    pub timeout_ms: u64,
    /// Prefix of every key ringmail writes.
    pub key_prefix: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        RedisSection {
            url: String::new(),
            timeout_ms: 500,
            key_prefix: "ringmail:".into(),
        }
    }
}

impl Default for RelaySection {
    fn default() -> Self {
        RelaySection {
            routes: Default::default(),
            port: 25,
            helo_name: String::new(),
            tls: TlsPolicySetting::Opportunistic,
            tls_policy: Default::default(),
            tls_ca_file: None,
            connect_timeout_secs: 30,
            greeting_timeout_secs: 300,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            max_connections_per_destination: 20,
            max_connections: 1000,
            max_messages_per_connection: 1000,
            max_recipients_per_transaction: 100,
            connection_idle_secs: 10,
            host_backoff_secs: 300,
            providers: Default::default(),
            shaping: Default::default(),
            shaping_max_wait_secs: 60,
            pools: Default::default(),
            default_pool: String::new(),
            pool_by_sender_domain: Default::default(),
            pool_header: String::new(),
            backoff: Default::default(),
        }
    }
}

/// `[submission]`: the message submission service (RFC 6409) and SMTP AUTH's rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionSection {
    /// Submission listeners (587 in production): like `smtp.listen`, but MAIL needs AUTH first
    /// (530 5.7.0). STARTTLS is offered when a certificate exists.
    pub listen: Vec<String>,
    /// When SMTP AUTH is offered without TLS, on submission and on the `smtp` listeners alike
    /// (the same choices as `pop3.allow_plaintext_auth`). Under TLS it is always offered.
    pub allow_plaintext_auth: PlaintextAuth,
    /// An authenticated client may use only sender addresses it owns (Postfix's
    /// `reject_sender_login_mismatch`): the login name itself, or for a login without `@`, that
    /// name at any local domain. Others get 553 5.7.1; the null sender is always allowed.
    pub sender_login_match: bool,
}

impl Default for SubmissionSection {
    fn default() -> Self {
        SubmissionSection {
            listen: Vec::new(),
            allow_plaintext_auth: PlaintextAuth::Never,
            sender_login_match: true,
        }
    }
}

/// `[auth]`: password checks for SMTP AUTH and POP3.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// A checkpassword program (argv) for SMTP AUTH and POP3; empty (the default): the older
    /// `pop3.checkpassword` if set, else the built-in database (`<data_dir>/passwd`).
    pub checkpassword: Vec<String>,
    /// Milliseconds every failed login (SMTP AUTH or POP3) waits before its reply.
    pub failure_delay_ms: u64,
    /// Failed logins from one client IP within `failure_window_secs`, counted over the whole
    /// server, before further logins from it are refused unchecked (same reply as a wrong
    /// password).
    pub max_failures_per_ip: u32,
    /// The same for one user name, whichever IPs the attempts come from.
    pub max_failures_per_user: u32,
    pub failure_window_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            checkpassword: Vec::new(),
            failure_delay_ms: 1000,
            max_failures_per_ip: 20,
            max_failures_per_user: 10,
            failure_window_secs: 600,
        }
    }
}

/// `[inject]`: local injection (`ringmail sendmail`) and qmail-inject's header defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InjectSection {
    /// The injection socket (`crate::inject`), relative to `data_dir` unless absolute; `""`
    /// turns injection off. Mode 0666: who may reach it may inject.
    pub socket: PathBuf,
    /// qmail's defaulthost: the domain added to an address without one (`bob` becomes
    /// `bob@default_host`), and of the sender's own address. Empty: `server.hostname`.
    pub default_host: String,
    /// qmail's defaultdomain: added to a domain without a dot (`bob@mail` becomes
    /// `bob@mail.default_domain`). Empty: none added.
    pub default_domain: String,
    /// qmail's plusdomain: replaces a `+` at the end of a domain (`bob@host+`). Empty:
    /// `default_host`.
    pub plus_domain: String,
    /// qmail's idhost: the domain of generated Message-IDs. Empty: `default_host`.
    pub id_host: String,
    /// Which envelope senders a local user may claim: `"any"`, or `"login"` (their own login
    /// name only; root and the server's user may claim any).
    pub sender_check: SenderCheck,
}

/// `inject.sender_check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderCheck {
    /// Any sender (qmail-inject and Postfix's sendmail by default); the uid is recorded.
    Any,
    /// The local part must be the caller's login name.
    Login,
}

impl Default for InjectSection {
    fn default() -> Self {
        InjectSection {
            socket: "inject.sock".into(),
            default_host: String::new(),
            default_domain: String::new(),
            plus_domain: String::new(),
            id_host: String::new(),
            sender_check: SenderCheck::Any,
        }
    }
}

impl Config {
    /// The checkpassword program for SMTP AUTH and POP3: `auth.checkpassword`, else the older
    /// `pop3.checkpassword` (still honoured), else none (the built-in database).
    pub fn checkpassword(&self) -> &[String] {
        if self.auth.checkpassword.is_empty() {
            &self.pop3.checkpassword
        } else {
            &self.auth.checkpassword
        }
    }

    /// Where the self-signed certificate lives when `[tls]` names none.
    pub fn self_signed_dir(&self) -> PathBuf {
        self.server.data_dir.join("tls")
    }

    /// `data_dir/mail_root`, or `mail_root` itself when absolute.
    pub fn mail_root(&self) -> PathBuf {
        self.server.data_dir.join(&self.local.mail_root)
    }

    /// Where the queue's segment files live.
    pub fn queue_dir(&self) -> PathBuf {
        self.server.data_dir.join("queue")
    }

    /// The built-in POP3 user database.
    pub fn passwd_path(&self) -> PathBuf {
        self.server.data_dir.join("passwd")
    }
}

/// `[http]`: the HTTP control plane (metrics, health, queue and injection API; src/http/).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// `ip:port` to listen on; empty (the default) turns the HTTP listener off. The embedded
    /// default configuration uses 127.0.0.1:2580.
    pub listen: String,
    /// The bearer token the API (`/api/...`) requires. Empty, with no `token_file`: the API
    /// answers 403 (only `/metrics` and `/healthz` work).
    pub token: String,
    /// A file holding the token (its first line), read at startup before root is dropped.
    pub token_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger: 413).
    pub max_body_size: usize,
    /// Requests per second the listener serves, all clients together (more: 429).
    pub max_requests_per_sec: u32,
    /// Recipients one `POST /api/inject` may carry.
    pub max_inject_recipients: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: String::new(),
            token: String::new(),
            token_file: None,
            max_body_size: 32 * 1024 * 1024,
            max_requests_per_sec: 100,
            max_inject_recipients: 10_000,
        }
    }
}

impl HttpSection {
    /// The listen address, if the listener is on.
    pub fn listen_address(&self) -> Option<String> {
        (!self.listen.trim().is_empty()).then(|| self.listen.trim().to_string())
    }
}
