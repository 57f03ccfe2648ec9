//! The `.qmail` delivery-instruction format (qmail's dot-qmail(5)), parsed without I/O.
//!
//! One instruction per line, delivered in order:
//!
//! | line | instruction |
//! |---|---|
//! | `# text` | a comment |
//! | (empty) | ignored |
//! | `\|command` | run `command` with `sh -c`, the message on standard input |
//! | `./Maildir/`, `/var/mail/bob/` | a Maildir: a path ending in `/` |
//! | `./Mailbox`, `/var/mail/bob` | an mbox file: a path not ending in `/` |
//! | `&bob@example.org` | forward to this address |
//! | `bob@example.org` | forward too: a line starting with a letter, digit or another address character |
//!
//! As qmail does, trailing spaces and tabs are removed from every line but a program line.
//! A file with no instruction at all (only comments and blank lines) means "deliver as if there
//! were no file" ([`Instructions::is_empty`]).
//!
//! Anything else is an error naming the line: a broken `.qmail` must defer the mail with a clear
//! reason (qmail-local does the same), never deliver half of it or silently drop it.

use std::fmt;

/// The most bytes of a `.qmail` file read; a longer file is an error, not truncated.
pub const MAX_FILE_LEN: usize = 64 * 1024;

/// The most instructions in one file.
pub const MAX_INSTRUCTIONS: usize = 1000;

/// One delivery instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// Write into this Maildir (the path as written, ending in `/`; relative paths are relative
    /// to the home directory the file belongs to).
    Maildir(String),
    /// Append to this mbox file.
    Mbox(String),
    /// Forward to this address (as written; `@domain` may be missing).
    Forward(String),
    /// Run this command with `sh -c`.
    Program(String),
}

impl Instruction {
    /// A short name of the kind of instruction, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Instruction::Maildir(_) => "maildir",
            Instruction::Mbox(_) => "mbox",
            Instruction::Forward(_) => "forward",
            Instruction::Program(_) => "program",
        }
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::Maildir(p) | Instruction::Mbox(p) => f.write_str(p),
            Instruction::Forward(a) => write!(f, "&{a}"),
            Instruction::Program(c) => write!(f, "|{c}"),
        }
    }
}

/// A parsed `.qmail` file: its instructions with the line (1-based) each came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instructions {
    pub lines: Vec<(usize, Instruction)>,
}

impl Instructions {
    /// Only comments and blank lines: the caller delivers as if the file did not exist.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// What is wrong with a `.qmail` file. Each names the line, so the deferral reason tells the
/// owner exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DotQmailError {
    /// Longer than [`MAX_FILE_LEN`].
    TooLong,
    /// More than [`MAX_INSTRUCTIONS`] instructions.
    TooManyInstructions,
    /// Not UTF-8 (paths and commands are passed on as text).
    NotText { line: usize },
    /// A NUL or another control character (other than a tab) in a line.
    ControlCharacter { line: usize },
    /// `|` with nothing after it.
    EmptyProgram { line: usize },
    /// `&` with nothing after it, or an address that cannot be one (spaces, `<`, `>`, `,`,
    /// an empty local part or domain).
    BadAddress { line: usize, address: String },
    /// A file line that names no file: `/`, `./`, or a path with an empty name.
    BadPath { line: usize, path: String },
}

impl fmt::Display for DotQmailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DotQmailError::TooLong => write!(f, "file longer than {MAX_FILE_LEN} bytes"),
            DotQmailError::TooManyInstructions => {
                write!(f, "more than {MAX_INSTRUCTIONS} delivery instructions")
            }
            DotQmailError::NotText { line } => write!(f, "line {line} is not UTF-8 text"),
            DotQmailError::ControlCharacter { line } => {
                write!(f, "line {line} contains a control character")
            }
            DotQmailError::EmptyProgram { line } => {
                write!(f, "line {line}: `|` without a command")
            }
            DotQmailError::BadAddress { line, address } => {
                write!(f, "line {line}: `{address}` is not a forwarding address")
            }
            DotQmailError::BadPath { line, path } => {
                write!(
                    f,
                    "line {line}: `{path}` is not a mailbox file or Maildir path"
                )
            }
        }
    }
}

impl std::error::Error for DotQmailError {}

