//! Reading a configuration file: parse the TOML, then validate every value once, so a running
//! server never meets a bad setting. Every error names the file, the line and the key, and
//! every error in a file is found in one pass (`ringmail check-config` lists them all).
//!
//! Line numbers come from the parser's spans (`spans`), messages are put in an operator's words
//! (`words`), the checks themselves are in `validate`.
//!
//! serde stops at the first value it cannot deserialize; to find the others, the offending key
//! is removed (so its default applies) and the table deserialized again, up to [`MAX_ERRORS`]
//! times. The values that did deserialize are then validated as a whole.

use super::schema::Config;
use super::spans::Spans;
use super::validate::validate;
use super::words::plain;
use std::fmt;
use std::path::Path;

/// Errors reported from one file at most; beyond this the file is probably not a config at all.
pub const MAX_ERRORS: usize = 50;

/// A configuration that cannot be used, and where the mistake is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<embedded default>`.
    pub file: String,
    /// 1-based line of the offending key, when it is written in the file.
    pub line: Option<usize>,
    /// Dotted key, e.g. `smtp.listen`; empty when the file could not be read at all.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the configuration file at `path`; the first error if any.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    check_file(path).map_err(first)
}

/// Parses and validates configuration text; `name` is used in error messages. The first error
/// if any.
pub fn load_str(text: &str, name: &str) -> Result<Config, ConfigError> {
    check_str(text, name).map_err(first)
}

fn first(errors: Vec<ConfigError>) -> ConfigError {
    // `check_str` never fails with an empty list; the fallback only keeps this total.
    errors.into_iter().next().unwrap_or_else(|| ConfigError {
        file: String::new(),
        line: None,
        key: String::new(),
        message: "invalid configuration".to_string(),
    })
}

/// An error about `key` found after loading (e.g. a configured user that does not exist on this
/// host), located in the configuration file at `path` like a validation error; `None` is the
/// embedded default.
pub fn key_error(path: Option<&Path>, key: &str, message: String) -> ConfigError {
    let (file, text) = match path {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).unwrap_or_default(),
        ),
        None => (
            "<embedded default>".to_string(),
            super::EMBEDDED_DEFAULT.to_string(),
        ),
    };
    let line = Spans::of(&text).and_then(|spans| spans.line_of_dotted(key));
    ConfigError {
        file,
        line,
        key: key.to_string(),
        message,
    }
}

/// Like [`load_file`], with every error in the file (in file order where lines are known).
pub fn check_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: name.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }]
    })?;
    check_str(&text, &name)
}

/// Like [`load_str`], with every error in the text.
pub fn check_str(text: &str, name: &str) -> Result<Config, Vec<ConfigError>> {
    let error = |line: Option<usize>, key: String, message: String| ConfigError {
        file: name.to_string(),
        line,
        key,
        message,
    };
    // Syntax first: nothing else can be read from text that does not parse.
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| vec![syntax_error(text, name, &e)])?;
    let spans = Spans::of(text).unwrap_or_else(|| Spans::none(text));

    let mut errors = Vec::new();
    let mut current = text.to_string();
    let config = loop {
        let e = match toml::from_str::<Config>(&current) {
            Ok(config) => break Some(config),
            Err(e) => e,
        };
        // Which key: from the spans of the text just parsed (after the first round, the table
        // written out again), reported at its line in the operator's file.
        let path = e
            .span()
            .and_then(|span| Spans::of(&current)?.key_at(span.start));
        let line = match &path {
            Some(path) => spans.line_of(path),
            None if current == text => e.span().map(|span| spans.line_at(span.start)),
            None => None,
        };
        let key = path.as_ref().map(|p| p.join(".")).unwrap_or_default();
        errors.push(error(line, key, plain(e.message())));
        let removed = path.is_some_and(|path| remove(&mut table, &path));
        if !removed || errors.len() >= MAX_ERRORS {
            break None;
        }
        match toml::to_string(&table) {
            Ok(text) => current = text,
            Err(_) => break None,
        }
    };
    if let Some(config) = &config {
        for (key, message) in validate(config).0 {
            errors.push(error(spans.line_of_dotted(&key), key, message));
        }
    }
    // File order reads best; errors without a line (keys not in the file) go last.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(errors),
    }
}

/// Removes the key at `path`; false when there is none (then retrying would loop).
fn remove(table: &mut toml::Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [key] => table.remove(key).is_some(),
        [key, rest @ ..] => match table.get_mut(key) {
            Some(toml::Value::Table(inner)) => remove(inner, rest),
            _ => false,
        },
    }
}

