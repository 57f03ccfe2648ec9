//! `fill-maildirs`: creates identical test mailboxes for POP3 benchmarks of any server.

use std::fs;
use std::io;
use std::path::Path;

use crate::args::FillArgs;
use crate::message::{self, Eol};
use crate::template;

/// Fixed timestamp for file names and Date headers, so every fill produces the same mailboxes.
const FILL_TIME: u64 = 1_700_000_000;

/// The Maildir file name for message `n`: unique, and carrying `S=` (size on disk) and `W=`
/// (size with CRLF line ends) as Dovecot and Courier expect, in `new/` so no flags are set.
pub fn file_name(n: u64, text: &[u8]) -> String {
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    format!(
        "{}.M{n}P0.ringmail-load,S={},W={}",
        FILL_TIME + n,
        text.len(),
        text.len() + lines
    )
}

/// Writes `users` × `messages` messages; returns how many files were written.
pub fn fill(args: &FillArgs) -> io::Result<u64> {
    let date = message::rfc5322_date(FILL_TIME);
    let mut written = 0;
    for u in 1..=args.users {
        let user = template::expand(&args.user_template, u);
        let maildir = args.root.join(&args.domain).join(&user).join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(maildir.join(sub))?;
        }
        let to = vec![format!("{user}@{}", args.domain)];
        for m in 0..args.messages {
            let n = (u - 1) * args.messages + m;
            let text = message::build("load@sender.test", &to, n, args.size, &date, Eol::Lf);
            write_new(&maildir, &file_name(n, &text), &text)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Maildir delivery order: write in `tmp/`, then rename into `new/`.
fn write_new(maildir: &Path, name: &str, text: &[u8]) -> io::Result<()> {
    let tmp = maildir.join("tmp").join(name);
    fs::write(&tmp, text)?;
    fs::rename(&tmp, maildir.join("new").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_identical_maildirs() {
        let dir = tempfile::tempdir().unwrap();
        let args = FillArgs {
            root: dir.path().to_path_buf(),
            domain: "example.test".into(),
            user_template: "u{n}".into(),
            users: 2,
            messages: 3,
            size: 2000,
        };
        assert_eq!(fill(&args).unwrap(), 6);
        let new = dir.path().join("example.test/u2/Maildir/new");
        let mut names: Vec<_> = fs::read_dir(&new)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3);
        assert!(names[0].starts_with("1700000003.M3P0.ringmail-load,S=2000,W="));
        let text = fs::read(new.join(&names[0])).unwrap();
        assert_eq!(text.len(), 2000);
        assert!(
            fs::read_dir(dir.path().join("example.test/u1/Maildir/tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn names_carry_sizes() {
        assert_eq!(
            file_name(5, b"a\nbc\n"),
            "1700000005.M5P0.ringmail-load,S=5,W=7"
        );
    }
}
