//! The built-in user database: `<data_dir>/passwd`, one `address:argon2id-PHC-string` per line.
//!
//! Addresses are stored as `crate::mailbox::split_address` normalises them (lowercase), so
//! lookups are case-insensitive like mailbox paths. Changes rewrite the whole file atomically:
//! temp file, fsync, rename, directory fsync. Blank lines and `#` comments are kept out on rewrite.

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::mailbox::split_address;

/// Why a database operation failed.
#[derive(Debug)]
pub enum PasswdError {
    /// Reading or writing the file failed.
    Io { path: PathBuf, source: io::Error },
    /// A line is not `address:hash` (the file was edited by hand).
    Parse { path: PathBuf, line: usize },
    /// `add` of an address already present.
    Exists(String),
    /// `delete` of an address not present.
    NotFound(String),
    /// Not a `user@domain` address, or it contains `:` or a control character.
    BadAddress(String),
    /// Hashing failed (should not happen with the default parameters).
    Hash(String),
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PasswdError::Parse { path, line } => {
                write!(f, "{}:{line}: expected address:hash", path.display())
            }
            PasswdError::Exists(a) => write!(f, "{a} already exists"),
            PasswdError::NotFound(a) => write!(f, "{a} not found"),
            PasswdError::BadAddress(a) => write!(f, "{a:?} is not a valid user@domain address"),
            PasswdError::Hash(e) => write!(f, "password hashing failed: {e}"),
        }
    }
}

impl std::error::Error for PasswdError {}

/// The database, loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswdDb {
    entries: Vec<(String, String)>,
}

/// The stored form of an address.
pub fn normalize(address: &str) -> Result<String, PasswdError> {
    let bad = || PasswdError::BadAddress(address.to_string());
    if address.contains(|c: char| c == ':' || c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let (local, domain) = split_address(address).map_err(|_| bad())?;
    Ok(format!("{local}@{domain}"))
}

/// Hashes `password` with argon2id and a random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswdError> {
    let mut salt = [0u8; 16];
    getrandom(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswdError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswdError::Hash(e.to_string()))
}

fn getrandom(buf: &mut [u8]) -> Result<(), PasswdError> {
    let path = Path::new("/dev/urandom");
    let mut f = File::open(path).map_err(|source| PasswdError::Io {
        path: path.into(),
        source,
    })?;
    io::Read::read_exact(&mut f, buf).map_err(|source| PasswdError::Io {
        path: path.into(),
        source,
    })
}

/// A hash of a password nobody knows, verified for unknown users so a lookup miss costs the
/// same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password("ringmail-dummy-password\0").unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0DdVH7wsuyI9DgJtrEX3bcwTUvyl7Zw2Y1CvfCQFZw8"
                .to_string()
        })
    })
}

thread_local! {
    /// Argon2 working memory (19 MiB at the default parameters), kept per thread between
    /// verifications: argon2 overwrites every block before reading it, so reuse saves the
    /// allocation and zeroing that `verify_password` repeats on every login. Only the blocking
    /// pool's few workers (and the CLI) verify, so few of these exist.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// True when `password` matches the argon2 PHC string `hash`: the same check as
/// `PasswordVerifier::verify_password` (the hash's own algorithm, version and parameters, a
/// constant-time comparison), with reused working memory.
fn verify_hash(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .ok()
        .and_then(|h| verify_parsed(&h, password))
        .unwrap_or(false)
}

fn verify_parsed(hash: &PasswordHash<'_>, password: &str) -> Option<bool> {
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let expected = hash.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt_buf).ok()?;
    let mut out_buf = [0u8; Output::MAX_LENGTH];
    let out = out_buf.get_mut(..expected.len())?;
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    ARGON2_MEMORY.with_borrow_mut(|memory| {
        // Grows once to the largest cost seen; a shorter resize keeps the capacity.
        memory.resize(blocks, Block::default());
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, memory.as_mut_slice())
            .ok()
    })?;
    // `Output`'s equality is constant-time.
    Some(Output::new(out).ok()? == expected)
}

impl PasswdDb {
    /// Parses the file's text.
    pub fn parse(path: &Path, text: &str) -> Result<PasswdDb, PasswdError> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (addr, hash) = line
                .split_once(':')
                .filter(|(a, h)| !a.is_empty() && !h.is_empty())
                .ok_or_else(|| PasswdError::Parse {
                    path: path.to_path_buf(),
                    line: n + 1,
                })?;
            entries.push((addr.to_ascii_lowercase(), hash.to_string()));
        }
        Ok(PasswdDb { entries })
    }

    /// The stored addresses, in file order.
    pub fn addresses(&self) -> Vec<String> {
        self.entries.iter().map(|(a, _)| a.clone()).collect()
    }

    /// True when `address` exists and `password` matches. Unknown users verify a dummy hash
    /// so the answer takes as long either way.
    pub fn verify(&self, address: &str, password: &str) -> bool {
        let key = normalize(address).unwrap_or_default();
        match self.entries.iter().find(|(a, _)| *a == key) {
            Some((_, hash)) => verify_hash(hash, password),
            None => {
                verify_hash(dummy_hash(), password);
                false
            }
        }
    }

    fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(a, h)| format!("{a}:{h}\n"))
            .collect()
    }
}

