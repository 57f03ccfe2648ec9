//! APOP (RFC 1939 §7): MD5 over the greeting's timestamp followed by a shared secret.
//!
//! APOP needs the secret in the clear, which the built-in database (argon2id hashes) and
//! checkpassword programs cannot give. So APOP works only for users listed in a separate
//! secrets file, `<data_dir>/apop`, one `address:secret` per line (keep it mode 0600). A user
//! absent from it simply fails APOP, with the same reply as a wrong digest.

use std::path::Path;

use md5::{Digest, Md5};

/// The lowercase hex MD5 of `timestamp` + `secret`.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in constant time (hex case-insensitively).
pub fn verify_apop(timestamp: &str, secret: &str, digest: &str) -> bool {
    let want = apop_digest(timestamp, secret);
    let got = digest.to_ascii_lowercase();
    want.len() == got.len()
        && want
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Looks `address` up in an APOP secrets file (`address:secret` lines; `#` comments).
/// A missing file means no APOP users.
pub fn lookup_secret(path: &Path, address: &str) -> std::io::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(a, _)| a.eq_ignore_ascii_case(address))
        .map(|(_, s)| s.to_string()))
}

/// Checks an APOP login against the secrets file: true only for a listed user and right digest.
pub fn check(path: &Path, address: &str, timestamp: &str, digest: &str) -> std::io::Result<bool> {
    // Compute a digest even for unknown users so timing does not reveal who exists.
    let secret = lookup_secret(path, address)?;
    let ok = verify_apop(timestamp, secret.as_deref().unwrap_or("\0unknown"), digest);
    Ok(ok && secret.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "<1896.697170952@dbc.mtview.ca.us>";

    #[test]
    fn rfc1939_vector() {
        assert_eq!(
            apop_digest(TS, "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert!(verify_apop(
            TS,
            "tanstaaf",
            "C4C9334BAC560ECC979E58001B3E22FB"
        ));
        assert!(!verify_apop(
            TS,
            "tanstaaf",
            "c4c9334bac560ecc979e58001b3e22fa"
        ));
        assert!(!verify_apop(TS, "tanstaaf", "short"));
    }

    #[test]
    fn secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apop");
        assert!(!check(&path, "mrose", TS, "c4c9334bac560ecc979e58001b3e22fb").unwrap());
        std::fs::write(&path, "# comment\nmrose:tanstaaf\n").unwrap();
        assert!(check(&path, "MRose", TS, "c4c9334bac560ecc979e58001b3e22fb").unwrap());
        assert!(!check(&path, "other", TS, "c4c9334bac560ecc979e58001b3e22fb").unwrap());
    }
}
