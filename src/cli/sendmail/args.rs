//! sendmail's command line, parsed by hand: its options are not getopt-shaped (`-oi`, `-bs`,
//! `-fsender` and `-f sender`, `-odi`), and programs that call /usr/sbin/sendmail pass whatever
//! Sendmail, Postfix and qmail accept. Pure: arguments in, [`Invocation`] out.

use std::fmt;
use std::path::PathBuf;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `-bm` (the default): read a message on stdin and queue it.
    #[default]
    Deliver,
    /// `-bs`: speak SMTP on stdin and stdout.
    Smtp,
    /// `-bp` (and the `mailq` name): list the queue.
    ListQueue,
}

/// A parsed sendmail command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    pub mode: Mode,
    /// `-t`: take recipients from To, Cc and Bcc (added to any given as arguments).
    pub recipients_from_headers: bool,
    /// `-i`, `-oi`: a line holding a lone `.` does not end the message.
    pub ignore_dots: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender (`""` or `<>`: the null sender).
    pub sender: Option<String>,
    /// `-F NAME`: the full name for an added `From:`.
    pub full_name: Option<String>,
    /// `-C FILE`: the ringmail configuration to use.
    pub config: Option<PathBuf>,
    pub recipients: Vec<String>,
    /// Options accepted and ignored, for `-v` to report.
    pub ignored: Vec<String>,
    /// `-v`: say what was done.
    pub verbose: bool,
}

/// A command line we cannot honour: EX_USAGE (64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options that take a value and are ignored (with the value): `-B 8BITMIME`, `-N never`,
/// `-R hdrs`, `-V envid`, `-L tag`, `-h hops`, `-X logfile`, `-O option=value`.
const IGNORED_WITH_VALUE: &[char] = &['B', 'N', 'R', 'V', 'L', 'h', 'X', 'O'];

/// Flags that are ignored: `-v` is honoured separately; `-m` (me too), `-n` (no aliasing), `-U`
/// (initial submission), `-G` (gateway), `-d`/`-x` debug, `-A` (submit.cf).
const IGNORED_FLAGS: &[char] = &['m', 'n', 'U', 'G', 'A'];

/// Parses sendmail's arguments (without argv[0]).
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let mut inv = Invocation::default();
    let mut i = 0;
    // The value of `-x VALUE` or `-xVALUE`.
    let value = |i: &mut usize, rest: &str, name: char| -> Result<String, UsageError> {
        if !rest.is_empty() {
            return Ok(rest.to_string());
        }
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| UsageError(format!("option -{name} needs a value")))
    };
    while let Some(arg) = args.get(i) {
        if arg == "--" {
            inv.recipients.extend(args[i + 1..].iter().cloned());
            break;
        }
        let Some(option) = arg.strip_prefix('-').filter(|o| !o.is_empty()) else {
            inv.recipients.push(arg.clone());
            i += 1;
            continue;
        };
        let mut chars = option.chars();
        let name = chars.next().unwrap_or('-');
        let rest = chars.as_str();
        match name {
            't' if rest.is_empty() => inv.recipients_from_headers = true,
            'i' if rest.is_empty() => inv.ignore_dots = true,
            'v' if rest.is_empty() => inv.verbose = true,
            'f' | 'r' => inv.sender = Some(value(&mut i, rest, name)?),
            'F' => inv.full_name = Some(value(&mut i, rest, name)?),
            'C' => inv.config = Some(PathBuf::from(value(&mut i, rest, name)?)),
            'o' => match rest {
                "i" => inv.ignore_dots = true,
                // -oem, -odi, -oQ..., -o with anything: delivery and error modes we have one
                // of (queue and return a bounce), so all are accepted.
                "" => return Err(UsageError("option -o needs a letter (e.g. -oi)".into())),
                _ => inv.ignored.push(arg.clone()),
            },
            'b' => match rest {
                "m" => inv.mode = Mode::Deliver,
                "s" => inv.mode = Mode::Smtp,
                "p" => inv.mode = Mode::ListQueue,
                "i" => {
                    return Err(UsageError(
                        "-bi (newaliases) is not done by this command".into(),
                    ));
                }
                _ => return Err(UsageError(format!("mode {arg} is not supported"))),
            },
            c if IGNORED_WITH_VALUE.contains(&c) => {
                let v = value(&mut i, rest, c)?;
                inv.ignored.push(format!("-{c} {v}"));
            }
            c if IGNORED_FLAGS.contains(&c) || c == 'd' || c == 'x' => {
                inv.ignored.push(arg.clone());
            }
            _ => return Err(UsageError(format!("unknown option {arg}"))),
        }
        i += 1;
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_what_programs_pass() {
        let inv = parse(&args("-t -oi -f alice@example.test -F Alice")).unwrap();
        assert!(inv.recipients_from_headers && inv.ignore_dots);
        assert_eq!(inv.sender.as_deref(), Some("alice@example.test"));
        assert_eq!(inv.full_name.as_deref(), Some("Alice"));
        assert_eq!(inv.mode, Mode::Deliver);

        let inv = parse(&args(
            "-fbob@x -FBob -i -odi -oem -v -B 8BITMIME bob@y carol",
        ))
        .unwrap();
        assert_eq!(inv.sender.as_deref(), Some("bob@x"));
        assert_eq!(inv.full_name.as_deref(), Some("Bob"));
        assert!(inv.ignore_dots && inv.verbose);
        assert_eq!(inv.recipients, vec!["bob@y", "carol"]);
        assert_eq!(inv.ignored, vec!["-odi", "-oem", "-B 8BITMIME"]);

        assert_eq!(parse(&args("-bs")).unwrap().mode, Mode::Smtp);
        assert_eq!(parse(&args("-bp")).unwrap().mode, Mode::ListQueue);
        assert_eq!(
            parse(&args("-C /etc/x.toml a@b")).unwrap().config,
            Some(PathBuf::from("/etc/x.toml"))
        );
        // After --, everything is a recipient.
        assert_eq!(
            parse(&args("-- -t x@y")).unwrap().recipients,
            vec!["-t", "x@y"]
        );
        // The null sender.
        assert_eq!(
            parse(&["-f".to_string(), String::new()]).unwrap().sender,
            Some(String::new())
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for line in ["-f", "-bd", "-bi", "-q", "-Z", "-o", "-tx"] {
            assert!(parse(&args(line)).is_err(), "{line}");
        }
        assert_eq!(
            parse(&args("-f")).unwrap_err().to_string(),
            "option -f needs a value"
        );
    }
}
