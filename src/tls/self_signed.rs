//! The out-of-the-box certificate: with no `[tls] cert`/`key`, ringmail creates a self-signed
//! certificate for `server.hostname` in `<data_dir>/tls/` on first start and reuses it after,
//! as Debian's snakeoil certificate does, so STARTTLS, SMTPS, submission and POP3S work with no
//! setup. Clients that verify certificates will not trust it: a real deployment sets `[tls]`.
//!
//! It is created by the server after the privilege drop, inside the data directory that is then
//! the service user's, so the running server can always read it back.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::TlsError;

/// The files of a self-signed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made by this call (first start) rather than found.
    pub created: bool,
}

/// Years the certificate is valid (Debian's snakeoil: 10).
const VALID_YEARS: i32 = 10;

/// Returns `dir/cert.pem` and `dir/key.pem`, creating them for `hostname` unless both exist.
pub fn ensure(dir: &Path, hostname: &str) -> Result<SelfSigned, TlsError> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.is_file() && key.is_file() {
        return Ok(SelfSigned {
            cert,
            key,
            created: false,
        });
    }
    let fail = |path: &Path, message: String| TlsError::Generate {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
    let (cert_pem, key_pem) = generate(hostname).map_err(|e| fail(&cert, e))?;
    // The key first, private from its first byte; each file appears whole or not at all.
    write_atomically(&key, key_pem.as_bytes(), 0o600).map_err(|e| fail(&key, e.to_string()))?;
    write_atomically(&cert, cert_pem.as_bytes(), 0o644).map_err(|e| fail(&cert, e.to_string()))?;
    Ok(SelfSigned {
        cert,
        key,
        created: true,
    })
}

/// A P-256 ECDSA key and a certificate for `hostname` (subject CN and DNS name), valid from a
/// year back (clock skew) for [`VALID_YEARS`].
fn generate(hostname: &str) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, 1, 1);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The calendar year now, near enough for validity dates (off by at most a day at New Year).
fn current_year() -> i32 {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // 365.2425 days
    1970 + (crate::clock::now_unix() / SECONDS_PER_YEAR) as i32
}

fn write_atomically(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_once_then_reuses_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let first = ensure(&tls_dir, "mx.test").unwrap();
        assert!(first.created);
        let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
        let pem = std::fs::read(&first.cert).unwrap();
        let second = ensure(&tls_dir, "mx.test").unwrap();
        assert!(!second.created);
        assert_eq!(
            std::fs::read(&second.cert).unwrap(),
            pem,
            "reused, not remade"
        );
        assert!(super::super::load_server_config(&second.cert, &second.key).is_ok());
        // A half-made pair (crash between the two renames) is made again.
        std::fs::remove_file(&second.cert).unwrap();
        assert!(ensure(&tls_dir, "mx.test").unwrap().created);
        assert!((2026..2200).contains(&current_year()));
    }
}
