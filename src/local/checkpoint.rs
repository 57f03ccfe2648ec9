//! Per-line progress of one recipient's delivery instructions, so that a retry (after a
//! temporary failure, or a crash) starts at the first line not yet done instead of repeating
//! the Maildir, mbox, program and forward deliveries that already happened.
//!
//! One small file per recipient with several instructions, `<data_dir>/local-progress/<key>`,
//! holding one line per finished instruction: `<stamp> <index>`. The key names the message and
//! recipient (the queue's message ids change when a message is moved forward in the queue, so
//! the key is made from what does not: the envelope, the recipient's position and a checksum of
//! the bytes); the stamp is a checksum of the instruction file, so progress recorded against a
//! file that has since been edited is ignored and every line of the new file is delivered.
//! Each line is `fdatasync`'d before the next instruction starts (and the directory synced when
//! the file is new); the file is removed once every line is done.
//!
//! What remains: a crash after an instruction finished and before its line reached the disk
//! repeats that one instruction, qmail's own guarantee for every line. A single-instruction
//! file writes no progress at all (the queue's recipient state is its checkpoint).
//!
//! Blocking: runs on a local-delivery thread.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::envelope::Envelope;

/// The directory under the data directory that holds progress files.
pub const PROGRESS_DIR: &str = "local-progress";

/// The progress file's name for recipient `index` of the message with `envelope` and `message`.
pub fn key(envelope: &Envelope, index: usize, message: &[u8]) -> String {
    let mut who = Vec::new();
    who.extend_from_slice(envelope.sender.as_bytes());
    who.push(0);
    if let Some(rcpt) = envelope.recipients.get(index) {
        who.extend_from_slice(rcpt.as_bytes());
    }
    who.push(0);
    who.extend_from_slice(&envelope.received_at.to_be_bytes());
    who.extend_from_slice(&(index as u64).to_be_bytes());
    who.extend_from_slice(&(message.len() as u64).to_be_bytes());
    format!(
        "{:08x}{:08x}-{}",
        crc32c::crc32c(&who),
        crc32c::crc32c(message),
        index
    )
}

/// The stamp of an instruction file's contents.
pub fn stamp(contents: &[u8]) -> String {
    format!("{:08x}.{}", crc32c::crc32c(contents), contents.len())
}

fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(key)
}

/// The instructions already done for `key` under this `stamp` (none if there is no file, or
/// it cannot be read: then every line is delivered, the safe direction).
pub fn load(dir: &Path, key: &str, stamp: &str) -> BTreeSet<usize> {
    let Ok(text) = fs::read_to_string(path(dir, key)) else {
        return BTreeSet::new();
    };
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(s, _)| *s == stamp)
        .filter_map(|(_, index)| index.parse().ok())
        .collect()
}

/// Durably records that instruction `index` is done.
pub fn record(dir: &Path, key: &str, stamp: &str, index: usize) -> io::Result<()> {
    let file_path = path(dir, key);
    let mut created = false;
    if !dir.is_dir() {
        crate::durable_dir::create_dir_all(dir)?;
    }
    let mut file = match OpenOptions::new().append(true).mode(0o600).open(&file_path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            created = true;
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&file_path)?
        }
        Err(e) => return Err(e),
    };
    file.write_all(format!("{stamp} {index}\n").as_bytes())?;
    file.sync_data()?;
    if created {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Forgets the progress of `key` (every line is done). A failure only leaves a stale file,
/// whose stamp and key no later delivery shares.
pub fn clear(dir: &Path, key: &str) {
    match fs::remove_file(path(dir, key)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", path(dir, key).display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            sender: "a@x.test".into(),
            recipients: vec!["b@y.test".into(), "c@y.test".into()],
            received_at: 1_700_000_000,
            smtputf8: false,
            body_8bit: false,
        }
    }

    #[test]
    fn keys_differ_per_recipient_and_message() {
        let e = envelope();
        assert_eq!(key(&e, 0, b"m"), key(&e, 0, b"m"));
        assert_ne!(key(&e, 0, b"m"), key(&e, 1, b"m"));
        assert_ne!(key(&e, 0, b"m"), key(&e, 0, b"n"));
        let mut later = e.clone();
        later.received_at += 1;
        assert_ne!(key(&e, 0, b"m"), key(&later, 0, b"m"));
    }

    #[test]
    fn records_loads_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join(PROGRESS_DIR);
        let k = key(&envelope(), 0, b"m");
        let s = stamp(b"./Maildir/\n|true\n");
        assert!(load(&dir, &k, &s).is_empty());
        record(&dir, &k, &s, 0).unwrap();
        record(&dir, &k, &s, 2).unwrap();
        assert_eq!(load(&dir, &k, &s), BTreeSet::from([0, 2]));
        // Another version of the file: nothing counts as done.
        assert!(load(&dir, &k, &stamp(b"./Maildir/\n")).is_empty());
        clear(&dir, &k);
        assert!(load(&dir, &k, &s).is_empty());
        clear(&dir, &k);
    }
}
