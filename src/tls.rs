//! TLS for ringmail's servers: rustls with aws-lc-rs as the one crypto provider, certificates
//! from PEM files, and the handshake over any futures-io stream (glommio's `TcpStream` included).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use futures_rustls::server::TlsStream;

pub mod self_signed;

/// Why a TLS server configuration could not be built. Each variant names the file at fault.
#[derive(Debug)]
pub enum TlsError {
    /// The certificate file could not be read.
    ReadCert { path: PathBuf, source: io::Error },
    /// The certificate file holds no PEM certificate.
    NoCert { path: PathBuf },
    /// The key file could not be read or parsed.
    ReadKey { path: PathBuf, source: io::Error },
    /// The key file holds no PEM private key.
    NoKey { path: PathBuf },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    Config {
        cert: PathBuf,
        source: rustls::Error,
    },
    /// The self-signed certificate could not be made or written (see `self_signed`).
    Generate { path: PathBuf, message: String },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::ReadCert { path, source } => {
                write!(f, "{}: cannot read certificate: {source}", path.display())
            }
            TlsError::NoCert { path } => {
                write!(f, "{}: no PEM certificate found", path.display())
            }
            TlsError::ReadKey { path, source } => {
                write!(f, "{}: cannot read private key: {source}", path.display())
            }
            TlsError::NoKey { path } => write!(f, "{}: no PEM private key found", path.display()),
            TlsError::Config { cert, source } => {
                write!(
                    f,
                    "{}: unusable certificate/key pair: {source}",
                    cert.display()
                )
            }
            TlsError::Generate { path, message } => write!(
                f,
                "{}: cannot create the self-signed certificate: {message}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// Installs aws-lc-rs as rustls's process-wide provider. Idempotent; call it at startup.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing the same provider is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// Builds a server config from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
/// or SEC1). TLS 1.2 and 1.3 only: rustls has no older versions.
pub fn load_server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    install_default_provider();
    let certs = read_certs(cert_pem)?;
    let key = read_key(key_pem)?;
    let config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|source| TlsError::Config {
        cert: cert_pem.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, in order (leaf first, then the chain).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_err = |e: pem::Error| TlsError::ReadCert {
        path: path.to_path_buf(),
        source: pem_to_io(e),
    };
    // Read the file first, so an unreadable file is an I/O error and not "no certificate".
    let text = std::fs::read(path).map_err(|source| TlsError::ReadCert {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => TlsError::ReadKey {
            path: path.to_path_buf(),
            source: pem_to_io(e),
        },
    })
}

/// PEM syntax errors become `InvalidData`, so `TlsError` keeps its `io::Error` sources.
fn pem_to_io(e: pem::Error) -> io::Error {
    match e {
        pem::Error::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Runs the server side of a TLS handshake over `stream`.
pub async fn accept<S>(config: Arc<ServerConfig>, stream: S) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    futures_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_rcgen_pair_and_names_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        install_default_provider();
        install_default_provider();
        assert!(load_server_config(&cert, &key).is_ok());
        let missing = dir.path().join("missing.pem");
        let err = load_server_config(&missing, &key).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = load_server_config(&key, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCert { .. }), "{err}");
        let err = load_server_config(&cert, &cert).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        // A key that belongs to another certificate.
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let other_key = dir.path().join("other.key");
        std::fs::write(&other_key, other.key_pair.serialize_pem()).unwrap();
        let err = load_server_config(&cert, &other_key).unwrap_err();
        assert!(matches!(err, TlsError::Config { .. }), "{err}");
        assert!(err.to_string().contains("cert.pem"), "{err}");
        // Broken base64 inside a PEM section.
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_server_config(&broken, &key).unwrap_err();
        assert!(matches!(err, TlsError::ReadCert { .. }), "{err}");
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }
}
