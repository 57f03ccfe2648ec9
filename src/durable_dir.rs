//! Creating directories so that they survive a power cut: `mkdir -p` that `fsync`s the parent
//! of every directory it makes. A new directory's name is only durable once its parent is
//! synced (the power-loss test showed a fresh data directory, queue and all, vanish at a cut).
//! Blocking: for startup and the command line, not for a shard.

use std::fs;
use std::io;
use std::path::Path;

/// Makes `dir` and any missing parents, each durable in its parent before this returns. A
/// directory that appeared meanwhile (another process or thread made it) gets its parent synced
/// too: its maker may not have synced yet.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_dir_all(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    sync_dir(parent)
}

/// `fsync`s a directory, making the names in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_every_missing_level_and_accepts_existing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let deep = tmp.path().join("a/b/c");
        create_dir_all(&deep).expect("create");
        assert!(deep.is_dir());
        create_dir_all(&deep).expect("again");
        let file = tmp.path().join("f");
        fs::write(&file, b"x").expect("file");
        assert!(create_dir_all(&file.join("d")).is_err());
    }
}
