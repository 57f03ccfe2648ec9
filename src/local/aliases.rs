//! `/etc/aliases`-style aliases (aliases(5)), compiled by `ringmail newaliases` into
//! `<data_dir>/aliases.idx`, which the server loads whole into memory.
//!
//! The source format, as sendmail and Postfix read it:
//!
//! ```text
//! # comment
//! postmaster: root
//! staff:      alice, bob@example.org,
//!             /var/mail/staff-archive          (continuation lines start with a blank)
//! devnull:    /dev/null
//! tickets:    "|/usr/local/bin/ticket --queue support"
//! team:       :include:/etc/mail/team.list     (one address per line; # comments)
//! team-owner: alice                            (bounces of mail to `team` go here)
//! ```
//!
//! Each target becomes a delivery instruction (see `dotqmail`): an address a forward (a bare
//! name stays in the recipient's domain), `/path` an mbox append (`/path/` a Maildir),
//! `|command` a program, run as the server's user in the mail root. `:include:` files are read
//! when the index is built (run `ringmail newaliases` after changing one). An alias that names
//! itself (`bob: bob, archive`) delivers to its own mailbox instead of forwarding to itself.
//!
//! The index is plain text, one alias per line followed by its targets on lines starting with a
//! tab, already checked and expanded; it is written to a temporary file, synced and renamed
//! over the old one, so the server never reads half an index.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::local::dotqmail::Instruction;

/// The index file under the data directory.
pub const INDEX_FILE: &str = "aliases.idx";

/// The first line of an index.
const INDEX_HEADER: &str = "# ringmail aliases index v1";

/// The most targets one alias may expand to (includes counted).
const MAX_TARGETS: usize = 10_000;

/// What is wrong with an aliases file (or an include), naming file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for AliasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for AliasError {}

/// Aliases by lowercased name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    pub map: HashMap<String, Vec<Instruction>>,
}

impl Aliases {
    /// The targets of `name` (a local part, any case).
    pub fn get(&self, name: &str) -> Option<&Vec<Instruction>> {
        self.map.get(&name.to_lowercase())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The owner of list `name`, if there is an alias `name-owner` or `owner-name`.
    pub fn owner_of(&self, name: &str) -> Option<String> {
        let name = name.to_lowercase();
        [format!("{name}-owner"), format!("owner-{name}")]
            .into_iter()
            .find(|owner| self.map.contains_key(owner))
    }
}

/// Parses an aliases source file's text; `read_include` reads an `:include:` file (given its
/// path) and is called for each.
pub fn parse(
    file: &Path,
    text: &str,
    read_include: &mut dyn FnMut(&Path) -> std::io::Result<String>,
) -> Result<Aliases, AliasError> {
    let mut map = HashMap::new();
    for (line, entry) in logical_lines(text) {
        let err = |message: String| AliasError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let (name, values) = entry
            .split_once(':')
            .ok_or_else(|| err("expected `name: target, target, ...`".into()))?;
        let name = name.trim().trim_matches('"').to_lowercase();
        if name.is_empty() || name.contains([' ', '\t', '@', '/']) {
            return Err(err(format!("`{name}` is not an alias name")));
        }
        let mut targets = Vec::new();
        for value in split_targets(values) {
            if let Some(path) = value.strip_prefix(":include:") {
                let path = Path::new(path.trim());
                let included = read_include(path)
                    .map_err(|e| err(format!(":include:{}: {e}", path.display())))?;
                for (inner_line, inner) in logical_lines(&included) {
                    for value in split_targets(&inner) {
                        targets.push(target(&name, &value).map_err(|m| AliasError {
                            file: path.to_path_buf(),
                            line: inner_line,
                            message: m,
                        })?);
                    }
                }
            } else {
                targets.push(target(&name, &value).map_err(err)?);
            }
            if targets.len() > MAX_TARGETS {
                return Err(err(format!("more than {MAX_TARGETS} targets")));
            }
        }
        if targets.is_empty() {
            return Err(err(format!("alias `{name}` has no targets")));
        }
        if map.insert(name.clone(), targets).is_some() {
            return Err(err(format!("alias `{name}` is defined twice")));
        }
    }
    Ok(Aliases { map })
}

/// Lines with their continuations joined (a line starting with a blank continues the one
/// before), comments and blank lines dropped; each with its first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t'])
            && let Some((_, last)) = out.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
            continue;
        }
        out.push((index + 1, line.trim().to_string()));
    }
    out
}