/// Parses the contents of a `.qmail` file.
pub fn parse(contents: &[u8]) -> Result<Instructions, DotQmailError> {
    if contents.len() > MAX_FILE_LEN {
        return Err(DotQmailError::TooLong);
    }
    let mut lines = Vec::new();
    for (index, raw) in contents.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let text = std::str::from_utf8(raw).map_err(|_| DotQmailError::NotText { line })?;
        let Some(instruction) = parse_line(text, line)? else {
            continue;
        };
        if lines.len() == MAX_INSTRUCTIONS {
            return Err(DotQmailError::TooManyInstructions);
        }
        lines.push((line, instruction));
    }
    Ok(Instructions { lines })
}

/// One line: `None` for a comment or a blank line.
fn parse_line(text: &str, line: usize) -> Result<Option<Instruction>, DotQmailError> {
    // A CRLF file (written on another system) reads the same as an LF one.
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(DotQmailError::ControlCharacter { line });
    }
    if let Some(command) = text.strip_prefix('|') {
        // The command is given to the shell as written (trailing blanks may matter to it).
        if command.trim().is_empty() {
            return Err(DotQmailError::EmptyProgram { line });
        }
        return Ok(Some(Instruction::Program(command.to_string())));
    }
    let text = text.trim_end_matches([' ', '\t']);
    match text.as_bytes().first() {
        None | Some(b'#') => Ok(None),
        Some(b'/' | b'.') => file_line(text, line).map(Some),
        Some(b'&') => forward_line(&text[1..], line).map(Some),
        Some(_) => forward_line(text, line).map(Some),
    }
}

/// A Maildir (trailing `/`) or mbox line.
fn file_line(path: &str, line: usize) -> Result<Instruction, DotQmailError> {
    let bad = || DotQmailError::BadPath {
        line,
        path: path.to_string(),
    };
    let name = path.trim_end_matches('/');
    // `/`, `./`, `.` and `..` name a directory that already is something else, never a mailbox.
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.ends_with("/.")
        || name.ends_with("/..")
    {
        return Err(bad());
    }
    if !path.starts_with('/') && !path.starts_with("./") && !path.starts_with("../") {
        // `.Mailbox` would be a forward in qmail's grammar only if it started with a letter;
        // a leading dot that is not `./` or `../` is a typo we refuse rather than guess at.
        return Err(bad());
    }
    Ok(if path.ends_with('/') {
        Instruction::Maildir(path.to_string())
    } else {
        Instruction::Mbox(path.to_string())
    })
}

