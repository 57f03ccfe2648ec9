//! SIGHUP: read the configuration file again, validate it, and hand what can change without a
//! restart to new sessions; open sessions go on with what they started with. A file with an
//! error is refused as a whole, with the error in the log, and the running settings stay.
//!
//! | reloads on SIGHUP | needs a restart |
//! |---|---|
//! | `[smtp]` except `listen` (limits, timeouts, access rules, DNSBL zones, greeting delay, relay_networks, rcpthosts) | `smtp.listen`, `smtp.smtps_listen`, `submission.listen`, `pop3.listen`, `pop3.pop3s_listen` |
//! | `[submission]` except `listen`; `auth.checkpassword`, `auth.failure_delay_ms` | `auth.max_failures_per_ip`, `auth.max_failures_per_user`, `auth.failure_window_secs` |
//! | `[pop3]` except its listeners | `[server]` except `log_level` (hostname, data_dir, shards, user, group, log_file, log_format, blocking_*) |
//! | `[tls]` (certificate and key; the self-signed one is read again) | `local.domains`, `local.mail_root` (the route step of the delivery side holds them) |
//! | `local.unknown_users`, `local.users` | `[queue]`, `[dns]`, `[relay]` |
//! | `server.log_level` | `[http]` (its listener is bound as root; the token and caps are read once) |
//!
//! A changed restart-only setting is logged and keeps its running value.
//!
//! The new settings are published in a [`Reloadable`]: a generation counter (one atomic load
//! per session start on the shards) and, behind it, the current [`Live`] settings, read under
//! a lock only when the generation moved, i.e. once per shard per reload. Each shard keeps what
//! it builds from them (SMTP limits, recipient policy, POP3 settings) in a [`ShardView`].
//!
//! The reload runs on the signal thread, after the privilege drop: the certificate and key must
//! be readable by `server.user` (a key readable by root only loads at startup but not on reload;
//! the error says so and the old certificate stays).

use crate::config::Config;
use log::{error, info, warn};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The settings a reload can change, as one snapshot.
pub struct Live {
    /// The whole configuration, restart-only settings kept at their running values.
    pub config: Config,
    /// STLS, POP3S (and SMTP STARTTLS) certificate; `None` without `[tls]`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The current [`Live`] settings, swapped whole by a reload.
pub struct Reloadable {
    generation: AtomicU64,
    current: RwLock<Arc<Live>>,
    /// The file the server was started with; `None`: the embedded default.
    path: Option<PathBuf>,
}

impl Reloadable {
    pub fn new(live: Live, path: Option<PathBuf>) -> Reloadable {
        Reloadable {
            generation: AtomicU64::new(0),
            current: RwLock::new(Arc::new(live)),
            path,
        }
    }

    /// Moves on every successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Live> {
        // A poisoned lock only means a reload panicked mid-swap; the Arc inside is whole.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn publish(&self, live: Live) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// SIGHUP: reload, and log what happened.
    pub fn on_sighup(&self) {
        match self.reload() {
            Ok(notes) => {
                for note in &notes {
                    warn!("signal HUP: {note}");
                }
                info!(
                    "signal HUP: configuration reloaded from {}; new sessions use it",
                    self.path_shown()
                );
            }
            Err(e) => error!("signal HUP: configuration not reloaded, the old one stays: {e}"),
        }
    }

    fn path_shown(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "<embedded default>".into(),
        }
    }

    /// Reads, validates and publishes the configuration file. `Ok` carries one note per
    /// restart-only setting that changed (and was not applied).
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let Some(path) = &self.path else {
            return Err("the server runs the embedded default (no --config file to read)".into());
        };
        let mut new = crate::config::load_file(path).map_err(|e| e.to_string())?;
        if let Ok(absolute) = std::path::absolute(&new.server.data_dir) {
            new.server.data_dir = absolute;
        }
        let old = self.current();
        let (config, notes) = merge(&old.config, new);
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(
                crate::tls::load_server_config(cert, key)
                    .map_err(|e| format!("tls: {e} (the reload runs as server.user)"))?,
            ),
            // The self-signed certificate made at startup (crate::tls::self_signed) stays.
            _ if config.tls.self_signed => {
                let dir = config.self_signed_dir();
                let made = crate::tls::self_signed::ensure(&dir, &config.server.hostname)
                    .map_err(|e| format!("tls: {e}"))?;
                Some(
                    crate::tls::load_server_config(&made.cert, &made.key)
                        .map_err(|e| format!("tls: {e}"))?,
                )
            }
            _ => None,
        };
        log::set_max_level(crate::logging::parse_level(&config.server.log_level));
        self.publish(Live { config, tls });
        Ok(notes)
    }
}

