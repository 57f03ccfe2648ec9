//! TLS for ringmail's servers: rustls with aws-lc-rs as the one crypto provider, certificates
//! from PEM files, and the handshake over any futures-io stream (glommio's `TcpStream` included).

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::ServerConfig;

pub use futures_rustls::server::TlsStream;

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

/// Builds a server config from a PEM certificate chain and a PEM private key.
pub fn load_server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    install_default_provider();
    let cert_err = |source| TlsError::ReadCert {
        path: cert_pem.to_path_buf(),
        source,
    };
    let mut rd = BufReader::new(File::open(cert_pem).map_err(cert_err)?);
    let certs = rustls_pemfile::certs(&mut rd)
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert_pem.to_path_buf(),
        });
    }
    let key_err = |source| TlsError::ReadKey {
        path: key_pem.to_path_buf(),
        source,
    };
    let mut rd = BufReader::new(File::open(key_pem).map_err(key_err)?);
    let key = rustls_pemfile::private_key(&mut rd)
        .map_err(key_err)?
        .ok_or_else(|| TlsError::NoKey {
            path: key_pem.to_path_buf(),
        })?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Config {
            cert: cert_pem.to_path_buf(),
            source,
        })?;
    Ok(Arc::new(config))
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
    }
}
