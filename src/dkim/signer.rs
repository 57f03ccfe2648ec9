//! The DKIM signing keys of `[[dkim.keys]]`, loaded once at startup, and the choice of key for a
//! message: the key of the From: header's domain, or else of its nearest parent domain (a key for
//! `example.com` signs mail from `news.example.com`; `d=example.com` still aligns with the From
//! domain under DMARC's relaxed alignment, RFC 7489 §3.1.1).
//!
//! Signing is done by `mail-auth` (RFC 6376 RSA-SHA256, RFC 8463 Ed25519-SHA256). It costs
//! about a millisecond per RSA-2048 signature plus a hash of the body, so callers run it on the
//! blocking pool, never on a shard.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{DkimAlgorithm, DkimSection};

/// Why a key could not be loaded: the operator fixes `file`.
#[derive(Debug)]
pub struct KeyError {
    pub file: PathBuf,
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DKIM key {}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for KeyError {}

/// One loaded key with the signer `mail-auth` built from it.
enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// Every signing key, by domain (lowercase). A domain may have several keys (an RSA and an
/// Ed25519 one, RFC 8463 §1 recommends both); each signs, so a message carries one
/// `DKIM-Signature` per key of its domain.
pub struct DkimKeys {
    by_domain: HashMap<String, Vec<Signer>>,
}

impl fmt::Debug for DkimKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKeys")
            .field("domains", &self.by_domain.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DkimKeys {
    /// Loads every key of `[dkim]`; the first bad one stops startup, naming its file.
    /// `None` when no key is configured (nothing is signed).
    pub fn load(section: &DkimSection) -> Result<Option<Arc<DkimKeys>>, KeyError> {
        if section.keys.is_empty() {
            return Ok(None);
        }
        let canonicalization = |name: &str| match name {
            "simple" => Canonicalization::Simple,
            _ => Canonicalization::Relaxed,
        };
        let (header_c, body_c) = match section.canonicalization.split_once('/') {
            Some((h, b)) => (canonicalization(h), canonicalization(b)),
            None => (
                canonicalization(&section.canonicalization),
                canonicalization(&section.canonicalization),
            ),
        };
        let mut by_domain: HashMap<String, Vec<Signer>> = HashMap::new();
        for key in &section.keys {
            let pem = std::fs::read(&key.key_file).map_err(|e| KeyError {
                file: key.key_file.clone(),
                message: format!("cannot read it: {e}"),
            })?;
            let signer = build_signer(
                &pem,
                key.algorithm,
                &key.domain,
                &key.selector,
                &section.headers,
                header_c,
                body_c,
            )
            .map_err(|message| KeyError {
                file: key.key_file.clone(),
                message,
            })?;
            by_domain
                .entry(key.domain.to_ascii_lowercase())
                .or_default()
                .push(signer);
        }
        Ok(Some(Arc::new(DkimKeys { by_domain })))
    }

    /// The domain whose keys sign mail from `from_domain`: itself, or its nearest parent with a
    /// key. `None`: the message goes out unsigned.
    pub fn signing_domain(&self, from_domain: &str) -> Option<&str> {
        let lower = from_domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = lower.as_str();
        loop {
            if let Some((domain, _)) = self.by_domain.get_key_value(candidate) {
                return Some(domain);
            }
            candidate = candidate.split_once('.')?.1;
        }
    }

    /// The `DKIM-Signature` header fields (each ending in CRLF) for the message made of
    /// `prefix` (header fields ringmail adds, may be empty) followed by `message` (as queued),
    /// signed by every key of `domain`. Prepend them to the message as they are.
    pub fn sign(&self, domain: &str, prefix: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        let signers = self
            .by_domain
            .get(domain)
            .ok_or_else(|| format!("no DKIM key for {domain}"))?;
        let mut out = Vec::new();
        for signer in signers {
            let chunks = [prefix, message];
            let signature = match signer {
                Signer::Rsa(s) => s.sign_chained(chunks),
                Signer::Ed25519(s) => s.sign_chained(chunks),
            }
            .map_err(|e| format!("DKIM signing for {domain} failed: {e}"))?;
            let mut header = signature.to_header();
            // mail-auth 0.13 folds after a b= value that fills its last line, leaving `b=...\r\n\t;`.
            // The signed form had no fold there (b= was empty), and verifiers such as dkimpy
            // keep that whitespace when they blank b=, so the signature would not verify.
            if header.ends_with("\r\n\t;\r\n") {
                header.truncate(header.len() - "\r\n\t;\r\n".len());
                header.push_str(";\r\n");
            }
            out.extend_from_slice(header.as_bytes());
        }
        Ok(out)
    }
}

fn build_signer(
    pem: &[u8],
    algorithm: DkimAlgorithm,
    domain: &str,
    selector: &str,
    headers: &[String],
    header_c: Canonicalization,
    body_c: Canonicalization,
) -> Result<Signer, String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!("not a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`): {e}")
    })?;
    let headers = headers.iter().cloned();
    Ok(match algorithm {
        DkimAlgorithm::Rsa => {
            let key = RsaKey::<Sha256>::from_key_der(der)
                .map_err(|e| format!("not a usable RSA key (algorithm = \"rsa\"): {e}"))?;
            Signer::Rsa(
                DkimSigner::from_key(key)
                    .domain(domain)
                    .selector(selector)
                    .headers(headers)
                    .header_canonicalization(header_c)
                    .body_canonicalization(body_c),
            )
        }
        DkimAlgorithm::Ed25519 => {
            let PrivateKeyDer::Pkcs8(pkcs8) = der else {
                return Err("an Ed25519 key must be PKCS#8 (`BEGIN PRIVATE KEY`)".into());
            };
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
                .map_err(|e| format!("not a usable Ed25519 key (algorithm = \"ed25519\"): {e}"))?;
            Signer::Ed25519(
                DkimSigner::from_key(key)
                    .domain(domain)
                    .selector(selector)
                    .headers(headers)
                    .header_canonicalization(header_c)
                    .body_canonicalization(body_c),
            )
        }
    })
}

/// The domain of the first address in the message's `From:` header, lowercase; `None` if the
/// header block has no parsable From:.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new()
        .with_address_headers()
        .parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Loads the keys named in a configuration file's `[dkim]` for `check-config`-style checks.
pub fn check_key_file(path: &Path, algorithm: DkimAlgorithm) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    build_signer(
        &pem,
        algorithm,
        "example.com",
        "s",
        &["From".to_string()],
        Canonicalization::Relaxed,
        Canonicalization::Relaxed,
    )
    .map(|_| ())
    .map_err(|e| format!("{}: {e}", path.display()))
}