/// A forward (after any `&`): one address, optionally in angle brackets.
fn forward_line(text: &str, line: usize) -> Result<Instruction, DotQmailError> {
    let address = text.trim_matches([' ', '\t']);
    let address = address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address);
    let bad = || DotQmailError::BadAddress {
        line,
        address: text.to_string(),
    };
    if address.is_empty() || address.contains([' ', '\t', '<', '>', ',', '(', ')', ';']) {
        return Err(bad());
    }
    if let Some((local, domain)) = address.rsplit_once('@')
        && (local.is_empty() || domain.is_empty() || domain.starts_with('.'))
    {
        return Err(bad());
    }
    Ok(Instruction::Forward(address.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;

    fn one(text: &str) -> Result<Option<Instruction>, DotQmailError> {
        parse(text.as_bytes()).map(|i| i.lines.first().map(|(_, i)| i.clone()))
    }

    #[test]
    fn parses_each_kind_of_line() {
        let table: &[(&str, Option<Instruction>)] = &[
            ("# a comment", None),
            ("", None),
            ("   ", None),
            ("./Maildir/", Some(Maildir("./Maildir/".into()))),
            ("/var/mail/bob/", Some(Maildir("/var/mail/bob/".into()))),
            ("./Maildir/  \t", Some(Maildir("./Maildir/".into()))),
            ("./Mailbox", Some(Mbox("./Mailbox".into()))),
            ("../shared/mbox", Some(Mbox("../shared/mbox".into()))),
            (
                "/var/spool/mail/bob",
                Some(Mbox("/var/spool/mail/bob".into())),
            ),
            ("&bob@example.org", Some(Forward("bob@example.org".into()))),
            (
                "& bob@example.org ",
                Some(Forward("bob@example.org".into())),
            ),
            (
                "&<bob@example.org>",
                Some(Forward("bob@example.org".into())),
            ),
            ("bob@example.org", Some(Forward("bob@example.org".into()))),
            ("alice", Some(Forward("alice".into()))),
            ("1234@example.org", Some(Forward("1234@example.org".into()))),
            (
                "|/usr/bin/procmail",
                Some(Program("/usr/bin/procmail".into())),
            ),
            (
                "|echo hi >> /tmp/x ",
                Some(Program("echo hi >> /tmp/x ".into())),
            ),
            ("./Maildir/\r", Some(Maildir("./Maildir/".into()))),
        ];
        for (text, want) in table {
            assert_eq!(one(text), Ok(want.clone()), "{text:?}");
        }
    }

    #[test]
    fn refuses_bad_lines_naming_them() {
        let table: &[(&str, DotQmailError)] = &[
            ("|", DotQmailError::EmptyProgram { line: 1 }),
            ("|   ", DotQmailError::EmptyProgram { line: 1 }),
            (
                "&",
                DotQmailError::BadAddress {
                    line: 1,
                    address: "".into(),
                },
            ),
            (
                "bob smith@example.org",
                DotQmailError::BadAddress {
                    line: 1,
                    address: "bob smith@example.org".into(),
                },
            ),
            (
                "&@example.org",
                DotQmailError::BadAddress {
                    line: 1,
                    address: "@example.org".into(),
                },
            ),
            (
                "&bob@",
                DotQmailError::BadAddress {
                    line: 1,
                    address: "bob@".into(),
                },
            ),
            (
                "a@x, b@y",
                DotQmailError::BadAddress {
                    line: 1,
                    address: "a@x, b@y".into(),
                },
            ),
            (
                "/",
                DotQmailError::BadPath {
                    line: 1,
                    path: "/".into(),
                },
            ),
            (
                "./",
                DotQmailError::BadPath {
                    line: 1,
                    path: "./".into(),
                },
            ),
            (
                "./Maildir/..",
                DotQmailError::BadPath {
                    line: 1,
                    path: "./Maildir/..".into(),
                },
            ),
            (
                ".Mailbox",
                DotQmailError::BadPath {
                    line: 1,
                    path: ".Mailbox".into(),
                },
            ),
            ("./Mail\0box", DotQmailError::ControlCharacter { line: 1 }),
            (
                "|echo \x1b[31m",
                DotQmailError::ControlCharacter { line: 1 },
            ),
        ];
        for (text, want) in table {
            assert_eq!(one(text).as_ref(), Err(want), "{text:?}");
        }
        assert_eq!(
            parse(b"# ok\n./Maildir/\n\xff\n"),
            Err(DotQmailError::NotText { line: 3 })
        );
        let err = parse(b"# ok\n&\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: `` is not a forwarding address");
    }

    #[test]
    fn keeps_order_and_line_numbers() {
        let file = b"# deliver twice and tell someone\n./Maildir/\n\n./Mailbox\n&a@x.test\n|true\n";
        let parsed = parse(file).unwrap();
        assert_eq!(
            parsed.lines,
            vec![
                (2, Maildir("./Maildir/".into())),
                (4, Mbox("./Mailbox".into())),
                (5, Forward("a@x.test".into())),
                (6, Program("true".into())),
            ]
        );
        assert!(parse(b"# only comments\n\n").unwrap().is_empty());
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn instructions_print_back_to_themselves() {
        let file = b"./Maildir/\n./Mailbox\n& <a@x.test> \nbob\n|exec  prog --flag \n";
        for (_, instruction) in parse(file).unwrap().lines {
            let again = parse(instruction.to_string().as_bytes()).unwrap();
            assert_eq!(again.lines, vec![(1, instruction)]);
        }
    }

    #[test]
    fn caps_size_and_count() {
        assert_eq!(
            parse(&vec![b'#'; MAX_FILE_LEN + 1]),
            Err(DotQmailError::TooLong)
        );
        let many = "a@x\n".repeat(MAX_INSTRUCTIONS + 1);
        assert_eq!(
            parse(many.as_bytes()),
            Err(DotQmailError::TooManyInstructions)
        );
        let exactly = "a@x\n".repeat(MAX_INSTRUCTIONS);
        assert_eq!(
            parse(exactly.as_bytes()).unwrap().lines.len(),
            MAX_INSTRUCTIONS
        );
    }
}