/// Loads the database; a missing file is an empty database.
pub fn load(path: &Path) -> Result<PasswdDb, PasswdError> {
    match fs::read_to_string(path) {
        Ok(text) => PasswdDb::parse(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PasswdDb::default()),
        Err(source) => Err(PasswdError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the database atomically: temp file (mode 0600), fsync, rename, directory fsync.
fn store(path: &Path, db: &PasswdDb) -> Result<(), PasswdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PasswdError::Io { path: p, source }
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Run as root (an operator's sudo), the new file would be root's and unreadable by the
    // server, which runs as the data directory's owner (server::privileges): give it that owner.
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = fs::metadata(dir).map_err(io_err(dir))?;
        std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))
            .map_err(io_err(&tmp))?;
    }
    f.write_all(db.render().as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Adds `address` with `password`; fails if it exists.
pub fn add(path: &Path, address: &str, password: &str) -> Result<(), PasswdError> {
    let key = normalize(address)?;
    let mut db = load(path)?;
    if db.entries.iter().any(|(a, _)| *a == key) {
        return Err(PasswdError::Exists(key));
    }
    db.entries.push((key, hash_password(password)?));
    store(path, &db)
}

/// Sets `address`'s password, adding it if absent.
pub fn set(path: &Path, address: &str, password: &str) -> Result<(), PasswdError> {
    let key = normalize(address)?;
    let mut db = load(path)?;
    let hash = hash_password(password)?;
    match db.entries.iter_mut().find(|(a, _)| *a == key) {
        Some(entry) => entry.1 = hash,
        None => db.entries.push((key, hash)),
    }
    store(path, &db)
}

/// Removes `address`; fails if absent.
pub fn delete(path: &Path, address: &str) -> Result<(), PasswdError> {
    let key = normalize(address)?;
    let mut db = load(path)?;
    let before = db.entries.len();
    db.entries.retain(|(a, _)| *a != key);
    if db.entries.len() == before {
        return Err(PasswdError::NotFound(key));
    }
    store(path, &db)
}

/// The addresses in the database.
pub fn list(path: &Path) -> Result<Vec<String>, PasswdError> {
    Ok(load(path)?.addresses())
}

/// Loads the file and verifies one login (false on any error).
pub fn verify(path: &Path, address: &str, password: &str) -> bool {
    load(path)
        .map(|db| db.verify(address, password))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_verify_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        assert_eq!(list(&path).unwrap(), Vec::<String>::new());
        add(&path, "Bob@Example.Test", "hunter2").unwrap();
        add(&path, "alice@example.test", "pw").unwrap();
        assert!(matches!(
            add(&path, "bob@example.test", "x"),
            Err(PasswdError::Exists(_))
        ));
        assert_eq!(
            list(&path).unwrap(),
            vec!["bob@example.test", "alice@example.test"]
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("bob@example.test:$argon2id$"), "{text}");
        assert!(verify(&path, "bob@example.test", "hunter2"));
        assert!(verify(&path, "BOB@example.test", "hunter2"));
        assert!(!verify(&path, "bob@example.test", "hunter3"));
        assert!(!verify(&path, "nobody@example.test", "hunter2"));
        set(&path, "bob@example.test", "new").unwrap();
        assert!(verify(&path, "bob@example.test", "new"));
        delete(&path, "bob@example.test").unwrap();
        assert!(matches!(
            delete(&path, "bob@example.test"),
            Err(PasswdError::NotFound(_))
        ));
        assert_eq!(list(&path).unwrap(), vec!["alice@example.test"]);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn root_writes_the_file_as_the_data_directory_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let root = nix::unistd::geteuid().is_root();
        // As root (the test user here), a directory owned by another uid, as the server's is.
        let owner = if root {
            std::os::unix::fs::chown(dir.path(), Some(4242), Some(4243)).unwrap();
            (4242, 4243)
        } else {
            let meta = fs::metadata(dir.path()).unwrap();
            (meta.uid(), meta.gid())
        };
        let path = dir.path().join("passwd");
        add(&path, "bob@example.test", "pw").unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), owner);
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[test]
    fn reused_memory_verifies_like_the_crate() {
        use argon2::password_hash::PasswordVerifier;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        // Sizes that shrink and grow the reused memory; other algorithms, versions, lengths.
        let cases = [
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 1, 32),
            (Algorithm::Argon2id, Version::V0x13, 512, 2, 2, 16),
            (Algorithm::Argon2i, Version::V0x13, 32, 3, 1, 64),
            (Algorithm::Argon2d, Version::V0x10, 128, 1, 4, 32),
            (Algorithm::Argon2id, Version::V0x13, 64, 1, 1, 32),
        ];
        for (alg, version, m, t, p, len) in cases {
            let params = Params::new(m, t, p, Some(len)).unwrap();
            let phc = Argon2::new(alg, version, params)
                .hash_password(b"right", &salt)
                .unwrap()
                .to_string();
            let parsed = PasswordHash::new(&phc).unwrap();
            for (password, want) in [("right", true), ("wrong", false)] {
                let crate_says = Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(crate_says, want, "{phc}");
                assert_eq!(verify_hash(&phc, password), want, "{phc} {password}");
            }
        }
        assert!(!verify_hash(
            "$argon2id$v=19$m=64,t=1,p=1$bm9zYWx0",
            "right"
        ));
        assert!(!verify_hash(
            "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaA",
            "right"
        ));
        assert!(!verify_hash("not a hash", "right"));
    }

    #[test]
    fn rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        for bad in ["bob", "a:b@c", "a b@c", "@x", "a\n@c"] {
            assert!(
                matches!(add(&path, bad, "pw"), Err(PasswdError::BadAddress(_))),
                "{bad}"
            );
        }
        fs::write(&path, "ok@x:hash\nbroken line\n").unwrap();
        assert!(matches!(
            load(&path),
            Err(PasswdError::Parse { line: 2, .. })
        ));
    }
}
