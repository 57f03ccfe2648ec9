//! `ringmail dkim keygen`: a new signing key as a PEM file, and the DNS TXT record that
//! publishes its public half (RFC 6376 §3.6.1; RFC 8463 §4 for Ed25519).

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::DkimAlgorithm;

/// A generated key: the private key as PEM (PKCS#8) and the `p=` value of its DNS record.
pub struct GeneratedKey {
    pub private_pem: String,
    /// Base64 of the public key: SubjectPublicKeyInfo DER for RSA (what opendkim-genkey
    /// publishes), the raw 32 bytes for Ed25519 (RFC 8463 §4).
    pub public_b64: String,
    pub algorithm: DkimAlgorithm,
}

/// Generates a key. `bits` applies to RSA only: 2048 (the default; what every provider
/// accepts), 3072 or 4096.
pub fn generate(algorithm: DkimAlgorithm, bits: u32) -> Result<GeneratedKey, String> {
    match algorithm {
        DkimAlgorithm::Rsa => {
            let size = match bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                _ => {
                    return Err(format!(
                        "--bits {bits}: RSA keys are 2048, 3072 or 4096 bits"
                    ));
                }
            };
            let pair = RsaKeyPair::generate(size).map_err(|e| format!("key generation: {e}"))?;
            let private: Pkcs8V1Der = pair.as_der().map_err(|e| format!("key encoding: {e}"))?;
            let public: PublicKeyX509Der = pair
                .public_key()
                .as_der()
                .map_err(|e| format!("key encoding: {e}"))?;
            Ok(GeneratedKey {
                private_pem: pem("PRIVATE KEY", private.as_ref()),
                public_b64: STANDARD.encode(public.as_ref()),
                algorithm,
            })
        }
        DkimAlgorithm::Ed25519 => {
            let pair = Ed25519KeyPair::generate().map_err(|e| format!("key generation: {e}"))?;
            let private = pair
                .to_pkcs8v1()
                .map_err(|e| format!("key encoding: {e}"))?;
            Ok(GeneratedKey {
                private_pem: pem("PRIVATE KEY", private.as_ref()),
                public_b64: STANDARD.encode(pair.public_key().as_ref()),
                algorithm,
            })
        }
    }
}

/// PEM armour (RFC 7468): base64 in 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The zone-file line that publishes `key` for `selector` and `domain`:
/// `SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; p=..." "..." )`. A TXT record's
/// strings hold at most 255 octets each (RFC 1035 §3.3.14), so a long value (every RSA key)
/// is split into several strings, which a verifier joins (RFC 6376 §3.6.2.2).
pub fn dns_record(domain: &str, selector: &str, key: &GeneratedKey) -> String {
    let k = match key.algorithm {
        DkimAlgorithm::Rsa => "rsa",
        DkimAlgorithm::Ed25519 => "ed25519",
    };
    let value = format!("v=DKIM1; k={k}; p={}", key.public_b64);
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
        .collect();
    let name = format!("{selector}._domainkey.{}.", domain.trim_end_matches('.'));
    if strings.len() == 1 {
        format!("{name} IN TXT {}", strings[0])
    } else {
        format!("{name} IN TXT ( {} )", strings.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DkimAlgorithm, DkimKeyConfig, DkimSection};
    use crate::dkim::DkimKeys;

    fn strings_of(record: &str) -> Vec<&str> {
        record.split('"').skip(1).step_by(2).collect()
    }

    #[test]
    fn rsa_record_is_split_into_255_octet_strings_and_the_key_signs() {
        let key = generate(DkimAlgorithm::Rsa, 2048).unwrap();
        let record = dns_record("example.com", "s2026", &key);
        assert!(
            record.starts_with("s2026._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; p=MII")
        );
        let strings = strings_of(&record);
        assert!(strings.len() >= 2, "{record}");
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(
            strings.concat(),
            format!("v=DKIM1; k=rsa; p={}", key.public_b64)
        );
        // The PEM written is one that startup loads and signs with.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.pem");
        std::fs::write(&file, &key.private_pem).unwrap();
        let keys = DkimKeys::load(&DkimSection {
            keys: vec![DkimKeyConfig {
                domain: "example.com".into(),
                selector: "s2026".into(),
                algorithm: DkimAlgorithm::Rsa,
                key_file: file,
            }],
            ..DkimSection::default()
        })
        .unwrap()
        .unwrap();
        let header = keys
            .sign(
                "example.com",
                b"",
                b"From: a@example.com\r\nSubject: x\r\n\r\nhi\r\n",
            )
            .unwrap();
        let header = String::from_utf8(header).unwrap();
        assert!(header.starts_with("DKIM-Signature: "), "{header}");
        assert!(header.contains("a=rsa-sha256") && header.contains("d=example.com"));
    }

    #[test]
    fn ed25519_record_fits_one_string() {
        let key = generate(DkimAlgorithm::Ed25519, 2048).unwrap();
        let record = dns_record("example.com.", "ed", &key);
        assert_eq!(
            record,
            format!(
                "ed._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p={}\"",
                key.public_b64
            )
        );
        assert_eq!(STANDARD.decode(&key.public_b64).unwrap().len(), 32);
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[test]
    fn unsupported_rsa_sizes_are_refused() {
        assert!(generate(DkimAlgorithm::Rsa, 1024).is_err());
    }
}
