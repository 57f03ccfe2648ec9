//! One line of POP3 client input parsed into a [`Command`] (RFC 1939 §5-§7, RFC 2449 §5,
//! RFC 2595 §4, RFC 5034 §4).

/// RFC 2449 §4: a command line is at most 255 octets, CRLF included.
pub const MAX_COMMAND_LINE: usize = 253;

/// A client command. Message numbers are as the client wrote them (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The rest of the line: RFC 1939 §7 lets a password contain spaces.
    Pass(String),
    Apop {
        user: String,
        digest: String,
    },
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Quit,
    Top {
        msg: u32,
        lines: u32,
    },
    Uidl(Option<u32>),
    Capa,
    Stls,
    /// `AUTH` alone lists mechanisms; `initial` is the RFC 5034 initial response.
    Auth {
        mechanism: Option<String>,
        initial: Option<String>,
    },
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Longer than RFC 2449's 255 octets.
    TooLong,
    /// A keyword we do not implement.
    Unknown,
    /// A known keyword with missing, extra or malformed arguments.
    Syntax,
}

fn number(arg: &str) -> Result<u32, ParseError> {
    if arg.is_empty() || arg.len() > 10 || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Syntax);
    }
    arg.parse().map_err(|_| ParseError::Syntax)
}

/// Parses one line (without its line end).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.len() > MAX_COMMAND_LINE {
        return Err(ParseError::TooLong);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax)?;
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    // RFC 1939 §3: keywords are case-insensitive and at most four characters.
    if keyword.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let keyword = keyword.to_ascii_uppercase();
    let args: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let nargs = args.len();
    let one = |args: &[&str]| -> Result<String, ParseError> {
        match args {
            [a] if !a.is_empty() => Ok((*a).to_string()),
            _ => Err(ParseError::Syntax),
        }
    };
    let opt_num = |args: &[&str]| -> Result<Option<u32>, ParseError> {
        match args {
            [] => Ok(None),
            [a] => number(a).map(Some),
            _ => Err(ParseError::Syntax),
        }
    };
    let none = |cmd: Command| {
        if nargs == 0 {
            Ok(cmd)
        } else {
            Err(ParseError::Syntax)
        }
    };
    match keyword.as_str() {
        "USER" => one(&args).map(Command::User),
        "PASS" => match rest {
            Some(r) if !r.is_empty() => Ok(Command::Pass(r.to_string())),
            _ => Err(ParseError::Syntax),
        },
        "APOP" => match args[..] {
            [user, digest] if !user.is_empty() && !digest.is_empty() => Ok(Command::Apop {
                user: user.to_string(),
                digest: digest.to_string(),
            }),
            _ => Err(ParseError::Syntax),
        },
        "STAT" => none(Command::Stat),
        "LIST" => opt_num(&args).map(Command::List),
        "RETR" => one(&args).and_then(|a| number(&a)).map(Command::Retr),
        "DELE" => one(&args).and_then(|a| number(&a)).map(Command::Dele),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "TOP" => match args[..] {
            [m, n] => Ok(Command::Top {
                msg: number(m)?,
                lines: number(n)?,
            }),
            _ => Err(ParseError::Syntax),
        },
        "UIDL" => opt_num(&args).map(Command::Uidl),
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "AUTH" => match args[..] {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] if !m.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_string()),
                initial: None,
            }),
            [m, i] if !m.is_empty() && !i.is_empty() => Ok(Command::Auth {
                mechanism: Some(m.to_string()),
                initial: Some(i.to_string()),
            }),
            _ => Err(ParseError::Syntax),
        },
        _ => Err(ParseError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        use Command::*;
        let cases: &[(&str, Result<Command, ParseError>)] = &[
            ("USER bob@x.test", Ok(User("bob@x.test".into()))),
            ("user bob", Ok(User("bob".into()))),
            ("USER", Err(ParseError::Syntax)),
            ("USER a b", Err(ParseError::Syntax)),
            (
                "PASS secret with spaces",
                Ok(Pass("secret with spaces".into())),
            ),
            ("PASS", Err(ParseError::Syntax)),
            (
                "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Ok(Apop {
                    user: "mrose".into(),
                    digest: "c4c9334bac560ecc979e58001b3e22fb".into(),
                }),
            ),
            ("APOP mrose", Err(ParseError::Syntax)),
            ("STAT", Ok(Stat)),
            ("STAT 1", Err(ParseError::Syntax)),
            ("LIST", Ok(List(None))),
            ("LIST 2", Ok(List(Some(2)))),
            ("LIST x", Err(ParseError::Syntax)),
            ("LIST -1", Err(ParseError::Syntax)),
            ("LIST 99999999999", Err(ParseError::Syntax)),
            ("RETR 1", Ok(Retr(1))),
            ("RETR", Err(ParseError::Syntax)),
            ("DELE 3", Ok(Dele(3))),
            ("NOOP", Ok(Noop)),
            ("RSET", Ok(Rset)),
            ("QUIT", Ok(Quit)),
            ("TOP 1 10", Ok(Top { msg: 1, lines: 10 })),
            ("TOP 1", Err(ParseError::Syntax)),
            ("UIDL", Ok(Uidl(None))),
            ("UIDL 4", Ok(Uidl(Some(4)))),
            ("CAPA", Ok(Capa)),
            ("STLS", Ok(Stls)),
            (
                "AUTH",
                Ok(Auth {
                    mechanism: None,
                    initial: None,
                }),
            ),
            (
                "AUTH PLAIN",
                Ok(Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: None,
                }),
            ),
            (
                "AUTH PLAIN AGJvYgBwdw==",
                Ok(Auth {
                    mechanism: Some("PLAIN".into()),
                    initial: Some("AGJvYgBwdw==".into()),
                }),
            ),
            ("XYZZY", Err(ParseError::Unknown)),
            ("RETRIEVE 1", Err(ParseError::Unknown)),
            ("", Err(ParseError::Unknown)),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line.as_bytes()), want, "line {line:?}");
        }
    }

    #[test]
    fn caps_line_length() {
        let long = format!("USER {}", "a".repeat(300));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::TooLong));
        assert_eq!(parse(b"\xff\xfe"), Err(ParseError::Syntax));
    }
}