/// The running configuration with every reloadable setting of `new`; a note for each
/// restart-only setting that differs.
fn merge(old: &Config, new: Config) -> (Config, Vec<String>) {
    let mut merged = old.clone();
    let mut notes = Vec::new();
    let mut restart_only = |key: &str, old: String, new: String| {
        if old != new {
            notes.push(format!(
                "{key} changed in the file; it takes effect only after a restart"
            ));
        }
    };
    let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let mut old_server = old.server.clone();
    old_server.log_level = new.server.log_level.clone();
    restart_only("server", show(&old_server), show(&new.server));
    restart_only(
        "smtp.listen",
        show(&old.smtp.listen),
        show(&new.smtp.listen),
    );
    restart_only(
        "pop3.listen",
        show(&old.pop3.listen),
        show(&new.pop3.listen),
    );
    restart_only(
        "pop3.pop3s_listen",
        show(&old.pop3.pop3s_listen),
        show(&new.pop3.pop3s_listen),
    );
    restart_only(
        "local.domains",
        show(&old.local.domains),
        show(&new.local.domains),
    );
    restart_only(
        "local.mail_root",
        show(&old.local.mail_root),
        show(&new.local.mail_root),
    );
    restart_only(
        "smtp.smtps_listen",
        show(&old.smtp.smtps_listen),
        show(&new.smtp.smtps_listen),
    );
    restart_only(
        "submission.listen",
        show(&old.submission.listen),
        show(&new.submission.listen),
    );
    // The failed-login limiter is built once, so its limits keep their running values.
    let limits = |a: &crate::config::AuthSection| {
        (
            a.max_failures_per_ip,
            a.max_failures_per_user,
            a.failure_window_secs,
        )
    };
    restart_only(
        "auth.max_failures_per_ip/max_failures_per_user/failure_window_secs",
        show(&limits(&old.auth)),
        show(&limits(&new.auth)),
    );
    restart_only("queue", show(&old.queue), show(&new.queue));
    restart_only("dns", show(&old.dns), show(&new.dns));
    restart_only("relay", show(&old.relay), show(&new.relay));
    restart_only("http", show(&old.http), show(&new.http));

    merged.server.log_level = new.server.log_level;
    merged.smtp = new.smtp;
    merged.smtp.listen = old.smtp.listen.clone();
    merged.smtp.smtps_listen = old.smtp.smtps_listen.clone();
    merged.submission = new.submission;
    merged.submission.listen = old.submission.listen.clone();
    merged.auth.checkpassword = new.auth.checkpassword;
    merged.auth.failure_delay_ms = new.auth.failure_delay_ms;
    merged.pop3 = new.pop3;
    merged.pop3.listen = old.pop3.listen.clone();
    merged.pop3.pop3s_listen = old.pop3.pop3s_listen.clone();
    merged.tls = new.tls;
    merged.local.unknown_users = new.local.unknown_users;
    merged.local.users = new.local.users;
    (merged, notes)
}

/// Makes a shard's value from the settings and the value it replaces (if any).
type Build<T> = Box<dyn Fn(&Live, Option<&T>) -> T>;

/// What one shard builds from the [`Live`] settings, rebuilt when a reload published new ones.
pub struct ShardView<T> {
    source: Arc<Reloadable>,
    build: Build<T>,
    cached: RefCell<(u64, Rc<T>)>,
}

impl<T> ShardView<T> {
    /// `build` makes the shard's value from the settings (and the previous value, to carry
    /// state such as counters over a reload).
    pub fn new(
        source: Arc<Reloadable>,
        build: impl Fn(&Live, Option<&T>) -> T + 'static,
    ) -> ShardView<T> {
        let generation = source.generation();
        let first = build(&source.current(), None);
        ShardView {
            source,
            build: Box::new(build),
            cached: RefCell::new((generation, Rc::new(first))),
        }
    }

    /// The value for a session starting now.
    pub fn get(&self) -> Rc<T> {
        let generation = self.source.generation();
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            let next = (self.build)(&self.source.current(), Some(&cached.1));
            *cached = (generation, Rc::new(next));
        }
        Rc::clone(&cached.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    #[test]
    fn reloadable_settings_change_and_restart_only_ones_are_kept_with_a_note() {
        let old = load_str(
            "[smtp]\nlisten = [\"127.0.0.1:2525\"]\nmax_errors = 5\n[local]\ndomains = [\"a.test\"]\n",
            "old",
        )
        .unwrap();
        let new = load_str(
            "[server]\nlog_level = \"debug\"\n[smtp]\nlisten = [\"127.0.0.1:2626\"]\nmax_errors = 9\n\
             dnsbl_zones = [\"bl.test\"]\n[local]\ndomains = [\"b.test\"]\nunknown_users = \"reject\"\n",
            "new",
        )
        .unwrap();
        let (merged, notes) = merge(&old, new);
        assert_eq!(merged.smtp.max_errors, 9);
        assert_eq!(merged.smtp.dnsbl_zones, vec!["bl.test"]);
        assert_eq!(merged.server.log_level, "debug");
        assert_eq!(merged.smtp.listen, vec!["127.0.0.1:2525"]);
        assert_eq!(merged.local.domains, vec!["a.test"]);
        assert_eq!(
            merged.local.unknown_users,
            crate::config::UnknownUsers::Reject
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("smtp.listen changed"), "{notes:?}");
        assert!(notes[1].starts_with("local.domains changed"), "{notes:?}");
    }

    #[test]
    fn a_bad_file_keeps_the_running_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[smtp]\nmax_errors = 5\n").unwrap();
        let mut config = crate::config::load_file(&path).unwrap();
        config.server.data_dir = std::path::absolute(&config.server.data_dir).unwrap();
        let holder = Arc::new(Reloadable::new(
            Live { config, tls: None },
            Some(path.clone()),
        ));
        let view = ShardView::new(Arc::clone(&holder), |live, _| live.config.smtp.max_errors);
        assert_eq!(*view.get(), 5);

        std::fs::write(&path, "[smtp]\nmax_errors = 0\n").unwrap();
        let err = holder.reload().unwrap_err();
        assert!(err.contains("r.toml:2: smtp.max_errors"), "{err}");
        assert_eq!((holder.generation(), *view.get()), (0, 5));

        std::fs::write(&path, "[smtp]\nmax_errors = 7\n").unwrap();
        assert_eq!(holder.reload(), Ok(vec![]));
        assert_eq!((holder.generation(), *view.get()), (1, 7));

        let embedded = Reloadable::new(
            Live {
                config: Config::default(),
                tls: None,
            },
            None,
        );
        assert!(embedded.reload().unwrap_err().contains("embedded default"));
    }
}