/// Comma-separated targets. Double quotes group a target that holds commas or blanks
/// (`"|prog a,b"`) and are removed; a backslash makes the next character literal (`\"`).
fn split_targets(values: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = values.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// One target as an instruction; an alias naming itself delivers to its own Maildir.
fn target(alias: &str, value: &str) -> Result<Instruction, String> {
    let line = if value.starts_with('/') || value.starts_with('|') {
        value.to_string()
    } else if value.eq_ignore_ascii_case(alias) {
        format!("./{alias}/Maildir/")
    } else {
        format!("&{value}")
    };
    match crate::local::dotqmail::parse(line.as_bytes()) {
        Ok(parsed) => parsed
            .lines
            .into_iter()
            .next()
            .map(|(_, instruction)| instruction)
            .ok_or_else(|| format!("`{value}` is not a target")),
        Err(e) => Err(format!(
            "`{value}`: {}",
            e.to_string().trim_start_matches("line 1: ")
        )),
    }
}

/// The index text of `aliases`, sorted by name.
pub fn index_text(aliases: &Aliases, source: &Path) -> String {
    let mut names: Vec<&String> = aliases.map.keys().collect();
    names.sort();
    let mut out = format!("{INDEX_HEADER} from {}\n", source.display());
    for name in names {
        out.push_str(name);
        out.push('\n');
        for target in &aliases.map[name] {
            out.push('\t');
            out.push_str(&target.to_string());
            out.push('\n');
        }
    }
    out
}

/// Reads an index written by [`index_text`].
pub fn parse_index(text: &str) -> Result<Aliases, String> {
    let mut lines = text.lines();
    if !lines.next().is_some_and(|l| l.starts_with(INDEX_HEADER)) {
        return Err("not a ringmail aliases index (run `ringmail newaliases`)".into());
    }
    let mut map: HashMap<String, Vec<Instruction>> = HashMap::new();
    let mut current: Option<String> = None;
    for (number, line) in lines.enumerate() {
        if let Some(target) = line.strip_prefix('\t') {
            let name = current
                .as_ref()
                .ok_or_else(|| format!("line {}: a target before any alias", number + 2))?;
            let parsed = crate::local::dotqmail::parse(target.as_bytes())
                .map_err(|e| format!("line {}: {e}", number + 2))?;
            let targets = map.entry(name.clone()).or_default();
            targets.extend(parsed.lines.into_iter().map(|(_, i)| i));
        } else {
            current = Some(line.to_string());
        }
    }
    Ok(Aliases { map })
}

/// Loads `<data_dir>/aliases.idx`; no index is no aliases. Blocking.
pub fn load_index(data_dir: &Path) -> Aliases {
    let path = data_dir.join(INDEX_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_index(&text).unwrap_or_else(|e| {
            log::error!("{}: {e}; no aliases in effect", path.display());
            Aliases::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Aliases::default(),
        Err(e) => {
            log::error!("cannot read {}: {e}; no aliases in effect", path.display());
            Aliases::default()
        }
    }
}

/// Writes the index durably: a temporary file, `fsync`, rename over the old one, directory
/// `fsync`.
pub fn write_index(data_dir: &Path, text: &str) -> std::io::Result<PathBuf> {
    let path = data_dir.join(INDEX_FILE);
    let tmp = data_dir.join(format!("{INDEX_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    crate::durable_dir::sync_dir(data_dir)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;

    const SOURCE: &str = "# system aliases\n\
        postmaster: root\n\
        Staff:  alice, bob@example.org,\n\
        \t/var/mail/staff-archive\n\
        \n\
        tickets: \"|/usr/local/bin/ticket --queue a,b \\\"x\\\"\"\n\
        team: :include:/etc/mail/team.list, carol\n\
        team-owner: alice\n\
        bob: bob, /var/mail/bob-copy\n";

    fn parsed() -> Aliases {
        parse(Path::new("/etc/aliases"), SOURCE, &mut |path| {
            assert_eq!(path, Path::new("/etc/mail/team.list"));
            Ok("# the team\ndave\nerin@example.org\n".into())
        })
        .unwrap()
    }

    #[test]
    fn parses_every_kind_of_target() {
        let aliases = parsed();
        assert_eq!(aliases.len(), 6);
        assert_eq!(
            aliases.get("postmaster"),
            Some(&vec![Forward("root".into())])
        );
        assert_eq!(
            aliases.get("STAFF"),
            Some(&vec![
                Forward("alice".into()),
                Forward("bob@example.org".into()),
                Mbox("/var/mail/staff-archive".into()),
            ])
        );
        assert_eq!(
            aliases.get("tickets"),
            Some(&vec![Program(
                "/usr/local/bin/ticket --queue a,b \"x\"".into()
            )])
        );
        assert_eq!(
            aliases.get("team"),
            Some(&vec![
                Forward("dave".into()),
                Forward("erin@example.org".into()),
                Forward("carol".into()),
            ])
        );
        assert_eq!(
            aliases.get("bob"),
            Some(&vec![
                Maildir("./bob/Maildir/".into()),
                Mbox("/var/mail/bob-copy".into()),
            ])
        );
        assert_eq!(aliases.owner_of("team").as_deref(), Some("team-owner"));
        assert_eq!(aliases.owner_of("staff"), None);
    }

    #[test]
    fn the_index_round_trips() {
        let aliases = parsed();
        let text = index_text(&aliases, Path::new("/etc/aliases"));
        assert!(
            text.starts_with(
                "# ringmail aliases index v1 from /etc/aliases\nbob\n\t./bob/Maildir/\n"
            )
        );
        assert_eq!(parse_index(&text).unwrap(), aliases);
        assert!(parse_index("bob\n\t&x\n").is_err());
    }

    #[test]
    fn errors_name_file_and_line() {
        let none =
            &mut |_: &Path| -> std::io::Result<String> { Err(std::io::ErrorKind::NotFound.into()) };
        let cases = [
            ("a: b\nnot an alias line\n", 2, "expected `name: target"),
            ("a: b\na: c\n", 2, "defined twice"),
            ("a:\n", 1, "has no targets"),
            ("x y: b\n", 1, "is not an alias name"),
            ("a: :include:/missing\n", 1, ":include:/missing"),
            ("a: \"|\"\n", 1, "without a command"),
        ];
        for (text, line, needle) in cases {
            let e = parse(Path::new("/etc/aliases"), text, none).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with("/etc/aliases:"), "{e}");
        }
        let e = parse(Path::new("/etc/aliases"), "a: :include:/l\n", &mut |_| {
            Ok("ok@x\nbad address here\n".into())
        })
        .unwrap_err();
        assert_eq!((e.file.as_path(), e.line), (Path::new("/l"), 2));
    }
}