/// A TOML syntax error. The text does not parse, so there are no spans to name the key; the
/// key is read off the error's line (the section header above it, and the key before `=`).
fn syntax_error(text: &str, name: &str, error: &toml::de::Error) -> ConfigError {
    let line = error
        .span()
        .map(|span| Spans::none(text).line_at(span.start));
    let key = line.map(|l| key_at_line(text, l)).unwrap_or_default();
    ConfigError {
        file: name.to_string(),
        line,
        key,
        message: plain(error.message()),
    }
}

/// The dotted key written on 1-based `line` (section header plus the key before `=`), for
/// syntax errors only: everywhere else the parser's spans say where a key is.
fn key_at_line(text: &str, line: usize) -> String {
    let mut section = String::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = header.trim().to_string();
        }
        if index + 1 == line {
            return match trimmed.split_once('=') {
                Some((key, _)) if !trimmed.starts_with('[') => join_key(&section, key.trim()),
                _ => section,
            };
        }
    }
    String::new()
}

fn join_key(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EMBEDDED_DEFAULT;

    #[test]
    fn embedded_default_is_valid() {
        let config = load_str(EMBEDDED_DEFAULT, "<embedded default>").unwrap();
        assert_eq!(config.smtp.listen, vec!["127.0.0.1:2525".to_string()]);
        assert_eq!(config.local.domains, vec!["localhost", "example.test"]);
        assert_eq!(config.pop3.listen, vec!["127.0.0.1:2110".to_string()]);
        assert_eq!(
            config.http.listen_address().as_deref(),
            Some("127.0.0.1:2580")
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[smtp]\nlisten = [\"nowhere\"]\n",
                2,
                "smtp.listen",
                "not an ip:port",
            ),
            (
                "[server]\nshards = \"two\"\n",
                2,
                "server.shards",
                "must be a whole number, not text (\"two\")",
            ),
            (
                "[http]\nlisten = \"localhost\"\n",
                2,
                "http.listen",
                "not an ip:port",
            ),
            (
                "[http]\n\ntoken = \"short\"\n",
                3,
                "http.token",
                "at least 16 printable characters",
            ),
            (
                "[http]\nmax_requests_per_sec = 0\n",
                2,
                "http.max_requests_per_sec",
                "at least 1",
            ),
            (
                "[http]\ntoken_file = \"/nonexistent/token\"\n",
                2,
                "http.token_file",
                "cannot read",
            ),
            (
                "[server]\n\nbogus = 1\n",
                3,
                "server.bogus",
                "unknown key `bogus`",
            ),
            (
                "[local]\ndomains = []\n",
                2,
                "local.domains",
                "at least one",
            ),
            (
                "[smtp]\nmax_recipients = 0\n",
                2,
                "smtp.max_recipients",
                "at least 1",
            ),
            (
                "[smtp]\nrelay_networks = [\"10.0.0.0/33\"]\n",
                2,
                "smtp.relay_networks",
                "prefix",
            ),
            (
                "[pop3]\nidle_timeout_secs = 60\n",
                2,
                "pop3.idle_timeout_secs",
                "600",
            ),
            (
                "[tls]\ncert = \"/nonexistent.pem\"\n",
                1,
                "tls.key",
                "needed",
            ),
            (
                "[server]\nlog_level = \"loud\"\n",
                2,
                "server.log_level",
                "one of",
            ),
            (
                "[submission]\nlisten = [\"nowhere\"]\n",
                2,
                "submission.listen",
                "not an ip:port",
            ),
            (
                "[tls]\nself_signed = false\n[smtp]\nsmtps_listen = [\"127.0.0.1:0\"]\n",
                4,
                "smtp.smtps_listen",
                "SMTPS needs a certificate",
            ),
            (
                "[auth]\nfailure_delay_ms = 600000\n",
                2,
                "auth.failure_delay_ms",
                "at most 60000",
            ),
            (
                "[submission]\nallow_plaintext_auth = \"sometimes\"\n",
                2,
                "submission.allow_plaintext_auth",
                "never",
            ),
            (
                "[server]\nuser = \"root\"\n",
                2,
                "server.user",
                "must not be root",
            ),
            (
                "[server]\ngroup = \"a b\"\n",
                2,
                "server.group",
                "not a user or group name",
            ),
            (
                "[server]\nshards = 2\nlog_file = \"/nonexistent/dir/ringmail.log\"\n",
                3,
                "server.log_file",
                "/nonexistent/dir does not exist",
            ),
            (
                "[server]\nblocking_threads = 0\n",
                2,
                "server.blocking_threads",
                "between 1 and 1024",
            ),
            (
                "[server]\n\nblocking_queue = 0\n",
                3,
                "server.blocking_queue",
                "between 1 and 1000000",
            ),
            ("[smtp\n", 1, "smtp", "invalid table header"),
        ];
        for (text, line, key, words) in cases {
            let err = load_str(text, "test.toml").unwrap_err();
            assert_eq!(err.file, "test.toml");
            assert_eq!(err.line, Some(*line), "{text:?}: {err}");
            assert_eq!(&err.key, key, "{text:?}: {err}");
            assert!(err.message.contains(words), "{text:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("test.toml:{line}")),
                "{err}"
            );
        }
    }

    /// Writes an executable script (or a plain file when `mode` has no x bit) for the checks.
    fn file_with_mode(dir: &Path, name: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let script = file_with_mode(dir.path(), "checkpw", 0o755);
        let not_exec = file_with_mode(dir.path(), "plain", 0o644);
        let missing = dir.path().join("missing").display().to_string();
        // (config text, the errors expected as (line, key, words in the message)).
        type Case<'a> = (String, Vec<(Option<usize>, &'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            // Several errors in one file, of every kind: types, unknown keys, values.
            (
                "[server]\nshards = \"two\"\nlog_level = \"loud\"\nbogus = 1\n\n\
                 [smtp]\nmax_recipients = 0\nlisten = [\"nowhere\"]\nmax_message_size = -5\n"
                    .to_string(),
                vec![
                    (Some(2), "server.shards", "must be a whole number, not text"),
                    (Some(3), "server.log_level", "one of error, warn"),
                    (Some(4), "server.bogus", "unknown key `bogus`"),
                    (Some(7), "smtp.max_recipients", "at least 1"),
                    (Some(8), "smtp.listen", "not an ip:port"),
                    (Some(9), "smtp.max_message_size", "not negative (-5)"),
                ],
            ),
            // Wrong types, in words: a list where a number goes, a number where text goes.
            (
                "[smtp]\nlisten = \"127.0.0.1:25\"\n[server]\nhostname = 5\n".to_string(),
                vec![
                    (Some(2), "smtp.listen", "must be a list in brackets"),
                    (
                        Some(4),
                        "server.hostname",
                        "must be text in quotes, not a number (5)",
                    ),
                ],
            ),
            // Programs and files that are not there.
            (
                format!(
                    "[pop3]\ncheckpassword = [\"{missing}\", \"x\"]\napop_secrets = \"{missing}\"\n"
                ),
                vec![
                    (Some(2), "pop3.checkpassword", "does not exist"),
                    (Some(3), "pop3.apop_secrets", "cannot read"),
                ],
            ),
            (
                format!("[pop3]\ncheckpassword = [\"{not_exec}\"]\n"),
                vec![(Some(2), "pop3.checkpassword", "not executable")],
            ),
            (
                "[pop3]\ncheckpassword = [\"no-such-checkpassword-program\"]\n".to_string(),
                vec![(Some(2), "pop3.checkpassword", "not in PATH")],
            ),
            (
                format!(
                    "[tls]\ncert = \"{missing}\"\nkey = \"{}\"\n[relay]\ntls_ca_file = \"{missing}\"\n",
                    dir.path().display()
                ),
                vec![
                    (Some(2), "tls.cert", "cannot read"),
                    (Some(3), "tls.key", "is a directory"),
                    (Some(5), "relay.tls_ca_file", "no such file"),
                ],
            ),
            // What is there passes.
            (format!("[pop3]\ncheckpassword = [\"{script}\"]\n"), vec![]),
            (
                "[pop3]\ncheckpassword = [\"sh\", \"-c\"]\n".to_string(),
                vec![],
            ),
        ];
        for (text, want) in &cases {
            let got = match check_str(text, "t.toml") {
                Ok(_) => Vec::new(),
                Err(errors) => errors,
            };
            let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
            assert_eq!(got.len(), want.len(), "{text}\n{shown:#?}");
            for (error, (line, key, words)) in got.iter().zip(want) {
                assert_eq!(error.line, *line, "{text}\n{shown:#?}");
                assert_eq!(error.key, *key, "{text}\n{shown:#?}");
                assert!(error.message.contains(words), "{text}\n{shown:#?}");
                assert!(
                    !error.message.contains("expected"),
                    "serde's words: {error}"
                );
            }
            // load_str reports the first of them.
            if let Some(first) = got.first() {
                assert_eq!(&load_str(text, "t.toml").unwrap_err(), first);
            }
        }
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let err = load_file(Path::new("/nonexistent/ringmail.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ringmail.toml"));
        assert!(err.to_string().contains("cannot read"));
    }
}
