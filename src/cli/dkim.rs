//! `ringmail dkim keygen`: writes a new DKIM private key and prints its DNS TXT record.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::config::DkimAlgorithm;
use crate::dkim::keygen;

pub fn keygen(
    domain: &str,
    selector: &str,
    algorithm: DkimAlgorithm,
    bits: u32,
    dir: &Path,
) -> Result<ExitCode, ExitCode> {
    let bad_label = |s: &str| {
        s.is_empty()
            || !s
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    if bad_label(domain.trim_end_matches('.')) {
        eprintln!("ringmail: `{domain}` is not a domain name");
        return Err(ExitCode::from(2));
    }
    if bad_label(selector) {
        eprintln!("ringmail: `{selector}` is not a selector (letters, digits, '-', '.')");
        return Err(ExitCode::from(2));
    }
    let key = keygen::generate(algorithm, bits).map_err(|e| {
        eprintln!("ringmail: {e}");
        ExitCode::from(2)
    })?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let path = dir.join(format!("{domain}.{selector}.pem"));
    // 0600 from the start, and never over an existing key (a selector's key is in DNS).
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(key.private_pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    let algorithm_name = match algorithm {
        DkimAlgorithm::Rsa => "rsa",
        DkimAlgorithm::Ed25519 => "ed25519",
    };
    eprintln!("ringmail: private key written to {}", path.display());
    eprintln!("ringmail: publish this record, then add to the configuration:");
    eprintln!(
        "    [[dkim.keys]]\n    domain = \"{domain}\"\n    selector = \"{selector}\"\n    \
         algorithm = \"{algorithm_name}\"\n    key_file = \"{}\"",
        path.display()
    );
    println!("{}", keygen::dns_record(&domain, selector, &key));
    Ok(ExitCode::SUCCESS)
}
